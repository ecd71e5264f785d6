//! What the model accepts for add-ons, and how it names them like Heroku: add-on names
//! (`postgresql-curved-12345`), attachment names and the config vars they set
//! (`DATABASE_URL` + `HEROKU_POSTGRESQL_JADE_URL`, `REDIS_URL`, `NAME_URL`).

use haven_catalog::AddonService;

/// The adjectives of generated add-on names (Heroku's style).
pub const ADJECTIVES: &[&str] = &[
    "aerodynamic",
    "amorphous",
    "angular",
    "clean",
    "concave",
    "convex",
    "cubed",
    "curly",
    "curved",
    "deep",
    "dimensional",
    "elliptical",
    "encircled",
    "flat",
    "fluffy",
    "horizontal",
    "octagonal",
    "opaque",
    "polished",
    "regular",
    "reticulated",
    "rigid",
    "round",
    "rugged",
    "shallow",
    "silhouetted",
    "sinuous",
    "slippery",
    "solid",
    "spherical",
    "symmetrical",
    "tetrahedral",
    "transparent",
    "triangular",
    "vertical",
];

/// The colours of attachment names after the first (`HEROKU_POSTGRESQL_JADE`).
pub const COLOURS: &[&str] = &[
    "AMBER", "AQUA", "BLACK", "BLUE", "BRONZE", "BROWN", "CHARCOAL", "COBALT", "COPPER", "CORAL",
    "CRIMSON", "CYAN", "GOLD", "GRAY", "GREEN", "IVORY", "JADE", "LIME", "MAROON", "MAUVE", "NAVY",
    "OLIVE", "ONYX", "ORANGE", "PINK", "PUCE", "PURPLE", "RED", "ROSE", "SILVER", "TEAL", "VIOLET",
    "WHITE", "YELLOW",
];

/// A Heroku-style add-on name from a random number: `postgresql-curved-12345`.
pub fn generated_addon_name(service: &AddonService, random: u64) -> String {
    let adj = ADJECTIVES[(random % ADJECTIVES.len() as u64) as usize];
    let digits = (random / ADJECTIVES.len() as u64) % 100_000;
    format!("{}-{adj}-{digits:05}", service.name_prefix)
}

/// Add-on names follow Heroku's pattern `^[a-zA-Z][A-Za-z0-9_-]+$`, at most 64 long.
pub fn validate_addon_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Name {name:?} is invalid: it must start with a letter and contain only letters, digits, '-' and '_' (2 to 64 characters)."
        ))
    }
}

/// An attachment name as given (`--as database`) made canonical: uppercase, `-` as `_`;
/// it must then match `^[A-Z][A-Z0-9_]*$` (a config var prefix), at most 48 long, and
/// not end in `_URL` (the var would read `X_URL_URL`).
pub fn normalize_attachment_name(name: &str) -> Result<String, String> {
    let n = name.trim().to_ascii_uppercase().replace('-', "_");
    let mut chars = n.chars();
    let ok = !n.is_empty()
        && n.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !n.ends_with("_URL");
    if ok {
        Ok(n)
    } else {
        Err(format!(
            "Attachment name {name:?} is invalid: use letters, digits and '_', starting with a letter, without a trailing _URL."
        ))
    }
}

/// The name and config vars of a new attachment of `service` to an app whose attachments
/// are named `taken`: `as_name` if given (`NAME` → `NAME_URL`); else the service's primary
/// name if the app has none yet (`DATABASE` → `DATABASE_URL`, plus the colour var for
/// Postgres; `REDIS` → `REDIS_URL`); else a colour name not taken
/// (`HEROKU_POSTGRESQL_JADE` → `HEROKU_POSTGRESQL_JADE_URL`), the first free one from
/// position `seed`. `as_name` must already be normalized.
pub fn attachment_naming(
    service: &AddonService,
    taken: &[&str],
    as_name: Option<&str>,
    seed: u64,
) -> (String, Vec<String>) {
    if let Some(n) = as_name {
        return (n.to_string(), vec![format!("{n}_URL")]);
    }
    let colour = || -> String {
        let start = (seed % COLOURS.len() as u64) as usize;
        (0..COLOURS.len())
            .map(|i| {
                format!(
                    "{}_{}",
                    service.colour_prefix,
                    COLOURS[(start + i) % COLOURS.len()]
                )
            })
            .find(|n| !taken.contains(&n.as_str()))
            // Every colour taken (34 attachments of one service): number them.
            .unwrap_or_else(|| format!("{}_{}", service.colour_prefix, taken.len() + 1))
    };
    let primary = service.primary_attachment;
    if !taken.contains(&primary) {
        let mut vars = vec![format!("{primary}_URL")];
        if service.colour_alias_on_primary {
            vars.push(format!("{}_URL", colour()));
        }
        return (primary.to_string(), vars);
    }
    let n = colour();
    let vars = vec![format!("{n}_URL")];
    (n, vars)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pg() -> &'static AddonService {
        haven_catalog::addon_service("postgres").unwrap()
    }

    #[test]
    fn generated_names_look_like_herokus() {
        let n = generated_addon_name(pg(), 8 + 35 * 12345);
        assert_eq!(n, "postgresql-curved-12345");
        let r = generated_addon_name(haven_catalog::addon_service("redis").unwrap(), 0);
        assert_eq!(r, "redis-aerodynamic-00000");
        for i in 0..500u64 {
            let n = generated_addon_name(pg(), i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(validate_addon_name(&n).is_ok(), "{n}");
        }
    }

    #[test]
    fn addon_names_are_validated() {
        for ok in ["my-db", "Db_2", "ab"] {
            assert!(validate_addon_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "1db", "-db", "my db", "db!", &"a".repeat(65)] {
            assert!(validate_addon_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attachment_names_are_normalized() {
        assert_eq!(normalize_attachment_name("database").unwrap(), "DATABASE");
        assert_eq!(normalize_attachment_name(" my-cache ").unwrap(), "MY_CACHE");
        for bad in ["", "1X", "_X", "X Y", "DATABASE_URL", "x!"] {
            assert!(normalize_attachment_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_postgres_gets_database_and_a_colour_later_ones_a_colour() {
        let (name, vars) = attachment_naming(pg(), &[], None, 16);
        assert_eq!(name, "DATABASE");
        assert_eq!(vars, ["DATABASE_URL", "HEROKU_POSTGRESQL_JADE_URL"]);
        let (name, vars) = attachment_naming(pg(), &["DATABASE"], None, 16);
        assert_eq!(name, "HEROKU_POSTGRESQL_JADE");
        assert_eq!(vars, ["HEROKU_POSTGRESQL_JADE_URL"]);
        let (name, _) = attachment_naming(pg(), &["DATABASE", "HEROKU_POSTGRESQL_JADE"], None, 16);
        assert_eq!(name, "HEROKU_POSTGRESQL_LIME");
        let (name, vars) = attachment_naming(pg(), &["DATABASE"], Some("ANALYTICS"), 3);
        assert_eq!(
            (name.as_str(), vars),
            ("ANALYTICS", vec!["ANALYTICS_URL".to_string()])
        );
    }

    #[test]
    fn redis_sets_redis_url_then_colours() {
        let redis = haven_catalog::addon_service("redis").unwrap();
        assert_eq!(
            attachment_naming(redis, &["DATABASE"], None, 0),
            ("REDIS".to_string(), vec!["REDIS_URL".to_string()])
        );
        let (name, vars) = attachment_naming(redis, &["REDIS"], None, 0);
        assert_eq!(name, "HEROKU_REDIS_AMBER");
        assert_eq!(vars, ["HEROKU_REDIS_AMBER_URL"]);
    }
}

//! Third-party add-on providers: external services that speak Heroku's add-on provider
//! API (`POST {url}/heroku/resources`, Basic auth `NAME:PASSWORD`), registered by an
//! operator, and how their config becomes an app's config vars.
//!
//! Naming rule (Heroku's): a provider's config var prefix is its name uppercased with
//! `-` as `_` (`my-mail` → `MY_MAIL`). A config key the provider returns loses that
//! prefix if it has it (`MY_MAIL_URL` → `URL`; `URL` stays `URL`) and gets the
//! attachment's name instead: `<ATTACHMENT>_<KEY>`. An app's first add-on of a provider is
//! attached as the prefix itself (`MY_MAIL_URL`), `--as NAME` gives `NAME_URL`, later ones
//! `<PREFIX>_<COLOUR>`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::addon_rules::COLOURS;

/// A registered provider. Its password is a secret: it is sent only to the provider, in
/// the Basic auth header, and never shown by the API or logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonProvider {
    pub id: Uuid,
    /// The service name add-ons are created with (`my-mail:basic`); unique, and no
    /// catalog service's name or alias.
    pub name: String,
    /// The provider's base URL (`https://mail.example.com`), without credentials.
    pub url: String,
    pub password: String,
    /// The plans' own names (`basic`), the first being the default.
    pub plans: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl AddonProvider {
    /// The config var prefix: the name uppercased, `-` as `_`.
    pub fn config_prefix(&self) -> String {
        provider_config_prefix(&self.name)
    }

    /// The plan called `plan` (ignoring case), by its own name.
    pub fn plan(&self, plan: &str) -> Option<&str> {
        let plan = plan.trim();
        self.plans
            .iter()
            .find(|p| p.eq_ignore_ascii_case(plan))
            .map(String::as_str)
    }

    /// A plan's fixed id, derived from the provider's id and the plan's position.
    pub fn plan_id(&self, plan: &str) -> Option<Uuid> {
        let i = self.plans.iter().position(|p| p == plan)?;
        Some(Uuid::from_u128(self.id.as_u128() ^ ((i as u128 + 1) << 64)))
    }
}

/// `my-mail` → `MY_MAIL`.
pub fn provider_config_prefix(name: &str) -> String {
    name.trim().to_ascii_uppercase().replace('-', "_")
}

/// The config var an attachment named `attachment` sets for the provider's key `key`.
pub fn provider_config_var(prefix: &str, attachment: &str, key: &str) -> String {
    let rest = key
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .filter(|r| !r.is_empty())
        .unwrap_or(key);
    format!("{attachment}_{rest}")
}

/// Every config var (with its value) an attachment named `attachment` sets.
pub fn provider_config_vars(
    prefix: &str,
    attachment: &str,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| (provider_config_var(prefix, attachment, k), v.clone()))
        .collect()
}

/// The name of a new attachment of a provider's add-on to an app whose attachments are
/// named `taken`: `as_name` (normalized) if given, else the prefix, else the prefix and
/// the first colour not taken from position `seed`.
pub fn provider_attachment_name(
    prefix: &str,
    taken: &[&str],
    as_name: Option<&str>,
    seed: u64,
) -> String {
    if let Some(n) = as_name {
        return n.to_string();
    }
    if !taken.contains(&prefix) {
        return prefix.to_string();
    }
    let start = (seed % COLOURS.len() as u64) as usize;
    (0..COLOURS.len())
        .map(|i| format!("{prefix}_{}", COLOURS[(start + i) % COLOURS.len()]))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_else(|| format!("{prefix}_{}", taken.len() + 1))
}

/// Provider names: `^[a-z][a-z0-9-]*$`, 2 to 30 long, not ending in `-`, and not a
/// catalog service's name or alias.
pub fn validate_provider_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = (2..=30).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        return Err(format!(
            "Provider name {name:?} is invalid: use lowercase letters, digits and '-', starting with a letter (2 to 30 characters)."
        ));
    }
    if haven_catalog::addon_service(name).is_some() {
        return Err(format!(
            "{name} names a service Haven runs itself; pick another name."
        ));
    }
    Ok(())
}

/// Plan names: `^[a-z0-9][a-z0-9-]*$`, at most 30 long; at least one, no duplicates.
pub fn validate_provider_plans(plans: &[String]) -> Result<(), String> {
    if plans.is_empty() {
        return Err("Give the provider at least one plan.".into());
    }
    for (i, p) in plans.iter().enumerate() {
        let mut chars = p.chars();
        let ok = (1..=30).contains(&p.len())
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(format!(
                "Plan name {p:?} is invalid: use lowercase letters, digits and '-'."
            ));
        }
        if plans[..i].contains(p) {
            return Err(format!("Plan {p} is listed twice."));
        }
    }
    Ok(())
}

/// Provider URLs: `http://` or `https://` with a host, no credentials, no spaces.
pub fn validate_provider_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|r| r.split('/').next().unwrap_or(""));
    match authority {
        Some(a) if !a.is_empty() && !a.contains('@') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!(
            "Provider URL {url:?} is invalid: give http(s)://HOST[:PORT][/PATH], without credentials (the password goes in --password)."
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn provider_keys_take_the_attachment_name_in_place_of_the_prefix() {
        let cases = [
            ("MY_MAIL", "MY_MAIL", "MY_MAIL_URL", "MY_MAIL_URL"),
            ("MY_MAIL", "MY_MAIL", "URL", "MY_MAIL_URL"),
            ("MY_MAIL", "OUTBOX", "MY_MAIL_URL", "OUTBOX_URL"),
            ("MY_MAIL", "OUTBOX", "API_KEY", "OUTBOX_API_KEY"),
            ("MY_MAIL", "OUTBOX", "MY_MAILER", "OUTBOX_MY_MAILER"),
            ("MY_MAIL", "OUTBOX", "MY_MAIL", "OUTBOX_MY_MAIL"),
            (
                "MY_MAIL",
                "MY_MAIL_JADE",
                "MY_MAIL_TOKEN",
                "MY_MAIL_JADE_TOKEN",
            ),
        ];
        for (prefix, att, key, want) in cases {
            assert_eq!(provider_config_var(prefix, att, key), want, "{key}");
        }
        assert_eq!(provider_config_prefix("my-mail"), "MY_MAIL");
        let config = BTreeMap::from([
            ("MY_MAIL_URL".to_string(), "https://x".to_string()),
            ("TOKEN".to_string(), "t".to_string()),
        ]);
        let vars = provider_config_vars("MY_MAIL", "OUT", &config);
        assert_eq!(
            vars.into_iter().collect::<Vec<_>>(),
            [
                ("OUT_TOKEN".to_string(), "t".to_string()),
                ("OUT_URL".to_string(), "https://x".to_string())
            ]
        );
    }

    #[test]
    fn attachments_are_the_prefix_then_colours() {
        assert_eq!(provider_attachment_name("MAIL", &[], None, 0), "MAIL");
        assert_eq!(
            provider_attachment_name("MAIL", &["MAIL"], None, 0),
            "MAIL_AMBER"
        );
        assert_eq!(
            provider_attachment_name("MAIL", &["MAIL", "MAIL_AMBER"], None, 0),
            "MAIL_AQUA"
        );
        assert_eq!(
            provider_attachment_name("MAIL", &["MAIL"], Some("OUT"), 0),
            "OUT"
        );
    }

    #[test]
    fn names_plans_and_urls_are_validated() {
        for ok in ["my-mail", "ab", "mail2"] {
            assert!(validate_provider_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "My",
            "1a",
            "a_b",
            "mail-",
            "postgres",
            "heroku-redis",
        ] {
            assert!(validate_provider_name(bad).is_err(), "{bad}");
        }
        assert!(validate_provider_plans(&["basic".into(), "pro-2".into()]).is_ok());
        for bad in [
            vec![],
            vec!["Basic".to_string()],
            vec!["a".into(), "a".into()],
        ] {
            assert!(validate_provider_plans(&bad).is_err(), "{bad:?}");
        }
        for ok in ["http://10.0.0.1:8080", "https://mail.example.com/api"] {
            assert!(validate_provider_url(ok).is_ok(), "{ok}");
        }
        for bad in ["ftp://x", "http://", "http://u:p@x", "x", "http://a b"] {
            assert!(validate_provider_url(bad).is_err(), "{bad}");
        }
    }
}

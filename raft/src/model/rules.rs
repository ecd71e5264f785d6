//! What the model accepts: app names, process types, dyno sizes, config var names,
//! buildpack references, custom domains, drain URLs and user emails. Commands check them during apply;
//! the API checks them first to answer with a precise error.

use haven_catalog::{dyno_size, DYNO_SIZES};

/// Upper bound of one process type's quantity.
pub const MAX_QUANTITY: u32 = 100;

/// Checks an app name against Heroku's rule.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let ok = (3..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is invalid: it must start with a letter, hold only lowercase letters, digits and dashes, end with a letter or digit, and be 3 to 30 characters long"
        ))
    }
}

/// Checks a process type name (`web`, `worker`, `release`, ...).
pub fn validate_process_type(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "process type {name:?} is invalid: use 1 to 30 letters, digits, dashes or underscores"
        ))
    }
}

/// Normalizes a dyno size (`Standard-1X` → `standard-1x`), rejecting unknown ones.
pub fn normalize_size(size: &str) -> Result<String, String> {
    match dyno_size(size) {
        Some(s) => Ok(s.name.to_string()),
        None => {
            let names: Vec<&str> = DYNO_SIZES.iter().map(|s| s.name).collect();
            Err(format!(
                "size {size:?} is unknown: use one of {}",
                names.join(", ")
            ))
        }
    }
}

/// Checks a buildpack reference: a built-in name (`python`, `heroku/python`), a URL
/// (`https://…`, `http://…`, `git://…`, `file://…`, optionally `#ref`) or an absolute path
/// on the nodes.
pub fn validate_buildpack(bp: &str) -> Result<(), String> {
    let ok_chars = !bp.is_empty() && bp.len() <= 1024 && !bp.chars().any(char::is_whitespace);
    let ok_form = bp.starts_with('/')
        || ["https://", "http://", "git://", "file://", "ssh://", "git@"]
            .iter()
            .any(|p| bp.starts_with(p))
        || bp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'));
    if ok_chars && ok_form {
        Ok(())
    } else {
        Err(format!(
            "buildpack {bp:?} is invalid: give a built-in name (python, heroku/nodejs), a URL (https://…, file://…, with an optional #ref) or an absolute path"
        ))
    }
}

/// Normalizes a custom domain (`WWW.Example.com.` → `www.example.com`), refusing what is
/// not a DNS host name.
pub fn normalize_hostname(host: &str) -> Result<String, String> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = h.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !h.is_empty() && h.len() <= 253 && h.contains('.') && labels_ok {
        Ok(h)
    } else {
        Err(format!(
            "hostname {host:?} is invalid: give a DNS name such as www.example.com"
        ))
    }
}

/// Checks a config var name: like an environment variable.
pub fn validate_config_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && !key.as_bytes()[0].is_ascii_digit()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "config var name {key:?} is invalid: use letters, digits and underscores, not starting with a digit"
        ))
    }
}

/// Checks a drain URL: `syslog://HOST:PORT`, `http://…` or `https://…`.
pub fn validate_drain_url(url: &str) -> Result<(), String> {
    let bad = || {
        format!("drain URL {url:?} is invalid: use syslog://HOST:PORT, http://HOST/PATH or https://HOST/PATH")
    };
    if url.len() > 2048 || url.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    if let Some(rest) = url.strip_prefix("syslog://") {
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        return Ok(());
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in [
            "abc",
            "my-app",
            "a1b",
            "app-2024",
            "a234567890123456789012345678zz",
        ] {
            assert!(validate_app_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "1app",
            "App",
            "my_app",
            "app-",
            "-app",
            "a2345678901234567890123456789zz",
            "ünï",
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_normalize() {
        assert_eq!(normalize_size("Standard-1X").unwrap(), "standard-1x");
        assert_eq!(normalize_size("performance-l").unwrap(), "performance-l");
        assert!(normalize_size("huge").is_err());
    }

    #[test]
    fn config_keys() {
        assert!(validate_config_key("DATABASE_URL").is_ok());
        assert!(validate_config_key("foo1").is_ok());
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            assert!(validate_config_key(bad).is_err(), "{bad}");
        }
    }
}

/// A user's email, trimmed and lowercased: one `@` with something on both sides, no
/// spaces or control characters, at most 254 bytes.
pub fn normalize_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254
        && e.split('@').count() == 2
        && e.split('@').all(|part| !part.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(e)
    } else {
        Err(format!(
            "email {email:?} is invalid: use an address such as dev@example.com"
        ))
    }
}

#[cfg(test)]
mod email_tests {
    use super::normalize_email;

    #[test]
    fn emails_are_lowercased_and_checked() {
        for (input, want) in [
            ("Dev@Example.com", Some("dev@example.com")),
            ("  a@b ", Some("a@b")),
            ("a@b@c", None),
            ("@b", None),
            ("a@", None),
            ("a b@c", None),
            ("", None),
            ("nobody", None),
        ] {
            assert_eq!(normalize_email(input).ok().as_deref(), want, "{input:?}");
        }
    }
}

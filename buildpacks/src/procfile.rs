//! Procfile and `bin/release` YAML parsing.

use std::collections::BTreeMap;

fn valid_type(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses a Procfile: `TYPE: COMMAND` a line; blank lines and `#` comments are skipped.
/// Process type names are letters, digits, `_` and `-`. Errors name the line.
pub fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let Some((name, cmd)) = line.split_once(':') else {
            return Err(format!(
                "Procfile line {n} is not `TYPE: COMMAND`: {line:?}"
            ));
        };
        let (name, cmd) = (name.trim(), cmd.trim());
        if !valid_type(name) {
            return Err(format!(
                "Procfile line {n}: invalid process type {name:?} (use letters, digits, `_` and `-`)"
            ));
        }
        if cmd.is_empty() {
            return Err(format!(
                "Procfile line {n}: process type {name:?} has no command"
            ));
        }
        if out.insert(name.to_string(), cmd.to_string()).is_some() {
            return Err(format!(
                "Procfile line {n}: process type {name:?} is declared twice"
            ));
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated string {v:?}"))?;
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some(o) => s.push(o),
                    None => return Err(format!("bad escape in {v:?}")),
                }
            } else {
                s.push(c);
            }
        }
        Ok(s)
    } else if let Some(inner) = v.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("unterminated string {v:?}"))?;
        Ok(inner.replace("''", "'"))
    } else {
        Ok(v.to_string())
    }
}

/// Reads `default_process_types` from `bin/release` output: a top-level
/// `default_process_types:` key followed by indented `name: command` lines (commands may
/// be single- or double-quoted). Other keys (`addons`, `config_vars`) are ignored.
pub fn parse_release_yaml(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut in_types = false;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if !indented {
            in_types = false;
            if trimmed.starts_with("---") || trimmed == "..." {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("default_process_types:") {
                let rest = rest.trim();
                if rest.is_empty() {
                    in_types = true;
                } else if rest != "{}" && rest != "~" && rest != "null" {
                    return Err(format!(
                        "unsupported default_process_types value {rest:?} (use one `name: command` a line)"
                    ));
                }
            }
            continue;
        }
        if !in_types {
            continue;
        }
        let Some((name, cmd)) = trimmed.split_once(':') else {
            return Err(format!("bad default_process_types line {trimmed:?}"));
        };
        let name = unquote(name)?;
        if !valid_type(&name) {
            return Err(format!(
                "invalid process type {name:?} in default_process_types"
            ));
        }
        let cmd = unquote(cmd)?;
        if cmd.is_empty() {
            return Err(format!("process type {name:?} has no command"));
        }
        out.insert(name, cmd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_parses_and_rejects() {
        let p = parse_procfile(
            "# c\n\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\nworker:  python w.py \r\n",
        )
        .expect("ok");
        assert_eq!(p["web"], "gunicorn app:app --bind 0.0.0.0:$PORT");
        assert_eq!(p["worker"], "python w.py");
        assert_eq!(p.len(), 2);
        assert!(parse_procfile("web gunicorn").is_err());
        assert!(parse_procfile("we b: x").is_err());
        assert!(parse_procfile("web:").is_err());
        assert!(parse_procfile("web: a\nweb: b").is_err());
        assert!(parse_procfile("").expect("empty").is_empty());
    }

    #[test]
    fn release_yaml_subset() {
        let y = "---\naddons: []\ndefault_process_types:\n  web: \"python3 app.py --port $PORT\"\n  worker: 'run ''x'''\n  clock: bin/clock\nconfig_vars:\n  A: b\n";
        let t = parse_release_yaml(y).expect("ok");
        assert_eq!(t["web"], "python3 app.py --port $PORT");
        assert_eq!(t["worker"], "run 'x'");
        assert_eq!(t["clock"], "bin/clock");
        assert_eq!(t.len(), 3);
        assert!(parse_release_yaml("--- {}\n").expect("ok").is_empty());
        assert!(parse_release_yaml("---\ndefault_process_types: {}\n")
            .expect("ok")
            .is_empty());
        assert!(parse_release_yaml("default_process_types:\n  web: \"x\n").is_err());
    }
}

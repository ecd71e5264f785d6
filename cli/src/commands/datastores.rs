//! `pg:info`, `pg:psql`, `redis:info`, `redis:cli`: the app's databases through their
//! URLs, with the local `psql` and `redis-cli` as the Heroku CLI does (the password goes
//! in their environment, `PGPASSWORD` / `REDISCLI_AUTH`, never on a command line).

use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use haven_api as hw;
use haven_api::addons as w;

use super::addons::state_word;
use super::app_path;
use crate::client::Api;
use crate::output::{header, key_values};

/// The parts of `scheme://user:password@host:port/path`.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Option<Url> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match hostport.rsplit_once(']') {
        Some((h, p)) => (h.trim_start_matches('['), p.strip_prefix(':')?),
        None => hostport.rsplit_once(':')?,
    };
    Some(Url {
        scheme: scheme.to_string(),
        user: user.to_string(),
        password: password.to_string(),
        host: host.to_string(),
        port: port.parse().ok()?,
        path: path.to_string(),
    })
}

/// The config var a database argument names: `DATABASE` → `DATABASE_URL`, a var as is,
/// an add-on name → the var its attachment to this app sets; `default` when absent.
fn resolve_var(api: &Api, app: &str, arg: Option<&str>, default: &str) -> Result<String> {
    let Some(arg) = arg else {
        return Ok(default.to_string());
    };
    let atts: Vec<w::Attachment> = api
        .get(&format!("{}/addon-attachments", app_path(app)))?
        .value;
    if let Some(t) = atts
        .iter()
        .find(|t| t.addon.name == arg || t.name.eq_ignore_ascii_case(arg))
    {
        if let Some(v) = t.config_vars.first() {
            return Ok(v.clone());
        }
    }
    let upper = arg.to_ascii_uppercase();
    Ok(if upper.ends_with("_URL") {
        upper
    } else {
        format!("{upper}_URL")
    })
}

/// The URL in config var `var` of `app`.
fn url_of(api: &Api, app: &str, var: &str) -> Result<Url> {
    let config: hw::ConfigVars = api.get(&format!("{}/config-vars", app_path(app)))?.value;
    let url = config
        .get(var)
        .ok_or_else(|| anyhow!("{app} has no {var}; see hctl addons -a {app}"))?;
    parse_url(url).ok_or_else(|| anyhow!("{var} of {app} is not a URL this command can use"))
}

/// The add-on whose attachment to `app` sets `var`.
fn addon_of(api: &Api, app: &str, var: &str) -> Result<Option<w::Addon>> {
    let atts: Vec<w::Attachment> = api
        .get(&format!("{}/addon-attachments", app_path(app)))?
        .value;
    match atts.iter().find(|t| t.config_vars.iter().any(|v| v == var)) {
        Some(t) => Ok(Some(api.get(&format!("/addons/{}", t.addon.id))?.value)),
        None => Ok(None),
    }
}

fn psql(u: &Url) -> Command {
    let mut c = Command::new("psql");
    c.env("PGHOST", &u.host)
        .env("PGPORT", u.port.to_string())
        .env("PGUSER", &u.user)
        .env("PGPASSWORD", &u.password)
        .env("PGDATABASE", &u.path)
        .env("PGAPPNAME", "hctl pg:psql");
    // Haven's Postgres servers speak TLS: encrypted unless the user says otherwise (e.g.
    // PGSSLMODE=verify-full with PGSSLROOTCERT naming the cluster CA).
    if std::env::var_os("PGSSLMODE").is_none() {
        c.env("PGSSLMODE", "require");
    }
    c
}

/// `hctl pg:psql [DATABASE] [-c COMMAND]`.
pub fn pg_psql(api: &Api, app: &str, db: Option<&str>, command: Option<&str>) -> Result<()> {
    let var = resolve_var(api, app, db, "DATABASE_URL")?;
    let u = url_of(api, app, &var)?;
    eprintln!("--> Connecting to {var}");
    let mut c = psql(&u);
    if let Some(cmd) = command {
        c.arg("-c").arg(cmd);
    }
    let status = c
        .status()
        .context("run psql (install the postgresql-client package)")?;
    if !status.success() {
        bail!("psql exited with {status}");
    }
    Ok(())
}

/// `hctl pg:promote DATABASE`: attaches the database as `DATABASE` (confirmed: the user
/// named it), which moves `DATABASE_URL` to it in one release.
pub fn pg_promote(api: &Api, app: &str, db: &str) -> Result<()> {
    let var = resolve_var(api, app, Some(db), "DATABASE_URL")?;
    let addon = addon_of(api, app, &var)?.ok_or_else(|| {
        anyhow!("{db} is not a database attached to {app}; hctl addons -a {app} lists them")
    })?;
    let atts: Vec<w::Attachment> = api
        .get(&format!("{}/addon-attachments", app_path(app)))?
        .value;
    if atts
        .iter()
        .any(|t| t.addon.id == addon.id && t.config_vars.iter().any(|v| v == "DATABASE_URL"))
    {
        bail!("{} is already the DATABASE_URL of {app}", addon.name);
    }
    let body = w::AttachmentCreate {
        addon: addon.id.clone(),
        app: app.to_string(),
        name: Some("DATABASE".into()),
        confirm: Some(app.to_string()),
    };
    print!("Promoting {} to DATABASE_URL on ⬢ {app}... ", addon.name);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _: w::Attachment = api
        .call_with(reqwest::Method::POST, "/addon-attachments", &body)?
        .value;
    println!("done");
    Ok(())
}

/// `hctl pg:credentials:rotate [DATABASE] --confirm APP`.
pub fn pg_credentials_rotate(
    api: &Api,
    app: &str,
    db: Option<&str>,
    confirm: Option<&str>,
) -> Result<()> {
    let var = resolve_var(api, app, db, "DATABASE_URL")?;
    let addon = addon_of(api, app, &var)?
        .ok_or_else(|| anyhow!("{var} of {app} is not a database attached to it"))?;
    if confirm != Some(app) {
        bail!(
            "this breaks every connection to {} that uses its current password; to proceed, pass --confirm {app}",
            addon.name
        );
    }
    print!("Rotating the credentials of {} ({var})... ", addon.name);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let body = serde_json::json!({ "confirm": app });
    let _: w::Addon = api
        .call_with(
            reqwest::Method::POST,
            &format!(
                "{}/addons/{}/actions/rotate-credentials",
                app_path(app),
                addon.id
            ),
            &body,
        )?
        .value;
    println!("done");
    println!("The apps attached restart with the new URL; connections with the old password fail.");
    Ok(())
}

/// `hctl pg:info [DATABASE]`.
pub fn pg_info(api: &Api, app: &str, db: Option<&str>) -> Result<()> {
    let var = resolve_var(api, app, db, "DATABASE_URL")?;
    let u = url_of(api, app, &var)?;
    let addon = addon_of(api, app, &var)?;
    let asked = psql(&u)
        .args(["-XAtc", "SELECT current_setting('server_version'), (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()), pg_size_pretty(pg_database_size(current_database()))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let mut parts = asked.as_deref().unwrap_or("").split('|');
    let (version, conns, size) = (parts.next(), parts.next(), parts.next());
    println!("{}", header(&var));
    let mut rows = vec![];
    if let Some(a) = &addon {
        rows.push(("Plan", a.plan.human_name.clone()));
        rows.push((
            "Status",
            if asked.is_some() {
                "Available".into()
            } else {
                state_word(&a.state).to_string()
            },
        ));
    }
    rows.push(("Connections", format!("{}/20", conns.unwrap_or("?"))));
    rows.push(("PG Version", version.unwrap_or("?").to_string()));
    rows.push(("Data Size", size.unwrap_or("?").to_string()));
    if let Some(a) = &addon {
        rows.push(("Created", a.created_at.clone()));
        rows.push(("Add-on", a.name.clone()));
        if a.members.len() > 1 {
            let lags = standby_lags(&u);
            let standbys = a.members.iter().filter(|m| m.role == "standby");
            let available = standbys.clone().all(|m| m.synced);
            rows.push((
                "HA Status",
                if available {
                    "Available"
                } else {
                    "Temporarily Unavailable"
                }
                .into(),
            ));
            let mut members: Vec<&w::AddonMember> = a.members.iter().collect();
            members.sort_by_key(|m| m.role != "primary");
            for m in members {
                let place = format!("{} ({}:{})", m.node.name, m.host, m.port);
                if m.role == "primary" {
                    rows.push(("Primary", place));
                } else {
                    let lag = lags
                        .iter()
                        .find(|(n, _)| *n == format!("m{}", m.id.replace('-', "")))
                        .map_or(String::new(), |(_, l)| format!(", lag {l} bytes"));
                    let how = match (m.synced, m.streaming) {
                        (true, _) => "synchronous",
                        (false, true) => "streaming, catching up",
                        (false, false) => "not replicating",
                    };
                    rows.push(("Standby", format!("{place}: {how}{lag}")));
                }
            }
        } else {
            let nodes: Vec<&str> = a.members.iter().map(|m| m.node.name.as_str()).collect();
            rows.push(("Node", nodes.join(", ")));
            rows.push((
                "HA",
                "no (single node: the data is lost if its node is lost)".into(),
            ));
        }
    }
    println!("{}", key_values(&rows));
    Ok(())
}

/// The primary's standbys and how many bytes of WAL each has yet to replay.
fn standby_lags(u: &Url) -> Vec<(String, String)> {
    let out = psql(u)
        .args(["-XAtc", "SELECT application_name || '|' || coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0) FROM pg_stat_replication"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once('|')?;
            Some((n.to_string(), v.to_string()))
        })
        .collect()
}

fn redis_cli(u: &Url) -> Command {
    let mut c = Command::new("redis-cli");
    c.arg("-h").arg(&u.host).arg("-p").arg(u.port.to_string());
    c.env("REDISCLI_AUTH", &u.password);
    c
}

/// `hctl redis:cli [DATABASE] [-- ARGS]`.
pub fn redis_cli_run(api: &Api, app: &str, db: Option<&str>, args: &[String]) -> Result<()> {
    let var = resolve_var(api, app, db, "REDIS_URL")?;
    let u = url_of(api, app, &var)?;
    eprintln!("Connecting to {var}");
    let status = redis_cli(&u)
        .args(args)
        .status()
        .context("run redis-cli (install the redis-tools package)")?;
    if !status.success() {
        bail!("redis-cli exited with {status}");
    }
    Ok(())
}

/// `hctl redis:info [DATABASE]`.
pub fn redis_info(api: &Api, app: &str, db: Option<&str>) -> Result<()> {
    let var = resolve_var(api, app, db, "REDIS_URL")?;
    let u = url_of(api, app, &var)?;
    let addon = addon_of(api, app, &var)?;
    let version = redis_cli(&u)
        .args(["INFO", "server"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_string())
            })
        });
    let title = match &addon {
        Some(a) => format!("{} ({var})", a.name),
        None => var.clone(),
    };
    println!("{}", header(&title));
    let mut rows = vec![];
    if let Some(a) = &addon {
        rows.push(("Plan", a.plan.human_name.clone()));
        rows.push((
            "Status",
            if version.is_some() {
                "available".into()
            } else {
                state_word(&a.state).to_string()
            },
        ));
        rows.push(("Created", a.created_at.clone()));
    }
    rows.push(("Version", version.unwrap_or_else(|| "?".into())));
    match &addon {
        Some(a) if a.members.len() > 1 => {
            let available = a
                .members
                .iter()
                .filter(|m| m.role == "standby")
                .all(|m| m.synced);
            rows.push((
                "HA Status",
                if available {
                    "Available"
                } else {
                    "Temporarily Unavailable"
                }
                .into(),
            ));
            let mut members: Vec<&w::AddonMember> = a.members.iter().collect();
            members.sort_by_key(|m| m.role != "primary");
            for m in members {
                let place = format!("{} ({}:{})", m.node.name, m.host, m.port);
                if m.role == "primary" {
                    rows.push(("Primary", place));
                } else {
                    let how = match (m.synced, m.streaming) {
                        (true, _) => "replica, in sync (asynchronous)",
                        (false, true) => "replica, catching up",
                        (false, false) => "not replicating",
                    };
                    rows.push(("Replica", format!("{place}: {how}")));
                }
            }
        }
        _ => rows.push(("HA Available", "false".into())),
    }
    println!("{}", key_values(&rows));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_connection_parts() {
        let u = parse_url("postgres://u1:pw@10.0.0.1:5432/d1").unwrap();
        assert_eq!(
            (
                u.scheme.as_str(),
                u.user.as_str(),
                u.password.as_str(),
                u.host.as_str(),
                u.port,
                u.path.as_str()
            ),
            ("postgres", "u1", "pw", "10.0.0.1", 5432, "d1")
        );
        let r = parse_url("redis://:secret@[::1]:6379").unwrap();
        assert_eq!(
            (
                r.user.as_str(),
                r.password.as_str(),
                r.host.as_str(),
                r.port
            ),
            ("", "secret", "::1", 6379)
        );
        assert!(parse_url("nonsense").is_none());
        assert!(parse_url("redis://host").is_none());
    }
}

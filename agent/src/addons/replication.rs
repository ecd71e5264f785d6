//! Replication of HA add-ons, seen and steered from the member's agent, one shape for
//! both engines ([`ReplStatus`]). Postgres (here) streams synchronously, seen with
//! `psql` over TCP as the add-on's user (the password in `PGPASSWORD`, never on a command
//! line): whether the server is in recovery and streams, which standbys its primary
//! waits for and how far they flushed, `synchronous_standby_names` (`ALTER SYSTEM`), and
//! `pg_promote()`. Redis ([`super::redis_replication`]) replicates asynchronously.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use haven_raft::catalog::Engine;
use haven_raft::model::{Addon, AddonMember};

use super::redis_replication as redis;
use super::server::PG_BIN;

/// What one status query saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplStatus {
    /// The server is a standby (Postgres in recovery, a Redis replica).
    pub in_recovery: bool,
    /// A standby's link to its primary (`streaming`), empty without one.
    pub receiver: String,
    /// The primary's position so far (Postgres: WAL bytes flushed from 0/0; Redis: its
    /// replication offset).
    pub flush_lsn: u64,
    /// A primary's standbys that keep up (Postgres: in `sync` state; Redis: online):
    /// application name and position flushed.
    pub sync: Vec<(String, u64)>,
    /// The standbys' lag behind the primary (Postgres: replay bytes; Redis: seconds
    /// since their last acknowledgement), a primary's view.
    pub lag: Vec<(String, u64)>,
    /// What the primary waits for now, in [`wanted`]'s terms.
    pub sync_names: String,
}

/// The server's replication as its own protocol tells it.
pub async fn status(
    engine: Engine,
    addon: &Addon,
    member: &AddonMember,
) -> Result<ReplStatus, String> {
    match engine {
        Engine::Postgres => pg_status(addon, member).await,
        Engine::Redis => redis::status(addon, member).await,
    }
}

/// What [`ReplStatus::sync_names`] reads once a primary waits for the standbys `names`
/// (application names, comma-separated): Postgres names them; a Redis primary only
/// refuses writes while no replica keeps up, or takes them alone.
pub fn wanted(engine: Engine, names: &str) -> String {
    match engine {
        Engine::Postgres => names.to_string(),
        Engine::Redis => redis::wanted(names),
    }
}

/// Makes a primary wait for the standbys `names` (none: it commits alone).
pub async fn set_sync(
    engine: Engine,
    addon: &Addon,
    member: &AddonMember,
    names: &str,
) -> Result<(), String> {
    match engine {
        Engine::Postgres => set_sync_names(addon, member, names).await,
        Engine::Redis => redis::set_sync(addon, member, names).await,
    }
}

/// Turns a standby's server into a primary.
pub async fn promote(engine: Engine, addon: &Addon, member: &AddonMember) -> Result<(), String> {
    match engine {
        Engine::Postgres => pg_promote(addon, member).await,
        Engine::Redis => redis::promote(addon, member).await,
    }
}

const STATUS_SQL: &str = "SELECT pg_is_in_recovery(), \
 coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), ''), \
 CASE WHEN pg_is_in_recovery() THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint END, \
 coalesce((SELECT string_agg(application_name || ':' || pg_wal_lsn_diff(flush_lsn, '0/0')::bigint, ',') \
   FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming' AND flush_lsn IS NOT NULL), ''), \
 coalesce((SELECT string_agg(application_name || ':' || coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, -1), ',') \
   FROM pg_stat_replication WHERE NOT pg_is_in_recovery()), ''), \
 current_setting('synchronous_standby_names')";

pub(super) fn pairs(s: &str) -> Vec<(String, u64)> {
    s.split(',')
        .filter_map(|p| {
            let (n, v) = p.rsplit_once(':')?;
            Some((n.to_string(), v.parse().unwrap_or(u64::MAX)))
        })
        .collect()
}

/// Parses the status query's `|`-separated row.
pub fn parse_status(row: &str) -> Option<ReplStatus> {
    let f: Vec<&str> = row.trim_end_matches('\n').split('|').collect();
    if f.len() != 6 {
        return None;
    }
    Some(ReplStatus {
        in_recovery: f[0] == "t",
        receiver: f[1].to_string(),
        flush_lsn: f[2].parse().ok()?,
        sync: pairs(f[3]),
        lag: pairs(f[4]),
        sync_names: f[5].to_string(),
    })
}

/// Runs `psql` against `member` with each of `sqls` as one `-c`; its output, or why not.
async fn psql(addon: &Addon, member: &AddonMember, sqls: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(Path::new(PG_BIN).join("psql"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGHOST", &member.host)
        .env("PGPORT", member.port.to_string())
        .env("PGUSER", addon.db_user())
        .env("PGDATABASE", "postgres")
        .env("PGPASSWORD", &addon.password)
        .env("PGCONNECT_TIMEOUT", "3")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for s in sqls {
        cmd.arg("-c").arg(s);
    }
    let child = cmd.spawn().map_err(|e| format!("cannot run psql: {e}"))?;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| "psql did not finish".to_string())?
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Sets the add-on's password in a Postgres primary, through the server's Unix socket in
/// its data dir `dir` (local connections are trusted: the old password is not needed),
/// the statement on psql's standard input, never on a command line.
pub async fn set_password(addon: &Addon, member: &AddonMember, dir: &Path) -> Result<(), String> {
    if !addon.password.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("the password is not letters and digits".into());
    }
    let user = addon.db_user();
    if !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad user name {user:?}"));
    }
    let mut cmd = tokio::process::Command::new(Path::new(PG_BIN).join("psql"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGHOST", dir)
        .env("PGPORT", member.port.to_string())
        .env("PGUSER", &user)
        .env("PGDATABASE", "postgres")
        .env("PGCONNECT_TIMEOUT", "3")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run psql: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let sql = format!("ALTER ROLE \"{user}\" PASSWORD '{}';\n", addon.password);
        stdin
            .write_all(sql.as_bytes())
            .await
            .map_err(|e| format!("psql: {e}"))?;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| "psql did not finish".to_string())?
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Writes the password a Postgres standby replicates with into its `pgpass` (0600, the
/// server's user's), which libpq reads at each connection to the primary.
pub fn write_pgpass(addon: &Addon, dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let line = format!("*:*:*:{}:{}\n", addon.db_user(), addon.password);
    super::server::write_private(dir, "pgpass", &line, owner)
}

async fn pg_status(addon: &Addon, member: &AddonMember) -> Result<ReplStatus, String> {
    let out = psql(addon, member, &[STATUS_SQL]).await?;
    parse_status(&out).ok_or_else(|| format!("unexpected status row {out:?}"))
}

/// Sets `synchronous_standby_names` (application names, lowercase letters and digits
/// only) and reloads the configuration.
async fn set_sync_names(addon: &Addon, member: &AddonMember, names: &str) -> Result<(), String> {
    if !names
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == ',')
    {
        return Err(format!("bad standby names {names:?}"));
    }
    let set = format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'");
    psql(addon, member, &[&set, "SELECT pg_reload_conf()"])
        .await
        .map(|_| ())
}

/// Promotes a standby, waiting up to 30 s for the promotion to finish.
async fn pg_promote(addon: &Addon, member: &AddonMember) -> Result<(), String> {
    let out = psql(addon, member, &["SELECT pg_promote(true, 30)"]).await?;
    if out.trim() == "t" {
        Ok(())
    } else {
        Err(format!("pg_promote answered {:?}", out.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rows_parse() {
        let s = parse_status("f||1234|mabc:1200,mdef:1234|mabc:34|mabc\n").unwrap();
        assert!(!s.in_recovery && s.receiver.is_empty());
        assert_eq!(s.flush_lsn, 1234);
        assert_eq!(s.sync, vec![("mabc".into(), 1200), ("mdef".into(), 1234)]);
        assert_eq!(s.lag, vec![("mabc".into(), 34)]);
        assert_eq!(s.sync_names, "mabc");
        let s = parse_status("t|streaming|0|||").unwrap();
        assert!(s.in_recovery && s.receiver == "streaming" && s.sync.is_empty());
        assert!(parse_status("t|x").is_none());
    }
}

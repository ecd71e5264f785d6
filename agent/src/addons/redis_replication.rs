//! Replication of HA Redis add-ons (`heroku-redis:premium-0`), seen and steered with
//! `redis-cli` over TCP (the password in `REDISCLI_AUTH`, never on a command line;
//! commands on its standard input).
//!
//! Redis replicates asynchronously: a replica is `online` once it has loaded the
//! primary's dataset and follows its stream. A primary with a replica in the state's
//! sync set refuses writes (`min-replicas-to-write 1`) while no replica acknowledged
//! within `min-replicas-max-lag` seconds (set at start, [`MAX_LAG_SECS`]), so a primary
//! cut off from its replica stops taking writes within that bound; with none in sync it
//! takes them alone. `REPLICAOF NO ONE` promotes a replica.

use std::process::Stdio;
use std::time::Duration;

use haven_raft::model::{Addon, AddonMember};
use tokio::io::AsyncWriteExt;

use super::replication::ReplStatus;

/// How long a primary that waits for a replica takes writes without hearing from it.
pub const MAX_LAG_SECS: u32 = 5;

/// What `min-replicas-to-write` is when a primary waits for `names` (its sync status).
pub fn wanted(names: &str) -> String {
    if names.is_empty() {
        "0".into()
    } else {
        "1".into()
    }
}

/// Runs `redis-cli` against `member` with `commands` (one per line) on its standard
/// input: its output, or why not.
async fn cli(addon: &Addon, member: &AddonMember, commands: &str) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("redis-cli");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("REDISCLI_AUTH", &addon.password)
        .arg("-h")
        .arg(&member.host)
        .arg("-p")
        .arg(member.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .await
            .map_err(|e| format!("redis-cli: {e}"))?;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| "redis-cli did not finish".to_string())?
        .map_err(|e| format!("redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    if !out.status.success() || text.starts_with("NOAUTH") || text.starts_with("ERR") {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(if err.is_empty() { text } else { err });
    }
    Ok(text)
}

/// Reads `INFO replication` followed by `CONFIG GET min-replicas-to-write`. Replicas are
/// named by the member of `addon` at their announced address.
pub fn parse_status(text: &str, addon: &Addon) -> Option<ReplStatus> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
    };
    let role = field("role")?;
    let in_recovery = role == "slave";
    let mut st = ReplStatus {
        in_recovery,
        ..ReplStatus::default()
    };
    if in_recovery {
        if field("master_link_status") == Some("up")
            && field("master_sync_in_progress") == Some("0")
        {
            st.receiver = "streaming".into();
        }
    } else {
        st.flush_lsn = field("master_repl_offset")?.parse().ok()?;
        for line in text.lines().filter(|l| l.starts_with("slave")) {
            let Some((_, kv)) = line.split_once(':') else {
                continue;
            };
            let get = |k: &str| {
                kv.split(',')
                    .find_map(|p| p.strip_prefix(k)?.strip_prefix('='))
            };
            let (Some(ip), Some(port)) = (get("ip"), get("port")) else {
                continue;
            };
            let Some(m) = addon
                .members
                .iter()
                .find(|m| m.host == ip && m.port.to_string() == port)
            else {
                continue;
            };
            let name = Addon::application_name(m.id);
            let lag = get("lag").and_then(|l| l.parse().ok()).unwrap_or(u64::MAX);
            st.lag.push((name.clone(), lag));
            if get("state") == Some("online") {
                let offset = get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                st.sync.push((name, offset));
            }
        }
    }
    // `CONFIG GET` answers the name, then the value.
    let mut lines = text.lines();
    st.sync_names = lines
        .find(|l| l.trim() == "min-replicas-to-write")
        .and_then(|_| lines.next())
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    Some(st)
}

pub async fn status(addon: &Addon, member: &AddonMember) -> Result<ReplStatus, String> {
    let out = cli(
        addon,
        member,
        "INFO replication\nCONFIG GET min-replicas-to-write\n",
    )
    .await?;
    parse_status(&out, addon).ok_or_else(|| format!("unexpected replication info {out:?}"))
}

/// Makes the primary refuse writes while no replica keeps up (`names` not empty), or
/// take them alone.
pub async fn set_sync(addon: &Addon, member: &AddonMember, names: &str) -> Result<(), String> {
    let out = cli(
        addon,
        member,
        &format!("CONFIG SET min-replicas-to-write {}\n", wanted(names)),
    )
    .await?;
    if out.trim() == "OK" {
        Ok(())
    } else {
        Err(format!("CONFIG SET answered {:?}", out.trim()))
    }
}

/// Promotes a replica: it stops following and takes writes.
pub async fn promote(addon: &Addon, member: &AddonMember) -> Result<(), String> {
    let out = cli(addon, member, "REPLICAOF NO ONE\n").await?;
    if out.trim() == "OK" {
        Ok(())
    } else {
        Err(format!("REPLICAOF NO ONE answered {:?}", out.trim()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use haven_raft::model::AddonState;
    use uuid::Uuid;

    fn member(host: &str, port: u16) -> AddonMember {
        AddonMember {
            id: Uuid::new_v4(),
            node: 1,
            host: host.into(),
            port,
            up: true,
            streaming: false,
            synced: false,
        }
    }

    fn addon() -> Addon {
        Addon {
            id: Uuid::new_v4(),
            name: "redis-x-00001".into(),
            service: "heroku-redis".into(),
            plan: "premium-0".into(),
            app: Uuid::new_v4(),
            state: AddonState::Provisioned,
            password: "pw".into(),
            members: vec![member("10.0.0.1", 6379), member("10.0.0.2", 6380)],
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            primary: None,
            generation: 0,
            provider_resource: None,
            provider_config: Default::default(),
        }
    }

    #[test]
    fn a_primary_names_its_online_replicas_by_member() {
        let a = addon();
        let text = "# Replication\nrole:master\nconnected_slaves:2\n\
            slave0:ip=10.0.0.2,port=6380,state=online,offset=1200,lag=0\n\
            slave1:ip=10.9.9.9,port=1,state=online,offset=1,lag=0\n\
            master_repl_offset:1234\nmin-replicas-to-write\n1\n";
        let st = parse_status(text, &a).unwrap();
        assert!(!st.in_recovery);
        assert_eq!(st.flush_lsn, 1234);
        let name = Addon::application_name(a.members[1].id);
        assert_eq!(st.sync, vec![(name.clone(), 1200)]);
        assert_eq!(st.lag, vec![(name, 0)]);
        assert_eq!(st.sync_names, wanted("x"));
        let loading = text.replace("state=online", "state=wait_bgsave");
        assert!(parse_status(&loading, &a).unwrap().sync.is_empty());
    }

    #[test]
    fn a_replica_streams_once_linked_and_loaded() {
        let a = addon();
        let up = "role:slave\nmaster_host:10.0.0.1\nmaster_link_status:up\n\
                  master_sync_in_progress:0\nmin-replicas-to-write\n0\n";
        let st = parse_status(up, &a).unwrap();
        assert!(st.in_recovery && st.receiver == "streaming");
        assert_eq!(st.sync_names, wanted(""));
        let syncing = up.replace("master_sync_in_progress:0", "master_sync_in_progress:1");
        assert!(parse_status(&syncing, &a).unwrap().receiver.is_empty());
        let down = up.replace("link_status:up", "link_status:down");
        assert!(parse_status(&down, &a).unwrap().receiver.is_empty());
        assert!(parse_status("NOAUTH Authentication required.", &a).is_none());
    }
}

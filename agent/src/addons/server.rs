//! What an add-on member runs: the runtime spec of its server (Debian's PostgreSQL 15 or
//! `redis-server`), started in the dyno runtime as the unprivileged dyno user with the
//! member's data dir bound at `/data`.
//!
//! The password reaches the server only through the environment of the start script,
//! which hands it to `initdb --pwfile` (Postgres: only its SCRAM hash is stored) or to
//! `redis-server` on its standard input (Redis), and unsets it before the server starts;
//! it is never on a command line and never logged (on the node it is only in the
//! root-only runtime spec file, like a dyno's config vars).

use std::path::Path;

use haven_raft::catalog::{self, Engine};
use haven_raft::model::{Addon, AddonMember, Role};

use crate::runtime::{Bind, DynoSpec};

/// Where Debian installs PostgreSQL 15's server programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The start script of a Postgres member. A primary: `initdb` once (into a temp dir
/// renamed when complete, so an interrupted first start starts over; only in generation
/// 0 — a primary promoted by a failover never starts from an empty dir), the database
/// created in single-user mode, password authentication (SCRAM) from anywhere, for
/// replication too. A standby: its data dir is a fresh `pg_basebackup` from the primary
/// unless it already is a standby's of the current generation (an old primary fenced by
/// a failover is rebuilt), with `standby.signal`, and it streams with `primary_conninfo`
/// under its `application_name`. The password is only in `pgpass` (0600) for libpq. The
/// Unix socket is in the data dir, with `trust`: the member's agent sets a rotated
/// password through it ([`super::replication::set_password`]).
const POSTGRES_SCRIPT: &str = r#"set -eu
umask 077
D="$HAVEN_DATA/pgdata"
printf '*:*:*:%s:%s\n' "$PGUSER" "$HAVEN_PASSWORD" > "$HAVEN_DATA/pgpass"
export PGPASSFILE="$HAVEN_DATA/pgpass"
if [ "$HAVEN_ROLE" = standby ]; then
  unset HAVEN_PASSWORD
  if [ ! -s "$D/PG_VERSION" ] || [ ! -f "$D/standby.signal" ] || \
     [ "$(cat "$HAVEN_DATA/generation" 2>/dev/null)" != "$HAVEN_GENERATION" ]; then
    rm -rf "$D" "$D.init" "$HAVEN_DATA/generation"
    pg_basebackup -h "$HAVEN_PRIMARY_HOST" -p "$HAVEN_PRIMARY_PORT" -U "$PGUSER" -w \
      -D "$D.init" -X stream -c fast
    touch "$D.init/standby.signal"
    mv "$D.init" "$D"
    echo "$HAVEN_GENERATION" > "$HAVEN_DATA/generation"
    echo "made the standby's data from the primary (generation $HAVEN_GENERATION)"
  fi
  set -- -c hot_standby=on -c primary_conninfo="host=$HAVEN_PRIMARY_HOST port=$HAVEN_PRIMARY_PORT user=$PGUSER passfile=$PGPASSFILE application_name=$HAVEN_APPNAME"
else
  if [ ! -s "$D/PG_VERSION" ]; then
    if [ "$HAVEN_GENERATION" != 0 ]; then
      echo "no data for the primary of generation $HAVEN_GENERATION: refusing to start empty"
      exit 1
    fi
    rm -rf "$D.init"
    initdb -D "$D.init" -U "$PGUSER" -E UTF8 --locale=C.UTF-8 --auth-local=trust \
      --auth-host=scram-sha-256 --pwfile=<(printf '%s\n' "$HAVEN_PASSWORD") >/dev/null
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\nhost replication all 0.0.0.0/0 scram-sha-256\nhost replication all ::/0 scram-sha-256\n' >> "$D.init/pg_hba.conf"
    echo "CREATE DATABASE \"$PGDATABASE\" OWNER \"$PGUSER\"" | postgres --single -D "$D.init" postgres >/dev/null
    mv "$D.init" "$D"
    echo "initialized the database"
  fi
  unset HAVEN_PASSWORD
  set --
fi
exec postgres -D "$D" -c listen_addresses="$HAVEN_HOST" -p "$HAVEN_PORT" -k "$HAVEN_DATA" \
  -c ssl=on -c ssl_cert_file="$HAVEN_DATA/server.crt" -c ssl_key_file="$HAVEN_DATA/server.key" \
  -c shared_buffers="$HAVEN_SHARED_BUFFERS" -c max_connections=20 \
  -c dynamic_shared_memory_type=mmap -c logging_collector=off \
  -c synchronous_commit=on -c wal_keep_size=64MB "$@"
"#;

/// Writes a Postgres member's TLS certificate (issued from the cluster CA for the address
/// it listens on; leaf then CA) and key into its data dir, as the server's user, before
/// each start: clients connect with `sslmode=require`, or `verify-full` with the CA.
pub fn write_tls(
    dir: &Path,
    ca: &crate::tls::CertKey,
    host: &str,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let issued = crate::tls::issue_server_cert(ca, &[host.to_string()])?;
    write_private(
        dir,
        "server.crt",
        &format!("{}{}", issued.cert_pem, ca.cert_pem),
        owner,
    )?;
    write_private(dir, "server.key", &issued.key_pem, owner)?;
    Ok(())
}

/// Writes `body` to `dir/name` whole (a temp file renamed, synced), readable only by its
/// owner: the server's user when `owner` is given.
pub fn write_private(
    dir: &Path,
    name: &str,
    body: &str,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, dir.join(name))
}

/// What a member needs in its data dir before its server starts: a Postgres member's TLS
/// files.
pub fn prepare(
    addon: &Addon,
    member: &AddonMember,
    dir: &Path,
    ca: &crate::tls::CertKey,
    container: bool,
) -> anyhow::Result<()> {
    let engine = catalog::addon_service(&addon.service).map_or(Engine::Postgres, |s| s.engine);
    if engine != Engine::Postgres {
        return Ok(());
    }
    let owner = container.then_some((crate::runtime::DYNO_UID, crate::runtime::DYNO_GID));
    write_tls(dir, ca, &member.host, owner)
}

/// The start script of a Redis member: append-only persistence in `/data`, the password
/// as `requirepass` on standard input. A standby (premium-0's replica) follows its
/// primary (`replicaof`, `masterauth` on standard input too), which replaces its data
/// with the primary's: an old primary fenced by a failover keeps nothing of its own. It
/// announces its member address so that the primary's view names it.
const REDIS_SCRIPT: &str = r#"set -eu
umask 077
pw="$HAVEN_PASSWORD"
unset HAVEN_PASSWORD
follow=""
if [ "$HAVEN_ROLE" = standby ]; then
  follow="replicaof $HAVEN_PRIMARY_HOST $HAVEN_PRIMARY_PORT
masterauth $pw"
fi
exec redis-server - --bind "$HAVEN_HOST" --port "$HAVEN_PORT" --dir "$HAVEN_DATA" \
  --appendonly yes --appendfsync everysec --save '' --protected-mode no \
  --replica-announce-ip "$HAVEN_HOST" --replica-announce-port "$HAVEN_PORT" \
  --min-replicas-max-lag "$HAVEN_MAX_LAG" \
  --maxmemory "$HAVEN_MAXMEMORY" --maxmemory-policy noeviction <<EOF
requirepass $pw
$follow
EOF
"#;

/// The runtime spec of `member` of `addon`, its data in `data_dir` (the host path).
/// `container`: the runtime binds `data_dir` at `/data`; else (process mode) the
/// server uses the host path itself.
pub fn spec(addon: &Addon, member: &AddonMember, data_dir: &Path, container: bool) -> DynoSpec {
    let service = catalog::addon_service(&addon.service);
    let plan = service.and_then(|s| catalog::service_plan(s, &addon.plan));
    let memory_mb = plan.map_or(256, |p| p.memory_mb);
    let engine = service.map_or(Engine::Postgres, |s| s.engine);
    let data = if container {
        "/data".to_string()
    } else {
        data_dir.display().to_string()
    };
    let mut env = vec![
        ("HAVEN_DATA".to_string(), data),
        ("HAVEN_HOST".to_string(), member.host.clone()),
        ("HAVEN_PORT".to_string(), member.port.to_string()),
        ("HAVEN_PASSWORD".to_string(), addon.password.clone()),
        ("HOME".to_string(), "/app".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        (
            "PATH".to_string(),
            format!("{PG_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ),
    ];
    let role = addon.role_of(member.id);
    env.push(("HAVEN_ROLE".into(), role.as_str().into()));
    env.push(("HAVEN_GENERATION".into(), addon.generation.to_string()));
    if let Some(p) = addon.primary_member().filter(|_| role == Role::Standby) {
        env.push(("HAVEN_PRIMARY_HOST".into(), p.host.clone()));
        env.push(("HAVEN_PRIMARY_PORT".into(), p.port.to_string()));
    }
    let (command, hostname) = match engine {
        Engine::Postgres => {
            env.push(("HAVEN_APPNAME".into(), Addon::application_name(member.id)));
            env.push(("PGUSER".into(), addon.db_user()));
            env.push(("PGDATABASE".into(), addon.db_name()));
            // A quarter of the member's memory, as PostgreSQL's tuning guides suggest.
            env.push((
                "HAVEN_SHARED_BUFFERS".into(),
                format!("{}MB", (memory_mb / 4).max(16)),
            ));
            (POSTGRES_SCRIPT, "postgres")
        }
        Engine::Redis => {
            // Keys get half the member's memory; the rest is Redis's own and the AOF's.
            env.push((
                "HAVEN_MAXMEMORY".into(),
                format!("{}mb", (memory_mb / 2).max(8)),
            ));
            env.push((
                "HAVEN_MAX_LAG".into(),
                super::redis_replication::MAX_LAG_SECS.to_string(),
            ));
            (REDIS_SCRIPT, "redis")
        }
    };
    DynoSpec {
        id: member.id.to_string(),
        hostname: hostname.into(),
        slug_dir: None,
        root: None,
        binds: vec![Bind {
            host: data_dir.to_path_buf(),
            target: "/data".into(),
            writable: true,
        }],
        command: command.to_string(),
        env,
        memory_limit_bytes: memory_mb * 2 * 1024 * 1024,
        pids_limit: 512,
        cpu_shares: 0,
        stdin: false,
        outlives_agent: true,
        note: note(addon, member),
        // Add-on servers listen on the node's own address at their member port.
        net: None,
    }
}

/// The process record's note: the add-on, and the role and generation the server was
/// started for (`addon ID primary 0`), read back by [`started_as`] when adopting.
pub fn note(addon: &Addon, member: &AddonMember) -> String {
    format!(
        "addon {} {} {}",
        addon.id,
        addon.role_of(member.id).as_str(),
        addon.generation
    )
}

/// The role and generation a note says its server was started for; a note of an older
/// agent (`addon ID`) means a primary of generation 0.
pub fn started_as(note: &str) -> (Role, u64) {
    let mut w = note.split_whitespace().skip(2);
    let role = match w.next() {
        Some("standby") => Role::Standby,
        _ => Role::Primary,
    };
    (role, w.next().and_then(|g| g.parse().ok()).unwrap_or(0))
}

/// The process name its output lines carry in the app's log (`heroku-postgresql`).
pub fn log_process(addon: &Addon) -> String {
    addon.service.clone()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use haven_raft::model::AddonState;
    use uuid::Uuid;

    fn addon(service: &str, plan: &str) -> Addon {
        Addon {
            id: Uuid::new_v4(),
            name: "x-y-00001".into(),
            service: service.into(),
            plan: plan.into(),
            app: Uuid::new_v4(),
            state: AddonState::Provisioning,
            password: "secretsecretsecret".into(),
            members: vec![AddonMember {
                id: Uuid::new_v4(),
                node: 1,
                host: "10.0.0.1".into(),
                port: 5432,
                up: false,
                streaming: false,
                synced: false,
            }],
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            primary: None,
            generation: 0,
            provider_resource: None,
            provider_config: Default::default(),
        }
    }

    #[test]
    fn the_password_is_only_in_the_environment() {
        for (svc, plan) in [
            ("heroku-postgresql", "essential-0"),
            ("heroku-redis", "mini"),
        ] {
            let a = addon(svc, plan);
            let s = spec(&a, &a.members[0], Path::new("/d/m"), true);
            assert!(!s.command.contains("secret") && !s.note.contains("secret"));
            assert!(s
                .env
                .iter()
                .any(|(k, v)| k == "HAVEN_PASSWORD" && v == "secretsecretsecret"));
            assert!(s.outlives_agent && s.slug_dir.is_none());
            assert_eq!(s.binds[0].target, Path::new("/data"));
        }
    }

    #[test]
    fn a_standby_copies_its_primary_and_the_note_says_its_role_and_generation() {
        let mut a = addon("heroku-postgresql", "standard-0");
        let mut sb = a.members[0].clone();
        sb.id = Uuid::new_v4();
        sb.host = "10.0.0.2".into();
        a.members.push(sb.clone());
        a.generation = 3;
        let s = spec(&a, &sb, Path::new("/d/m"), true);
        let env = |k: &str| s.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(env("HAVEN_ROLE").as_deref(), Some("standby"));
        assert_eq!(env("HAVEN_PRIMARY_HOST").as_deref(), Some("10.0.0.1"));
        assert_eq!(env("HAVEN_GENERATION").as_deref(), Some("3"));
        assert!(s.command.contains("pg_basebackup") && !s.command.contains("secret"));
        assert_eq!(started_as(&s.note), (Role::Standby, 3));
        let p = spec(&a, &a.members[0], Path::new("/d/m"), true);
        assert_eq!(started_as(&p.note), (Role::Primary, 3));
        assert!(!p.env.iter().any(|(k, _)| k == "HAVEN_PRIMARY_HOST"));
        assert_eq!(started_as(&format!("addon {}", a.id)), (Role::Primary, 0));
    }

    #[test]
    fn a_redis_replica_follows_its_primary_with_the_password_on_stdin() {
        let mut a = addon("heroku-redis", "premium-0");
        let mut sb = a.members[0].clone();
        sb.id = Uuid::new_v4();
        sb.host = "10.0.0.2".into();
        a.members.push(sb.clone());
        let s = spec(&a, &sb, Path::new("/d/m"), true);
        let env = |k: &str| s.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(env("HAVEN_ROLE").as_deref(), Some("standby"));
        assert_eq!(env("HAVEN_PRIMARY_HOST").as_deref(), Some("10.0.0.1"));
        assert!(s.command.contains("replicaof") && s.command.contains("masterauth $pw"));
        assert!(!s.command.contains("secret"));
        let p = spec(&a, &a.members[0], Path::new("/d/m"), true);
        assert!(!p.env.iter().any(|(k, _)| k == "HAVEN_PRIMARY_HOST"));
        assert_eq!(started_as(&p.note), (Role::Primary, 0));
    }

    #[test]
    fn memory_follows_the_plan() {
        let a = addon("heroku-redis", "mini");
        let s = spec(&a, &a.members[0], Path::new("/d/m"), false);
        assert_eq!(s.memory_limit_bytes, 128 * 1024 * 1024);
        assert!(s.env.contains(&("HAVEN_MAXMEMORY".into(), "32mb".into())));
        assert!(s.env.contains(&("HAVEN_DATA".into(), "/d/m".into())));
        let p = addon("heroku-postgresql", "essential-0");
        let s = spec(&p, &p.members[0], Path::new("/d/m"), true);
        assert!(s
            .env
            .contains(&("HAVEN_SHARED_BUFFERS".into(), "64MB".into())));
        assert!(s.env.contains(&("PGUSER".into(), p.db_user())));
    }
}

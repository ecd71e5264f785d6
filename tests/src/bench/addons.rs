//! Add-ons: how long `addons:create` takes until the database answers (essential-0 and
//! the HA standard-0), how long an HA failover takes from SIGKILL of the primary's node
//! to the first commit through the app's (updated) `DATABASE_URL`, and pgbench's
//! select-only TPS through `DATABASE_URL` as apps use it (TLS, as libpq prefers) beside
//! pgbench straight to the same server without TLS, in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::apps::create_app;
use super::{median, Opts, Progress, Row, Target};
use crate::Env;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The parts of a `postgres://USER:PW@HOST:PORT/DB` URL, as libpq environment.
fn pg_env(url: &str) -> Result<Vec<(&'static str, String)>> {
    let rest = url
        .strip_prefix("postgres://")
        .context("not a postgres:// URL")?;
    let (auth, rest) = rest.rsplit_once('@').context("no credentials in the URL")?;
    let (user, pw) = auth.split_once(':').context("no password in the URL")?;
    let (hostport, db) = rest.split_once('/').context("no database in the URL")?;
    let (host, port) = hostport.rsplit_once(':').context("no port in the URL")?;
    Ok(vec![
        ("PGUSER", user.to_string()),
        ("PGPASSWORD", pw.to_string()),
        ("PGHOST", host.trim_matches(['[', ']']).to_string()),
        ("PGPORT", port.to_string()),
        ("PGDATABASE", db.to_string()),
        ("PGCONNECT_TIMEOUT", "3".to_string()),
    ])
}

fn database_url(env: &Env, node: usize, app: &str) -> Result<String> {
    let vars = env.get_json(node, &format!("/apps/{app}/config-vars"))?;
    vars["DATABASE_URL"]
        .as_str()
        .map(str::to_string)
        .context("the app has no DATABASE_URL")
}

/// Runs one SQL statement through `url`; whether it committed.
fn sql(url: &str, statement: &str) -> Result<bool> {
    let out = Command::new(format!("{PG_BIN}/psql"))
        .envs(pg_env(url)?)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", statement])
        .output()
        .context("run psql")?;
    Ok(out.status.success())
}

/// Creates `plan` for `app` and waits until it is provisioned: seconds.
fn provision(env: &Env, app: &str, plan: &str, timeout: Duration) -> Result<f64> {
    let started = Instant::now();
    let made = env.post_json(
        0,
        &format!("/apps/{app}/addons"),
        &serde_json::json!({ "plan": plan }),
    )?;
    let name = made["name"].as_str().context("no add-on name")?.to_string();
    let ok = haven_testcluster::wait_until(timeout, || {
        env.get_json(0, &format!("/addons/{name}"))
            .is_ok_and(|a| a["state"] == "provisioned")
    });
    if !ok {
        bail!("{plan} was not provisioned within {timeout:?}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// pgbench -S (select only) for `secs` with 4 clients: its TPS.
fn pgbench(url: &str, sslmode: &str, secs: u64) -> Result<f64> {
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .envs(pg_env(url)?)
        .env("PGSSLMODE", sslmode)
        .args(["-n", "-S", "-c", "4", "-j", "2", "-T", &secs.to_string()])
        .output()
        .context("run pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .context("no tps line in pgbench's output")
}

/// The node index that runs the primary of the app's database.
fn primary_node(env: &Env, app: &str) -> Result<usize> {
    let addons = env.get_json(0, &format!("/apps/{app}/addons"))?;
    let name = addons[0]["name"].as_str().context("no add-on")?;
    let a: Value = env.get_json(0, &format!("/addons/{name}"))?;
    let members = a["members"].as_array().context("no members")?;
    let primary = members
        .iter()
        .find(|m| m["role"] == "primary")
        .or_else(|| members.first())
        .context("no primary")?;
    let id = primary["node"]["id"].as_str().context("no node id")?;
    env.index_of(id)
        .context("the primary's node is not in the cluster")
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    if !std::path::Path::new(PG_BIN).join("pgbench").exists() {
        return Ok(vec![Row::missing(
            "addons",
            "add-ons",
            "",
            "PostgreSQL 15 is not installed (scripts/install-deps)",
        )]);
    }
    progress("addons: starting a 3-node cluster");
    let env = super::cluster(3, None);
    let runs = opts.pick(3, 1);
    let mut essential = Vec::new();
    for r in 0..runs {
        let app = format!("db-{r}");
        create_app(&env, &app)?;
        let t = provision(
            &env,
            &app,
            "heroku-postgresql:essential-0",
            Duration::from_secs(60),
        )?;
        progress(&format!("addons: essential-0 provisioned in {t:.2} s"));
        essential.push(t);
    }
    create_app(&env, "ha-db")?;
    let standard = provision(
        &env,
        "ha-db",
        "heroku-postgresql:standard-0",
        Duration::from_secs(120),
    )?;
    progress(&format!(
        "addons: standard-0 provisioned (standby in sync) in {standard:.2} s"
    ));

    // pgbench through what apps get, beside the same server without TLS.
    let url = database_url(&env, 0, "db-0")?;
    let init = Command::new(format!("{PG_BIN}/pgbench"))
        .envs(pg_env(&url)?)
        .args(["-i", "-q", "-s", "2"])
        .output()
        .context("run pgbench -i")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        );
    }
    let secs = opts.pick(15, 5);
    let through = pgbench(&url, "prefer", secs)?;
    let direct = pgbench(&url, "disable", secs)?;
    progress(&format!(
        "addons: pgbench -S {through:.0} tps through DATABASE_URL, {direct:.0} tps without TLS"
    ));

    // Failover: kill the primary's node, commit until a commit succeeds.
    let ha_url = database_url(&env, 0, "ha-db")?;
    if !sql(&ha_url, "CREATE TABLE IF NOT EXISTS beats (at timestamptz)")? {
        bail!("cannot write to the HA database");
    }
    let victim = primary_node(&env, "ha-db")?;
    let reader = (victim + 1) % env.len();
    let mut env = env;
    let killed = Instant::now();
    env.kill(victim)?;
    let deadline = killed + Duration::from_secs(60);
    let failover = loop {
        // An app gets the new URL in a release; the client reads it as a restarted dyno would.
        let now_url = database_url(&env, reader, "ha-db").unwrap_or_else(|_| ha_url.clone());
        if sql(&now_url, "INSERT INTO beats VALUES (now())").unwrap_or(false) {
            break killed.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("no commit succeeded within 60 s of killing the primary's node");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    progress(&format!(
        "addons: failover: first commit {failover:.2} s after SIGKILL of the primary's node"
    ));
    env.down();

    let n = essential.len();
    Ok(vec![
        Row::new(
            "addons",
            "add-ons: essential-0 create → provisioned (median)",
            median(&mut essential),
            "s",
        )
        .target(Target::at_most(10.0))
        .note(format!("{n} creates on a 3-node cluster")),
        Row::new(
            "addons",
            "add-ons: standard-0 create → provisioned, standby in sync",
            standard,
            "s",
        )
        .target(Target::at_most(30.0)),
        Row::new(
            "addons",
            "add-ons: HA failover, SIGKILL of the primary's node → first commit",
            failover,
            "s",
        )
        .target(Target::at_most(15.0))
        .note("through the app's DATABASE_URL, re-read after the failover release"),
        Row::new(
            "addons",
            "add-ons: pgbench -S through DATABASE_URL (4 clients)",
            through,
            "tps",
        )
        .target(Target::at_least_peer(0.9))
        .peer("the same server without TLS", Some(direct))
        .note("the URL names the server itself (no proxy): the difference is TLS"),
    ])
}

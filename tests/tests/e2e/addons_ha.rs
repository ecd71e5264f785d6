//! HA Postgres (`heroku-postgresql:standard-0`) over a real 3-node cluster: a primary
//! and a synchronous standby on another node; rows committed through DATABASE_URL
//! survive a SIGKILL of the primary's node (a host's death) because the leader fails
//! over to the synced standby, which promotes itself; the app's DATABASE_URL moves to
//! it in a new release; the old primary's node returns and its member comes back as a
//! standby rebuilt from the new primary, in sync again. Prints the failover time.

use std::time::{Duration, Instant};

use haven_tests::{cluster, eventually, hctl, hctl_command, hctl_ok as ok, Env};
use serde_json::{json, Value};

/// `hctl pg:psql -a APP -c SQL` through node `node` (libpq gives up on a dead host in
/// 1 s): its trimmed output, or `None` if it failed.
fn try_psql(env: &Env, node: usize, app: &str, sql: &str) -> Option<String> {
    let out = hctl_command(env, node, &["pg:psql", "-a", app, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "1")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn addon(env: &Env, node: usize, name: &str) -> Value {
    env.get_json(node, &format!("/addons/{name}")).unwrap()
}

/// The member of `role` in `a`: (node index, member JSON).
fn role(env: &Env, a: &Value, role: &str) -> (usize, Value) {
    let m = a["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == role)
        .unwrap_or_else(|| panic!("no {role} in {a}"))
        .clone();
    (env.index_of(m["node"]["id"].as_str().unwrap()).unwrap(), m)
}

fn in_sync(a: &Value) -> bool {
    a["state"] == "provisioned"
        && a["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["up"] == true && (m["role"] == "primary" || m["synced"] == true))
}

/// Creates app `app` with a `standard-0` database (through node 0) and waits until its
/// standby is in sync: the add-on's name and JSON.
fn ha_database(env: &Env, app: &str) -> (String, Value) {
    env.post_json(0, "/apps", &json!({ "name": app })).unwrap();
    let out = ok(hctl(
        env,
        0,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "-a",
            app,
            "--wait",
        ],
    ));
    let name = out
        .lines()
        .find(|l| l.starts_with("Created "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let a = eventually("standby in sync", Duration::from_secs(120), || {
        let a = addon(env, 0, &name);
        in_sync(&a).then_some(a)
    });
    (name, a)
}

#[test]
fn standard_0_fails_over_without_losing_a_commit_and_the_old_primary_rejoins_as_standby() {
    let mut env = cluster(3);
    let (name, a) = ha_database(&env, "ledger");
    let (p_node, primary) = role(&env, &a, "primary");
    let (s_node, standby) = role(&env, &a, "standby");
    assert_ne!(p_node, s_node);
    let other = (0..3).find(|i| *i != p_node && *i != s_node).unwrap();
    let info = ok(hctl(&env, other, &["pg:info", "-a", "ledger"]));
    assert!(
        info.contains("HA Status") && info.contains("Available"),
        "{info}"
    );
    assert!(info.contains("synchronous"), "{info}");
    let url = |env: &Env| -> String {
        env.get_json(other, "/apps/ledger/config-vars").unwrap()["DATABASE_URL"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let at = |m: &Value| format!("@{}:{}/", m["host"].as_str().unwrap(), m["port"]);
    assert!(url(&env).contains(&at(&primary)), "{}", url(&env));

    // Rows, each committed on its own (a COMMIT returns once the standby flushed it).
    try_psql(&env, other, "ledger", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    let n = 40;
    for i in 1..=n {
        try_psql(
            &env,
            other,
            "ledger",
            &format!("INSERT INTO t VALUES ({i})"),
        )
        .unwrap_or_else(|| panic!("insert {i}"));
    }

    // The primary's host dies.
    let killed = Instant::now();
    env.kill(p_node).unwrap();
    eventually(
        "the new primary accepts writes",
        Duration::from_secs(90),
        || {
            try_psql(
                &env,
                other,
                "ledger",
                &format!("INSERT INTO t VALUES ({})", n + 1),
            )
        },
    );
    let failover = killed.elapsed();
    println!(
        "failover: primary's node killed → the standby accepts writes through DATABASE_URL in {:.1} s",
        failover.as_secs_f64()
    );
    let count = try_psql(
        &env,
        other,
        "ledger",
        "SELECT 'rows=' || count(*) || ',' || min(id) || ',' || max(id) FROM t",
    )
    .unwrap();
    assert!(
        count.contains(&format!("rows={},1,{}", n + 1, n + 1)),
        "every committed row is there: {count}"
    );
    assert!(url(&env).contains(&at(&standby)), "{}", url(&env));
    let a = addon(&env, other, &name);
    assert_eq!(role(&env, &a, "primary").0, s_node);
    let rels = env.get_json(other, "/apps/ledger/releases").unwrap();
    let last = rels.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Failover DATABASE (@ref:{name})")),
        "{last}"
    );
    let info = ok(hctl(&env, other, &["pg:info", "-a", "ledger"]));
    assert!(info.contains("Temporarily Unavailable"), "{info}");

    // The old primary's node returns: its member is rebuilt as the new primary's standby.
    env.restart(p_node).unwrap();
    let a = eventually(
        "the old primary back in sync as a standby",
        Duration::from_secs(120),
        || {
            let a = addon(&env, other, &name);
            in_sync(&a).then_some(a)
        },
    );
    let (back, m) = role(&env, &a, "standby");
    assert_eq!(back, p_node);
    assert_eq!(m["id"], primary["id"]);
    let gen_file = env
        .data_dir(p_node)
        .unwrap()
        .join("addons/data")
        .join(m["id"].as_str().unwrap())
        .join("generation");
    assert_eq!(std::fs::read_to_string(&gen_file).unwrap().trim(), "1");
    // Synchronous again: a commit returns, and the rows are all on the rebuilt standby.
    try_psql(
        &env,
        other,
        "ledger",
        &format!("INSERT INTO t VALUES ({})", n + 2),
    )
    .unwrap();
    let info = ok(hctl(&env, other, &["pg:info", "-a", "ledger"]));
    assert!(
        info.contains("Available") && !info.contains("Temporarily"),
        "{info}"
    );
    println!("{info}");
}

/// `psql` straight to a member's address (not through the app's URL), as a client that
/// still holds the old primary's address would.
fn psql_at(url: &str, m: &Value, sql: &str) -> std::process::Child {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (auth, rest) = rest.rsplit_once('@').unwrap();
    let (user, pw) = auth.split_once(':').unwrap();
    let db = rest.split_once('/').unwrap().1;
    std::process::Command::new("psql")
        .env("PGHOST", m["host"].as_str().unwrap())
        .env("PGPORT", m["port"].to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", pw)
        .env("PGDATABASE", db)
        .env("PGCONNECT_TIMEOUT", "2")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_partitioned_primary_acknowledges_no_write_after_the_failover() {
    let mut env = cluster(3);
    if !env.is_netns() {
        println!("skipped: partitions need netns mode (root)");
        return;
    }
    let (name, a) = ha_database(&env, "split");
    let (p_node, primary) = role(&env, &a, "primary");
    let (s_node, _) = role(&env, &a, "standby");
    let other = (0..3).find(|i| *i != p_node && *i != s_node).unwrap();
    try_psql(&env, other, "split", "CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    try_psql(&env, other, "split", "INSERT INTO t VALUES (1)").unwrap();

    // The primary's node is cut off from the others (the host still reaches it). A
    // client that keeps its address writes to it: that commit must never be
    // acknowledged, since no synchronous standby follows the isolated primary.
    let url = env.get_json(other, "/apps/split/config-vars").unwrap()["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    env.partition(p_node).unwrap();
    let mut stale = psql_at(&url, &primary, "INSERT INTO t VALUES (666)");
    eventually("the failover", Duration::from_secs(90), || {
        let a = env.get_json(other, &format!("/addons/{name}")).ok()?;
        (role(&env, &a, "primary").0 == s_node).then_some(())
    });
    eventually(
        "the new primary accepts writes",
        Duration::from_secs(60),
        || try_psql(&env, other, "split", "INSERT INTO t VALUES (2)"),
    );
    // The isolated side has not acknowledged the write (it waits, or it failed).
    match stale.try_wait().unwrap() {
        None => {}
        Some(status) => assert!(
            !status.success(),
            "the isolated primary acknowledged a write"
        ),
    }

    // Healed: the old primary learns of the failover, is fenced and rebuilt as standby.
    env.heal(p_node).unwrap();
    let a = eventually(
        "one primary, the old one a standby in sync",
        Duration::from_secs(120),
        || {
            let a = addon(&env, other, &name);
            in_sync(&a).then_some(a)
        },
    );
    assert_eq!(role(&env, &a, "primary").0, s_node);
    assert_eq!(role(&env, &a, "standby").0, p_node);
    let status = eventually("the stale client ends", Duration::from_secs(30), || {
        stale.try_wait().unwrap()
    });
    assert!(
        !status.success(),
        "the stale client's write was acknowledged"
    );
    let rows = try_psql(
        &env,
        other,
        "split",
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM t",
    )
    .unwrap();
    assert!(rows.contains("1,2") && !rows.contains("666"), "{rows}");
}

/// The pids of the processes of add-on member `member` on node `node`: its runtime's
/// init and every descendant.
fn member_pids(env: &Env, node: usize, member: &str) -> Vec<i32> {
    let Some((_, root)) = env.dyno_pids(node).into_iter().find(|(id, _)| id == member) else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

fn signal_all(pids: &[i32], sig: nix::sys::signal::Signal) {
    for p in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig);
    }
}

#[test]
fn a_frozen_standby_leaves_sync_and_writes_go_on() {
    let env = cluster(3);
    let (name, a) = ha_database(&env, "frozen");
    let (p_node, _) = role(&env, &a, "primary");
    let (s_node, standby) = role(&env, &a, "standby");
    try_psql(&env, p_node, "frozen", "CREATE TABLE t (id int)").unwrap();

    // The standby's server freezes (its node and agent stay up): a commit waits for it
    // until the leader takes it out of sync, then returns.
    let pids = member_pids(&env, s_node, standby["id"].as_str().unwrap());
    assert!(!pids.is_empty(), "no processes of the standby");
    signal_all(&pids, nix::sys::signal::Signal::SIGSTOP);
    let frozen = Instant::now();
    let mut insert = haven_tests::hctl_command(
        &env,
        p_node,
        &["pg:psql", "-a", "frozen", "-c", "INSERT INTO t VALUES (1)"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let status = eventually(
        "the waiting commit returns",
        Duration::from_secs(60),
        || insert.try_wait().unwrap(),
    );
    println!(
        "a frozen standby: the commit returned {:.1} s after the freeze",
        frozen.elapsed().as_secs_f64()
    );
    assert!(status.success());
    let a = addon(&env, 0, &name);
    let (_, m) = role(&env, &a, "standby");
    assert_eq!(m["synced"], false, "{a}");

    // Thawed: it streams again and is back in sync; commits wait for it again.
    signal_all(&pids, nix::sys::signal::Signal::SIGCONT);
    eventually("the standby back in sync", Duration::from_secs(90), || {
        in_sync(&addon(&env, 0, &name)).then_some(())
    });
    try_psql(&env, p_node, "frozen", "INSERT INTO t VALUES (2)").unwrap();
}

#[test]
fn a_standby_whose_node_stays_down_is_rebuilt_on_another_node() {
    let mut env = haven_tests::cluster_with(3, Some("[dynos]\nstandby_replace_after_secs = 3\n"));
    let (name, a) = ha_database(&env, "moved");
    let (p_node, _) = role(&env, &a, "primary");
    let (s_node, old) = role(&env, &a, "standby");
    let third = (0..3).find(|i| *i != p_node && *i != s_node).unwrap();
    try_psql(
        &env,
        p_node,
        "moved",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    )
    .unwrap();

    // The standby's host dies and stays down: a new standby is copied from the primary
    // onto the third node and gets in sync; commits wait for it again.
    env.kill(s_node).unwrap();
    let a = eventually(
        "a new standby in sync on the third node",
        Duration::from_secs(120),
        || {
            let a = addon(&env, p_node, &name);
            let (n, m) = role(&env, &a, "standby");
            (n == third && m["id"] != old["id"] && in_sync(&a)).then_some(a)
        },
    );
    assert_eq!(a["members"].as_array().unwrap().len(), 2, "{a}");
    try_psql(&env, p_node, "moved", "INSERT INTO t VALUES (2)").unwrap();
    // The old node returns: its member's data is removed as an orphan.
    let old_dir = env
        .data_dir(s_node)
        .unwrap()
        .join("addons/data")
        .join(old["id"].as_str().unwrap());
    env.restart(s_node).unwrap();
    eventually(
        "the old standby's data removed",
        Duration::from_secs(60),
        || (!old_dir.exists()).then_some(()),
    );
}

#[test]
fn a_database_upgrades_to_ha_and_back_keeping_its_data() {
    let env = cluster(3);
    env.post_json(0, "/apps", &json!({"name": "grows"}))
        .unwrap();
    let out = ok(hctl(
        &env,
        0,
        &[
            "addons:create",
            "heroku-postgresql:essential-0",
            "-a",
            "grows",
            "--wait",
        ],
    ));
    let name = out
        .lines()
        .find(|l| l.starts_with("Created "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    try_psql(
        &env,
        1,
        "grows",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    )
    .unwrap();
    // A single-node plan says plainly what it does not survive.
    let info = ok(hctl(&env, 0, &["addons:info", &name]));
    assert!(
        info.contains("NOT protected against the loss of its node"),
        "{info}"
    );
    let url_before = env.get_json(0, "/apps/grows/config-vars").unwrap()["DATABASE_URL"].clone();

    // Up to standard-0: a standby on another node copies the primary and gets in sync.
    ok(hctl(
        &env,
        2,
        &[
            "addons:upgrade",
            &name,
            "heroku-postgresql:standard-0",
            "-a",
            "grows",
        ],
    ));
    let a = eventually("the new standby in sync", Duration::from_secs(120), || {
        let a = addon(&env, 0, &name);
        (a["members"].as_array()?.len() == 2 && in_sync(&a)).then_some(a)
    });
    assert_eq!(a["plan"]["name"], "heroku-postgresql:standard-0", "{a}");
    let info = ok(hctl(&env, 0, &["pg:info", "-a", "grows"]));
    assert!(
        info.contains("Available") && !info.contains("Temporarily"),
        "{info}"
    );
    let info = ok(hctl(&env, 0, &["addons:info", &name]));
    assert!(
        info.contains("fails over") && info.contains("(standby)"),
        "{info}"
    );
    try_psql(&env, 1, "grows", "INSERT INTO t VALUES (2)").unwrap();
    // The primary and its URL did not move.
    assert_eq!(
        env.get_json(0, "/apps/grows/config-vars").unwrap()["DATABASE_URL"],
        url_before
    );

    // Back to essential-0: the standby goes and commits no longer wait for one.
    ok(hctl(
        &env,
        2,
        &["addons:upgrade", &name, "essential-0", "-a", "grows"],
    ));
    eventually("one server left", Duration::from_secs(30), || {
        (addon(&env, 0, &name)["members"].as_array()?.len() == 1).then_some(())
    });
    let mut insert = hctl_command(
        &env,
        1,
        &["pg:psql", "-a", "grows", "-c", "INSERT INTO t VALUES (3)"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let status = eventually(
        "the commit after the downgrade returns",
        Duration::from_secs(30),
        || insert.try_wait().unwrap(),
    );
    assert!(status.success());
    let rows = try_psql(
        &env,
        1,
        "grows",
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM t",
    )
    .unwrap();
    assert!(rows.contains("1,2,3"), "{rows}");
    // Plans of another service, or unknown ones, are refused with Heroku's message.
    let out = hctl(
        &env,
        0,
        &["addons:upgrade", &name, "heroku-redis:mini", "-a", "grows"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Couldn't find"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Add-ons over a real 3-node cluster: Postgres essential-0 and Redis mini run as real
//! servers on the nodes; data written through the app's DATABASE_URL / REDIS_URL (with
//! `hctl pg:psql` / `redis:cli`, from the host to the recorded address) reads back
//! through another node's API and after the server's node restarts; attach, `--as`,
//! detach and sharing make Heroku's releases; bad input changes nothing; deprovisioning
//! removes the data.

use std::path::PathBuf;
use std::time::Duration;

use haven_tests::{cluster, eventually, hctl, hctl_ok as ok, heroku_schema, validate_haven, Env};
use serde_json::{json, Value};

fn config(env: &Env, app: &str) -> Value {
    env.get_json(0, &format!("/apps/{app}/config-vars"))
        .unwrap()
}

fn descriptions(env: &Env, app: &str) -> Vec<String> {
    let rels = env.get_json(0, &format!("/apps/{app}/releases")).unwrap();
    rels.as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `hctl pg:psql -a APP -c SQL` through node `node`, its output trimmed.
fn psql(env: &Env, node: usize, app: &str, sql: &str) -> String {
    ok(hctl(env, node, &["pg:psql", "-a", app, "-c", sql]))
        .trim()
        .to_string()
}

/// The member of an add-on: its node index and data dir.
fn member(env: &Env, addon: &str) -> (usize, PathBuf) {
    let a = env.get_json(0, &format!("/addons/{addon}")).unwrap();
    let m = &a["members"][0];
    let node = env.index_of(m["node"]["id"].as_str().unwrap()).unwrap();
    let dir = env
        .data_dir(node)
        .unwrap()
        .join("addons/data")
        .join(m["id"].as_str().unwrap());
    (node, dir)
}

fn wait_provisioned(env: &Env, addon: &str) {
    eventually(
        &format!("{addon} provisioned"),
        Duration::from_secs(90),
        || {
            let a = env.get_json(1, &format!("/addons/{addon}")).ok()?;
            (a["state"] == "provisioned").then_some(())
        },
    );
}

#[test]
fn addons_run_real_servers_attach_share_and_deprovision() {
    let mut env = cluster(3);
    env.post_json(0, "/apps", &json!({"name": "shop"})).unwrap();
    env.post_json(0, "/apps", &json!({"name": "blog"})).unwrap();

    // Services and plans, with aliases.
    let plans = ok(hctl(&env, 1, &["addons:plans", "postgres"]));
    assert!(
        plans.contains("heroku-postgresql:essential-0") && plans.contains("standard-0"),
        "{plans}"
    );
    assert!(ok(hctl(&env, 2, &["addons:services"])).contains("heroku-redis"));
    let redis = env.get_json(0, "/addon-services/redis").unwrap();
    assert_eq!(redis["name"], "heroku-redis");

    // Create Postgres and Redis; wait for the real servers to answer.
    let out = ok(hctl(
        &env,
        1,
        &[
            "addons:create",
            "heroku-postgresql:essential-0",
            "-a",
            "shop",
            "--wait",
        ],
    ));
    assert!(
        out.contains("Creating heroku-postgresql:essential-0 on ⬢ shop... done"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("Created "))
        .unwrap_or_else(|| panic!("{out}"));
    let pg = line.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        pg.starts_with("postgresql-") && line.contains("as DATABASE_URL, HEROKU_POSTGRESQL_"),
        "{line}"
    );
    let out = ok(hctl(
        &env,
        2,
        &["addons:create", "redis", "-a", "shop", "--wait"],
    ));
    let line = out
        .lines()
        .find(|l| l.starts_with("Created "))
        .unwrap_or_else(|| panic!("{out}"));
    let rd = line.split_whitespace().nth(1).unwrap().to_string();
    assert!(line.ends_with("as REDIS_URL"), "{line}");
    wait_provisioned(&env, &pg);
    wait_provisioned(&env, &rd);
    let (pg_node, pg_dir) = member(&env, &pg);
    let (rd_node, rd_dir) = member(&env, &rd);
    assert_ne!(pg_node, rd_node, "placement by free memory spreads them");
    assert!(pg_dir.join("pgdata/PG_VERSION").exists() && rd_dir.exists());

    let cfg = config(&env, "shop");
    let url = cfg["DATABASE_URL"].as_str().unwrap().to_string();
    assert!(url.starts_with("postgres://"), "{url}");
    let colour: Vec<&String> = cfg
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("HEROKU_POSTGRESQL_"))
        .collect();
    assert_eq!(colour.len(), 1, "{cfg}");
    assert_eq!(cfg[colour[0].as_str()], url.as_str());
    assert!(cfg["REDIS_URL"]
        .as_str()
        .unwrap()
        .starts_with("redis://default:"));
    let rels = descriptions(&env, "shop");
    assert!(
        rels.contains(&format!("Attach DATABASE (@ref:{pg})")),
        "{rels:?}"
    );
    assert!(
        rels.contains(&format!("Attach REDIS (@ref:{rd})")),
        "{rels:?}"
    );

    // Wire shapes against Heroku's schema.
    let schema = heroku_schema();
    for (def, path) in [
        ("add-on", format!("/apps/shop/addons/{pg}")),
        (
            "add-on-attachment",
            "/apps/shop/addon-attachments/DATABASE".to_string(),
        ),
        (
            "add-on-service",
            "/addon-services/heroku-postgresql".to_string(),
        ),
        (
            "plan",
            "/addon-services/heroku-redis/plans/mini".to_string(),
        ),
    ] {
        let mut v = env.get_json(0, &path).unwrap();
        // Haven's addition: the add-on's servers (the schema allows no extra fields there).
        if let Some(o) = v.as_object_mut() {
            o.remove("members");
        }
        let errors = validate_haven(&schema, &schema["definitions"][def], &v);
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }

    // Data through the URLs, written via one node's API and read via another's.
    psql(
        &env,
        0,
        "shop",
        "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hello from haven')",
    );
    assert_eq!(
        psql(&env, 2, "shop", "SELECT body FROM notes")
            .lines()
            .nth(2)
            .map(str::trim),
        Some("hello from haven")
    );
    assert_eq!(
        ok(hctl(
            &env,
            0,
            &["redis:cli", "-a", "shop", "--", "SET", "greeting", "hi"]
        ))
        .trim(),
        "OK"
    );
    assert_eq!(
        ok(hctl(
            &env,
            1,
            &["redis:cli", "-a", "shop", "--", "GET", "greeting"]
        ))
        .trim(),
        "hi"
    );
    let info = ok(hctl(&env, 0, &["pg:info", "-a", "shop"]));
    assert!(
        info.contains("PG Version:") && info.contains(" 15") && info.contains(&pg),
        "{info}"
    );
    let rinfo = ok(hctl(&env, 0, &["redis:info", "-a", "shop"]));
    assert!(
        rinfo.contains("Version:") && rinfo.contains(" 7.") && rinfo.contains(&rd),
        "{rinfo}"
    );
    let listed = ok(hctl(&env, 0, &["addons", "-a", "shop"]));
    assert!(
        listed.contains(&format!("heroku-postgresql ({pg})")) && listed.contains("└─ as DATABASE"),
        "{listed}"
    );

    // --as, detach, and sharing with a second app; each change one release.
    let before = descriptions(&env, "shop").len();
    let out = ok(hctl(
        &env,
        0,
        &["addons:attach", &pg, "--as", "ANALYTICS", "-a", "shop"],
    ));
    assert!(
        out.contains("Setting ANALYTICS config vars and restarting ⬢ shop... done"),
        "{out}"
    );
    assert_eq!(config(&env, "shop")["ANALYTICS_URL"], url.as_str());
    ok(hctl(&env, 1, &["addons:detach", "ANALYTICS", "-a", "shop"]));
    assert!(config(&env, "shop").get("ANALYTICS_URL").is_none());
    let rels = descriptions(&env, "shop");
    assert_eq!(rels.len(), before + 2);
    assert_eq!(rels[before], format!("Attach ANALYTICS (@ref:{pg})"));
    assert_eq!(rels[before + 1], format!("Detach ANALYTICS (@ref:{pg})"));
    ok(hctl(&env, 2, &["addons:attach", &pg, "-a", "blog"]));
    assert_eq!(config(&env, "blog")["DATABASE_URL"], url.as_str());
    assert_eq!(
        psql(&env, 1, "blog", "SELECT count(*) FROM notes")
            .lines()
            .nth(2)
            .map(str::trim),
        Some("1")
    );

    // Bad input: Heroku-style errors, nothing made.
    let addons_before = env.get_json(0, "/addons").unwrap();
    let releases_before = descriptions(&env, "shop").len();
    for (body, status, id, words) in [
        (
            json!({"plan": "mysql:tiny"}),
            404,
            "not_found",
            "Couldn't find either the add-on service or the add-on plan",
        ),
        (
            json!({"plan": "heroku-postgresql:huge-9"}),
            404,
            "not_found",
            "Couldn't find either",
        ),
        (
            json!({"plan": "heroku-redis:mini", "name": pg}),
            422,
            "invalid_params",
            "already taken",
        ),
        (
            json!({"plan": "heroku-redis:mini", "name": "9bad"}),
            422,
            "invalid_params",
            "invalid",
        ),
        (
            json!({"plan": {"name": "redis"}, "attachment": {"name": "DATABASE"}}),
            422,
            "invalid_params",
            "already used",
        ),
    ] {
        let (st, v) = env
            .request(0, reqwest::Method::POST, "/apps/shop/addons", Some(&body))
            .unwrap();
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert_eq!(v["id"], id, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{body}: {v}"
        );
    }
    let refused = hctl(&env, 0, &["addons:destroy", &pg]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--confirm shop"));
    assert_eq!(env.get_json(0, "/addons").unwrap(), addons_before);
    assert_eq!(descriptions(&env, "shop").len(), releases_before);

    // The database's data survives its node's restart (the server restarts with it).
    env.restart(pg_node).unwrap();
    env.wait_ready(pg_node, Duration::from_secs(60)).unwrap();
    let body = eventually(
        "the database answering after a restart",
        Duration::from_secs(90),
        || {
            let out = hctl(
                &env,
                0,
                &["pg:psql", "-a", "shop", "-c", "SELECT body FROM notes"],
            );
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    assert!(body.contains("hello from haven"), "{body}");

    // Deprovisioning detaches everywhere and removes the data dir.
    let out = ok(hctl(&env, 0, &["addons:destroy", &pg, "--confirm", "shop"]));
    assert!(
        out.contains(&format!("Destroying {pg} on ⬢ shop... done")),
        "{out}"
    );
    eventually(
        "the database's data removed",
        Duration::from_secs(60),
        || (!pg_dir.exists()).then_some(()),
    );
    assert!(config(&env, "blog").get("DATABASE_URL").is_none());
    assert!(descriptions(&env, "blog").contains(&format!("Detach DATABASE (@ref:{pg})")));
    assert!(config(&env, "shop").get("DATABASE_URL").is_none());

    // Destroying the app deprovisions its Redis.
    ok(hctl(
        &env,
        0,
        &["apps:destroy", "-a", "shop", "--confirm", "shop"],
    ));
    eventually("the redis data removed", Duration::from_secs(60), || {
        (!rd_dir.exists()).then_some(())
    });
    eventually("no add-ons left", Duration::from_secs(30), || {
        (env.get_json(0, "/addons").ok()? == json!([])).then_some(())
    });
}

/// The release version each up dyno of `app` runs.
fn up_releases(env: &Env, app: &str) -> Vec<u64> {
    env.get_json(0, &format!("/apps/{app}/dynos"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|d| d["type"] == "web" && d["state"] == "up")
        .filter_map(|d| d["release"]["version"].as_u64())
        .collect()
}

#[test]
fn dynos_reach_addons_through_their_urls_and_roll_on_attach() {
    let env = cluster(3);
    let app = haven_tests::repo_path("examples/python-hello");
    env.post_json(0, "/apps", &json!({"name": "web-db"}))
        .unwrap();
    ok(hctl(
        &env,
        0,
        &["deploy", &app.to_string_lossy(), "-a", "web-db"],
    ));
    let v = eventually("web.1 up", Duration::from_secs(90), || {
        up_releases(&env, "web-db").first().copied()
    });
    ok(hctl(
        &env,
        1,
        &[
            "addons:create",
            "heroku-postgresql:essential-0",
            "-a",
            "web-db",
            "--wait",
        ],
    ));
    ok(hctl(
        &env,
        2,
        &[
            "addons:create",
            "heroku-redis:mini",
            "-a",
            "web-db",
            "--wait",
        ],
    ));
    // Two attach releases later, the web dyno has rolled onto the new config.
    eventually(
        "web.1 on the attach release",
        Duration::from_secs(90),
        || (up_releases(&env, "web-db") == [v + 2]).then_some(()),
    );
    // One-off dynos, started through different nodes, use the URLs from their env.
    let run = |node: usize, cmd: &str| -> String {
        let out = hctl(&env, node, &["run", "-a", "web-db", cmd]);
        assert!(out.status.success(), "{cmd}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    run(
        0,
        r#"psql "$DATABASE_URL" -Atc "CREATE TABLE visits (n int); INSERT INTO visits VALUES (42)""#,
    );
    assert_eq!(
        run(1, r#"psql "$DATABASE_URL" -Atc "SELECT n FROM visits""#),
        "42"
    );
    assert_eq!(
        run(
            2,
            r#"redis-cli --no-auth-warning -u "$REDIS_URL" SET visits 7"#
        ),
        "OK"
    );
    assert_eq!(
        run(
            0,
            r#"redis-cli --no-auth-warning -u "$REDIS_URL" GET visits"#
        ),
        "7"
    );
}

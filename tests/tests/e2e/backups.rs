//! Postgres backups over a real cluster: `pg:backups:capture` dumps a real database from
//! any node onto three nodes, `pg:backups:restore` brings dropped data back, the dump
//! downloads as a `pg_restore` archive, and the node that captured it can die without
//! the backup being lost.

use std::time::Duration;

use haven_tests::{cluster, eventually, hctl, hctl_ok as ok, Env};
use serde_json::{json, Value};

fn psql(env: &Env, node: usize, app: &str, sql: &str) -> String {
    ok(hctl(env, node, &["pg:psql", "-a", app, "-c", sql]))
        .trim()
        .to_string()
}

#[test]
fn backups_capture_restore_and_download_from_any_node() {
    let mut env = cluster(3);
    env.post_json(0, "/apps", &json!({"name": "ledger"}))
        .unwrap();
    ok(hctl(
        &env,
        0,
        &[
            "addons:create",
            "heroku-postgresql",
            "-a",
            "ledger",
            "--wait",
        ],
    ));
    // The node that runs the database stays up; another captures, a third restores.
    let addon = env.get_json(0, "/apps/ledger/addons").unwrap()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let a = env.get_json(0, &format!("/addons/{addon}")).unwrap();
    let db_node = env
        .index_of(a["members"][0]["node"]["id"].as_str().unwrap())
        .unwrap();
    let (capturer, restorer) = ((db_node + 1) % 3, (db_node + 2) % 3);

    // The server speaks TLS with a certificate from the cluster CA for its address.
    let ca = env.data_dir(0).unwrap().join("ca.pem");
    let out = haven_tests::hctl_command(
        &env,
        restorer,
        &[
            "pg:psql",
            "-a",
            "ledger",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();",
        ],
    )
    .env("PGSSLMODE", "verify-full")
    .env("PGSSLROOTCERT", &ca)
    .output()
    .unwrap();
    let text = ok(out);
    assert!(
        text.lines().any(|l| l.trim() == "t"),
        "not over TLS: {text}"
    );

    // The lookups the Heroku CLI makes: attachments resolve by name, the add-on's config
    // is the URL the app got, and it cannot be changed by hand.
    let found = env
        .post_json(
            restorer,
            "/actions/addon-attachments/resolve",
            &json!({"addon_attachment": "DATABASE", "app": "ledger"}),
        )
        .unwrap();
    assert_eq!(found[0]["name"], "DATABASE", "{found}");
    assert_eq!(found[0]["addon"]["name"], addon.as_str(), "{found}");
    let cfg = env
        .get_json(capturer, &format!("/addons/{addon}/config"))
        .unwrap();
    let vars = env.get_json(0, "/apps/ledger/config-vars").unwrap();
    assert_eq!(cfg[0]["name"], "URL");
    assert_eq!(cfg[0]["value"], vars["DATABASE_URL"], "{cfg}");
    let (st, body) = env
        .request(
            0,
            reqwest::Method::PATCH,
            &format!("/addons/{addon}/config"),
            Some(&json!({"config": [{"name": "URL", "value": "x"}]})),
        )
        .unwrap();
    assert_eq!(st.as_u16(), 422, "{body}");
    psql(
        &env,
        db_node,
        "ledger",
        "CREATE TABLE entries (n int); INSERT INTO entries SELECT generate_series(1, 500);",
    );

    // Nothing yet; a database that does not exist is named in the error.
    assert!(ok(hctl(&env, 1, &["pg:backups", "-a", "ledger"])).contains("No backups"));
    let out = hctl(&env, 1, &["pg:backups:capture", "NOPE", "-a", "ledger"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOPE"));

    // Captured through another node; the dump is on all three nodes.
    let out = ok(hctl(
        &env,
        capturer,
        &["pg:backups:capture", "-a", "ledger"],
    ));
    assert!(
        out.contains("to b001... done") && out.contains("3 copies"),
        "{out}"
    );
    let b: Value = env
        .get_json(restorer, "/apps/ledger/pg-backups/b001")
        .unwrap();
    assert_eq!(b["status"], "Completed", "{b}");
    assert_eq!(b["copies"], 3);
    let list = ok(hctl(&env, 2, &["pg:backups", "-a", "ledger"]));
    assert!(
        list.contains("b001") && list.contains("Completed"),
        "{list}"
    );

    // The data goes away; the restore (asked of another node) brings it back.
    psql(&env, db_node, "ledger", "DROP TABLE entries;");
    let out = hctl(
        &env,
        restorer,
        &["pg:backups:restore", "b001", "-a", "ledger"],
    );
    assert!(
        !out.status.success(),
        "a restore without --confirm must be refused"
    );
    ok(hctl(
        &env,
        restorer,
        &[
            "pg:backups:restore",
            "b001",
            "-a",
            "ledger",
            "--confirm",
            "ledger",
        ],
    ));
    let count = psql(&env, db_node, "ledger", "SELECT count(*) FROM entries;");
    assert!(count.contains("500"), "{count}");

    // The dump downloads as a custom-format archive with the checksum the API gives.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latest.dump");
    ok(hctl(
        &env,
        restorer,
        &[
            "pg:backups:download",
            "-a",
            "ledger",
            "-o",
            &file.to_string_lossy(),
        ],
    ));
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"PGDMP"), "not a pg_dump archive");
    let sha = haven_api::pin::fingerprint(&bytes);
    assert_eq!(b["checksum"], format!("SHA256:{sha}"));

    // The capturing node dies: the backup is still restorable from the others.
    env.kill(capturer).unwrap();
    psql(&env, db_node, "ledger", "DELETE FROM entries;");
    eventually(
        "a restore with the capturing node down",
        Duration::from_secs(60),
        || {
            hctl(
                &env,
                restorer,
                &["pg:backups:restore", "-a", "ledger", "--confirm", "ledger"],
            )
            .status
            .success()
            .then_some(())
        },
    );
    let count = psql(&env, db_node, "ledger", "SELECT count(*) FROM entries;");
    assert!(count.contains("500"), "{count}");

    ok(hctl(
        &env,
        restorer,
        &[
            "pg:backups:delete",
            "b001",
            "-a",
            "ledger",
            "--confirm",
            "ledger",
        ],
    ));
    assert!(ok(hctl(&env, db_node, &["pg:backups", "-a", "ledger"])).contains("No backups"));
}

#[test]
fn a_daily_schedule_takes_its_backup_when_the_time_comes() {
    let env = cluster(1);
    env.post_json(0, "/apps", &json!({"name": "nightly"}))
        .unwrap();
    ok(hctl(
        &env,
        0,
        &[
            "addons:create",
            "heroku-postgresql",
            "-a",
            "nightly",
            "--wait",
        ],
    ));
    let out = hctl(
        &env,
        0,
        &[
            "pg:backups:schedule",
            "--at",
            "02:00 Europe/Paris",
            "-a",
            "nightly",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UTC"));

    // Scheduled for the current minute (again if the minute turned meanwhile): due now.
    let mut tries = 0;
    loop {
        let now = chrono::Utc::now();
        let at = now.format("%H:%M UTC").to_string();
        let s = env
            .post_json(0, "/apps/nightly/pg-backup-schedules", &json!({ "at": at }))
            .unwrap();
        let made = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().unwrap()).unwrap();
        if made.format("%H:%M UTC").to_string() == at {
            break;
        }
        tries += 1;
        assert!(tries < 3, "the minute kept turning");
    }
    let list = ok(hctl(&env, 0, &["pg:backups:schedules", "-a", "nightly"]));
    assert!(list.contains("daily at") && list.contains("UTC"), "{list}");

    let b = eventually("the scheduled backup", Duration::from_secs(60), || {
        let all = env.get_json(0, "/apps/nightly/pg-backups").ok()?;
        all.as_array()?
            .iter()
            .find(|b| b["scheduled"] == true && b["status"] == "Completed")
            .cloned()
    });
    assert_eq!(b["name"], "b001");
    let table = ok(hctl(&env, 0, &["pg:backups", "-a", "nightly"]));
    assert!(table.contains("Scheduled"), "{table}");

    ok(hctl(&env, 0, &["pg:backups:unschedule", "-a", "nightly"]));
    let list = ok(hctl(&env, 0, &["pg:backups:schedules", "-a", "nightly"]));
    assert!(list.contains("No backup schedules"), "{list}");
}

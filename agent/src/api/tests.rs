//! The API end to end in-process: a real single-node `HavenRaft` (RocksDB in a temp dir,
//! no peers), bootstrapped with a known admin token, and the real router driven with
//! `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use chrono::Utc;
use haven_raft::command::Command;
use haven_raft::model::{Cluster, Node, NodeId, NodeStatus, Token, User};
use haven_raft::HavenRaft;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use super::{router, token_hash, ApiContext};

const TOKEN: &str = "hvn_test_token_0123456789";
const NODE: NodeId = 11;

struct Harness {
    app: Router,
    raft: HavenRaft,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let raft = crate::testkit::single_node_raft(dir.path(), NODE).await;
        let now = Utc::now();
        let admin = User {
            id: Uuid::new_v4(),
            email: "admin@haven.local".into(),
            created_at: now,
            admin: true,
            password_hash: None,
        };
        let bootstrap = Command::Bootstrap {
            cluster: Cluster {
                id: Uuid::new_v4(),
                name: "haven".into(),
                app_domain: "haven.test".into(),
                created_at: now,
                join_secret_sha256: String::new(),
                ca_fingerprint: String::new(),
            },
            node: Node {
                id: NODE,
                name: "node-1".into(),
                peer_addr: "127.0.0.1:7000".into(),
                api_url: "http://127.0.0.1:5000".into(),
                router_url: "http://127.0.0.1:8080".into(),
                memory_mb: 1024,
                cpus: 2,
                labels: Default::default(),
                status: NodeStatus::Up,
                draining: false,
                joined_at: now,
            },
            admin_token: Token {
                id: Uuid::new_v4(),
                sha256: token_hash(TOKEN),
                user_email: admin.email.clone(),
                user_id: admin.id,
                description: "admin".into(),
                created_at: now,
                expires_at: None,
            },
            admin,
        };
        raft.write(bootstrap).await.unwrap().unwrap();
        let data = crate::config::DataDir::new(dir.path());
        let slugs = crate::slugs::SlugStore::open(&data.slugs_dir(), 1 << 30).unwrap();
        let peers = crate::testkit::connector(NODE);
        let logs = crate::logs::Logs::default();
        // Dynos run as plain processes here: these tests run without root.
        let runtime = Arc::new(crate::runtime::Runtime::process_only(data.dynos_dir()));
        let builder = crate::builder::Builder::new(
            raft.clone(),
            NODE,
            "http://127.0.0.1:7400".into(),
            7480,
            data.clone(),
            slugs.clone(),
            peers.clone(),
            Default::default(),
            runtime.clone(),
            crate::network::Network::host(raft.clone()),
            logs.clone(),
            Default::default(),
        )
        .unwrap();
        let builder_for_repos = builder.clone();
        let cache = crate::slugcache::SlugCache::open(
            &data.slug_cache_dir(),
            slugs,
            peers.clone(),
            raft.clone(),
            NODE,
            1 << 30,
            None,
        )
        .unwrap();
        let registrar = crate::router::registry::Registrar::new(
            NODE,
            raft.clone(),
            peers.clone(),
            Default::default(),
            Duration::from_secs(1),
        );
        let dynos = crate::dynos::DynoManager::new(
            NODE,
            raft.clone(),
            runtime,
            cache,
            logs.clone(),
            Default::default(),
            registrar,
            "127.0.0.1".into(),
            crate::network::Network::host(raft.clone()),
            Default::default(),
        );
        let app = router(ApiContext {
            raft: raft.clone(),
            node_id: NODE,
            builder,
            dynos,
            metrics: Default::default(),
            node_name: "n1".into(),
            logs,
            sessions: Default::default(),
            peers: peers.clone(),
            http: reqwest::Client::new(),
            ca_pem: String::new(),
            backups: crate::addons::backups::Backups::new(
                raft.clone(),
                NODE,
                crate::slugs::SlugStore::open(&dir.path().join("blobs"), 1 << 20).unwrap(),
                peers.clone(),
                dir.path().join("backups-tmp"),
            ),
            rendezvous: Default::default(),
            events: Default::default(),
            repos: crate::repos::Repos::new(
                NODE,
                raft.clone(),
                builder_for_repos,
                Default::default(),
                Duration::from_secs(3600),
                data.root.join("repos-tmp"),
            ),
        });
        Harness {
            app,
            raft,
            _dir: dir,
        }
    }

    /// Sends a request with exactly `headers` (no auth added) and a raw body.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        assert!(
            headers.contains_key("request-id"),
            "{status} {path} lacks Request-Id"
        );
        (status, headers, value)
    }

    /// An authenticated JSON call as hctl makes it.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", haven_api::ACCEPT),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let body = body.map(|b| b.to_string());
        let (s, _, v) = self.raw(method, path, &headers, body.as_deref()).await;
        (s, v)
    }

    async fn ranged(&self, path: &str, range: &str) -> (StatusCode, HeaderMap, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.raw(
            Method::GET,
            path,
            &[("Authorization", &auth), ("Range", range)],
            None,
        )
        .await
    }
}

#[track_caller]
fn assert_error(got: (StatusCode, Value), status: u16, id: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["id"], id, "{}", got.1);
    let message = got.1["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{}", got.1);
}

#[tokio::test]
async fn apps_lifecycle() {
    let h = Harness::start().await;
    let (st, app) = h
        .call(Method::POST, "/apps", Some(json!({"name": "my-app"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{app}");
    assert_eq!(app["name"], "my-app");
    assert_eq!(app["git_url"], "http://127.0.0.1:5000/my-app.git");
    assert_eq!(app["web_url"], "http://my-app.haven.test:8080/");
    assert_eq!(app["stack"]["name"], "heroku-24");
    assert_eq!(app["owner"]["email"], "admin@haven.local");
    assert_eq!(app["maintenance"], false);
    assert!(app["created_at"].as_str().unwrap().ends_with('Z'));
    let id = app["id"].as_str().unwrap().to_string();

    // No name: a random Heroku-like one; no body at all is fine too.
    let (st, random) = h.call(Method::POST, "/apps", None).await;
    assert_eq!(st, StatusCode::CREATED, "{random}");
    let random_name = random["name"].as_str().unwrap();
    assert!(
        haven_raft::model::validate_app_name(random_name).is_ok(),
        "{random_name}"
    );
    let (st, _) = h.call(Method::POST, "/apps", Some(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED);

    assert_error(
        h.call(Method::POST, "/apps", Some(json!({"name": "my-app"})))
            .await,
        409,
        "conflict",
    );
    assert_error(
        h.call(Method::POST, "/apps", Some(json!({"name": "Bad_Name"})))
            .await,
        422,
        "invalid_params",
    );

    assert_eq!(
        h.call(Method::GET, "/apps/my-app", None).await.1["id"],
        id.as_str()
    );
    assert_eq!(
        h.call(Method::GET, &format!("/apps/{id}"), None).await.1["name"],
        "my-app"
    );
    let (st, list) = h.call(Method::GET, "/apps", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 3);

    let (st, renamed) = h
        .call(
            Method::PATCH,
            "/apps/my-app",
            Some(json!({"name": "your-app", "maintenance": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["maintenance"].as_bool()),
        (Some("your-app"), Some(true))
    );
    let (st, same) = h
        .call(Method::PATCH, "/apps/your-app", Some(json!({})))
        .await;
    assert_eq!(
        (st, same["name"].as_str()),
        (StatusCode::OK, Some("your-app"))
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/your-app",
            Some(json!({"name": random_name})),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        h.call(Method::PATCH, "/apps/your-app", Some(json!({"name": "-x"})))
            .await,
        422,
        "invalid_params",
    );
    let gone = h.call(Method::GET, "/apps/my-app", None).await;
    assert_eq!(gone.1["message"], "Couldn't find that app.");
    assert_error(gone, 404, "not_found");

    let (st, deleted) = h.call(Method::DELETE, "/apps/your-app", None).await;
    assert_eq!(
        (st, deleted["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    assert_error(
        h.call(Method::GET, "/apps/your-app", None).await,
        404,
        "not_found",
    );
    assert_error(
        h.call(Method::DELETE, "/apps/your-app", None).await,
        404,
        "not_found",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/nope",
            Some(json!({"maintenance": true})),
        )
        .await,
        404,
        "not_found",
    );
    h.raft.shutdown().await;
}

#[tokio::test]
async fn releases_kept_on_disk_are_listed_paged_and_read() {
    let h = Harness::start().await;
    h.call(Method::POST, "/apps", Some(json!({"name": "old"})))
        .await;
    // 30 config releases: with the default 10 in memory, v1..v21 are on disk only.
    for n in 0..30 {
        let (st, _) = h
            .call(
                Method::PATCH,
                "/apps/old/config-vars",
                Some(json!({ "N": n.to_string() })),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    h.raft.with_state(|s| {
        let a = s.find_app("old").unwrap();
        assert!(a.find_release("v2").is_none(), "v2 is still in memory");
        assert_eq!(a.last_version(), 31);
    });
    // Every page, oldest first, across disk and memory.
    let mut versions = Vec::new();
    let mut range = "version ..; max=7".to_string();
    loop {
        let (st, hd, page) = h.ranged("/apps/old/releases", &range).await;
        versions.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|r| r["version"].as_u64().unwrap()),
        );
        match hd.get("next-range") {
            Some(next) => {
                assert_eq!(st, StatusCode::PARTIAL_CONTENT);
                range = next.to_str().unwrap().to_string();
            }
            None => break,
        }
    }
    assert_eq!(versions, (1..=31).collect::<Vec<u64>>());
    let (_, _, newest) = h
        .ranged("/apps/old/releases", "version ..; max=3, order=desc")
        .await;
    let newest: Vec<u64> = newest
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(newest, [31, 30, 29]);
    let (_, all) = h.call(Method::GET, "/apps/old/releases", None).await;
    assert_eq!(all.as_array().unwrap().len(), 31);
    assert_eq!(all[30]["current"], true);
    let v3_id = all[2]["id"].as_str().unwrap().to_string();
    for key in ["3", "v3", v3_id.as_str()] {
        let (st, r) = h
            .call(Method::GET, &format!("/apps/old/releases/{key}"), None)
            .await;
        assert_eq!(
            (st, r["version"].as_u64()),
            (StatusCode::OK, Some(3)),
            "{key}"
        );
        assert_eq!(r["description"], "Set N config vars");
    }
    let (_, v3_config) = h
        .call(Method::GET, "/apps/old/releases/v3/config-vars", None)
        .await;
    assert_eq!(v3_config, json!({"N": "1"}));
    // A rollback target on disk is found (and, with no slug, refused as on Heroku).
    let (st, r) = h
        .call(
            Method::POST,
            "/apps/old/releases",
            Some(json!({ "release": v3_id })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["message"], haven_raft::command::NO_SLUG_ROLLBACK);
    h.raft.shutdown().await;
}

#[tokio::test]
async fn config_vars_and_releases() {
    let h = Harness::start().await;
    h.call(Method::POST, "/apps", Some(json!({"name": "cfg"})))
        .await;
    let (st, map) = h
        .call(
            Method::PATCH,
            "/apps/cfg/config-vars",
            Some(json!({"FOO": "1", "BAR": "2"})),
        )
        .await;
    assert_eq!(
        (st, map.clone()),
        (StatusCode::OK, json!({"FOO": "1", "BAR": "2"}))
    );
    let (_, map) = h
        .call(
            Method::PATCH,
            "/apps/cfg/config-vars",
            Some(json!({"FOO": null, "BAZ": "3"})),
        )
        .await;
    assert_eq!(map, json!({"BAR": "2", "BAZ": "3"}));
    assert_eq!(
        h.call(Method::GET, "/apps/cfg/config-vars", None).await.1,
        map
    );
    // An empty patch answers the map and makes no release.
    assert_eq!(
        h.call(Method::PATCH, "/apps/cfg/config-vars", Some(json!({})))
            .await,
        (StatusCode::OK, map.clone())
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/cfg/config-vars",
            Some(json!({"N": 5})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/cfg/config-vars",
            Some(json!({"A-B": "x"})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/nope/config-vars",
            Some(json!({"A": "x"})),
        )
        .await,
        404,
        "not_found",
    );

    let (st, rels) = h.call(Method::GET, "/apps/cfg/releases", None).await;
    assert_eq!(st, StatusCode::OK);
    let versions: Vec<u64> = rels
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(rels[2]["description"], "Set BAZ and remove FOO config vars");
    assert_eq!(
        (
            rels[2]["current"].as_bool(),
            rels[2]["eligible_for_rollback"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(
        (
            rels[1]["current"].as_bool(),
            rels[1]["eligible_for_rollback"].as_bool()
        ),
        // Nothing was deployed: a release without a slug cannot be rolled back to.
        (Some(false), Some(false))
    );
    assert_eq!(rels[1]["user"]["email"], "admin@haven.local");
    let v2_id = rels[1]["id"].as_str().unwrap().to_string();

    for key in ["2", "v2", v2_id.as_str()] {
        let (st, r) = h
            .call(Method::GET, &format!("/apps/cfg/releases/{key}"), None)
            .await;
        assert_eq!(
            (st, r["version"].as_u64()),
            (StatusCode::OK, Some(2)),
            "{key}"
        );
    }
    let (_, v2_config) = h
        .call(Method::GET, "/apps/cfg/releases/v2/config-vars", None)
        .await;
    assert_eq!(v2_config, json!({"FOO": "1", "BAR": "2"}));
    let missing = h.call(Method::GET, "/apps/cfg/releases/42", None).await;
    assert_eq!(missing.1["message"], "Couldn't find that release.");
    assert_error(missing, 404, "not_found");
    assert_error(
        h.call(Method::GET, "/apps/cfg/releases/42/config-vars", None)
            .await,
        404,
        "not_found",
    );

    // Ranges: cut lists answer 206 with Next-Range; descending order is honoured.
    let (st, hd, page) = h.ranged("/apps/cfg/releases", "version ..; max=2").await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(page.as_array().unwrap().len(), 2);
    let next = hd["next-range"].to_str().unwrap().to_string();
    assert_eq!(next, "version ]2..; max=2");
    let (st, _, page) = h.ranged("/apps/cfg/releases", &next).await;
    assert_eq!((st, page[0]["version"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, _, page) = h
        .ranged("/apps/cfg/releases", "version ..; order=desc")
        .await;
    assert_eq!(page[0]["version"], 3);
    let (st, _, body) = h.ranged("/apps/cfg/releases", "name ..").await;
    assert_error((st, body), 400, "bad_request");

    // Rollback: nothing was deployed, so no release has a slug, and Heroku refuses to
    // roll back to one without (the successful rollbacks are in the e2e tests, after a
    // deploy).
    let before = h.call(Method::GET, "/apps/cfg/releases", None).await.1;
    for target in [json!(v2_id), json!(1)] {
        let (st, r) = h
            .call(
                Method::POST,
                "/apps/cfg/releases",
                Some(json!({ "release": target })),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(
            (r["id"].as_str(), r["message"].as_str()),
            (
                Some("invalid_params"),
                Some(haven_raft::command::NO_SLUG_ROLLBACK)
            )
        );
    }
    assert_eq!(
        h.call(Method::GET, "/apps/cfg/releases", None).await.1,
        before,
        "a refused rollback makes no release"
    );
    assert_eq!(
        h.call(Method::GET, "/apps/cfg/config-vars", None).await.1,
        json!({"BAR": "2", "BAZ": "3"})
    );
    assert_error(
        h.call(
            Method::POST,
            "/apps/cfg/releases",
            Some(json!({"release": "42"})),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        h.call(
            Method::POST,
            "/apps/cfg/releases",
            Some(json!({"slug": "x"})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(Method::POST, "/apps/cfg/releases", Some(json!({})))
            .await,
        422,
        "invalid_params",
    );
    h.raft.shutdown().await;
}

#[tokio::test]
async fn formation() {
    let h = Harness::start().await;
    h.call(Method::POST, "/apps", Some(json!({"name": "scale"})))
        .await;
    assert_eq!(
        h.call(Method::GET, "/apps/scale/formation", None).await,
        (StatusCode::OK, json!([]))
    );
    let (st, list) = h
        .call(Method::PATCH, "/apps/scale/formation", Some(json!({"updates": [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": "1", "size": "standard-2x"}]})))
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        (
            list[0]["type"].as_str(),
            list[0]["quantity"].as_u64(),
            list[0]["size"].as_str()
        ),
        (Some("web"), Some(2), Some("Standard-1X"))
    );
    assert_eq!(
        (list[1]["type"].as_str(), list[1]["size"].as_str()),
        (Some("worker"), Some("Standard-2X"))
    );
    assert_eq!(list[0]["command"], "");
    let web_id = list[0]["id"].as_str().unwrap().to_string();

    let (st, web) = h
        .call(
            Method::PATCH,
            "/apps/scale/formation/web",
            Some(json!({"quantity": "+1"})),
        )
        .await;
    assert_eq!((st, web["quantity"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, web) = h
        .call(
            Method::PATCH,
            &format!("/apps/scale/formation/{web_id}"),
            Some(json!({"quantity": "-1", "size": "Performance-M"})),
        )
        .await;
    assert_eq!(
        (web["quantity"].as_u64(), web["size"].as_str()),
        (Some(2), Some("Performance-M"))
    );
    for key in ["web", web_id.as_str()] {
        let (st, f) = h
            .call(Method::GET, &format!("/apps/scale/formation/{key}"), None)
            .await;
        assert_eq!(
            (st, f["id"].as_str()),
            (StatusCode::OK, Some(web_id.as_str()))
        );
    }
    assert_eq!(
        h.call(Method::GET, "/apps/scale/formation", None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_error(
        h.call(Method::GET, "/apps/scale/formation/clock", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation",
            Some(json!({"updates": []})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation",
            Some(json!({"updates": [{"quantity": 1}]})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation",
            Some(json!({"updates": [{"type": "web", "size": "giant"}]})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation/web",
            Some(json!({"quantity": "-5"})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation/web",
            Some(json!({"quantity": -1})),
        )
        .await,
        422,
        "invalid_params",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/scale/formation",
            Some(json!({"nope": 1})),
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        h.call(
            Method::PATCH,
            "/apps/nope/formation/web",
            Some(json!({"quantity": 1})),
        )
        .await,
        404,
        "not_found",
    );
    h.raft.shutdown().await;
}

#[tokio::test]
async fn account_and_cluster() {
    let h = Harness::start().await;
    let (st, acct) = h.call(Method::GET, "/account", None).await;
    assert_eq!(
        (st, acct["email"].as_str()),
        (StatusCode::OK, Some("admin@haven.local"))
    );
    assert!(acct["name"].is_null());
    let (st, status) = h.call(Method::GET, "/cluster/status", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(status["node_id"], NODE.to_string());
    assert_eq!(status["leader"], NODE.to_string());
    assert_eq!(status["leader_name"], "node-1");
    assert_eq!(status["voters"], json!([NODE.to_string()]));
    let (_, nodes) = h.call(Method::GET, "/cluster/nodes", None).await;
    assert_eq!(nodes[0]["role"], "voter");
    assert_eq!(nodes[0]["leader"], true);
    assert_eq!(nodes[0]["status"], "up");
    h.raft.shutdown().await;
}

#[tokio::test]
async fn cross_cutting_errors_and_headers() {
    let h = Harness::start().await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = bearer.as_str();

    // Auth.
    let (st, _, body) = h.raw(Method::GET, "/apps", &[], None).await;
    assert_eq!(body["message"], "Invalid credentials provided.");
    assert_error((st, body), 401, "unauthorized");
    let (st, _, body) = h
        .raw(
            Method::GET,
            "/apps",
            &[("Authorization", "Bearer hvn_wrong")],
            None,
        )
        .await;
    assert_error((st, body), 401, "unauthorized");
    let (st, _, body) = h.raw(Method::GET, "/nowhere", &[], None).await;
    assert_error((st, body), 401, "unauthorized");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"))
    );
    assert_eq!(
        h.raw(Method::GET, "/apps", &[("Authorization", &basic)], None)
            .await
            .0,
        StatusCode::OK
    );

    // Accept.
    let (st, _, body) = h
        .raw(
            Method::GET,
            "/apps",
            &[("Authorization", auth), ("Accept", "text/html")],
            None,
        )
        .await;
    assert_error((st, body), 406, "not_acceptable");
    let (st, _, body) = h
        .raw(
            Method::GET,
            "/apps",
            &[("Accept", "application/vnd.heroku+json; version=2")],
            None,
        )
        .await;
    assert_error((st, body), 406, "not_acceptable");
    for ok in [
        "application/vnd.heroku+json; version=3.sdk",
        "application/json",
        "*/*",
    ] {
        assert_eq!(
            h.raw(
                Method::GET,
                "/apps",
                &[("Authorization", auth), ("Accept", ok)],
                None
            )
            .await
            .0,
            StatusCode::OK,
            "{ok}"
        );
    }

    // Request ids: a valid client id is echoed, else a fresh uuid.
    let rid = "abcdefghij0123456789-req";
    let (_, hd, _) = h
        .raw(
            Method::GET,
            "/account",
            &[("Authorization", auth), ("X-Request-Id", rid)],
            None,
        )
        .await;
    assert_eq!(hd["request-id"], rid);
    let (_, hd, _) = h
        .raw(
            Method::GET,
            "/account",
            &[("Authorization", auth), ("Request-Id", "short")],
            None,
        )
        .await;
    assert!(hd["request-id"].to_str().unwrap().parse::<Uuid>().is_ok());
    let (_, hd, _) = h
        .raw(Method::GET, "/account", &[("X-Request-Id", rid)], None)
        .await;
    assert_eq!(hd["request-id"], rid, "errors carry the request id too");

    // Malformed requests: all in Heroku's error shape.
    let json_ct = ("Content-Type", "application/json");
    // (method, path, headers, body, status, error id)
    type Case<'a> = (
        Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/apps",
            vec![json_ct],
            Some("{\"name\": "),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/apps",
            vec![json_ct],
            Some("[1]"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/apps",
            vec![("Content-Type", "text/plain")],
            Some("{\"name\":\"x-y-z\"}"),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/apps",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            Some("name=abc"),
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            "/apps/anything",
            vec![json_ct],
            None,
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            "/apps/anything/config-vars",
            vec![],
            None,
            400,
            "bad_request",
        ),
        (
            Method::PATCH,
            "/apps/anything/config-vars",
            vec![json_ct],
            Some("[\"A\"]"),
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/no/such/route",
            vec![],
            None,
            404,
            "not_found",
        ),
        (Method::GET, "/apps/a/b/c/d", vec![], None, 404, "not_found"),
        (
            Method::PUT,
            "/apps",
            vec![],
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/account",
            vec![],
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, mut headers, body, status, id) in cases {
        headers.push(("Authorization", auth));
        let (st, hd, got) = h.raw(method.clone(), path, &headers, body).await;
        assert_eq!(
            hd.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        assert_error((st, got), status, id);
    }

    // A bad Range header.
    for bad in ["size ..", "name ..; max=zero", "name ..; order=up"] {
        let (st, _, body) = h.ranged("/apps", bad).await;
        assert_error((st, body), 400, "bad_request");
    }
    // Nothing above created an app.
    assert_eq!(h.call(Method::GET, "/apps", None).await.1, json!([]));
    h.raft.shutdown().await;
}

#[tokio::test]
async fn apps_page_by_name_and_id() {
    let h = Harness::start().await;
    for n in ["app-c", "app-a", "app-e", "app-b", "app-d"] {
        assert_eq!(
            h.call(Method::POST, "/apps", Some(json!({"name": n})))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let mut names = Vec::new();
    let mut range = "name ..; max=2".to_string();
    let mut pages = 0;
    loop {
        let (st, hd, body) = h.ranged("/apps", &range).await;
        pages += 1;
        assert_eq!(hd["accept-ranges"], "name, id");
        names.extend(
            body.as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
        match st {
            StatusCode::PARTIAL_CONTENT => range = hd["next-range"].to_str().unwrap().to_string(),
            StatusCode::OK => break,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["app-a", "app-b", "app-c", "app-d", "app-e"]);
    let (_, _, body) = h.ranged("/apps", "name ..; order=desc, max=1").await;
    assert_eq!(body[0]["name"], "app-e");
    let (st, _, body) = h.ranged("/apps", "id ..; max=1000").await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    h.raft.shutdown().await;
}

//! The agent and `hctl` agree on the wire by construction: each resource is built from a
//! domain value with the agent's own conversion function, serialized as the API answers,
//! and decoded as `hctl` decodes it (JSON text → `serde_json::Value` → the `haven-api`
//! type). The JSON keys are pinned, so renaming a wire field (or dropping one) fails here
//! before it reaches a client; the decoded value must equal what the agent sent, so a
//! serde attribute that only works one way fails too.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use haven_api as w;
use haven_raft::model::{self, State as Model};
use haven_raft::RaftStatus;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

const NODE: u64 = 7;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

/// Serializes `wire` as a handler does, decodes it as `hctl` does, and checks the keys.
fn round_trip<T>(wire: &T, keys: &[&str]) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let name = std::any::type_name::<T>();
    let body = serde_json::to_vec(wire).unwrap();
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let mut got: Vec<&str> = raw
        .as_object()
        .unwrap_or_else(|| panic!("{name} is not a JSON object"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{name}: the wire's field names changed");
    let back = T::deserialize(&raw).unwrap_or_else(|e| panic!("{name}: hctl cannot decode: {e}"));
    assert_eq!(&back, wire, "{name}: decoding changed the value");
    back
}

fn user() -> model::User {
    model::User {
        id: Uuid::from_u128(1),
        email: "admin@haven.local".into(),
        created_at: at(0),
        admin: true,
        password_hash: None,
    }
}

fn node() -> model::Node {
    model::Node {
        id: NODE,
        name: "n1".into(),
        peer_addr: "127.0.0.1:7000".into(),
        api_url: "http://127.0.0.1:5000".into(),
        router_url: "http://127.0.0.1:8080".into(),
        memory_mb: 1024,
        cpus: 2,
        labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        status: model::NodeStatus::Up,
        draining: false,
        joined_at: at(0),
    }
}

fn app() -> model::App {
    let formation = model::Formation {
        id: Uuid::from_u128(50),
        process_type: "web".into(),
        quantity: 2,
        size: "standard-1x".into(),
        command: "python app.py".into(),
        created_at: at(1),
        updated_at: at(2),
    };
    model::App {
        id: Uuid::from_u128(42),
        name: "my-app".into(),
        stack: "heroku-24".into(),
        buildpacks: vec!["heroku/python".into()],
        maintenance: false,
        domains: vec![model::Domain {
            id: Uuid::from_u128(60),
            hostname: "www.example.com".into(),
            created_at: at(3),
        }],
        drains: vec![model::Drain {
            id: Uuid::from_u128(70),
            url: "syslog://logs.example.com:514".into(),
            token: format!("d.{}", Uuid::from_u128(71)),
            created_at: at(4),
        }],
        created_at: at(0),
        updated_at: at(5),
        released_at: Some(at(5)),
        config: BTreeMap::from([("A".to_string(), "1".to_string())]).into(),
        releases: vec![model::Release {
            id: Uuid::from_u128(80),
            version: 1,
            slug: Some(Uuid::from_u128(81)),
            config: Default::default(),
            description: "Initial release".into(),
            status: model::ReleaseStatus::Succeeded,
            created_at: at(5),
            user: user().email,
        }],
        formation: BTreeMap::from([("web".to_string(), formation)]),
        owner: user().id,
        collaborators: vec![model::Collaborator {
            id: Uuid::from_u128(90),
            user: Uuid::from_u128(2),
            created_at: at(6),
        }],
    }
}

/// The app's collaborator.
fn dev() -> model::User {
    model::User {
        id: Uuid::from_u128(2),
        email: "dev@example.com".into(),
        created_at: at(1),
        admin: false,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
    }
}

fn state() -> Model {
    let mut s = Model {
        cluster: Some(model::Cluster {
            id: Uuid::from_u128(9),
            name: "haven".into(),
            app_domain: "haven.test".into(),
            created_at: at(0),
            join_secret_sha256: String::new(),
            ca_fingerprint: String::new(),
        }),
        ..Model::default()
    };
    s.nodes.insert(NODE, node());
    s.users.insert(user().id, user());
    s.users.insert(dev().id, dev());
    let a = app();
    s.apps.insert(a.id, a);
    s
}

#[test]
fn account() {
    let wire = round_trip(
        &super::account::to_wire(&user()),
        &[
            "id",
            "email",
            "name",
            "allow_tracking",
            "beta",
            "verified",
            "federated",
            "two_factor_authentication",
            "last_login",
            "suspended_at",
            "delinquent_at",
            "sms_number",
            "country_of_residence",
            "default_organization",
            "default_team",
            "identity_provider",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(wire.email, "admin@haven.local");
}

#[test]
fn app_resource() {
    let wire = round_trip(
        &super::apps::to_wire(&state(), NODE, &app()),
        &[
            "id",
            "name",
            "git_url",
            "web_url",
            "maintenance",
            "stack",
            "build_stack",
            "generation",
            "owner",
            "region",
            "organization",
            "team",
            "space",
            "internal_routing",
            "acm",
            "buildpack_provided_description",
            "repo_size",
            "slug_size",
            "archived_at",
            "released_at",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(wire.name, "my-app");
    assert_eq!(wire.web_url, "http://my-app.haven.test:8080/");
    assert_eq!(wire.git_url, "http://127.0.0.1:5000/my-app.git");
    assert_eq!(wire.owner.email, "admin@haven.local");
    assert_eq!(wire.stack.name, "heroku-24");
}

#[test]
fn release() {
    let a = app();
    let r = &a.releases[0];
    let wire = round_trip(
        &super::releases::to_wire(&state(), &a, r, Some(r.id)),
        &[
            "id",
            "version",
            "status",
            "current",
            "description",
            "app",
            "slug",
            "user",
            "addon_plan_names",
            "artifacts",
            "output_stream_url",
            "eligible_for_rollback",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!((wire.version, wire.current), (1, true));
    assert_eq!(wire.status, "succeeded");
    assert_eq!(wire.user.email, "admin@haven.local");
}

#[test]
fn formation() {
    let a = app();
    let wire = round_trip(
        &super::formation::to_wire(&a, &a.formation["web"]),
        &[
            "id",
            "app",
            "type",
            "quantity",
            "size",
            "dyno_size",
            "command",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!((wire.process_type.as_str(), wire.quantity), ("web", 2));
}

#[test]
fn dyno() {
    let a = app();
    let mut d = model::Dyno::placed(
        Uuid::from_u128(90),
        a.id,
        "web",
        1,
        1,
        "standard-1x",
        NODE,
        "python app.py".into(),
        at(6),
    );
    d.attach = true;
    d.exit_code = Some(3);
    let wire = round_trip(
        &super::dynos::to_wire(&state(), &a, &d, "http://127.0.0.1:5000"),
        &[
            "id",
            "name",
            "type",
            "state",
            "command",
            "size",
            "attach_url",
            "app",
            "release",
            "created_at",
            "updated_at",
            "node",
            "restarts",
            "state_changed_at",
            "exit_code",
            "port",
        ],
    );
    assert_eq!(
        (wire.name.as_str(), wire.state.as_str()),
        ("web.1", "starting")
    );
    assert_eq!(wire.node.map(|n| n.name).as_deref(), Some("n1"));
    assert_eq!(wire.release.version, 1);
    assert_eq!(wire.exit_code, Some(3));
    assert!(wire.attach_url.is_some());
}

#[test]
fn unplaced_dyno_and_accepted() {
    round_trip(
        &w::UnplacedDyno {
            name: "web.3".into(),
            process_type: "web".into(),
            reason: "no node has 512 MB free".into(),
        },
        &["name", "type", "reason"],
    );
    round_trip(&w::Accepted {}, &[]);
}

#[test]
fn build_and_source() {
    let b = model::Build {
        id: Uuid::from_u128(100),
        app: app().id,
        status: model::BuildStatus::Succeeded,
        node: NODE,
        source_url: "http://127.0.0.1:5000/sources/x".into(),
        source_checksum: Some("SHA256:ab".into()),
        source_version: Some("0123456789".into()),
        buildpacks: vec!["heroku/python".into()],
        stack: "heroku-24".into(),
        user_email: user().email,
        user_id: user().id,
        output_stream_url: "http://127.0.0.1:5000/apps/my-app/builds/x/output".into(),
        slug: Some(Uuid::from_u128(81)),
        release: Some(Uuid::from_u128(80)),
        failure: None,
        created_at: at(7),
        updated_at: at(8),
    };
    let wire = round_trip(
        &super::builds::to_wire(&state(), &b),
        &[
            "id",
            "app",
            "buildpacks",
            "output_stream_url",
            "source_blob",
            "release",
            "slug",
            "stack",
            "status",
            "user",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(wire.source_blob.version.as_deref(), Some("0123456789"));
    assert_eq!(
        wire.release.map(|r| r.id),
        Some(Uuid::from_u128(80).to_string())
    );
    let blob = serde_json::to_value(&wire.source_blob).unwrap();
    let keys: Vec<&String> = blob.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["checksum", "url", "version", "version_description"]);

    round_trip(
        &w::Source {
            source_blob: w::SourceUrls {
                get_url: "http://n/sources/1".into(),
                put_url: "http://n/sources/1".into(),
            },
        },
        &["source_blob"],
    );
}

#[test]
fn buildpack_installations() {
    let list = super::builds::installations(&app());
    let wire = round_trip(&list[0], &["ordinal", "buildpack"]);
    assert_eq!(wire.buildpack.url, "heroku/python");
}

#[test]
fn domains() {
    let s = state();
    let a = app();
    let keys = [
        "id",
        "hostname",
        "kind",
        "cname",
        "status",
        "acm_status",
        "acm_status_reason",
        "sni_endpoint",
        "app",
        "created_at",
        "updated_at",
    ];
    let default = round_trip(&super::domains::default_wire(&s, &a), &keys);
    assert_eq!(default.kind, "heroku");
    let custom = round_trip(&super::domains::to_wire(&s, &a, &a.domains[0]), &keys);
    assert_eq!(
        (custom.kind.as_str(), custom.hostname.as_str()),
        ("custom", "www.example.com")
    );
    assert_eq!(custom.cname, Some(default.hostname));
}

#[test]
fn log_drain_and_session() {
    let a = app();
    let wire = round_trip(
        &super::log_drains::to_wire(&a, &a.drains[0]),
        &[
            "id",
            "url",
            "token",
            "addon",
            "app",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(wire.url, "syslog://logs.example.com:514");
    round_trip(
        &w::LogSession {
            id: "1".into(),
            logplex_url: "http://n/log-sessions/1".into(),
            created_at: "2023-11-14T22:13:20Z".into(),
            updated_at: "2023-11-14T22:13:20Z".into(),
        },
        &["id", "logplex_url", "created_at", "updated_at"],
    );
}

#[test]
fn config_vars() {
    let a = app();
    let body = serde_json::to_vec(&a.config).unwrap();
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let back = w::ConfigVars::deserialize(&raw).unwrap();
    assert_eq!(back, *a.config);
}

#[test]
fn cluster_status_and_nodes() {
    let s = state();
    let st = RaftStatus {
        node_id: NODE,
        leader: Some(NODE),
        term: 3,
        voters: vec![NODE],
        learners: vec![],
        applied_index: Some(10),
        last_log_index: Some(11),
        snapshot_index: None,
        purged_index: None,
        members: vec![],
    };
    let status = round_trip(
        &super::cluster::status_to_wire(&s, &st),
        &[
            "cluster_id",
            "cluster_name",
            "app_domain",
            "node_id",
            "node_name",
            "leader",
            "leader_name",
            "term",
            "voters",
            "learners",
            "applied_index",
            "last_log_index",
            "snapshot_index",
            "purged_index",
            "version",
            "started_at",
            "protocol_min",
            "protocol_max",
            "format",
        ],
    );
    assert_eq!(status.leader_name.as_deref(), Some("n1"));
    assert_eq!(status.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(status.format, Some(haven_raft::version::FORMAT));
    let n = round_trip(
        &super::cluster::node_to_wire(&s, &node(), &st),
        &[
            "id",
            "name",
            "api_url",
            "peer_addr",
            "router_url",
            "role",
            "status",
            "leader",
            "memory_mb",
            "used_memory_mb",
            "dynos",
            "draining",
            "cpus",
            "labels",
            "joined_at",
        ],
    );
    assert!(n.leader);
    assert_eq!(n.name, "n1");
}

#[path = "wire_tests_addons.rs"]
mod addons;
#[test]
fn collaborators() {
    let s = state();
    let a = app();
    let list = super::collaborators::to_wire(&s, &a);
    assert_eq!(list.len(), 2);
    let keys = [
        "id",
        "app",
        "user",
        "role",
        "permissions",
        "created_at",
        "updated_at",
    ];
    let owner = round_trip(&list[0], &keys);
    assert_eq!(
        (owner.user.email.as_str(), owner.role.as_deref()),
        ("admin@haven.local", Some("owner"))
    );
    let dev = round_trip(&list[1], &keys);
    assert_eq!(dev.id, Uuid::from_u128(90).to_string());
    assert_eq!(
        (dev.user.email.as_str(), dev.role.as_deref()),
        ("dev@example.com", Some("collaborator"))
    );
    round_trip(&dev.user, &["id", "email", "federated"]);
}

#[test]
fn authorizations() {
    let (t, secret) = super::authorizations::new_token(
        Uuid::from_u128(2),
        "dev@example.com",
        "ci".into(),
        Some(60),
        at(0),
    )
    .unwrap();
    let keys = [
        "id",
        "description",
        "scope",
        "access_token",
        "client",
        "grant",
        "refresh_token",
        "session",
        "user",
        "expires_at",
        "created_at",
        "updated_at",
    ];
    let made = round_trip(
        &super::authorizations::to_wire(&t, Some(&secret), at(0)),
        &keys,
    );
    let access = made.access_token.clone().unwrap();
    assert_eq!(
        (access.token, access.expires_in),
        (secret.clone(), Some(60))
    );
    round_trip(
        made.access_token.as_ref().unwrap(),
        &["id", "token", "expires_in"],
    );
    let listed = round_trip(&super::authorizations::to_wire(&t, None, at(10)), &keys);
    assert!(listed.access_token.is_none());
    assert_eq!(listed.user.email, "dev@example.com");
}

#[test]
fn cluster_users() {
    let s = state();
    let keys = ["id", "email", "admin", "password", "apps", "created_at"];
    let admin = round_trip(&super::users::to_wire(&s, &user()), &keys);
    assert_eq!((admin.admin, admin.password, admin.apps), (true, false, 1));
    let dev = round_trip(&super::users::to_wire(&s, &dev()), &keys);
    assert_eq!((dev.admin, dev.password, dev.apps), (false, true, 0));
    let json = serde_json::to_string(&dev).unwrap();
    assert!(
        !json.contains("argon2"),
        "a password hash is on the wire: {json}"
    );
    let created = w::ClusterUserCreated {
        user: dev,
        token: Some("hvn_x".into()),
        password: None,
    };
    round_trip(&created, &["user", "token", "password"]);
}

//! Apps: `POST /apps`, `GET /apps`, `GET/PATCH/DELETE /apps/{app}`, and the app's wire shape.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use haven_api as w;
use haven_raft::catalog;
use haven_raft::command::Command;
use haven_raft::model::{self, validate_app_name, NodeId, State as Model};
use rand::seq::SliceRandom;
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::access::{self, Action};
use super::body::{JsonBody, OptionalJsonBody};
use super::paging::{page, range_header, KeyKind, RangeField, SortKey};
use super::{allow, app_id, output_app, read, with_app, write, ApiContext, ApiError, Caller};

/// The stack of an app created without one.
pub const DEFAULT_STACK: &str = catalog::DEFAULT_STACK;

/// Haven has one generation and one region; their ids never change.
const GENERATION_ID: &str = "7d6e3a0e-8a3c-4b0e-9a57-2f1d1c7e0b01";
const REGION_ID: &str = "4f4e2a8c-1b7d-4e7a-9c4b-6a1e0d3b5c02";

/// An API timestamp: RFC 3339 in UTC with `Z`, whole seconds, as Heroku writes them.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stable uuid for a named thing Haven has no id for (a stack, a dyno size, a user known
/// only by email): the same name always gives the same id, on every node.
pub fn name_id(kind: &str, name: &str) -> String {
    let h = Sha256::digest(format!("haven:{kind}:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // Mark it as a name-based (version 5 style) RFC 4122 uuid.
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b).to_string()
}

/// `{id, email}` of the user with `email`.
pub fn user_ref(state: &Model, email: &str) -> w::UserRef {
    let id = state
        .users
        .values()
        .find(|u| u.email == email)
        .map(|u| u.id.to_string())
        .unwrap_or_else(|| name_id("user", email));
    w::UserRef {
        id: id.to_string(),
        email: email.to_string(),
    }
}

/// The port of a URL such as `http://10.0.0.1:8080` or `http://[::1]:80/`; `None` if it
/// names none.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let port = match authority.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':')?,
        None => authority.rsplit_once(':')?.1,
    };
    port.parse().ok()
}

/// `git_url` and `web_url` of app `name` as seen through node `node_id`: its API for git,
/// its router for the web (port 80 left out).
pub fn urls(state: &Model, node_id: NodeId, name: &str) -> (String, String) {
    let node = state.nodes.get(&node_id);
    let api = node.map_or("", |n| n.api_url.trim_end_matches('/'));
    let domain = state
        .cluster
        .as_ref()
        .map_or("localhost", |c| c.app_domain.as_str());
    let port = node.and_then(|n| url_port(&n.router_url)).unwrap_or(80);
    (
        super::scheme::public_url(&format!("{api}/{name}.git")),
        haven_api::web_url(
            name,
            domain,
            port,
            node.is_some_and(|n| n.router_url.starts_with("https://")),
        ),
    )
}

/// `{id, email}` of an app's owner.
fn owner(state: &Model, a: &model::App) -> w::UserRef {
    match state.users.get(&a.owner) {
        Some(u) => w::UserRef {
            id: u.id.to_string(),
            email: u.email.clone(),
        },
        // Owners cannot be removed while they own apps; this is only a fallback.
        None => w::UserRef {
            id: a.owner.to_string(),
            email: String::new(),
        },
    }
}

/// Model → wire for an app.
pub fn to_wire(state: &Model, node_id: NodeId, a: &model::App) -> w::App {
    let (git_url, web_url) = urls(state, node_id, &a.name);
    // `stack`: what the current release runs on; `build_stack`: what the next build uses.
    let build_stack = w::NamedRef {
        id: name_id("stack", &a.stack),
        name: a.stack.clone(),
    };
    let running = a
        .current_release()
        .and_then(|r| state.release_slug(r))
        .map(|sl| sl.stack.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| a.stack.clone());
    let stack = w::NamedRef {
        id: name_id("stack", &running),
        name: running,
    };
    w::App {
        id: a.id.to_string(),
        name: a.name.clone(),
        git_url,
        web_url,
        maintenance: a.maintenance,
        build_stack,
        stack,
        generation: w::Generation {
            id: GENERATION_ID.into(),
            name: "cedar".into(),
        },
        owner: owner(state, a),
        region: w::NamedRef {
            id: REGION_ID.into(),
            name: "haven".into(),
        },
        organization: None,
        team: None,
        space: None,
        internal_routing: None,
        acm: false,
        buildpack_provided_description: None,
        repo_size: None,
        slug_size: None,
        archived_at: None,
        released_at: a.released_at.map(time),
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
    }
}

const ADJECTIVES: &[&str] = &[
    "quiet", "sharp", "calm", "bold", "bright", "gentle", "swift", "misty", "sunny", "lucky",
    "brave", "noble", "shy", "frozen", "golden", "hidden", "polar", "rocky", "secret", "wild",
];
const NOUNS: &[&str] = &[
    "river", "meadow", "harbor", "forest", "island", "canyon", "summit", "valley", "garden",
    "lagoon", "prairie", "glacier", "brook", "cliff", "dawn", "dune", "grove", "peak", "reef",
    "shore",
];

/// A Heroku-like name such as `sharp-river-4821`.
pub fn random_app_name(rng: &mut impl Rng) -> String {
    format!(
        "{}-{}-{:04}",
        ADJECTIVES.choose(rng).copied().unwrap_or("quiet"),
        NOUNS.choose(rng).copied().unwrap_or("river"),
        rng.gen_range(0..10000)
    )
}

/// Apps range on `name` (the default) or `id`.
fn range_fields<'a>() -> [RangeField<&'a model::App>; 2] {
    [
        RangeField {
            name: "name",
            kind: KeyKind::Text,
            key: |a| SortKey::Text(a.name.clone()),
        },
        RangeField {
            name: "id",
            kind: KeyKind::Text,
            key: |a| SortKey::Text(a.id.to_string()),
        },
    ]
}

/// `GET /apps`: the apps the caller owns or collaborates on (every app, for admins),
/// ranged on `name` (the default) or `id`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let range = range_header(&headers)?;
    let node = ctx.node_id;
    let page = read(&ctx, |s| {
        // Page over references, then convert only the page.
        let apps: Vec<&model::App> = s
            .apps
            .values()
            .filter(|a| access::can_view(&caller, a))
            .collect();
        page(apps, range, &range_fields()).map(|p| p.map(|a| to_wire(s, node, a)))
    })
    .await??;
    Ok(page.into_response())
}

/// `GET /users/~/apps` (or the caller's own email or id): as `GET /apps`. Other users'
/// lists are for admins.
pub async fn list_of_user(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let own = user == "~"
        || user.eq_ignore_ascii_case(&caller.email)
        || user == caller.user_id.to_string();
    if own {
        return list(State(ctx), Extension(caller), headers).await;
    }
    allow(&caller, Action::Cluster)?;
    let target = read(&ctx, |s| s.find_user(&user).cloned())
        .await?
        .ok_or_else(|| ApiError::not_found("Couldn't find that user."))?;
    let as_user = Caller {
        email: target.email,
        user_id: target.id,
        admin: false,
    };
    list(State(ctx), Extension(as_user), headers).await
}

/// `POST /apps {"name"?, "stack"?}` → 201.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    OptionalJsonBody(req): OptionalJsonBody<w::AppCreate>,
) -> Result<Response, ApiError> {
    let name = match req.name {
        Some(n) => {
            validate_app_name(&n).map_err(ApiError::invalid)?;
            n
        }
        None => random_app_name(&mut rand::thread_rng()),
    };
    allow(&caller, Action::CreateApp)?;
    let stack = req.stack.unwrap_or_else(|| DEFAULT_STACK.into());
    let cmd = Command::CreateApp {
        id: Uuid::new_v4(),
        name,
        stack,
        release_id: Uuid::new_v4(),
        actor: caller.actor(),
        owner: caller.user_id,
    };
    let app = output_app(write(&ctx, cmd).await?)?;
    let body = ctx.raft.with_state(|s| to_wire(s, ctx.node_id, &app));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /apps/{app}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let node = ctx.node_id;
    let app = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        to_wire(s, node, a)
    })
    .await?;
    Ok(Json(app).into_response())
}

/// `PATCH /apps/{app} {"name"?, "maintenance"?}`. A body that changes nothing answers the
/// app as it is. Renaming is for the owner and admins; maintenance mode for collaborators
/// too.
pub async fn update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<w::AppUpdate>,
) -> Result<Response, ApiError> {
    if let Some(stack) = &req.build_stack {
        let id = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
        let cmd = Command::SetAppStack {
            app: id,
            stack: stack.clone(),
            actor: caller.actor(),
        };
        write(&ctx, cmd).await?;
        if req.name.is_none() && req.maintenance.is_none() {
            return info(State(ctx), Extension(caller), Path(id.to_string())).await;
        }
    }
    if req.name.is_none() && req.maintenance.is_none() {
        return info(State(ctx), Extension(caller), Path(key)).await;
    }
    if let Some(n) = &req.name {
        validate_app_name(n).map_err(ApiError::invalid)?;
    }
    let action = if req.name.is_some() {
        Action::AdministerApp
    } else {
        Action::ChangeApp
    };
    let id = app_id(&ctx, &caller, action, &key).await?;
    let cmd = Command::UpdateApp {
        app: id,
        name: req.name,
        maintenance: req.maintenance,
        actor: caller.actor(),
    };
    let app = output_app(write(&ctx, cmd).await?)?;
    Ok(Json(ctx.raft.with_state(|s| to_wire(s, ctx.node_id, &app))).into_response())
}

/// `DELETE /apps/{app}` → 200 with the deleted app: the owner's or an admin's call.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let id = app_id(&ctx, &caller, Action::AdministerApp, &key).await?;
    // Its add-ons are detached everywhere (releases in apps sharing them) and deprovisioned.
    super::addons::destroy_owned(&ctx, &caller, id).await?;
    let app = output_app(write(&ctx, Command::DeleteApp { app: id }).await?)?;
    Ok(Json(ctx.raft.with_state(|s| to_wire(s, ctx.node_id, &app))).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use rand::SeedableRng;

    pub(crate) fn sample_state(router_url: &str) -> Model {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut s = Model {
            cluster: Some(model::Cluster {
                id: Uuid::nil(),
                name: "haven".into(),
                app_domain: "haven.test".into(),
                created_at: at,
                join_secret_sha256: String::new(),
                ca_fingerprint: String::new(),
            }),
            ..Model::default()
        };
        s.nodes.insert(
            7,
            model::Node {
                id: 7,
                name: "n1".into(),
                peer_addr: "127.0.0.1:7000".into(),
                api_url: "http://127.0.0.1:5000".into(),
                router_url: router_url.into(),
                memory_mb: 1024,
                cpus: 2,
                labels: BTreeMap::new(),
                status: model::NodeStatus::Up,
                draining: false,
                joined_at: at,
            },
        );
        let admin = model::User {
            id: Uuid::from_u128(1),
            email: "admin@haven.local".into(),
            created_at: at,
            admin: true,
            password_hash: None,
        };
        s.users.insert(admin.id, admin);
        s
    }

    fn sample_app() -> model::App {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        model::App {
            id: Uuid::from_u128(42),
            name: "my-app".into(),
            stack: "heroku-24".into(),
            buildpacks: Vec::new(),
            maintenance: true,
            domains: Vec::new(),
            drains: Vec::new(),
            created_at: at,
            updated_at: at + chrono::Duration::seconds(5),
            released_at: Some(at),
            config: Default::default(),
            releases: Vec::new(),
            formation: BTreeMap::new(),
            owner: Uuid::from_u128(1),
            collaborators: Vec::new(),
        }
    }

    #[test]
    fn app_to_wire() {
        let s = sample_state("http://127.0.0.1:8080");
        let a = to_wire(&s, 7, &sample_app());
        assert_eq!(a.id, Uuid::from_u128(42).to_string());
        assert_eq!(a.name, "my-app");
        assert_eq!(a.git_url, "http://127.0.0.1:5000/my-app.git");
        assert_eq!(a.web_url, "http://my-app.haven.test:8080/");
        assert!(a.maintenance);
        assert_eq!(a.stack.name, "heroku-24");
        assert_eq!(a.stack, a.build_stack);
        assert_eq!(a.stack.id, name_id("stack", "heroku-24"));
        assert_eq!(a.generation.name, "cedar");
        assert_eq!(a.region.name, "haven");
        assert_eq!(a.owner.email, "admin@haven.local");
        assert_eq!(a.owner.id, Uuid::from_u128(1).to_string());
        assert_eq!(a.created_at, "2023-11-14T22:13:20Z");
        assert_eq!(a.updated_at, "2023-11-14T22:13:25Z");
        assert_eq!(a.released_at.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert!(!a.acm);
        let json = serde_json::to_value(&a).unwrap();
        for null in ["organization", "team", "space"] {
            assert!(json[null].is_null(), "{null}");
        }
    }

    #[test]
    fn web_url_leaves_out_port_80() {
        let cases = [
            ("http://127.0.0.1:80", "http://my-app.haven.test/"),
            ("http://127.0.0.1", "http://my-app.haven.test/"),
            ("http://[::1]:8081/", "http://my-app.haven.test:8081/"),
            ("http://10.0.0.2:3000", "http://my-app.haven.test:3000/"),
        ];
        for (router, want) in cases {
            let s = sample_state(router);
            assert_eq!(urls(&s, 7, "my-app").1, want, "{router}");
        }
        // A node not (yet) in the model still gets usable URLs.
        let s = sample_state("http://127.0.0.1:8080");
        assert_eq!(urls(&s, 99, "x-y").1, "http://x-y.haven.test/");
    }

    #[test]
    fn name_ids_are_stable_uuids() {
        let a = name_id("stack", "heroku-24");
        assert_eq!(a, name_id("stack", "heroku-24"));
        assert_ne!(a, name_id("stack", "heroku-22"));
        assert_ne!(a, name_id("size", "heroku-24"));
        let u: Uuid = a.parse().unwrap();
        assert_eq!(u.get_version_num(), 5);
    }

    #[test]
    fn random_names_are_valid_and_varied() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let names: std::collections::BTreeSet<String> =
            (0..500).map(|_| random_app_name(&mut rng)).collect();
        for n in &names {
            assert!(validate_app_name(n).is_ok(), "{n}");
        }
        assert!(names.len() > 450, "names repeat too often: {}", names.len());
        for a in ADJECTIVES.iter().chain(NOUNS) {
            assert!(a.bytes().all(|b| b.is_ascii_lowercase()), "{a}");
        }
        // The longest possible name is still short enough.
        let longest = ADJECTIVES.iter().map(|a| a.len()).max().unwrap()
            + NOUNS.iter().map(|n| n.len()).max().unwrap()
            + 6;
        assert!(longest <= 30);
    }
}

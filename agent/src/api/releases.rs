//! Releases: `GET /apps/{app}/releases[/{id-or-version}]`, and `POST /apps/{app}/releases
//! {"release": ID-OR-VERSION}` which rolls back.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api as w;
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model::{self, ReleaseStatus, State as Model};
use serde_json::Value;
use uuid::Uuid;

use super::apps::{time, user_ref};
use super::body::JsonBody;
use super::paging::{page, range_header, KeyKind, RangeField, SortKey};
use super::{with_app, write, Action, ApiContext, ApiError, Caller};
use haven_api::{RangeSpec, DEFAULT_PAGE};

/// Model → wire for release `r` of app `a`. `current` is the id of the app's current
/// release (the newest that succeeded), computed once per answer.
pub fn to_wire(
    state: &Model,
    a: &model::App,
    r: &model::Release,
    current: Option<Uuid>,
) -> w::Release {
    let is_current = current == Some(r.id);
    w::Release {
        id: r.id.to_string(),
        version: r.version,
        status: r.status.as_str().into(),
        current: is_current,
        description: r.description.clone(),
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        slug: r.slug.map(|s| w::IdRef { id: s.to_string() }),
        user: user_ref(state, &r.user),
        addon_plan_names: Vec::new(),
        artifacts: Vec::new(),
        output_stream_url: None,
        // As on Heroku, the current release counts too (the Heroku CLI's `rollback` takes
        // the second eligible one of the newest first).
        eligible_for_rollback: r.status == ReleaseStatus::Succeeded && r.slug.is_some(),
        created_at: time(r.created_at),
        updated_at: time(r.created_at),
    }
}

/// Releases range on `version` (the default) or `id`.
fn range_fields<'a>() -> [RangeField<&'a model::Release>; 2] {
    [
        RangeField {
            name: "version",
            kind: KeyKind::Num,
            key: |r| SortKey::Num(r.version),
        },
        RangeField {
            name: "id",
            kind: KeyKind::Text,
            key: |r| SortKey::Text(r.id.to_string()),
        },
    ]
}

/// The versions a `Range` on `version` can answer from: `(lo, hi, descending, max + 1)`,
/// so that only those are read from disk. `None`: the whole list is needed (a range on
/// another field). A header `page` will refuse gives an empty window: `page` answers
/// the 400 from it.
pub fn version_window(range: Option<&str>) -> Option<(u64, u64, bool, usize)> {
    let spec = match range.map(str::trim).filter(|r| !r.is_empty()) {
        None => return Some((1, u64::MAX, false, DEFAULT_PAGE + 1)),
        Some(header) => match RangeSpec::parse(header) {
            Ok(spec) => spec,
            Err(_) => return Some((1, 0, false, 0)),
        },
    };
    if spec.field != "version" {
        return None;
    }
    let num = |s: &str| {
        s.trim()
            .strip_prefix('v')
            .unwrap_or(s.trim())
            .parse::<u64>()
    };
    let (start, exclusive) = match spec.start.as_deref().map(str::trim) {
        None => (None, false),
        Some(s) => match s.strip_prefix(']') {
            Some(rest) => (Some(rest.trim()), true),
            None => (Some(s), false),
        },
    };
    let start = start.filter(|s| !s.is_empty()).map(num);
    let start = match start.transpose() {
        Ok(s) => s,
        Err(_) => return Some((1, 0, false, 0)),
    };
    let end = match spec.end.as_deref().map(num).transpose() {
        Ok(e) => e,
        Err(_) => return Some((1, 0, false, 0)),
    };
    let limit = spec.max.saturating_add(1);
    Some(if spec.descending {
        let hi = match start {
            None => u64::MAX,
            Some(s) if exclusive => s.saturating_sub(1),
            Some(s) => s,
        };
        (end.unwrap_or(1).max(1), hi, true, limit)
    } else {
        let lo = match start {
            None => 1,
            Some(s) if exclusive => s.saturating_add(1),
            Some(s) => s,
        };
        (lo.max(1), end.unwrap_or(u64::MAX), false, limit)
    })
}

/// `GET /apps/{app}/releases`: oldest first unless `order=desc`. Releases ranged on
/// `version` (the default) are read from memory and disk window by window.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = range_header(&headers)?;
    let history = ctx.raft.history();
    let page = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let current = a.current_release().map(|r| r.id);
        let releases = match version_window(range) {
            Some((lo, hi, desc, limit)) => history.window(a, lo, hi, desc, limit),
            None => history.all(a),
        }
        .map_err(|e| ApiError::internal(format!("read the release history: {e:#}")))?;
        page(releases.iter().collect(), range, &range_fields())
            .map(|p| p.map(|r| to_wire(s, a, r, current)))
    })
    .await??;
    Ok(page.into_response())
}

/// `GET /apps/{app}/releases/{id-or-version}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, release)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let history = ctx.raft.history();
    let r = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let current = a.current_release().map(|r| r.id);
        history
            .find(a, &release)
            .map(|r| r.map(|r| to_wire(s, a, &r, current)))
    })
    .await?
    .map_err(|e| ApiError::internal(format!("read the release history: {e:#}")))?
    .ok_or_else(ApiError::release_not_found)?;
    Ok(Json(r).into_response())
}

/// What a `POST /apps/{app}/releases` body asks for: the release to roll back to, as the
/// text `find_release` takes (id, `5` or `v5`).
pub fn rollback_target(body: &Value) -> Result<String, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object such as {\"release\": \"v3\"}",
        ));
    };
    match obj.get("release") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::invalid(
            "release must be the id or version of the release to roll back to",
        )),
        None if obj.contains_key("slug") => Err(ApiError::invalid(
            "creating a release from a slug comes with builds; deploy with git push, or roll back with {\"release\": ID-OR-VERSION}",
        )),
        None => Err(ApiError::invalid(
            "missing release: send {\"release\": ID-OR-VERSION} to roll back to that release",
        )),
    }
}

/// `POST /apps/{app}/releases {"release": ID-OR-VERSION}` → 201 with the new release, which
/// carries the slug and config vars of the target. The target is read here (from memory
/// or disk) and carried in the command, so every node makes the same release.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let target = rollback_target(&body)?;
    // The target may be a release just made through another node: read past the barrier.
    let history = ctx.raft.history();
    let (app, found) = with_app(&ctx, &caller, Action::ChangeApp, &key, |_, a| {
        (a.id, history.find(a, &target))
    })
    .await?;
    let found = found
        .map_err(|e| ApiError::internal(format!("read the release history: {e:#}")))?
        .ok_or_else(ApiError::release_not_found)?;
    let to = found.version;
    let cmd = Command::RollbackTo {
        app,
        target: Box::new(found),
        release_id: Uuid::new_v4(),
        actor: caller.actor(),
    };
    let CommandOutput::Release { app, version } = write(&ctx, cmd).await? else {
        return Err(ApiError::internal("the rollback returned no release"));
    };
    ctx.logs
        .api(app.id, &format!("Rollback to v{to} by {}", caller.email));
    ctx.logs.api(
        app.id,
        &format!("Release v{version} created by {}", caller.email),
    );
    let r = app
        .releases
        .iter()
        .find(|r| r.version == version)
        .ok_or_else(|| ApiError::internal("the rollback's answer lacks the new release"))?;
    let current = app.current_release().map(|r| r.id);
    let body = ctx.raft.with_state(|s| to_wire(s, &app, r, current));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;
    use serde_json::json;

    use super::*;

    fn release(version: u64, status: ReleaseStatus) -> model::Release {
        model::Release {
            id: Uuid::from_u128(u128::from(version)),
            version,
            slug: (version > 1).then(|| Uuid::from_u128(99)),
            config: Default::default(),
            description: format!("v{version}"),
            status,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            user: "admin@haven.local".into(),
        }
    }

    #[test]
    fn release_to_wire_marks_current_and_rollback_eligibility() {
        let mut s = Model::default();
        let admin = model::User {
            id: Uuid::from_u128(1),
            email: "admin@haven.local".into(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            admin: true,
            password_hash: None,
        };
        s.users.insert(admin.id, admin);
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let app = model::App {
            owner: Uuid::nil(),
            collaborators: Vec::new(),
            id: Uuid::from_u128(7),
            name: "my-app".into(),
            stack: "heroku-24".into(),
            buildpacks: vec![],
            maintenance: false,
            domains: vec![],
            drains: Vec::new(),
            created_at: at,
            updated_at: at,
            released_at: Some(at),
            config: Default::default(),
            releases: vec![
                release(1, ReleaseStatus::Succeeded),
                release(2, ReleaseStatus::Succeeded),
                release(3, ReleaseStatus::Failed),
            ],
            formation: BTreeMap::new(),
        };
        let current = app.current_release().map(|r| r.id);
        let wire: Vec<w::Release> = app
            .releases
            .iter()
            .map(|r| to_wire(&s, &app, r, current))
            .collect();
        let flags: Vec<(u64, bool, bool, &str)> = wire
            .iter()
            .map(|r| {
                (
                    r.version,
                    r.current,
                    r.eligible_for_rollback,
                    r.status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                // v1 has no slug: Heroku refuses to roll back to it.
                (1, false, false, "succeeded"),
                // The current release is eligible too, as on Heroku.
                (2, true, true, "succeeded"),
                (3, false, false, "failed")
            ]
        );
        assert_eq!(wire[0].slug, None);
        assert_eq!(
            wire[1].slug,
            Some(w::IdRef {
                id: Uuid::from_u128(99).to_string()
            })
        );
        assert_eq!(wire[1].user.id, Uuid::from_u128(1).to_string());
        assert_eq!(wire[1].app.name, "my-app");
        assert_eq!(wire[1].created_at, "2023-11-14T22:13:20Z");
    }

    #[test]
    fn version_windows_read_only_what_a_page_shows() {
        let w = |h| version_window(Some(h));
        assert_eq!(version_window(None), Some((1, u64::MAX, false, 201)));
        assert_eq!(w("version ..; max=2"), Some((1, u64::MAX, false, 3)));
        assert_eq!(w("version ]2..; max=2"), Some((3, u64::MAX, false, 3)));
        assert_eq!(w("version v5..9"), Some((5, 9, false, 201)));
        assert_eq!(
            w("version ..; order=desc, max=10"),
            Some((1, u64::MAX, true, 11))
        );
        assert_eq!(w("version ]50..10; order=desc"), Some((10, 49, true, 201)));
        assert_eq!(w("version ]..; max=5"), Some((1, u64::MAX, false, 6)));
        assert_eq!(w("id ..; max=5"), None);
        // What `page` refuses reads nothing.
        assert_eq!(w("version x.."), Some((1, 0, false, 0)));
        assert_eq!(w("version ..; max=0"), Some((1, 0, false, 0)));
    }

    #[test]
    fn rollback_bodies() {
        let cases = [
            (json!({"release": "v3"}), Ok("v3")),
            (json!({"release": " 3 "}), Ok("3")),
            (json!({"release": 3}), Ok("3")),
            (
                json!({"release": "0b1c9a7e-0000-4000-8000-000000000000"}),
                Ok("0b1c9a7e-0000-4000-8000-000000000000"),
            ),
            (json!({"release": true}), Err(422)),
            (json!({"release": ""}), Err(422)),
            (json!({"slug": "abc"}), Err(422)),
            (json!({}), Err(422)),
            (json!([1]), Err(400)),
        ];
        for (body, want) in cases {
            let got = rollback_target(&body).map_err(|e| e.status.as_u16());
            assert_eq!(got, want.map(str::to_string), "{body}");
        }
        let slug = rollback_target(&json!({"slug": "x"})).unwrap_err();
        assert!(slug.message.contains("builds"), "{}", slug.message);
    }
}

//! Formation: `GET /apps/{app}/formation[/{type-or-id}]`, `PATCH /apps/{app}/formation
//! {"updates": [...]}`, `PATCH /apps/{app}/formation/{type}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api as w;
use haven_raft::catalog;
use haven_raft::command::{Command, CommandOutput, FormationChange, QuantityChange};
use haven_raft::model::{self, normalize_size, validate_process_type};
use uuid::Uuid;

use super::apps::{name_id, time};
use super::body::JsonBody;
use super::{app_id, output_app, with_app, write, Action, ApiContext, ApiError, Caller};

/// Heroku's name of a size, from the catalog: `standard-1x` → `Standard-1X`, `eco` →
/// `Eco`. A size the catalog does not offer (none is stored: sizes are normalized) is shown
/// as it is.
pub fn size_display(size: &str) -> &str {
    catalog::dyno_size(size).map_or(size, |s| s.display_name)
}

/// Model → wire for one process type's formation of app `a`.
pub fn to_wire(a: &model::App, f: &model::Formation) -> w::Formation {
    let size = size_display(&f.size).to_string();
    w::Formation {
        id: f.id.to_string(),
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        process_type: f.process_type.clone(),
        quantity: f.quantity,
        dyno_size: w::NamedRef {
            id: name_id("size", &f.size),
            name: size.clone(),
        },
        size,
        command: f.command.clone(),
        created_at: time(f.created_at),
        updated_at: time(f.updated_at),
    }
}

/// A quantity as sent: a number, or text holding a number or `+N` / `-N`.
pub fn quantity_change(q: &w::Quantity) -> Result<QuantityChange, ApiError> {
    match q {
        w::Quantity::Number(n) if *n < 0 => Err(ApiError::invalid(format!(
            "quantity {n} is invalid: it cannot be negative; use \"-1\" (a string) to scale down by one"
        ))),
        w::Quantity::Number(n) => u32::try_from(*n)
            .map(QuantityChange::Set)
            .map_err(|_| ApiError::invalid(format!("quantity {n} is too large"))),
        w::Quantity::Text(t) => QuantityChange::parse(t).map_err(ApiError::invalid),
    }
}

/// Checks one update for process type `ptype` and turns it into a command's change, with
/// the id the formation gets if the change creates it.
pub fn formation_change(u: &w::FormationUpdate, ptype: &str) -> Result<FormationChange, ApiError> {
    validate_process_type(ptype).map_err(ApiError::invalid)?;
    if u.quantity.is_none() && u.size.is_none() {
        return Err(ApiError::invalid(format!(
            "the update of {ptype} has neither quantity nor size; send e.g. {{\"quantity\": 2}}"
        )));
    }
    let size = u
        .size
        .as_deref()
        .map(normalize_size)
        .transpose()
        .map_err(ApiError::invalid)?;
    Ok(FormationChange {
        process_type: ptype.to_string(),
        quantity: u.quantity.as_ref().map(quantity_change).transpose()?,
        size,
        new_id: Uuid::new_v4(),
    })
}

/// The changes of a batch update: each needs a type, and there must be at least one.
pub fn batch_changes(req: &w::FormationBatchUpdate) -> Result<Vec<FormationChange>, ApiError> {
    if req.updates.is_empty() {
        return Err(ApiError::invalid(
            "updates is empty; send {\"updates\": [{\"type\": \"web\", \"quantity\": 1}]}",
        ));
    }
    req.updates
        .iter()
        .map(|u| {
            let ptype = u.process_type.as_deref().ok_or_else(|| {
                ApiError::invalid(
                    "every update needs a type, e.g. {\"type\": \"web\", \"quantity\": 1}",
                )
            })?;
            formation_change(u, ptype)
        })
        .collect()
}

/// A formation by process type or id.
fn find<'a>(app: &'a model::App, key: &str) -> Option<&'a model::Formation> {
    app.formation
        .get(key)
        .or_else(|| app.formation.values().find(|f| f.id.to_string() == key))
}

/// `GET /apps/{app}/formation`: every process type of the app.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list: Vec<w::Formation> = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        a.formation.values().map(|f| to_wire(a, f)).collect()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/formation/{type-or-id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, formation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let f = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        find(a, &formation).map(|f| to_wire(a, f))
    })
    .await?
    .ok_or_else(ApiError::formation_not_found)?;
    Ok(Json(f).into_response())
}

/// `PATCH /apps/{app}/formation {"updates": [{"type", "quantity", "size"}]}` → the updated
/// formations.
pub async fn batch_update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<w::FormationBatchUpdate>,
) -> Result<Response, ApiError> {
    let changes = batch_changes(&req)?;
    let id = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let cmd = Command::UpdateFormation {
        app: id,
        changes,
        actor: caller.actor(),
    };
    let CommandOutput::Formation { app, types } = write(&ctx, cmd).await? else {
        return Err(ApiError::internal(
            "the formation update returned no formation",
        ));
    };
    log_scale(&ctx, &app, &types, &caller);
    let mut seen = std::collections::BTreeSet::new();
    let list: Vec<w::Formation> = types
        .iter()
        .filter(|t| seen.insert(t.as_str()))
        .filter_map(|t| app.formation.get(t))
        .map(|f| to_wire(&app, f))
        .collect();
    Ok(Json(list).into_response())
}

/// `PATCH /apps/{app}/formation/{type} {"quantity", "size"}` → the formation. The path
/// names a process type (or the id of an existing formation).
pub async fn update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, formation)): Path<(String, String)>,
    JsonBody(req): JsonBody<w::FormationUpdate>,
) -> Result<Response, ApiError> {
    let id = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    // An id resolves to its type; anything else is the type itself.
    let ptype = ctx
        .raft
        .with_state(|s| {
            s.apps
                .get(&id)
                .and_then(|a| find(a, &formation))
                .map(|f| f.process_type.clone())
        })
        .unwrap_or(formation);
    let change = formation_change(&req, &ptype)?;
    let cmd = Command::UpdateFormation {
        app: id,
        changes: vec![change],
        actor: caller.actor(),
    };
    let app = output_app(write(&ctx, cmd).await?)?;
    log_scale(&ctx, &app, std::slice::from_ref(&ptype), &caller);
    let f = app
        .formation
        .get(&ptype)
        .ok_or_else(|| ApiError::internal("the formation update's answer lacks the formation"))?;
    Ok(Json(to_wire(&app, f)).into_response())
}

/// `app[api]: Scaled to web@2:Standard-1X worker@1:Standard-2X by admin@haven.local`.
fn log_scale(ctx: &ApiContext, app: &model::App, types: &[String], caller: &Caller) {
    let mut seen = std::collections::BTreeSet::new();
    let parts: Vec<String> = types
        .iter()
        .filter(|t| seen.insert(t.as_str()))
        .filter_map(|t| app.formation.get(t))
        .map(|f| {
            format!(
                "{}@{}:{}",
                f.process_type,
                f.quantity,
                size_display(&f.size)
            )
        })
        .collect();
    if !parts.is_empty() {
        ctx.logs.api(
            app.id,
            &format!("Scaled to {} by {}", parts.join(" "), caller.email),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use super::*;

    #[test]
    fn sizes_are_written_the_heroku_way_in_logs() {
        assert_eq!(size_display("standard-1x"), "Standard-1X");
        assert_eq!(size_display("performance-m"), "Performance-M");
        assert_eq!(size_display("eco"), "Eco");
    }

    #[test]
    fn sizes_are_capitalized_like_heroku() {
        let cases = [
            ("standard-1x", "Standard-1X"),
            ("standard-2x", "Standard-2X"),
            ("performance-m", "Performance-M"),
            ("performance-l", "Performance-L"),
            ("eco", "Eco"),
            ("basic", "Basic"),
        ];
        for (size, want) in cases {
            assert_eq!(size_display(size), want);
            // What we show is accepted back.
            assert_eq!(normalize_size(want).unwrap(), size);
        }
    }

    #[test]
    fn quantities() {
        let cases: Vec<(w::Quantity, Option<QuantityChange>)> = vec![
            (w::Quantity::Number(0), Some(QuantityChange::Set(0))),
            (w::Quantity::Number(2), Some(QuantityChange::Set(2))),
            (w::Quantity::Text("3".into()), Some(QuantityChange::Set(3))),
            (w::Quantity::Text("+1".into()), Some(QuantityChange::Add(1))),
            (
                w::Quantity::Text("-1".into()),
                Some(QuantityChange::Add(-1)),
            ),
            (w::Quantity::Number(-1), None),
            (w::Quantity::Number(i64::MAX), None),
            (w::Quantity::Text("lots".into()), None),
            (w::Quantity::Text("".into()), None),
        ];
        for (q, want) in cases {
            match want {
                Some(c) => assert_eq!(quantity_change(&q).unwrap(), c, "{q:?}"),
                None => assert_eq!(
                    quantity_change(&q).unwrap_err().status.as_u16(),
                    422,
                    "{q:?}"
                ),
            }
        }
    }

    fn update(t: Option<&str>, q: Option<w::Quantity>, size: Option<&str>) -> w::FormationUpdate {
        w::FormationUpdate {
            process_type: t.map(str::to_string),
            quantity: q,
            size: size.map(str::to_string),
        }
    }

    #[test]
    fn batch_updates_are_checked_before_proposing() {
        let ok = batch_changes(&w::FormationBatchUpdate {
            updates: vec![
                update(
                    Some("web"),
                    Some(w::Quantity::Text("+1".into())),
                    Some("Standard-2X"),
                ),
                update(Some("worker"), None, Some("eco")),
            ],
        })
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].process_type, "web");
        assert_eq!(ok[0].quantity, Some(QuantityChange::Add(1)));
        assert_eq!(ok[0].size.as_deref(), Some("standard-2x"));
        assert_eq!(ok[1].quantity, None);
        assert_ne!(ok[0].new_id, ok[1].new_id);
        let bad = [
            vec![],
            vec![update(None, Some(w::Quantity::Number(1)), None)],
            vec![update(Some("web"), None, None)],
            vec![update(Some("web"), None, Some("giant"))],
            vec![update(Some("we b"), Some(w::Quantity::Number(1)), None)],
            vec![update(Some("web"), Some(w::Quantity::Number(-2)), None)],
        ];
        for updates in bad {
            let err = batch_changes(&w::FormationBatchUpdate {
                updates: updates.clone(),
            })
            .unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.id),
                (422, "invalid_params"),
                "{updates:?}"
            );
        }
    }

    #[test]
    fn formation_to_wire() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let f = model::Formation {
            id: Uuid::from_u128(5),
            process_type: "web".into(),
            quantity: 2,
            size: "standard-2x".into(),
            command: String::new(),
            created_at: at,
            updated_at: at,
        };
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
            released_at: None,
            config: Default::default(),
            releases: vec![],
            formation: BTreeMap::from([("web".to_string(), f.clone())]),
        };
        let wire = to_wire(&app, &f);
        assert_eq!(wire.process_type, "web");
        assert_eq!(wire.quantity, 2);
        assert_eq!(wire.size, "Standard-2X");
        assert_eq!(wire.dyno_size.name, "Standard-2X");
        assert!(wire.dyno_size.id.parse::<Uuid>().is_ok());
        assert_eq!(wire.command, "");
        assert_eq!(wire.app.name, "my-app");
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json["type"], "web");
        assert!(find(&app, "web").is_some());
        assert!(find(&app, &Uuid::from_u128(5).to_string()).is_some());
        assert!(find(&app, "worker").is_none());
    }
}

//! Config vars: `GET/PATCH /apps/{app}/config-vars`, `GET
//! /apps/{app}/releases/{id-or-version}/config-vars`. Values are never logged.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_raft::command::Command;
use haven_raft::model::validate_config_key;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::JsonBody;
use super::{app_id, output_app, with_app, write, Action, ApiContext, ApiError, Caller};

/// Turns a PATCH body into changes: a string sets, `null` unsets; anything else is a 422
/// that names the key (never the value).
pub fn changes_from_patch(
    body: Map<String, Value>,
) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    let mut changes = BTreeMap::new();
    for (key, value) in body {
        validate_config_key(&key).map_err(ApiError::invalid)?;
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => {
                let kind = match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                return Err(ApiError::invalid(format!(
                    "config var {key} is {kind}; send its value as a string (e.g. \"5\"), or null to unset it"
                )));
            }
        };
        changes.insert(key, value);
    }
    Ok(changes)
}

/// `GET /apps/{app}/config-vars`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let config = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        a.config.clone()
    })
    .await?;
    Ok(Json(config).into_response())
}

/// `PATCH /apps/{app}/config-vars {"KEY": "value", "OLD": null}` → the whole new map. Each
/// change makes a release; an empty body changes nothing and makes none.
pub async fn update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let changes = changes_from_patch(body)?;
    if changes.is_empty() {
        return info(State(ctx), Extension(caller), Path(key)).await;
    }
    let id = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let description = haven_raft::command::config_description(&changes);
    let cmd = Command::SetConfig {
        app: id,
        changes,
        release_id: Uuid::new_v4(),
        actor: caller.actor(),
    };
    let app = output_app(write(&ctx, cmd).await?)?;
    // Names only, never values.
    ctx.logs
        .api(id, &format!("{description} by {}", caller.email));
    if let Some(r) = app.releases.last() {
        ctx.logs.api(
            id,
            &format!("Release v{} created by {}", r.version, caller.email),
        );
    }
    Ok(Json(app.config).into_response())
}

/// `GET /apps/{app}/releases/{id-or-version}/config-vars`: the vars that release runs with.
pub async fn of_release(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, release)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let history = ctx.raft.history();
    let config = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        history.find(a, &release).map(|r| r.map(|r| r.config))
    })
    .await?
    .map_err(|e| ApiError::internal(format!("read the release history: {e:#}")))?
    .ok_or_else(ApiError::release_not_found)?;
    Ok(Json(config).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn patch(json: &str) -> Result<BTreeMap<String, Option<String>>, ApiError> {
        changes_from_patch(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn strings_set_and_nulls_unset() {
        let got = patch(r#"{"A":"1","B":null,"C":""}"#).unwrap();
        assert_eq!(got["A"].as_deref(), Some("1"));
        assert_eq!(got["B"], None);
        assert_eq!(got["C"].as_deref(), Some(""));
        assert!(patch("{}").unwrap().is_empty());
    }

    #[test]
    fn other_values_and_bad_keys_are_422() {
        for body in [
            r#"{"A":1}"#,
            r#"{"A":true}"#,
            r#"{"A":[]}"#,
            r#"{"A":{}}"#,
            r#"{"1A":"x"}"#,
            r#"{"A-B":"x"}"#,
            r#"{"":"x"}"#,
        ] {
            let err = patch(body).unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.id),
                (422, "invalid_params"),
                "{body}"
            );
        }
        let err = patch(r#"{"PORT": 5000}"#).unwrap_err();
        assert!(
            err.message.contains("PORT") && err.message.contains("a number"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("5000"), "values stay out of messages");
    }
}

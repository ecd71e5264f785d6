//! Heroku-style error answers: `{"id": "not_found", "message": "..."}`, and the mapping of
//! everything that can go wrong (command rejections, cluster trouble, malformed requests)
//! onto them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use haven_api::ErrorBody;
use haven_raft::command::CommandError;
use haven_raft::ClusterError;

/// An error answer: status, Heroku's error id and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: &'static str,
    pub message: String,
}

/// What an unauthenticated caller is told: Heroku's words.
pub const UNAUTHORIZED_MESSAGE: &str = "Invalid credentials provided.";

impl ApiError {
    /// An error with any status and id.
    pub fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }

    /// 400 `bad_request`: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            UNAUTHORIZED_MESSAGE,
        )
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for an unknown app, worded like Heroku.
    pub fn app_not_found() -> ApiError {
        ApiError::not_found("Couldn't find that app.")
    }

    /// 404 for an unknown release, worded like Heroku.
    pub fn release_not_found() -> ApiError {
        ApiError::not_found("Couldn't find that release.")
    }

    /// 404 for an unknown process type, worded like Heroku.
    pub fn formation_not_found() -> ApiError {
        ApiError::not_found("Couldn't find that formation.")
    }

    /// 406 `not_acceptable`.
    pub fn not_acceptable() -> ApiError {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "the Accept header allows no answer this API gives; send Accept: application/vnd.heroku+json; version=3",
        )
    }

    /// 422 `invalid_params`: well-formed but breaks a rule.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }

    /// 500: this node broke a promise it made to itself.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The error for a response some layer below us (axum's own rejections, a 405 from the
    /// router) produced as plain text: same status, Heroku's shape. A 415 becomes a 400, as
    /// a body in the wrong format is a malformed request here.
    pub fn from_status(status: StatusCode, text: &str) -> ApiError {
        let text = text.trim();
        let (status, id, fallback) = match status.as_u16() {
            400 | 415 => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request is malformed",
            ),
            401 => (status, "unauthorized", UNAUTHORIZED_MESSAGE),
            403 => (status, "forbidden", "this call is not allowed"),
            404 => (status, "not_found", "no such resource"),
            405 => (
                status,
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            406 => (
                status,
                "not_acceptable",
                "the Accept header is not acceptable",
            ),
            409 => (
                status,
                "conflict",
                "the request conflicts with the current state",
            ),
            413 => (
                status,
                "request_entity_too_large",
                "the request body is too large",
            ),
            422 => (status, "invalid_params", "the request body is invalid"),
            429 => (status, "rate_limit", "too many requests; retry later"),
            503 => (
                status,
                "unavailable",
                "the cluster is unavailable; retry in a moment",
            ),
            s if s >= 500 => (status, "internal_error", "internal error"),
            _ => (status, "bad_request", "the request is malformed"),
        };
        let message = if text.is_empty() {
            fallback.to_string()
        } else {
            lower_first(text)
        };
        ApiError::new(status, id, message)
    }
}

/// axum's messages start with a capital ("Failed to parse..."); ours are lowercase.
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::NotFound(m) => ApiError::not_found(m),
            CommandError::AppNotFound(_) => ApiError::app_not_found(),
            CommandError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            CommandError::Invalid(m) => ApiError::invalid(m),
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            id: self.id.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_errors_map_to_statuses() {
        let cases = [
            (CommandError::NotFound("x".into()), 404, "not_found"),
            (CommandError::Conflict("x".into()), 409, "conflict"),
            (CommandError::Invalid("x".into()), 422, "invalid_params"),
        ];
        for (e, status, id) in cases {
            let api: ApiError = e.into();
            assert_eq!(
                (api.status.as_u16(), api.id, api.message.as_str()),
                (status, id, "x")
            );
        }
    }

    #[test]
    fn cluster_errors_are_503_with_their_message() {
        for e in [
            ClusterError::NoLeader,
            ClusterError::Unavailable("timeout".into()),
        ] {
            let api: ApiError = e.clone().into();
            assert_eq!((api.status.as_u16(), api.id), (503, "unavailable"));
            assert_eq!(api.message, e.to_string());
        }
    }

    #[test]
    fn plain_statuses_become_heroku_errors() {
        let cases = [
            (
                400,
                "Failed to parse",
                400,
                "bad_request",
                "failed to parse",
            ),
            (
                415,
                "Expected request with `Content-Type: application/json`",
                400,
                "bad_request",
                "expected request with `Content-Type: application/json`",
            ),
            (
                405,
                "",
                405,
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            (404, "", 404, "not_found", "no such resource"),
            (
                413,
                "",
                413,
                "request_entity_too_large",
                "the request body is too large",
            ),
            (422, "bad field", 422, "invalid_params", "bad field"),
            (500, "", 500, "internal_error", "internal error"),
            (418, "", 418, "bad_request", "the request is malformed"),
        ];
        for (status, text, want_status, want_id, want_message) in cases {
            let e = ApiError::from_status(StatusCode::from_u16(status).unwrap(), text);
            assert_eq!(
                (e.status.as_u16(), e.id, e.message.as_str()),
                (want_status, want_id, want_message),
                "{status} {text:?}"
            );
        }
    }

    #[test]
    fn unauthorized_is_herokus_answer() {
        let e = ApiError::unauthorized();
        assert_eq!(
            (e.status.as_u16(), e.id, e.message.as_str()),
            (401, "unauthorized", "Invalid credentials provided.")
        );
    }
}

//! Heroku-style error answers: `{"id": "not_found", "message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use haven_api::ErrorBody;
use haven_raft::command::CommandError;
use haven_raft::ClusterError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, id, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid credentials provided; run hctl login or send Authorization: Bearer TOKEN",
        )
    }
    pub fn app_not_found() -> ApiError {
        ApiError::not_found("Couldn't find that app.")
    }
    pub fn release_not_found() -> ApiError {
        ApiError::not_found("Couldn't find that release.")
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::NotFound(m) => ApiError::not_found(m),
            CommandError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            CommandError::Invalid(m) => ApiError::invalid(m),
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody { id: self.id.to_string(), message: self.message }),
        )
            .into_response()
    }
}

#[cfg(test)]
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
            assert_eq!((api.status.as_u16(), api.id), (status, id));
        }
        let api: ApiError = ClusterError::NoLeader.into();
        assert_eq!(api.status.as_u16(), 503);
    }
}

//! The HTTP API (Heroku Platform API v3 subset) that every node serves.
//!
//! Cross-cutting rules live here: every response carries a `Request-Id`; `Accept` must be
//! JSON or Heroku's v3 media type; every call is authenticated by a bearer token (or Basic
//! with the token as password) whose sha256 is looked up in the replicated tokens; errors
//! are `{"id","message"}`. Handlers build commands with fresh ids and times, call
//! `HavenRaft::write`, and answer from the command's output; reads pass the read barrier.

mod errors;
mod handlers;
mod paging;
mod wire;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use haven_raft::model::NodeId;
use haven_raft::HavenRaft;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use errors::ApiError;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct ApiContext {
    pub raft: HavenRaft,
    pub node_id: NodeId,
}

/// Who made the request (from the token).
#[derive(Clone, Debug)]
pub struct Caller {
    pub email: String,
    pub user_id: Uuid,
}

/// The API's routes, with auth, `Request-Id` and `Accept` handling.
pub fn router(ctx: ApiContext) -> Router {
    use handlers::*;
    Router::new()
        .route("/account", get(account))
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app}", get(app_info).patch(update_app).delete(delete_app))
        .route("/apps/{app}/config-vars", get(config_vars).patch(patch_config_vars))
        .route("/apps/{app}/releases", get(list_releases).post(create_release))
        .route("/apps/{app}/releases/{release}", get(release_info))
        .route("/apps/{app}/releases/{release}/config-vars", get(release_config_vars))
        .route("/apps/{app}/formation", get(list_formation).patch(batch_update_formation))
        .route("/apps/{app}/formation/{ptype}", get(formation_info).patch(update_formation))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/nodes", get(cluster_nodes))
        .fallback(|| async { ApiError::not_found("no such resource; see the API reference in README.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed on this resource")
        })
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// A client-supplied request id is kept when it looks like one (Heroku's rule).
pub fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
}

/// Whether an `Accept` header allows a v3 JSON answer.
pub fn acceptable(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        match media.as_str() {
            "*/*" | "application/*" | "application/json" | "" => true,
            "application/vnd.heroku+json" => params.all(|p| match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("version") => {
                    let v = v.trim();
                    v == "3" || v.starts_with("3.")
                }
                _ => true,
            }),
            _ => false,
        }
    })
}

/// The token in an `Authorization` header: `Bearer T`, or Basic with T as the password.
pub fn token_from_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_string());
    }
    None
}

async fn guard(State(ctx): State<ApiContext>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let rid = ["x-request-id", "request-id"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .find(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let mut resp = match authorize(&ctx, &req) {
        Err(e) => e.into_response(),
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

fn authorize(ctx: &ApiContext, req: &Request) -> Result<Caller, ApiError> {
    if let Some(accept) = req.headers().get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("");
        if !acceptable(accept) {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                "the Accept header must allow application/vnd.heroku+json; version=3",
            ));
        }
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_authorization)
        .ok_or_else(ApiError::unauthorized)?;
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    ctx.raft
        .with_state(|s| {
            s.token(&hash).map(|t| Caller {
                email: t.user_email.clone(),
                user_id: t.user_id,
            })
        })
        .ok_or_else(ApiError::unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("0123456789abcdefghij"));
        assert!(valid_request_id(&"a+/=-".repeat(8)));
        assert!(!valid_request_id("short"));
        assert!(!valid_request_id(&"a".repeat(201)));
        assert!(!valid_request_id("0123456789abcdefghij with space"));
    }

    #[test]
    fn accept_headers() {
        for ok in [
            "application/vnd.heroku+json; version=3",
            "application/vnd.heroku+json; version=3.sdk",
            "application/json",
            "*/*",
            "text/html, application/json;q=0.9",
        ] {
            assert!(acceptable(ok), "{ok}");
        }
        for bad in ["text/html", "application/vnd.heroku+json; version=2", "application/xml"] {
            assert!(!acceptable(bad), "{bad}");
        }
    }

    #[test]
    fn authorization_schemes() {
        assert_eq!(token_from_authorization("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_from_authorization("bearer  abc ").as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("any:tok");
        assert_eq!(token_from_authorization(&format!("Basic {basic}")).as_deref(), Some("tok"));
        let empty = base64::engine::general_purpose::STANDARD.encode("user:");
        assert_eq!(token_from_authorization(&format!("Basic {empty}")), None);
        assert_eq!(token_from_authorization("Token abc"), None);
        assert_eq!(token_from_authorization("Bearer"), None);
    }
}

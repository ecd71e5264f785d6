//! The web dashboard every node serves on its API port (`/` and `/dashboard/...`):
//! server-rendered HTML (maud) for apps and the cluster, modeled on Heroku's Dashboard.
//!
//! **One path to state.** Every page reads, and every form acts, through the HTTP API's
//! own router, called in-process ([`Dash::call`]) with the signed-in user's token: the
//! same authentication, authorization, validation and error messages as `hctl` gets.
//! A page shows the API's error message as it is.
//!
//! **Sessions** ([`session`]): signing in trades email and password for an API token
//! (`POST /oauth/authorizations`, 12 h), kept in the `haven_session` cookie (HttpOnly,
//! SameSite=Strict, Secure on HTTPS); signing out revokes that token, a Raft write, so
//! the session ends on every node. Every form carries a CSRF token derived from the
//! session token (sha256), checked before anything is done.
//!
//! Assets (a stylesheet and a small script for live logs and confirmations) are embedded
//! in the binary; nothing is fetched from anywhere else. Pages are readable without
//! styles and scripts (forms are plain HTML forms).

mod apps;
mod cluster;
mod deploy;
mod layout;
mod metrics;
mod session;
mod settings;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub use session::Session;

/// The dashboard's state: the API router it calls.
#[derive(Clone)]
pub struct Dash {
    api: Router,
}

/// An API call that did not succeed: its status and the API's message.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
}

impl Dash {
    /// Calls the API as the session's user: the answer's JSON, or its error.
    pub async fn call(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiFailure> {
        let auth = format!("Bearer {}", session.token);
        self.raw_call(method, path, body, &auth, session.tls).await
    }

    /// Calls the API as the session's user and hands back its answer as it is (a
    /// streamed body, such as a build's output, stays streamed).
    pub async fn stream(&self, session: &Session, path: &str) -> Response {
        let auth = format!("Bearer {}", session.token);
        match self.request(Method::GET, path, None, &auth, session.tls) {
            Ok(req) => self.send(req).await,
            Err(e) => (e.status, e.message).into_response(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        authorization: &str,
        tls: bool,
    ) -> Result<Request, ApiFailure> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, "application/vnd.heroku+json; version=3")
            .header(header::AUTHORIZATION, authorization);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).map_err(|e| ApiFailure {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
        })?;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(crate::https::ConnInfo {
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                tls,
            }));
        Ok(req)
    }

    async fn send(&self, req: Request) -> Response {
        self.api
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {})
    }

    async fn raw_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        authorization: &str,
        tls: bool,
    ) -> Result<Value, ApiFailure> {
        let req = self.request(method, path, body, authorization, tls)?;
        let resp = self.send(req).await;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(ApiFailure {
                status,
                message: v["message"]
                    .as_str()
                    .map_or_else(|| status.to_string(), str::to_string),
            })
        }
    }
}

/// The dashboard's routes, to merge beside the API's.
pub fn router(api: Router) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route(
            "/dashboard/login",
            get(session::login_page).post(session::login),
        )
        .route("/dashboard/logout", post(session::logout))
        .route("/dashboard/assets/{name}", get(asset))
        .route("/dashboard", get(apps::list).post(apps::create))
        .route("/dashboard/apps/{app}", get(apps::overview))
        .route("/dashboard/apps/{app}/resources", get(apps::resources))
        .route("/dashboard/apps/{app}/scale", post(apps::scale))
        .route("/dashboard/apps/{app}/restart", post(apps::restart))
        .route("/dashboard/apps/{app}/activity", get(apps::activity))
        .route("/dashboard/apps/{app}/rollback", post(apps::rollback))
        .route("/dashboard/apps/{app}/deploy", get(deploy::show))
        .route("/dashboard/apps/{app}/builds/{build}", get(deploy::build))
        .route("/dashboard/apps/{app}/repo", post(deploy::connect))
        .route(
            "/dashboard/apps/{app}/repo/disconnect",
            post(deploy::disconnect),
        )
        .route(
            "/dashboard/apps/{app}/builds/{build}/output",
            get(deploy::output),
        )
        .route("/dashboard/apps/{app}/logs", get(apps::logs))
        .route("/dashboard/apps/{app}/metrics", get(metrics::show))
        .route(
            "/dashboard/apps/{app}/logs/session",
            post(apps::log_session),
        )
        .route("/dashboard/apps/{app}/settings", get(settings::show))
        .route("/dashboard/apps/{app}/config", post(settings::config))
        .route("/dashboard/apps/{app}/domains", post(settings::domain))
        .route(
            "/dashboard/apps/{app}/buildpacks",
            post(settings::buildpacks),
        )
        .route(
            "/dashboard/apps/{app}/maintenance",
            post(settings::maintenance),
        )
        .route("/dashboard/apps/{app}/rename", post(settings::rename))
        .route("/dashboard/apps/{app}/delete", post(settings::delete))
        .route(
            "/dashboard/apps/{app}/access",
            get(settings::access).post(settings::collaborator),
        )
        .route("/dashboard/cluster", get(cluster::show))
        .route("/dashboard/cluster/nodes/{node}", post(cluster::drain))
        .with_state(Dash { api })
}

/// The embedded assets.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "dashboard.css" => (include_str!("assets/dashboard.css"), "text/css"),
        "dashboard.js" => (include_str!("assets/dashboard.js"), "text/javascript"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Headers every page carries: no caching of what a session saw, no framing, no
/// scripts or styles but the dashboard's own.
fn page_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// An HTML answer with the page headers.
fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response();
    page_headers(resp.headers_mut());
    resp
}

/// After a form: back to `to`, with a notice (or the API's error) shown there.
fn back(to: &str, outcome: Result<String, ApiFailure>) -> Response {
    let (key, text) = match outcome {
        Ok(t) => ("notice", t),
        Err(e) => ("error", e.message),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    let url = format!("{to}{sep}{key}={}", urlencode(&text));
    Redirect::to(&url).into_response()
}

/// An API answer's array (empty when it is not one).
fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// An API answer's string (empty when it is not one).
fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A path segment from a user-chosen name (app names are `[a-z0-9-]`; anything else is
/// encoded).
fn seg(s: &str) -> String {
    urlencode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(urlencode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(seg("my-app"), "my-app");
    }
}

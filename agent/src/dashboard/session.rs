//! Signing in and out, the session cookie and the CSRF token.
//!
//! A session is an API token of the user (`POST /oauth/authorizations` with Basic
//! email:password, or with an API token the user pastes — `hctl auth:token` — as Bearer;
//! 12 h), in the `haven_session` cookie: HttpOnly (no script reads
//! it), SameSite=Strict (no other site's page sends it), Secure when the page came over
//! HTTPS. The CSRF token every form carries is derived from it (sha256 of a label and
//! the token): a page of this dashboard knows it, another site cannot. Signing out
//! revokes the token (a Raft write), which ends the session on every node.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine;
use maud::html;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::layout::{bare_page, Notice};
use super::{html as page_html, ApiFailure, Dash};

const COOKIE: &str = "haven_session";
/// How long a dashboard session lasts.
const SESSION_SECS: i64 = 12 * 3600;

/// The signed-in user of a request: the session's token (and its authorization's id,
/// to revoke it), and who it is.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub authorization: String,
    pub email: String,
    /// The request came over TLS.
    pub tls: bool,
}

impl Session {
    /// The CSRF token of this session's forms.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Whether a form's CSRF token is this session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), ApiFailure> {
        let want = self.csrf();
        // Constant time: compare all bytes.
        let same = want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ApiFailure {
                status: StatusCode::FORBIDDEN,
                message: "The form is stale or was not sent by this dashboard (CSRF check failed); reload the page and try again.".into(),
            })
        }
    }
}

pub fn csrf_of(token: &str) -> String {
    hex::encode(&Sha256::digest(format!("haven-dashboard-csrf:{token}").as_bytes())[..16])
}

/// The session cookie's value in a request's headers: `AUTHORIZATION_ID.TOKEN`.
fn cookie_token(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .and_then(|v| {
            let (id, token) = v.split_once('.')?;
            (!id.is_empty() && !token.is_empty()).then(|| (id.to_string(), token.to_string()))
        })
}

fn over_tls(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::https::ConnInfo>>()
        .is_some_and(|c| c.0.tls)
}

/// A page or form that needs a session: without a valid one, the sign-in page.
impl FromRequestParts<Dash> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path().to_string();
            let target = if parts.method == Method::GET && next.starts_with("/dashboard") {
                format!("/dashboard/login?next={}", super::urlencode(&next))
            } else {
                "/dashboard/login".to_string()
            };
            Redirect::to(&target).into_response()
        };
        let Some((authorization, token)) = cookie_token(&parts.headers) else {
            return Err(to_login());
        };
        let tls = over_tls(parts);
        let probe = Session {
            token,
            authorization,
            email: String::new(),
            tls,
        };
        match dash.call(&probe, Method::GET, "/account", None).await {
            Ok(acct) => Ok(Session {
                email: acct["email"].as_str().unwrap_or("").to_string(),
                ..probe
            }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(to_login()),
            Err(e) => Err(page_html(
                e.status,
                bare_page("Haven", &Notice::error(&e.message), html! {}),
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    notice: Option<String>,
}

/// Where to go after signing in: a dashboard path only (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/dashboard") && !n.starts_with("//") && !n.contains("://") => {
            n.to_string()
        }
        _ => "/dashboard".to_string(),
    }
}

fn login_form(next: &str, notice: &Notice) -> maud::Markup {
    bare_page(
        "Sign in",
        notice,
        html! {
            form.card method="post" action="/dashboard/login" {
                h1 { "Sign in to Haven" }
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            form.card method="post" action="/dashboard/login" {
                h2 { "Or sign in with an API token" }
                input type="hidden" name="next" value=(next);
                label for="token" { "API token " small { "(" code { "hctl auth:token" } ")" } }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in with token" }
            }
        },
    )
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let notice = Notice::from_query(q.notice.as_deref(), q.error.as_deref());
    page_html(
        StatusCode::OK,
        login_form(&safe_next(q.next.as_deref()), &notice),
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// An API token instead of email and password: the session gets a token of its own
    /// (made with this one), so signing out does not revoke the pasted one.
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

pub async fn login(
    State(dash): State<Dash>,
    parts: axum::http::request::Parts,
    Form(f): Form<LoginForm>,
) -> Response {
    let tls = over_tls(&parts);
    let next = safe_next(f.next.as_deref());
    let pasted = f.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let authorization = match pasted {
        Some(t) => format!("Bearer {t}"),
        None => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                f.email.trim(),
                f.password
            ))
        ),
    };
    let made = dash
        .raw_call(
            Method::POST,
            "/oauth/authorizations",
            Some(json!({"description": "dashboard session", "expires_in": SESSION_SECS})),
            &authorization,
            tls,
        )
        .await;
    match made {
        Ok(v) => {
            let (Some(token), Some(id)) = (v["access_token"]["token"].as_str(), v["id"].as_str())
            else {
                return page_html(
                    StatusCode::BAD_GATEWAY,
                    login_form(&next, &Notice::error("the API made no token")),
                );
            };
            let mut resp = Redirect::to(&next).into_response();
            let secure = if tls { "; Secure" } else { "" };
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={id}.{token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}"
            )) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            let msg = if e.status == StatusCode::UNAUTHORIZED && pasted.is_some() {
                "That is not a valid API token (it may have expired or been revoked).".to_string()
            } else if e.status == StatusCode::UNAUTHORIZED {
                "Those are not the email and password of a Haven user.".to_string()
            } else {
                e.message
            };
            page_html(
                StatusCode::UNAUTHORIZED,
                login_form(&next, &Notice::error(&msg)),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Revokes the session's token (on every node) and clears the cookie.
pub async fn logout(
    State(dash): State<Dash>,
    session: Session,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = session.check_csrf(&f.csrf) {
        return super::back("/dashboard", Err(e));
    }
    // A Raft write: every node refuses the token once it has applied it.
    if let Err(e) = dash
        .call(
            &session,
            Method::DELETE,
            &format!(
                "/oauth/authorizations/{}",
                super::seg(&session.authorization)
            ),
            None,
        )
        .await
    {
        return super::back("/dashboard", Err(e));
    }
    let mut resp = Redirect::to("/dashboard/login?notice=Signed%20out").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("haven_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_and_next_stays_on_the_dashboard() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; haven_session=id1.tok_123; c=d"),
        );
        assert_eq!(cookie_token(&h), Some(("id1".into(), "tok_123".into())));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("haven_session=notoken;x"),
        );
        assert_eq!(cookie_token(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("haven_session=\"<x>.y\""),
        );
        assert_eq!(cookie_token(&h), None);
        assert_eq!(safe_next(Some("/dashboard/apps/x")), "/dashboard/apps/x");
        assert_eq!(safe_next(Some("https://evil.example/")), "/dashboard");
        assert_eq!(safe_next(Some("//evil.example/dashboard")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let s = Session {
            token: "t1".into(),
            authorization: "a1".into(),
            email: "a@b".into(),
            tls: false,
        };
        assert!(s.check_csrf(&csrf_of("t1")).is_ok());
        assert!(s.check_csrf(&csrf_of("t2")).is_err());
        assert!(s.check_csrf("").is_err());
    }
}

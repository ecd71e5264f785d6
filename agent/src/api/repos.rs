//! Connected repositories (Haven-only; Heroku's GitHub integration for any git host):
//! `PUT /apps/{app}/repo {url, branch}` connects (the repository must answer and have the
//! branch), `GET` shows, `DELETE` disconnects, and `POST /apps/{app}/repo/hook` is the
//! webhook a git host calls on a push: authenticated by the link's secret, as GitHub,
//! Gitea and Forgejo sign (`X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)`) or
//! GitLab sends it (`X-Gitlab-Token`). A hook wakes the leader's follower
//! ([`crate::repos`]); the node that takes it passes it on to the leader.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::Command;
use haven_raft::model::{self, redact_url, validate_branch, validate_repo_url, RepoLink};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::access::Action;
use super::apps::time;
use super::body::JsonBody;
use super::{read, with_app, write, ApiContext, ApiError, Caller};

fn hook_url(s: &model::State, ctx: &ApiContext, app: &model::App) -> String {
    let base = s
        .nodes
        .get(&ctx.node_id)
        .map(|n| super::scheme::public_url(&n.api_url))
        .unwrap_or_default();
    format!("{base}/apps/{}/repo/hook", app.name)
}

/// The wire form of a link; the secret only when `secret`.
fn to_wire(s: &model::State, ctx: &ApiContext, l: &RepoLink, secret: bool) -> w::Repo {
    let app = s.apps.get(&l.app);
    w::Repo {
        app: w::AppRef {
            id: l.app.to_string(),
            name: app.map(|a| a.name.clone()).unwrap_or_default(),
        },
        url: redact_url(&l.url),
        branch: l.branch.clone(),
        connected_by: l.user_email.clone(),
        connected_at: time(l.connected_at),
        last_commit: l.last_commit.clone(),
        last_build: l
            .last_build
            .and_then(|id| s.builds.get(&id))
            .map(|b| w::RepoBuild {
                id: b.id.to_string(),
                status: b.status.as_str().to_string(),
                created_at: time(b.created_at),
            }),
        webhook_url: app.map(|a| hook_url(s, ctx, a)).unwrap_or_default(),
        webhook_secret: secret.then(|| l.webhook_secret.clone()),
    }
}

/// `PUT /apps/{app}/repo {url, branch = "main"}`.
pub async fn connect(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::RepoConnect>,
) -> Result<Response, ApiError> {
    let url = body.url.trim().to_string();
    let branch = body
        .branch
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".into());
    validate_repo_url(&url).map_err(ApiError::invalid)?;
    validate_branch(&branch).map_err(ApiError::invalid)?;
    let app = with_app(&ctx, &caller, Action::ChangeApp, &key, |_, a| a.id).await?;
    // The repository must answer now, with the branch: a typo is told here, not later.
    match crate::repos::ls_remote(&url, &branch).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(ApiError::invalid(format!(
                "{} has no branch {branch}",
                redact_url(&url)
            )))
        }
        Err(e) => {
            return Err(ApiError::invalid(format!(
                "cannot read {}: {}",
                redact_url(&url),
                crate::repos::scrub(&e, &url)
            )))
        }
    }
    let link = RepoLink {
        app,
        url,
        branch,
        webhook_secret: hex::encode(rand::random::<[u8; 24]>()),
        user_id: caller.user_id,
        user_email: caller.email.clone(),
        connected_at: Utc::now(),
        last_commit: None,
        last_build: None,
    };
    write(&ctx, Command::ConnectRepo { link }).await?;
    ctx.repos.wake();
    let v = read(&ctx, |s| {
        s.repos.get(&app).map(|l| to_wire(s, &ctx, l, true))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("the app was disconnected meanwhile"))?;
    Ok(Json(v).into_response())
}

/// `GET /apps/{app}/repo`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let v = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.repos.get(&a.id).map(|l| to_wire(s, &ctx, l, false))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("the app is not connected to a repository"))?;
    Ok(Json(v).into_response())
}

/// `DELETE /apps/{app}/repo`: the link as it was.
pub async fn disconnect(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let (app, was) = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        (a.id, s.repos.get(&a.id).map(|l| to_wire(s, &ctx, l, false)))
    })
    .await?;
    let was = was.ok_or_else(|| ApiError::not_found("the app is not connected to a repository"))?;
    write(&ctx, Command::DisconnectRepo { app }).await?;
    Ok(Json(was).into_response())
}

/// Whether a hook call carries the link's secret, constant-time.
pub fn signed(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    if let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h.trim()).ok())
    {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        return mac.verify_slice(&sig).is_ok();
    }
    if let Some(token) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        let (a, b) = (token.as_bytes(), secret.as_bytes());
        return a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    }
    false
}

/// `POST /apps/{app}/repo/hook`: 202 when signed with the app's secret (the follower
/// asks the repository at once), 401 otherwise; never says whether the app exists.
pub async fn hook(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the webhook call is not signed with this app's secret (X-Hub-Signature-256 or X-Gitlab-Token)",
        )
    };
    ctx.raft.read_barrier().await?;
    let (secret, leader_url) = ctx.raft.with_state(|s| {
        let secret = s
            .find_app(&key)
            .and_then(|a| s.repos.get(&a.id))
            .map(|l| l.webhook_secret.clone());
        let leader = ctx.raft.status().leader.filter(|l| *l != ctx.node_id);
        (
            secret,
            leader
                .and_then(|l| s.nodes.get(&l))
                .map(|n| n.api_url.clone()),
        )
    });
    let Some(secret) = secret else {
        return Err(refused());
    };
    if !signed(&secret, &headers, &body) {
        return Err(refused());
    }
    match leader_url {
        None => ctx.repos.wake(),
        Some(url) => {
            // The leader follows the repositories: pass the call on, as it came.
            let mut req = ctx
                .http
                .post(format!("{url}/apps/{key}/repo/hook"))
                .timeout(std::time::Duration::from_secs(5))
                .body(body.to_vec());
            for h in ["x-hub-signature-256", "x-gitlab-token", "content-type"] {
                if let Some(v) = headers.get(h) {
                    req = req.header(h, v.clone());
                }
            }
            let passed = req.send().await.map(|r| r.status().is_success());
            if !matches!(passed, Ok(true)) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the leader did not take the webhook call; the next poll finds the commit",
                ));
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message": "the repository is being read; a new commit is built"})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hooks_are_checked_against_the_secret() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).unwrap());
        assert!(signed("s3cret", &h, body));
        assert!(!signed("other", &h, body));
        assert!(!signed("s3cret", &h, b"{}"));
        let mut g = HeaderMap::new();
        g.insert("x-gitlab-token", HeaderValue::from_static("s3cret"));
        assert!(signed("s3cret", &g, body));
        assert!(!signed("s3cre", &g, body));
        assert!(!signed("s3cret", &HeaderMap::new(), body));
    }
}

//! Certificates for custom domains: `GET/POST /apps/{app}/sni-endpoints`,
//! `GET/PATCH/DELETE /apps/{app}/sni-endpoints/{name-or-id}` (Heroku's SNI endpoints).
//!
//! The PEM is parsed and checked here, by the proposer (a chain that parses, a key that
//! matches its leaf, the names it covers); the router serves the newest endpoint of an
//! app whose certificate covers the name a client asks for. The private key is never
//! shown again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model::{self, CertInfo};
use uuid::Uuid;

use super::apps::{name_id, time};
use super::body::JsonBody;
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};

fn to_wire(a: &model::App, e: &model::SniEndpoint) -> w::SniEndpoint {
    w::SniEndpoint {
        id: e.id.to_string(),
        name: e.name.clone(),
        display_name: None,
        certificate_chain: e.certificate_chain.clone(),
        domains: a
            .domains
            .iter()
            .filter(|d| e.cert.covers(&d.hostname))
            .map(|d| d.id.to_string())
            .collect(),
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        ssl_cert: w::SslCert {
            id: name_id("ssl-cert", &format!("{}:{}", e.id, e.updated_at)),
            ca_signed: !e.cert.self_signed,
            self_signed: e.cert.self_signed,
            cert_domains: e.cert.domains.clone(),
            subject: e.cert.subject.clone(),
            issuer: e.cert.issuer.clone(),
            starts_at: time(e.cert.starts_at),
            expires_at: time(e.cert.expires_at),
        },
        created_at: time(e.created_at),
        updated_at: time(e.updated_at),
    }
}

/// The endpoint of `a` named by name or id.
fn find<'a>(s: &'a model::State, a: &model::App, key: &str) -> Option<&'a model::SniEndpoint> {
    s.sni_endpoints
        .values()
        .find(|e| e.app == a.id && (e.name == key || e.id.to_string() == key))
}

fn not_found() -> ApiError {
    ApiError::not_found("Couldn't find that SNI endpoint.")
}

fn checked(body: &w::SniEndpointCreate) -> Result<CertInfo, ApiError> {
    crate::tls::read_certificate(&body.certificate_chain, &body.private_key)
        .map_err(|e| ApiError::invalid(format!("Certificate or key is invalid: {e}")))
}

/// `GET /apps/{app}/sni-endpoints`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let mut v: Vec<&model::SniEndpoint> =
            s.sni_endpoints.values().filter(|e| e.app == a.id).collect();
        v.sort_by_key(|e| (e.created_at, e.id));
        v.into_iter().map(|e| to_wire(a, e)).collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/sni-endpoints/{name-or-id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, endpoint)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let e = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find(s, a, &endpoint).map(|e| to_wire(a, e))
    })
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(e).into_response())
}

/// `POST /apps/{app}/sni-endpoints {"certificate_chain": PEM, "private_key": PEM}` → 201.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::SniEndpointCreate>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let cert = checked(&body)?;
    let now = Utc::now();
    // A taken name (one in 100,000 per existing endpoint) is retried with another.
    let mut last = None;
    for _ in 0..5 {
        let endpoint = model::SniEndpoint {
            id: Uuid::new_v4(),
            app,
            name: model::generated_endpoint_name(rand::random()),
            certificate_chain: body.certificate_chain.clone(),
            private_key: body.private_key.clone(),
            cert: cert.clone(),
            created_at: now,
            updated_at: now,
        };
        match write(&ctx, Command::AddSniEndpoint { endpoint }).await {
            Ok(out) => return answer(&ctx, out, StatusCode::CREATED),
            Err(e) if e.status == StatusCode::CONFLICT => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::internal("no free SNI endpoint name")))
}

/// `PATCH /apps/{app}/sni-endpoints/{name-or-id}`: replaces the certificate and key.
pub async fn update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, endpoint)): Path<(String, String)>,
    JsonBody(body): JsonBody<w::SniEndpointCreate>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let cert = checked(&body)?;
    let out = write(
        &ctx,
        Command::UpdateSniEndpoint {
            app,
            key: endpoint,
            certificate_chain: body.certificate_chain,
            private_key: body.private_key,
            cert,
            at: Utc::now(),
        },
    )
    .await
    .map_err(endpoint_not_found)?;
    answer(&ctx, out, StatusCode::OK)
}

/// `DELETE /apps/{app}/sni-endpoints/{name-or-id}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, endpoint)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let out = write(&ctx, Command::RemoveSniEndpoint { app, key: endpoint })
        .await
        .map_err(endpoint_not_found)?;
    answer(&ctx, out, StatusCode::OK)
}

/// A rejected command's 404 in Heroku's words.
fn endpoint_not_found(e: ApiError) -> ApiError {
    if e.status == StatusCode::NOT_FOUND && e.message.starts_with("SNI endpoint") {
        not_found()
    } else {
        e
    }
}

fn answer(ctx: &ApiContext, out: CommandOutput, status: StatusCode) -> Result<Response, ApiError> {
    let CommandOutput::SniEndpoint(e) = out else {
        return Err(ApiError::internal("the command returned no SNI endpoint"));
    };
    let wire = ctx
        .raft
        .with_state(|s| s.apps.get(&e.app).map(|a| to_wire(a, &e)))
        .ok_or_else(ApiError::app_not_found)?;
    Ok((status, Json(wire)).into_response())
}

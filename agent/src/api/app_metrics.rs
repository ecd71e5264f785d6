//! `GET /apps/{app}/metrics` (Haven-only): the app's router counters over the cluster —
//! requests by status class and latency quantiles — for the dashboard's Metrics tab and
//! scripts. Every node counts the requests its own router served; the node asked sums
//! its own and those of every other up node (`?scope=node` on each, with the caller's
//! credentials; a node that does not answer within 2 s is counted as missing).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::access::Action;
use super::{with_app, ApiContext, ApiError, Caller};
use crate::metrics::AppSnapshot;
use haven_raft::model::NodeStatus;

#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    /// `node`: this node's counters only.
    #[serde(default)]
    scope: Option<String>,
}

pub async fn app_metrics(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(q): Query<MetricsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (name, others) = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let others: Vec<String> = s
            .nodes
            .values()
            .filter(|n| n.id != ctx.node_id && n.status == NodeStatus::Up)
            .map(|n| n.api_url.clone())
            .collect();
        (a.name.clone(), others)
    })
    .await?;
    let mine = ctx.metrics.app_snapshot(&name);
    if q.scope.as_deref() == Some("node") {
        return Ok(Json(mine).into_response());
    }
    let mut sum = mine;
    let mut answered = 1;
    let total = others.len() + 1;
    let asks = others.iter().map(|url| {
        let mut req = ctx
            .http
            .get(format!("{url}/apps/{name}/metrics?scope=node"))
            .header(header::ACCEPT, "application/vnd.heroku+json; version=3")
            .timeout(Duration::from_secs(2));
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        async move {
            let resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<AppSnapshot>().await.ok()
        }
    });
    for snap in futures::future::join_all(asks).await.into_iter().flatten() {
        sum.add(&snap);
        answered += 1;
    }
    let classes: serde_json::Map<String, serde_json::Value> = (1..=5)
        .map(|c| {
            (
                format!("{c}xx"),
                json!(sum.classes.get(c).copied().unwrap_or(0)),
            )
        })
        .collect();
    let ms = |q: f64| sum.quantile(q).map(|s| s * 1000.0);
    Ok(Json(json!({
        "app": name,
        "requests": sum.count,
        "requests_by_status": classes,
        "response_time_p50_ms": ms(0.5),
        "response_time_p95_ms": ms(0.95),
        "nodes_counted": answered,
        "nodes": total,
    }))
    .into_response())
}

//! `GET /apps/{app}/metrics` (Haven-only): the app's router counters over the cluster —
//! requests by status class and latency quantiles — and each running dyno's memory
//! beside its quota, for the dashboard's Metrics tab and scripts. Every node counts the
//! requests its own router served and reads its own dynos' memory; the node asked adds
//! those of every other up node (`?scope=node` on each, with the caller's credentials; a
//! node that does not answer within 2 s is counted as missing).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::access::Action;
use super::{with_app, ApiContext, ApiError, Caller};
use crate::metrics::{AppSnapshot, DynoMemory};
use std::collections::BTreeMap;

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
    let used = ctx.dynos.memory_usage();
    let (name, memory) = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let memory: BTreeMap<String, DynoMemory> = s
            .app_dynos(a.id)
            .into_iter()
            .filter(|d| d.node == ctx.node_id)
            .filter_map(|d| {
                let bytes = *used.get(&d.id)?;
                let quota_mb = haven_raft::catalog::dyno_size(&d.size).map_or(512, |z| z.memory_mb);
                Some((
                    d.name(),
                    DynoMemory {
                        bytes,
                        quota_bytes: quota_mb * 1024 * 1024,
                    },
                ))
            })
            .collect();
        (a.name.clone(), memory)
    })
    .await?;
    let mut mine = ctx.metrics.app_snapshot(&name);
    mine.memory = memory;
    if q.scope.as_deref() == Some("node") {
        return Ok(Json(mine).into_response());
    }
    let mut sum = mine;
    let (theirs, asked) = super::fanout::ask_others::<AppSnapshot>(
        &ctx,
        &headers,
        &format!("/apps/{name}/metrics?scope=node"),
    )
    .await;
    let answered = 1 + theirs.len();
    let total = 1 + asked;
    for snap in &theirs {
        sum.add(snap);
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
        "memory": sum.memory.iter().map(|(dyno, m)| json!({
            "dyno": dyno,
            "bytes": m.bytes,
            "quota_bytes": m.quota_bytes,
        })).collect::<Vec<_>>(),
        "nodes_counted": answered,
        "nodes": total,
    }))
    .into_response())
}

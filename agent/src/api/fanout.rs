//! Asking every other up node for its own share of an answer (`?scope=node` calls): the
//! app metrics and the platform events are kept per node and merged by the node asked.

use std::time::Duration;

use axum::http::{header, HeaderMap};
use haven_raft::model::NodeStatus;
use serde::de::DeserializeOwned;

use super::ApiContext;

/// The answers of every other up node to `GET {api_url}{path}`, made with the caller's
/// credentials; a node that does not answer well within 2 s is left out. Also how many
/// nodes were asked.
pub async fn ask_others<T: DeserializeOwned>(
    ctx: &ApiContext,
    headers: &HeaderMap,
    path: &str,
) -> (Vec<T>, usize) {
    let others: Vec<String> = ctx.raft.with_state(|s| {
        s.nodes
            .values()
            .filter(|n| n.id != ctx.node_id && n.status == NodeStatus::Up)
            .map(|n| n.api_url.clone())
            .collect()
    });
    let asks = others.iter().map(|url| {
        let mut req = ctx
            .http
            .get(format!("{url}{path}"))
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
            resp.json::<T>().await.ok()
        }
    });
    let got = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    (got, others.len())
}

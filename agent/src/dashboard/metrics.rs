//! An app's Metrics page: requests by status class and response time quantiles, from
//! the routers of every node, and memory per running dyno beside its quota
//! (`GET /apps/{app}/metrics`), drawn as inline SVG.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::html;

use super::apps::{failed, NoticeQuery};
use super::layout::{app_tabs, bars, page};
use super::session::Session;
use super::{arr, html as page_html, s, seg, Dash};

pub async fn show(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let m = match dash
        .call(
            &session,
            Method::GET,
            &format!("/apps/{}/metrics", seg(&app)),
            None,
        )
        .await
    {
        Ok(m) => m,
        Err(e) => return failed(&session, &app, e),
    };
    let classes: Vec<(String, f64)> = ["2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| {
            (
                c.to_string(),
                m["requests_by_status"][*c].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let mb = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    let memory: Vec<(String, f64, f64)> = arr(&m["memory"])
        .iter()
        .map(|d| {
            (
                s(&d["dyno"]).to_string(),
                mb(&d["bytes"]),
                mb(&d["quota_bytes"]),
            )
        })
        .collect();
    let ms = |k: &str| {
        m[k].as_f64()
            .map_or_else(|| "—".to_string(), |v| format!("≤ {v:.1} ms"))
    };
    let body = html! {
        (app_tabs(&app, "Metrics"))
        p { "Requests routed to " (app) " since each node's router started, counted on "
            (m["nodes_counted"]) " of " (m["nodes"]) " nodes." }
        dl.kv #metrics {
            dt { "Requests" } dd { (m["requests"]) }
            dt { "Response time p50" } dd { (ms("response_time_p50_ms")) }
            dt { "Response time p95" } dd { (ms("response_time_p95_ms")) }
        }
        (bars("Requests by status class", &classes, ""))
        h2 { "Memory" }
        @if memory.is_empty() {
            p { "No dyno is running." }
        } @else {
            table #memory {
                thead { tr { th scope="col" { "Dyno" } th scope="col" { "Memory used" } th scope="col" { "Quota" } th scope="col" { "Of quota" } } }
                tbody {
                    @for (name, used, quota) in &memory {
                        tr {
                            td { (name) }
                            td { (format!("{used:.1} MB")) }
                            td { (format!("{quota:.0} MB")) }
                            td { (format!("{:.0} %", if *quota > 0.0 { used / quota * 100.0 } else { 0.0 })) }
                        }
                    }
                }
            }
            (bars("Memory used per dyno (MB)", &memory.iter().map(|(n, u, _)| (n.clone(), *u)).collect::<Vec<_>>(), ""))
        }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

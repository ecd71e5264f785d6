//! An app's Metrics page: requests by status class and response time quantiles, from
//! the routers of every node (`GET /apps/{app}/metrics`), drawn as inline SVG.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::html;

use super::apps::{failed, NoticeQuery};
use super::layout::{app_tabs, bars, page};
use super::session::Session;
use super::{html as page_html, seg, Dash};

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
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

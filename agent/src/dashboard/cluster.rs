//! The cluster page (admins; others get the API's refusal): nodes with status, role,
//! memory and dynos, drain/undrain, the Raft status of the node answering, and the recent
//! platform events of every up node.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::apps::{failed, NoticeQuery};
use super::layout::{bars, csrf, page, when};
use super::session::Session;
use super::{arr, back, html as page_html, s, seg, Dash};

async fn render(dash: Dash, session: Session, q: NoticeQuery) -> Response {
    let nodes = match dash
        .call(&session, Method::GET, "/cluster/nodes", None)
        .await
    {
        Ok(n) => n,
        Err(e) => return failed(&session, "Cluster", e),
    };
    let status = dash
        .call(&session, Method::GET, "/cluster/status", None)
        .await
        .unwrap_or_default();
    let events = dash
        .call(&session, Method::GET, "/cluster/events", None)
        .await
        .unwrap_or_default();
    let list = nodes.as_array().cloned().unwrap_or_default();
    let used: Vec<(String, f64)> = list
        .iter()
        .map(|n| {
            (
                s(&n["name"]).to_string(),
                n["used_memory_mb"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let body = html! {
        h1 { "Cluster " (s(&status["cluster_name"])) }
        section {
            h2 { "Raft" }
            dl.kv {
                dt { "Leader" } dd { (s(&status["leader_name"])) }
                dt { "Term" } dd { (status["term"]) }
                dt { "Voters" } dd { (status["voters"].as_array().map_or(0, Vec::len)) }
                dt { "Learners" } dd { (status["learners"].as_array().map_or(0, Vec::len)) }
                dt { "Applied index" } dd { (status["applied_index"]) }
                dt { "Answered by" } dd { (s(&status["node_name"])) }
            }
        }
        section {
            h2 { "Nodes" }
            table #nodes {
                thead { tr { th scope="col" { "Node" } th scope="col" { "Status" } th scope="col" { "Role" } th scope="col" { "Memory used / capacity" } th scope="col" { "Dynos" } th scope="col" { "Joined" } th scope="col" { "" } } }
                tbody {
                    @for n in &list {
                        @let draining = n["draining"].as_bool() == Some(true);
                        tr {
                            td { (s(&n["name"])) }
                            td { (s(&n["status"])) @if draining { " (draining)" } }
                            td { (s(&n["role"])) @if n["leader"].as_bool() == Some(true) { " · leader" } }
                            td { (n["used_memory_mb"]) " / " (n["memory_mb"]) " MB" }
                            td { (n["dynos"]) }
                            td { (when(&n["joined_at"])) }
                            td {
                                form.inline method="post" action={ "/dashboard/cluster/nodes/" (seg(s(&n["id"]))) } {
                                    (csrf(&session))
                                    input type="hidden" name="draining" value=(if draining { "0" } else { "1" });
                                    button type="submit" { @if draining { "Undrain" } @else { "Drain" } }
                                }
                            }
                        }
                    }
                }
            }
            (bars("Memory used per node (MB)", &used, ""))
        }
        section {
            h2 { "Recent platform events" }
            @if arr(&events).is_empty() { p { "None since the nodes started." } }
            table #events {
                thead { tr { th scope="col" { "When" } th scope="col" { "Node" } th scope="col" { "Kind" } th scope="col" { "Event" } } }
                tbody {
                    @for e in arr(&events).iter().take(50) {
                        tr {
                            td { (when(&e["at"])) }
                            td { (s(&e["node"])) }
                            td { (s(&e["kind"])) }
                            td { (s(&e["message"])) }
                        }
                    }
                }
            }
        }
    };
    page_html(StatusCode::OK, page(&session, "Cluster", &q.notice(), body))
}

pub async fn show(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Response {
    render(dash, session, q).await
}

#[derive(Debug, Deserialize)]
pub struct DrainForm {
    #[serde(default)]
    csrf: String,
    draining: String,
}

/// `POST /dashboard/cluster/nodes/{node}`: `PATCH /cluster/nodes/{node} {"draining"}`.
pub async fn drain(
    State(dash): State<Dash>,
    session: Session,
    Path(node): Path<String>,
    Form(f): Form<DrainForm>,
) -> Response {
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back("/dashboard/cluster", Err(e));
    }
    let on = f.draining == "1";
    let out = dash
        .call(
            &session,
            Method::PATCH,
            &format!("/cluster/nodes/{}", seg(&node)),
            Some(json!({ "draining": on })),
        )
        .await
        .map(|n| {
            format!(
                "{} {}",
                s(&n["name"]),
                if on {
                    "is draining"
                } else {
                    "takes dynos again"
                }
            )
        });
    back("/dashboard/cluster", out)
}

//! An app's Deploy tab (how to deploy, the connected repository with connect and
//! disconnect, the builds) and a build's page with its output live: the script reads the output stream through [`output`], which passes the API's
//! `GET /apps/{app}/builds/{id}/output` through as it streams (from whichever node ran
//! the build).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::Value;

use super::apps::{failed, load, NoticeQuery};
use super::layout::{app_tabs, csrf, page, when, Notice};
use super::session::Session;
use super::{arr, back, html as page_html, s, seg, Dash};

/// The live output of a build: filled by the script from `src`, with a link to the raw
/// stream for pages without scripts.
fn live_output(app: &str, build: &str) -> Markup {
    let src = format!("/dashboard/apps/{}/builds/{}/output", seg(app), seg(build));
    html! {
        pre.build-output data-src=(src) aria-live="polite" tabindex="0" { "" }
        noscript { p { a href=(src) { "Build output" } " (plain text)." } }
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `GET .../deploy`: how to deploy, and the builds (the newest one's output live while it
/// runs).
pub async fn show(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    render(&dash, &session, &app, &q.notice()).await
}

async fn render(dash: &Dash, session: &Session, app: &str, notice: &Notice) -> Response {
    let a = match load(&dash, &session, &app, "").await {
        Ok(a) => a,
        Err(e) => return failed(&session, &app, e),
    };
    let builds = load(&dash, &session, &app, "/builds")
        .await
        .unwrap_or_default();
    let repo = load(&dash, &session, &app, "/repo").await.ok();
    let running: Option<&Value> = arr(&builds)
        .iter()
        .rev()
        .find(|b| s(&b["status"]) == "pending");
    let body = html! {
        (app_tabs(&app, "Deploy"))
        section {
            h2 { "Deploy with git" }
            pre { "git remote add haven " (s(&a["git_url"])) "\ngit push haven main" }
            h2 { "Deploy a directory" }
            pre { "hctl deploy -a " (app) " ." }
        }
        section #repo {
            h2 { "Connected repository" }
            @if let Some(r) = &repo {
                dl.kv {
                    dt { "Repository" } dd { code { (s(&r["url"])) } }
                    dt { "Branch" } dd { (s(&r["branch"])) }
                    dt { "Connected by" } dd { (s(&r["connected_by"])) }
                    dt { "Last commit" } dd { code { (r["last_commit"].as_str().unwrap_or("none yet")) } }
                    dt { "Last build" } dd { (r["last_build"]["status"].as_str().unwrap_or("none yet")) }
                    dt { "Webhook URL" } dd { code { (s(&r["webhook_url"])) } }
                }
                p { "Every new commit on " (s(&r["branch"])) " is built and released." }
                form.inline method="post" action={ "/dashboard/apps/" (seg(&app)) "/repo/disconnect" }
                    data-confirm="Stop automatic deploys?" {
                    (csrf(&session))
                    button type="submit" { "Disconnect" }
                }
            } @else {
                form.card method="post" action={ "/dashboard/apps/" (seg(&app)) "/repo" } {
                    p { "Deploy every new commit of a branch of a git repository." }
                    (csrf(&session))
                    label for="repo-url" { "Repository URL" }
                    input #repo-url name="url" required placeholder="https://git.example.com/team/app.git";
                    label for="repo-branch" { "Branch" }
                    input #repo-branch name="branch" value="main" required;
                    button type="submit" { "Connect" }
                }
            }
        }
        @if let Some(b) = running {
            section #running-build {
                h2 { "Build " code { (short(s(&b["id"]))) } " in progress" }
                (live_output(&app, s(&b["id"])))
            }
        }
        section {
            h2 { "Builds" }
            @if arr(&builds).is_empty() { p { "No builds yet." } }
            table #builds {
                thead { tr { th scope="col" { "Build" } th scope="col" { "Status" } th scope="col" { "By" } th scope="col" { "Started" } th scope="col" { "Release" } } }
                tbody {
                    @for b in arr(&builds).iter().rev() {
                        tr {
                            td { a href={ "/dashboard/apps/" (seg(&app)) "/builds/" (seg(s(&b["id"]))) } aria-label={ "Build " (short(s(&b["id"]))) } { code { (short(s(&b["id"]))) } } }
                            td.status { (s(&b["status"])) }
                            td { (s(&b["user"]["email"])) }
                            td { (when(&b["created_at"])) }
                            td { @if let Some(r) = b["release"]["id"].as_str() { code { (short(r)) } } }
                        }
                    }
                }
            }
        }
    };
    page_html(StatusCode::OK, page(&session, &app, notice, body))
}

/// `GET .../builds/{build}`: a build's status and its output, live while it runs.
pub async fn build(
    State(dash): State<Dash>,
    session: Session,
    Path((app, id)): Path<(String, String)>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let b = match load(&dash, &session, &app, &format!("/builds/{}", seg(&id))).await {
        Ok(b) => b,
        Err(e) => return failed(&session, &app, e),
    };
    let buildpacks: Vec<&str> = arr(&b["buildpacks"])
        .iter()
        .map(|p| {
            let url = s(&p["url"]);
            if url.is_empty() {
                s(&p["name"])
            } else {
                url
            }
        })
        .collect();
    let body = html! {
        (app_tabs(&app, "Deploy"))
        h2 { "Build " code { (short(s(&b["id"]))) } }
        dl.kv {
            dt { "Status" } dd #build-status { (s(&b["status"])) }
            dt { "Started" } dd { (when(&b["created_at"])) }
            dt { "By" } dd { (s(&b["user"]["email"])) }
            dt { "Source version" } dd { code { (s(&b["source_blob"]["version"])) } }
            @if !buildpacks.is_empty() { dt { "Buildpacks" } dd { (buildpacks.join(", ")) } }
            @if let Some(r) = b["release"]["id"].as_str() { dt { "Release" } dd { code { (short(r)) } } }
        }
        (live_output(&app, s(&b["id"])))
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

/// `GET .../builds/{build}/output`: the API's output stream, passed through as it comes
/// (plain text; the API's error as it is).
pub async fn output(
    State(dash): State<Dash>,
    session: Session,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    let mut resp = dash
        .stream(
            &session,
            &format!("/apps/{}/builds/{}/output", seg(&app), seg(&id)),
        )
        .await;
    super::page_headers(resp.headers_mut());
    resp
}

#[derive(Debug, serde::Deserialize)]
pub struct RepoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    branch: String,
}

/// `POST .../repo`: `PUT /apps/{app}/repo`. The webhook secret is shown once, here.
pub async fn connect(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    axum::Form(f): axum::Form<RepoForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/deploy", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let made = dash
        .call(
            &session,
            axum::http::Method::PUT,
            &format!("/apps/{}/repo", seg(&app)),
            Some(serde_json::json!({ "url": f.url.trim(), "branch": f.branch.trim() })),
        )
        .await;
    match made {
        // Shown in this answer, not through a redirect: the secret stays out of URLs.
        Ok(r) => {
            let text = format!(
                "Connected to {} of {}. Webhook secret (shown once): {}",
                s(&r["branch"]),
                s(&r["url"]),
                s(&r["webhook_secret"])
            );
            render(
                &dash,
                &session,
                &app,
                &Notice::from_query(Some(&text), None),
            )
            .await
        }
        Err(e) => back(&to, Err(e)),
    }
}

/// `POST .../repo/disconnect`: `DELETE /apps/{app}/repo`.
pub async fn disconnect(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    axum::Form(f): axum::Form<super::session::CsrfForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/deploy", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let out = dash
        .call(
            &session,
            axum::http::Method::DELETE,
            &format!("/apps/{}/repo", seg(&app)),
            None,
        )
        .await
        .map(|_| "Disconnected: automatic deploys stopped".to_string());
    back(&to, out)
}

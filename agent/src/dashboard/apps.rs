//! The apps list and an app's Overview, Resources, Activity and Logs pages, with
//! their forms (create, scale, restart, roll back, open a live log session).

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Form, Json};
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{app_tabs, csrf, page, when, Notice};
use super::session::Session;
use super::{arr, back, html as page_html, s, seg, ApiFailure, Dash};

/// `?notice=` / `?error=` after a form.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    pub notice: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl NoticeQuery {
    pub fn notice(&self) -> Notice {
        Notice::from_query(self.notice.as_deref(), self.error.as_deref())
    }
}

/// A page that failed to load: the API's error in the page shell.
pub fn failed(session: &Session, title: &str, e: ApiFailure) -> Response {
    page_html(
        e.status,
        page(session, title, &Notice::error(&e.message), html! {}),
    )
}

/// A count of dynos by state, `web: 2 up, 1 starting`.
fn dyno_summary(dynos: &[Value]) -> String {
    let mut by: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for d in dynos {
        *by.entry((s(&d["type"]).to_string(), s(&d["state"]).to_string()))
            .or_default() += 1;
    }
    if by.is_empty() {
        return "no dynos".into();
    }
    by.iter()
        .map(|((t, st), n)| format!("{t}: {n} {st}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /dashboard`: the apps the user may access.
pub async fn list(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let apps = match dash.call(&session, Method::GET, "/apps", None).await {
        Ok(v) => v,
        Err(e) => return failed(&session, "Apps", e),
    };
    let mut rows = Vec::new();
    for a in arr(&apps) {
        let name = s(&a["name"]).to_string();
        let dynos = dash
            .call(
                &session,
                Method::GET,
                &format!("/apps/{}/dynos", seg(&name)),
                None,
            )
            .await
            .unwrap_or(Value::Null);
        rows.push((a.clone(), dyno_summary(arr(&dynos))));
    }
    let body = html! {
        h1 { "Apps" }
        @if rows.is_empty() {
            p { "No apps yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Stack" } th scope="col" { "Last release" } th scope="col" { "Dynos" } th scope="col" { "State" } } }
                tbody {
                    @for (a, summary) in &rows {
                        tr {
                            td { a href={ "/dashboard/apps/" (seg(s(&a["name"]))) } { (s(&a["name"])) } }
                            td { (s(&a["stack"]["name"])) }
                            td { (when(&a["released_at"])) }
                            td { (summary) }
                            td { @if a["maintenance"].as_bool() == Some(true) { "maintenance" } @else { "running" } }
                        }
                    }
                }
            }
        }
        form.card method="post" action="/dashboard" {
            h2 { "Create a new app" }
            (csrf(&session))
            label for="new-app" { "App name" }
            input #new-app name="name" required pattern="[a-z][a-z0-9-]{2,29}" placeholder="my-app";
            button type="submit" { "Create app" }
        }
    };
    page_html(StatusCode::OK, page(&session, "Apps", &q.notice(), body))
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

/// `POST /dashboard`: creates an app (`POST /apps`).
pub async fn create(
    State(dash): State<Dash>,
    session: Session,
    Form(f): Form<CreateForm>,
) -> Response {
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back("/dashboard", Err(e));
    }
    let name = f.name.trim().to_string();
    match dash
        .call(
            &session,
            Method::POST,
            "/apps",
            Some(json!({ "name": name })),
        )
        .await
    {
        Ok(a) => back(
            &format!("/dashboard/apps/{}", seg(s(&a["name"]))),
            Ok(format!("Created {}", s(&a["name"]))),
        ),
        Err(e) => back("/dashboard", Err(e)),
    }
}

/// Loads the pieces of an app page: the app itself, or the API's error.
pub(super) async fn load(
    dash: &Dash,
    session: &Session,
    app: &str,
    what: &str,
) -> Result<Value, ApiFailure> {
    dash.call(
        session,
        Method::GET,
        &format!("/apps/{}{what}", seg(app)),
        None,
    )
    .await
}

/// `GET /dashboard/apps/{app}`: formation, add-ons, latest activity.
pub async fn overview(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let a = match load(&dash, &session, &app, "").await {
        Ok(a) => a,
        Err(e) => return failed(&session, &app, e),
    };
    let formation = load(&dash, &session, &app, "/formation")
        .await
        .unwrap_or_default();
    let addons = load(&dash, &session, &app, "/addons")
        .await
        .unwrap_or_default();
    let releases = load(&dash, &session, &app, "/releases")
        .await
        .unwrap_or_default();
    let latest: Vec<&Value> = arr(&releases).iter().rev().take(5).collect();
    let body = html! {
        (app_tabs(&app, "Overview"))
        section {
            h2 { "Dyno formation" }
            @if arr(&formation).is_empty() { p { "No process types yet: deploy the app." } }
            ul {
                @for f in arr(&formation) {
                    li { code { (s(&f["type"])) } " " (f["quantity"]) " × " (s(&f["size"])) " — " code { (s(&f["command"])) } }
                }
            }
        }
        section {
            h2 { "Installed add-ons" }
            @if arr(&addons).is_empty() { p { "None." } }
            ul {
                @for x in arr(&addons) {
                    li { (s(&x["name"])) " (" (s(&x["plan"]["name"])) ") — " (s(&x["state"])) }
                }
            }
        }
        section {
            h2 { "Latest activity" }
            ul {
                @for r in &latest {
                    li { "v" (r["version"]) " " (s(&r["description"])) " — " (s(&r["user"]["email"])) ", " (when(&r["created_at"])) }
                }
            }
        }
        p { "Web URL: " a href=(s(&a["web_url"])) { (s(&a["web_url"])) } }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

/// `GET /dashboard/apps/{app}/resources`: process types with scale controls, dynos.
pub async fn resources(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let formation = match load(&dash, &session, &app, "/formation").await {
        Ok(f) => f,
        Err(e) => return failed(&session, &app, e),
    };
    let dynos = load(&dash, &session, &app, "/dynos")
        .await
        .unwrap_or_default();
    let body = html! {
        (app_tabs(&app, "Resources"))
        section {
            h2 { "Process types" }
            @if arr(&formation).is_empty() { p { "No process types yet: deploy the app." } }
            @for f in arr(&formation) {
                form.row method="post" action={ "/dashboard/apps/" (seg(&app)) "/scale" } {
                    (csrf(&session))
                    input type="hidden" name="type" value=(s(&f["type"]));
                    strong { code { (s(&f["type"])) } }
                    code.cmd { (s(&f["command"])) }
                    label { "Quantity " input type="number" name="quantity" min="0" max="100" value=(f["quantity"]) aria-label={ (s(&f["type"])) " quantity" }; }
                    label { "Size " input type="text" name="size" value=(s(&f["size"])) size="12" aria-label={ (s(&f["type"])) " size" }; }
                    button type="submit" { "Scale " (s(&f["type"])) }
                }
            }
        }
        section {
            h2 { "Dynos" }
            form.inline method="post" action={ "/dashboard/apps/" (seg(&app)) "/restart" } data-confirm="Restart all dynos?" {
                (csrf(&session))
                button type="submit" { "Restart all dynos" }
            }
            table #dynos {
                thead { tr { th scope="col" { "Dyno" } th scope="col" { "State" } th scope="col" { "Node" } th scope="col" { "Release" } th scope="col" { "Restarts" } th scope="col" { "Since" } th scope="col" { "" } } }
                tbody {
                    @for d in arr(&dynos) {
                        tr {
                            td { (s(&d["name"])) }
                            td.state { (s(&d["state"])) }
                            td { (s(&d["node"]["name"])) }
                            td { "v" (d["release"]["version"]) }
                            td { (d["restarts"]) }
                            td { (when(&d["state_changed_at"])) }
                            td {
                                form.inline method="post" action={ "/dashboard/apps/" (seg(&app)) "/restart" } {
                                    (csrf(&session))
                                    input type="hidden" name="dyno" value=(s(&d["name"]));
                                    button type="submit" aria-label={ "Restart " (s(&d["name"])) } { "Restart" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

#[derive(Debug, Deserialize)]
pub struct ScaleForm {
    #[serde(default)]
    csrf: String,
    #[serde(rename = "type")]
    process_type: String,
    quantity: String,
    #[serde(default)]
    size: String,
}

/// `POST .../scale`: `PATCH /apps/{app}/formation/{type}`.
pub async fn scale(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<ScaleForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/resources", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let Ok(quantity) = f.quantity.trim().parse::<u32>() else {
        return back(
            &to,
            Err(ApiFailure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("{:?} is not a number of dynos", f.quantity),
            }),
        );
    };
    let mut body = json!({ "quantity": quantity });
    if !f.size.trim().is_empty() {
        body["size"] = json!(f.size.trim());
    }
    let out = dash
        .call(
            &session,
            Method::PATCH,
            &format!("/apps/{}/formation/{}", seg(&app), seg(&f.process_type)),
            Some(body),
        )
        .await
        .map(|v| {
            format!(
                "Scaled {} to {} × {}",
                f.process_type,
                v["quantity"],
                s(&v["size"])
            )
        });
    back(&to, out)
}

#[derive(Debug, Deserialize)]
pub struct RestartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dyno: Option<String>,
}

/// `POST .../restart`: `DELETE /apps/{app}/dynos[/{dyno}]`.
pub async fn restart(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<RestartForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/resources", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let (path, what) = match f.dyno.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => (
            format!("/apps/{}/dynos/{}", seg(&app), seg(d)),
            d.to_string(),
        ),
        None => (
            format!("/apps/{}/dynos", seg(&app)),
            "all dynos".to_string(),
        ),
    };
    let out = dash
        .call(&session, Method::DELETE, &path, None)
        .await
        .map(|_| format!("Restarting {what}"));
    back(&to, out)
}

/// `GET .../activity`: releases, newest first, each with a Roll back button.
pub async fn activity(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let releases = match load(&dash, &session, &app, "/releases").await {
        Ok(r) => r,
        Err(e) => return failed(&session, &app, e),
    };
    let current = arr(&releases)
        .iter()
        .filter(|r| r["current"].as_bool() == Some(true))
        .map(|r| r["version"].as_u64())
        .next()
        .flatten()
        .or_else(|| arr(&releases).last().and_then(|r| r["version"].as_u64()));
    let body = html! {
        (app_tabs(&app, "Activity"))
        table #releases {
            thead { tr { th scope="col" { "Version" } th scope="col" { "Description" } th scope="col" { "By" } th scope="col" { "When" } th scope="col" { "" } } }
            tbody {
                @for r in arr(&releases).iter().rev() {
                    tr {
                        td { "v" (r["version"]) }
                        td.description { (s(&r["description"])) }
                        td { (s(&r["user"]["email"])) }
                        td { (when(&r["created_at"])) }
                        td {
                            @if r["version"].as_u64() != current && !r["slug"].is_null() {
                                form.inline method="post" action={ "/dashboard/apps/" (seg(&app)) "/rollback" }
                                    data-confirm={ "Roll back " (app) " to v" (r["version"]) "?" } {
                                    (csrf(&session))
                                    input type="hidden" name="release" value=(s(&r["id"]));
                                    button type="submit" aria-label={ "Roll back to v" (r["version"]) } { "Roll back to here" }
                                }
                            } @else if r["version"].as_u64() == current {
                                "current"
                            }
                        }
                    }
                }
            }
        }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

#[derive(Debug, Deserialize)]
pub struct RollbackForm {
    #[serde(default)]
    csrf: String,
    release: String,
}

/// `POST .../rollback`: `POST /apps/{app}/releases {"release"}`.
pub async fn rollback(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<RollbackForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/activity", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let out = dash
        .call(
            &session,
            Method::POST,
            &format!("/apps/{}/releases", seg(&app)),
            Some(json!({ "release": f.release })),
        )
        .await
        .map(|r| format!("Rolled back: v{} {}", r["version"], s(&r["description"])));
    back(&to, out)
}

/// `GET .../logs`: the live tail (the script opens a log session and reads its stream).
pub async fn logs(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    if let Err(e) = load(&dash, &session, &app, "").await {
        return failed(&session, &app, e);
    }
    let body = html! {
        (app_tabs(&app, "Logs"))
        form #log-filters.row data-app=(app) data-csrf=(session.csrf()) {
            label { "Dyno " input name="dyno" placeholder="web.1"; }
            label { "Process type " input name="type" placeholder="web"; }
            label { "Source " select name="source" { option value="" { "all" } option value="app" { "app" } option value="heroku" { "heroku" } } }
            button type="submit" { "Tail" }
        }
        pre #log aria-live="polite" { "" }
        noscript { p { "Live logs need JavaScript; use " code { "hctl logs --tail -a " (app) } "." } }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

#[derive(Debug, Deserialize)]
pub struct LogSessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dyno: Option<String>,
    #[serde(default, rename = "type")]
    process_type: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// `POST .../logs/session` (the script's): a log session's stream path, from
/// `POST /apps/{app}/log-sessions` (tail, the last 100 lines first).
pub async fn log_session(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<LogSessionForm>,
) -> Result<Json<Value>, (StatusCode, String)> {
    session
        .check_csrf(&f.csrf)
        .map_err(|e| (e.status, e.message))?;
    let mut body = json!({ "tail": true, "lines": 100 });
    if let Some(d) = f.dyno.filter(|d| !d.trim().is_empty()) {
        body["dyno"] = json!(d.trim());
    }
    if let Some(t) = f.process_type.filter(|d| !d.trim().is_empty()) {
        body["type"] = json!(t.trim());
    }
    if let Some(src) = f.source.filter(|d| !d.trim().is_empty()) {
        body["source"] = json!(src.trim());
    }
    let v = dash
        .call(
            &session,
            Method::POST,
            &format!("/apps/{}/log-sessions", seg(&app)),
            Some(body),
        )
        .await
        .map_err(|e| (e.status, e.message))?;
    // The stream is this node's: hand the browser its path (same origin).
    let url = s(&v["logplex_url"]);
    let path = url
        .find("/log-sessions/")
        .map(|i| url[i..].to_string())
        .unwrap_or_default();
    Ok(Json(json!({ "stream": path })))
}

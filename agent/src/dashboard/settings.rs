//! An app's Settings page (config vars hidden until revealed, domains, maintenance,
//! rename, delete with typed confirmation) and Access page (collaborators), with their
//! forms.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{failed, NoticeQuery};
use super::layout::{app_tabs, csrf, page, when};
use super::session::Session;
use super::{arr, back, html as page_html, s, seg, ApiFailure, Dash};

#[derive(Debug, Default, Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    reveal: Option<String>,
    #[serde(flatten)]
    notice: NoticeQuery,
}

/// `GET .../settings[?reveal=1]`: config var values only once revealed.
async fn render(dash: Dash, session: Session, app: String, q: SettingsQuery) -> Response {
    let a = match dash
        .call(&session, Method::GET, &format!("/apps/{}", seg(&app)), None)
        .await
    {
        Ok(a) => a,
        Err(e) => return failed(&session, &app, e),
    };
    let config = dash
        .call(
            &session,
            Method::GET,
            &format!("/apps/{}/config-vars", seg(&app)),
            None,
        )
        .await
        .unwrap_or_default();
    let domains = dash
        .call(
            &session,
            Method::GET,
            &format!("/apps/{}/domains", seg(&app)),
            None,
        )
        .await
        .unwrap_or_default();
    let buildpacks = dash
        .call(
            &session,
            Method::GET,
            &format!("/apps/{}/buildpack-installations", seg(&app)),
            None,
        )
        .await
        .unwrap_or_default();
    let reveal = q.reveal.is_some();
    let vars: Vec<(&String, &Value)> = config
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let base = format!("/dashboard/apps/{}", seg(&app));
    let body = html! {
        (app_tabs(&app, "Settings"))
        section {
            h2 { "Config vars" }
            @if reveal {
                p { a href={ (base) "/settings" } { "Hide config vars" } }
            } @else {
                p { a #reveal href={ (base) "/settings?reveal=1" } { "Reveal config vars" } }
            }
            table #config {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "" } } }
                tbody {
                    @for (k, v) in &vars {
                        tr {
                            td { code { (k) } }
                            td.value { @if reveal { code { (s(v)) } } @else { "••••••" } }
                            td {
                                form.inline method="post" action={ (base) "/config" } data-confirm={ "Remove " (k) "?" } {
                                    (csrf(&session))
                                    input type="hidden" name="key" value=(k);
                                    input type="hidden" name="remove" value="1";
                                    button type="submit" aria-label={ "Remove " (k) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            form.row method="post" action={ (base) "/config" } {
                (csrf(&session))
                label { "Key " input name="key" required pattern="[A-Za-z_][A-Za-z0-9_]*" aria-label="Key"; }
                label { "Value " input name="value" aria-label="Value"; }
                button type="submit" { "Add" }
            }
        }
        section {
            h2 { "Domains" }
            ul { @for d in arr(&domains) { li { (s(&d["hostname"])) " — " (when(&d["created_at"])) } } }
            form.row method="post" action={ (base) "/domains" } {
                (csrf(&session))
                label { "Hostname " input name="hostname" required aria-label="Hostname"; }
                button type="submit" { "Add domain" }
            }
        }
        section {
            h2 { "Buildpacks" }
            @if arr(&buildpacks).is_empty() { p { "Detected at each build." } }
            ol #buildpacks { @for bp in arr(&buildpacks) { li { code { (s(&bp["buildpack"]["name"])) } } } }
            form.row method="post" action={ (base) "/buildpacks" } {
                (csrf(&session))
                label { "Buildpacks (one per line, in order; empty: detect) "
                    textarea name="buildpacks" rows="2" cols="50" aria-label="Buildpacks" {
                        @for bp in arr(&buildpacks) { (s(&bp["buildpack"]["url"])) "\n" }
                    }
                }
                button type="submit" { "Save buildpacks" }
            }
        }
        section {
            h2 { "Maintenance mode" }
            @let on = a["maintenance"].as_bool() == Some(true);
            p { "Maintenance mode is " strong { @if on { "on" } @else { "off" } } "." }
            form.inline method="post" action={ (base) "/maintenance" } {
                (csrf(&session))
                input type="hidden" name="on" value=(if on { "0" } else { "1" });
                button type="submit" { @if on { "Turn maintenance off" } @else { "Turn maintenance on" } }
            }
        }
        section {
            h2 { "Name" }
            form.row method="post" action={ (base) "/rename" } {
                (csrf(&session))
                label { "New name " input name="name" required value=(app) aria-label="New name"; }
                button type="submit" { "Rename" }
            }
        }
        section.danger {
            h2 { "Delete app" }
            p { "Deleting " strong { (app) } " removes its dynos, releases and the add-ons it owns. Type its name to confirm." }
            form.row method="post" action={ (base) "/delete" } {
                (csrf(&session))
                label { "App name " input name="confirm" required aria-label="Type the app's name"; }
                button type="submit" { "Delete app" }
            }
        }
    };
    page_html(
        StatusCode::OK,
        page(&session, &app, &q.notice.notice(), body),
    )
}

pub async fn show(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<SettingsQuery>,
) -> Response {
    render(dash, session, app, q).await
}

#[derive(Debug, Deserialize)]
pub struct ConfigForm {
    #[serde(default)]
    csrf: String,
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    remove: Option<String>,
}

/// `POST .../config`: `PATCH /apps/{app}/config-vars` (a value, or null to remove).
pub async fn config(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<ConfigForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let key = f.key.trim().to_string();
    let remove = f.remove.is_some();
    let value = if remove { Value::Null } else { json!(f.value) };
    let out = dash
        .call(
            &session,
            Method::PATCH,
            &format!("/apps/{}/config-vars", seg(&app)),
            Some(json!({ key.clone(): value })),
        )
        .await
        .map(|_| {
            if remove {
                format!("Removed {key}; the app restarts on a new release")
            } else {
                format!("Set {key}; the app restarts on a new release")
            }
        });
    back(&to, out)
}

#[derive(Debug, Deserialize)]
pub struct DomainForm {
    #[serde(default)]
    csrf: String,
    hostname: String,
}

pub async fn domain(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<DomainForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let out = dash
        .call(
            &session,
            Method::POST,
            &format!("/apps/{}/domains", seg(&app)),
            Some(json!({ "hostname": f.hostname.trim() })),
        )
        .await
        .map(|d| format!("Added {}", s(&d["hostname"])));
    back(&to, out)
}

#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    #[serde(default)]
    csrf: String,
    on: String,
}

pub async fn maintenance(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<MaintenanceForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let on = f.on == "1";
    let out = dash
        .call(
            &session,
            Method::PATCH,
            &format!("/apps/{}", seg(&app)),
            Some(json!({ "maintenance": on })),
        )
        .await
        .map(|_| format!("Maintenance mode {}", if on { "on" } else { "off" }));
    back(&to, out)
}

#[derive(Debug, Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

pub async fn rename(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<RenameForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    match dash
        .call(
            &session,
            Method::PATCH,
            &format!("/apps/{}", seg(&app)),
            Some(json!({ "name": f.name.trim() })),
        )
        .await
    {
        Ok(a) => back(
            &format!("/dashboard/apps/{}/settings", seg(s(&a["name"]))),
            Ok(format!("Renamed to {}", s(&a["name"]))),
        ),
        Err(e) => back(&to, Err(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST .../delete`: only when the typed name is the app's.
pub async fn delete(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    if f.confirm.trim() != app {
        return back(
            &to,
            Err(ApiFailure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("Type {app} to confirm deleting it."),
            }),
        );
    }
    match dash
        .call(
            &session,
            Method::DELETE,
            &format!("/apps/{}", seg(&app)),
            None,
        )
        .await
    {
        Ok(_) => back("/dashboard", Ok(format!("Deleted {app}"))),
        Err(e) => back(&to, Err(e)),
    }
}

/// `GET .../access`: the owner and collaborators, and a form to add one.
pub async fn access(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let a = match dash
        .call(&session, Method::GET, &format!("/apps/{}", seg(&app)), None)
        .await
    {
        Ok(a) => a,
        Err(e) => return failed(&session, &app, e),
    };
    let collabs = dash
        .call(
            &session,
            Method::GET,
            &format!("/apps/{}/collaborators", seg(&app)),
            None,
        )
        .await
        .unwrap_or_default();
    let body = html! {
        (app_tabs(&app, "Access"))
        p { "Owner: " (s(&a["owner"]["email"])) }
        h2 { "Collaborators" }
        ul #collaborators {
            @for c in arr(&collabs) {
                li {
                    (s(&c["user"]["email"])) " — since " (when(&c["created_at"])) " "
                    form.inline method="post" action={ "/dashboard/apps/" (seg(&app)) "/access" } data-confirm={ "Remove " (s(&c["user"]["email"])) "?" } {
                        (csrf(&session))
                        input type="hidden" name="email" value=(s(&c["user"]["email"]));
                        input type="hidden" name="remove" value="1";
                        button type="submit" aria-label={ "Remove " (s(&c["user"]["email"])) } { "Remove" }
                    }
                }
            }
        }
        form.row method="post" action={ "/dashboard/apps/" (seg(&app)) "/access" } {
            (csrf(&session))
            label { "Email " input type="email" name="email" required aria-label="Collaborator's email"; }
            button type="submit" { "Add collaborator" }
        }
    };
    page_html(StatusCode::OK, page(&session, &app, &q.notice(), body))
}

#[derive(Debug, Deserialize)]
pub struct CollaboratorForm {
    #[serde(default)]
    csrf: String,
    email: String,
    #[serde(default)]
    remove: Option<String>,
}

pub async fn collaborator(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<CollaboratorForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/access", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let email = f.email.trim();
    let out = if f.remove.is_some() {
        dash.call(
            &session,
            Method::DELETE,
            &format!("/apps/{}/collaborators/{}", seg(&app), seg(email)),
            None,
        )
        .await
        .map(|_| format!("Removed {email}"))
    } else {
        dash.call(
            &session,
            Method::POST,
            &format!("/apps/{}/collaborators", seg(&app)),
            Some(json!({ "user": email })),
        )
        .await
        .map(|_| format!("Added {email}"))
    };
    back(&to, out)
}

#[derive(Debug, Deserialize)]
pub struct BuildpacksForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    buildpacks: String,
}

/// `POST .../buildpacks`: `PUT /apps/{app}/buildpack-installations` in the given order.
pub async fn buildpacks(
    State(dash): State<Dash>,
    session: Session,
    Path(app): Path<String>,
    Form(f): Form<BuildpacksForm>,
) -> Response {
    let to = format!("/dashboard/apps/{}/settings", seg(&app));
    if let Err(e) = session.check_csrf(&f.csrf) {
        return back(&to, Err(e));
    }
    let updates: Vec<Value> = f
        .buildpacks
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| json!({ "buildpack": l }))
        .collect();
    let n = updates.len();
    let out = dash
        .call(
            &session,
            Method::PUT,
            &format!("/apps/{}/buildpack-installations", seg(&app)),
            Some(json!({ "updates": updates })),
        )
        .await
        .map(|_| match n {
            0 => "Buildpacks are detected at the next build".to_string(),
            n => format!("Set {n} buildpack(s) for the next build"),
        });
    back(&to, out)
}

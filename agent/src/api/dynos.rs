//! Dynos: `GET /apps/{app}/dynos[/{dyno}]`, restarts (`DELETE /apps/{app}/dynos[/{dyno}]`,
//! `DELETE /apps/{app}/formations/{type}/dynos`), stops (`POST
//! /apps/{app}/dynos/{dyno}/actions/stop`, `POST /apps/{app}/formations/{type}/actions/stop`),
//! one-off dynos (`POST /apps/{app}/dynos`), and Haven's `GET /apps/{app}/unplaced-dynos`.

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use haven_api as w;
use haven_api::attach as frame;
use haven_raft::command::{Command, CommandOutput, DynoTarget};
use haven_raft::model::{self, normalize_size, DynoState, State as Model};
use rand::Rng;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::apps::time;
use super::body::JsonBody;
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};
use crate::dynos::{AttachInput, AttachOutput, DynoManager};

/// Model → wire for a dyno.
pub fn to_wire(s: &Model, a: &model::App, d: &model::Dyno, api_url: &str) -> w::Dyno {
    let release_id = a
        .releases
        .iter()
        .find(|r| r.version == d.release)
        .map(|r| r.id.to_string())
        .unwrap_or_default();
    let state = if !d.run && d.state != DynoState::Down {
        // Asked to stop and not yet confirmed.
        "stopping"
    } else {
        d.state.as_str()
    };
    w::Dyno {
        id: d.id.to_string(),
        name: d.name(),
        process_type: d.process_type.clone(),
        state: state.into(),
        command: d.command.clone(),
        size: d.size.clone(),
        attach_url: d.attach.then(|| {
            let node_api = s.nodes.get(&d.node).map_or(api_url, |n| n.api_url.as_str());
            super::scheme::public_url(&format!("{node_api}/apps/{}/dynos/{}/attach", a.id, d.id))
        }),
        app: w::AppRef {
            id: a.id.to_string(),
            name: a.name.clone(),
        },
        release: w::DynoRelease {
            id: release_id,
            version: d.release,
        },
        created_at: time(d.created_at),
        updated_at: time(d.state_changed_at),
        node: s.nodes.get(&d.node).map(|n| w::NamedRef {
            id: n.id.to_string(),
            name: n.name.clone(),
        }),
        restarts: d.restarts,
        state_changed_at: time(d.state_changed_at),
        exit_code: d.exit_code,
        port: d.port,
    }
}

/// `GET /apps/{app}/dynos`: the dynos that run or are being stopped.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let api_url = ctx.builder.api_url().to_string();
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.app_dynos(a.id)
            .into_iter()
            .map(|d| to_wire(s, a, d, &api_url))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/dynos/{id-or-name}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, dyno)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let api_url = ctx.builder.api_url().to_string();
    let d = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.app_dynos(a.id)
            .into_iter()
            .filter(|d| d.name() == dyno || d.id.to_string() == dyno)
            // A running one wins over one being replaced.
            .max_by_key(|d| (d.run, d.created_at))
            .map(|d| to_wire(s, a, d, &api_url))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that dyno."))?;
    Ok(Json(d).into_response())
}

/// `GET /apps/{app}/unplaced-dynos`: what the scheduler could not place, and why.
pub async fn unplaced(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.unplaced
            .iter()
            .filter(|u| u.app == a.id)
            .map(|u| w::UnplacedDyno {
                name: format!("{}.{}", u.process_type, u.index),
                process_type: u.process_type.clone(),
                reason: u.reason.clone(),
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

async fn act(
    ctx: &ApiContext,
    caller: &Caller,
    key: &str,
    cmd: impl FnOnce(uuid::Uuid) -> Command,
) -> Result<Response, ApiError> {
    let app = app_id(ctx, caller, Action::ChangeApp, key).await?;
    match write(ctx, cmd(app)).await? {
        CommandOutput::Dynos(_) => Ok((StatusCode::ACCEPTED, Json(w::Accepted {})).into_response()),
        _ => Err(ApiError::internal("the command returned no dynos")),
    }
}

/// `DELETE /apps/{app}/dynos`: restart every dyno.
pub async fn restart_all(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    act(&ctx, &caller, &key, |app| Command::RestartDynos {
        app,
        target: DynoTarget::All,
    })
    .await
}

/// What `/dynos/{dyno}` names: a dyno by name (`web.1`) or id, or — a bare process type
/// (`web`), as `heroku ps:restart web` sends it — every dyno of that type.
pub fn dyno_target(key: &str) -> DynoTarget {
    if key.contains('.') || key.parse::<Uuid>().is_ok() {
        DynoTarget::Dyno(key.to_string())
    } else {
        DynoTarget::Type(key.to_string())
    }
}

/// `DELETE /apps/{app}/dynos/{dyno}`: restart one dyno (by name or id), or a type's.
pub async fn restart_one(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, dyno)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&ctx, &caller, &key, |app| Command::RestartDynos {
        app,
        target: dyno_target(&dyno),
    })
    .await
}

/// `DELETE /apps/{app}/formations/{type}[/dynos]`: restart one process type (the Heroku
/// CLI's `ps:restart -p TYPE` sends the short form).
pub async fn restart_type(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, ptype)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&ctx, &caller, &key, |app| Command::RestartDynos {
        app,
        target: DynoTarget::Type(ptype),
    })
    .await
}

/// `POST /apps/{app}/dynos/{dyno}/actions/stop`.
pub async fn stop_one(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, dyno)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&ctx, &caller, &key, |app| Command::StopDynos {
        app,
        target: dyno_target(&dyno),
    })
    .await
}

/// `POST /apps/{app}/formations/{type}/actions/stop`.
pub async fn stop_type(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, ptype)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&ctx, &caller, &key, |app| Command::StopDynos {
        app,
        target: DynoTarget::Type(ptype),
    })
    .await
}

/// `GET /apps/{app}/dynos/{id}/attach` (WebSocket): runs an attached one-off placed on this
/// node, its stdin and output on the socket (frames in [`haven_api::attach`]).
pub async fn attach(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, dyno)): Path<(String, String)>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let id = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        s.dynos
            .values()
            .find(|d| d.app == a.id && (d.id.to_string() == dyno || d.name() == dyno))
            .map(|d| (d.id, d.node, d.attach, d.run, d.exit_code))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that dyno."))?;
    let (id, node, attachable, run, exit) = id;
    if node != ctx.node_id {
        return Err(ApiError::invalid(
            "this dyno runs on another node: use its attach_url",
        ));
    }
    if !attachable || !run || exit.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this dyno cannot be attached to: only a new one-off started with attach can",
        ));
    }
    let manager = ctx.dynos.clone();
    Ok(ws.on_upgrade(move |socket| bridge_attach(manager, id, socket)))
}

/// Carries an attached dyno's channels over the WebSocket, one frame per message. When
/// the socket ends, the dyno's input closes and the dyno manager stops it.
async fn bridge_attach(manager: DynoManager, id: Uuid, mut socket: WebSocket) {
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let run = tokio::spawn(async move { manager.attach(id, in_rx, out_tx).await });
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                let Some(out) = out else { break };
                let last = matches!(out, AttachOutput::Exit(_));
                let frame = match out {
                    AttachOutput::Stdout(b) => [&[frame::STDOUT][..], &b].concat(),
                    AttachOutput::Stderr(b) => [&[frame::STDERR][..], &b].concat(),
                    AttachOutput::Exit(code) => [&[frame::EXIT][..], &code.to_be_bytes()].concat(),
                };
                if socket.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
                if last {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let input = match b.first() {
                        Some(&frame::STDIN) => AttachInput::Stdin(b[1..].to_vec()),
                        Some(&frame::STDIN_EOF) => AttachInput::StdinEof,
                        _ => continue,
                    };
                    if in_tx.send(input).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    // The caller is gone (or the dyno exited): closing the input stops a running dyno.
    drop(in_tx);
    drop(out_rx);
    let _ = run.await;
}

/// `POST /apps/{app}/dynos {command, attach, env, size}` → 201: a one-off `run.N` on this
/// node, running the current release. With `attach`, it starts when the caller connects
/// to its `attach_url`; without, it runs now and its output goes to the app's logs.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<w::DynoCreate>,
) -> Result<Response, ApiError> {
    if body.command.trim().is_empty() {
        return Err(ApiError::invalid(
            "command is required, e.g. {\"command\": \"bash\"}",
        ));
    }
    let size = match &body.size {
        Some(s) => normalize_size(s).map_err(ApiError::invalid)?,
        None => model::DEFAULT_SIZE.to_string(),
    };
    let ptype = body.process_type.clone().unwrap_or_else(|| "run".into());
    model::validate_process_type(&ptype).map_err(ApiError::invalid)?;
    if let Some(env) = &body.env {
        for k in env.keys() {
            model::validate_config_key(k).map_err(ApiError::invalid)?;
        }
    }
    let (app_id, release) = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        (
            a.id,
            a.current_release()
                .filter(|r| s.release_slug(r).is_some())
                .map(|r| r.version),
        )
    })
    .await?;
    let release = release.ok_or_else(|| {
        ApiError::invalid("the app has no slug yet: deploy it (git push or hctl deploy) before running one-off dynos")
    })?;
    let dyno = model::Dyno {
        one_off: true,
        attach: body.attach.unwrap_or(false),
        env: body.env.clone().unwrap_or_default(),
        ..model::Dyno::placed(
            Uuid::new_v4(),
            app_id,
            &ptype,
            rand::thread_rng().gen_range(1000..10000),
            release,
            &size,
            ctx.node_id,
            body.command.clone(),
            Utc::now(),
        )
    };
    let CommandOutput::Dynos(created) = write(&ctx, Command::CreateOneOff { dyno }).await? else {
        return Err(ApiError::internal("the command returned no dyno"));
    };
    let d = created
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the command returned no dyno"))?;
    let api_url = ctx.builder.api_url().to_string();
    let mut wire = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, a| {
        to_wire(s, a, &d, &api_url)
    })
    .await?;
    if d.attach && is_heroku_cli(&headers) {
        wire.attach_url = Some(rendezvous_url(&ctx, &headers, d.id));
    }
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// Whether the request came from the Heroku CLI (`User-Agent: heroku-cli/...`), which
/// attaches by rendezvous rather than by `hctl`'s WebSocket.
fn is_heroku_cli(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("heroku-cli/"))
}

/// A rendezvous `attach_url` for one-off `dyno` (which runs on this node), at the host
/// the client reached this node by (a tunnel's `127.0.0.1:PORT` included), else at the
/// node's advertised API address.
fn rendezvous_url(ctx: &ApiContext, headers: &HeaderMap, dyno: Uuid) -> String {
    let api = ctx.builder.api_url();
    let advertised = api
        .split_once("://")
        .map_or(api, |(_, rest)| rest)
        .trim_end_matches('/');
    let port = advertised
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(443);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| super::rendezvous::valid_authority(h))
        .unwrap_or(advertised);
    let secret = ctx.rendezvous.issue(dyno);
    super::rendezvous::attach_url(host, port, &secret)
}

//! Log sessions: `POST /apps/{app}/log-sessions {dyno, type, source, lines, tail}` → 201
//! `{logplex_url}` on this node; `GET /log-sessions/{id}` answers Server-Sent Events
//! (`data: LINE`): the app's lines from every node merged by time, then — with `tail` —
//! new lines as they come, until the client goes away.
//!
//! Each node is read over its own QUIC stream ([`crate::logs`]); a node that is down or
//! slow does not hold the others up: the history is sent after at most
//! [`HISTORY_WAIT`], and a node that answers later joins the stream then.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use haven_api::{LogSession, LogSessionCreate};
use haven_raft::model::NodeId;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::access;
use super::apps::time;
use super::body::OptionalJsonBody;
use super::{with_app, Action, ApiContext, ApiError, Caller};
use crate::logs::{read_frame, write_frame, LogLine, LogRequest};
use crate::peer::{QuicConnector, StreamKind};

/// How long a session waits for every node's history before sending what it has.
pub const HISTORY_WAIT: Duration = Duration::from_secs(2);
/// Lines of history by default (Heroku's `logs -n` default).
pub const DEFAULT_LINES: usize = 100;
/// A session not opened within this is forgotten.
const SESSION_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Spec {
    app: Uuid,
    /// Who made the session: only they may open it, while they may still see the app.
    user: Uuid,
    dyno: Option<String>,
    ptype: Option<String>,
    source: Option<String>,
    lines: usize,
    tail: bool,
    created: Instant,
}

/// Sessions created on this node and not yet opened.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<Uuid, Spec>>>,
}

/// `POST /apps/{app}/log-sessions`.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<LogSessionCreate>,
) -> Result<Response, ApiError> {
    if let Some(s) = &body.source {
        if s != "app" && s != "heroku" {
            return Err(ApiError::invalid(format!(
                "source {s:?} is invalid: use app or heroku"
            )));
        }
    }
    let lines = body.lines.unwrap_or(DEFAULT_LINES);
    if lines > crate::logs::LINES_PER_APP {
        return Err(ApiError::invalid(format!(
            "lines must be at most {}",
            crate::logs::LINES_PER_APP
        )));
    }
    let app = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| a.id).await?;
    let (dyno, ptype) = dyno_filter(body.dyno, body.process_type);
    let id = Uuid::new_v4();
    if let Ok(mut m) = ctx.sessions.inner.lock() {
        m.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        m.insert(
            id,
            Spec {
                app,
                user: caller.user_id,
                dyno,
                ptype,
                source: body.source,
                lines,
                tail: body.tail.unwrap_or(false),
                created: Instant::now(),
            },
        );
    }
    let now = time(Utc::now());
    Ok((
        StatusCode::CREATED,
        Json(LogSession {
            id: id.to_string(),
            logplex_url: super::scheme::public_url(&format!(
                "{}/log-sessions/{id}",
                ctx.builder.api_url()
            )),
            created_at: now.clone(),
            updated_at: now,
        }),
    )
        .into_response())
}

/// The (dyno, process type) filters of a session: a `dyno` without an index (`web`,
/// `router`; the Heroku CLI sends `logs -p web` so) means every dyno of that type, as on
/// Heroku. Empty strings are no filter.
pub fn dyno_filter(
    dyno: Option<String>,
    ptype: Option<String>,
) -> (Option<String>, Option<String>) {
    let dyno = dyno.filter(|d| !d.is_empty());
    let ptype = ptype.filter(|t| !t.is_empty());
    match (dyno, ptype) {
        (Some(d), None) if !d.contains('.') => (None, Some(d)),
        other => other,
    }
}

/// `GET /log-sessions/{id}`: the Server-Sent Events stream of a session. With a token,
/// only the session's maker may open it; without one (the Heroku CLI opens its
/// `logplex_url` with no `Authorization`), the session's random, single-use id is the
/// capability and the stream is read as its maker.
pub async fn open(
    State(ctx): State<ApiContext>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let no_session = || {
        ApiError::not_found("no such log session; create one with POST /apps/{app}/log-sessions")
    };
    let id = id.parse::<Uuid>().map_err(|_| no_session())?;
    let caller = caller.map(|Extension(c)| c);
    let spec = {
        let mut sessions = ctx.sessions.inner.lock().map_err(|_| no_session())?;
        match sessions.get(&id) {
            Some(s) if caller.as_ref().is_none_or(|c| s.user == c.user_id) => sessions.remove(&id),
            _ => None,
        }
    }
    .ok_or_else(no_session)?;
    let caller = match caller {
        Some(c) => c,
        None => ctx
            .raft
            .with_state(|s| {
                s.users.get(&spec.user).map(|u| Caller {
                    email: u.email.clone(),
                    user_id: u.id,
                    admin: u.admin,
                })
            })
            .ok_or_else(no_session)?,
    };
    // Access is asked again: it may have been removed since the session was made. This
    // node's replica answers (no barrier), as for the rest of a log session.
    ctx.raft
        .with_state(|s| {
            let app = s.apps.get(&spec.app);
            access::authorize(&caller, Action::ViewApp, app)
        })
        .map_err(ApiError::from)?;
    let peers = ctx.peers.clone();
    // No read barrier: the node list only says whom to ask, and a node missing from a
    // stale list joins the next session; log lines are not replicated state.
    let nodes: Vec<(NodeId, String)> = ctx.raft.with_state(|s| {
        s.nodes
            .values()
            .map(|n| (n.id, n.peer_addr.clone()))
            .collect()
    });
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    if !spec.tail {
        // A client reconnects after the stream ends, by default 3 s later: the Heroku
        // CLI's EventSource waits that long before it exits.
        let _ = tx.try_send(Bytes::from_static(b"retry: 1\n\n"));
    }
    tokio::spawn(run(spec, nodes, peers, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn event(line: &LogLine) -> Bytes {
    Bytes::from(format!("data: {}\n\n", line.render().replace('\n', " ")))
}

/// What a node reader sends the session: its lines, and whether they are its history.
type Batch = (NodeId, Vec<LogLine>, bool);

async fn run(
    spec: Spec,
    nodes: Vec<(NodeId, String)>,
    peers: QuicConnector,
    tx: mpsc::Sender<Bytes>,
) {
    let (btx, mut brx) = mpsc::channel::<Batch>(256);
    let readers: Vec<_> = nodes
        .iter()
        .map(|(id, addr)| {
            tokio::spawn(read_node(
                peers.clone(),
                *id,
                addr.clone(),
                spec.app,
                spec.tail,
                btx.clone(),
            ))
        })
        .collect();
    drop(btx);
    let keep = |l: &LogLine| {
        l.matches(
            spec.dyno.as_deref(),
            spec.ptype.as_deref(),
            spec.source.as_deref(),
        )
    };

    // History: every node's kept lines, merged by time, the last `lines` that match.
    let mut waiting: BTreeSet<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
    let mut history: Vec<(NodeId, LogLine)> = Vec::new();
    let deadline = tokio::time::Instant::now() + HISTORY_WAIT;
    while !waiting.is_empty() {
        tokio::select! {
            got = brx.recv() => match got {
                Some((node, lines, first)) => {
                    if first {
                        waiting.remove(&node);
                    }
                    history.extend(lines.into_iter().filter(|l| keep(l)).map(|l| (node, l)));
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    history.sort_by(|(na, a), (nb, b)| (a.at, na, a.seq).cmp(&(b.at, nb, b.seq)));
    let skip = history.len().saturating_sub(spec.lines);
    for (_, line) in history.into_iter().skip(skip) {
        if tx.send(event(&line)).await.is_err() {
            abort(readers);
            return;
        }
    }
    if !spec.tail {
        abort(readers);
        return;
    }
    // Tail: lines as they come from any node; a comment every 15 s keeps proxies open.
    let mut keepalive = tokio::time::interval(Duration::from_secs(15));
    keepalive.tick().await;
    loop {
        tokio::select! {
            got = brx.recv() => match got {
                Some((_, mut lines, _)) => {
                    lines.sort_by_key(|l| l.at);
                    for line in lines.iter().filter(|l| keep(l)) {
                        if tx.send(event(line)).await.is_err() {
                            abort(readers);
                            return;
                        }
                    }
                }
                None => break,
            },
            _ = keepalive.tick() => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    break;
                }
            }
            _ = tx.closed() => break,
        }
    }
    abort(readers);
}

fn abort(readers: Vec<tokio::task::JoinHandle<()>>) {
    for r in readers {
        r.abort();
    }
}

/// Reads one node's lines; with `tail`, reconnects (resuming after the last line seen)
/// whenever the stream breaks, so a node that comes back joins again.
async fn read_node(
    peers: QuicConnector,
    node: NodeId,
    addr: String,
    app: Uuid,
    tail: bool,
    out: mpsc::Sender<Batch>,
) {
    let mut last: Option<u64> = None;
    let mut first = true;
    loop {
        let result = async {
            let (mut send, mut recv) = peers.open(&addr, StreamKind::Logs).await?;
            write_frame(
                &mut send,
                &LogRequest {
                    app,
                    after_seq: last,
                    tail,
                },
            )
            .await?;
            loop {
                let lines: Vec<LogLine> = read_frame(&mut recv, 64 * 1024 * 1024).await?;
                if let Some(l) = lines.last() {
                    last = Some(l.seq);
                }
                if out.send((node, lines, first)).await.is_err() {
                    return Ok::<_, String>(());
                }
                first = false;
                if !tail {
                    return Ok(());
                }
            }
        }
        .await;
        if !tail || out.is_closed() {
            if first {
                let _ = out.send((node, Vec::new(), true)).await;
            }
            return;
        }
        tracing::debug!(node, error = ?result.err(), "log stream from a node ended; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

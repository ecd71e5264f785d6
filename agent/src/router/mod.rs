//! The HTTP router every node runs (design §8): routes a request by its `Host` to a web
//! dyno of the app, wherever in the cluster it runs.
//!
//! A request goes through these steps, each in its own module:
//! - [`request`]: read what the router needs (host, request id, `X-Forwarded-For`).
//! - [`target`]: `<app>.<app domain>` and the app's custom domains name the app; anything
//!   else gets a 404 page. Maintenance mode answers H80; no dyno, H10 or H14.
//! - Dynos come from [`table`], filled by every node's registrations ([`registry`]).
//! - [`ready`]: until the replica has caught up and every up node's routes are in (bounded
//!   by `sync_grace_ms`), and while a web dyno of the app is starting or moving, a request
//!   that finds no app or no dyno waits (up to `hold_ms`) instead of a 404 or H14. Dynos
//!   of nodes not heard from lately are picked only when nothing else is left.
//! - [`headers`]: Heroku's headers (`X-Forwarded-For/-Proto/-Port`, `X-Request-Id`,
//!   `X-Request-Start`, `Via`).
//! - [`forward`]: least outstanding requests between two random choices; a refused or
//!   timed-out connect quarantines the dyno and tries another (up to `max_tries`), and so
//!   does a bodiless GET/HEAD/OPTIONS whose dyno died or whose node went silent under it;
//!   H12, H13, H18, H19, H21, H99.
//! - [`body`]: response bodies stream back; a silent one ends with H15.
//! - [`websocket`]: WebSocket (any `Upgrade`) connections pass through.
//! - [`errors`]: the error codes and their plain pages; [`log_line`]: one
//!   `heroku[router]` line per request.

mod body;
mod errors;
mod forward;
mod headers;
mod log_line;
pub mod ready;
pub mod registry;
mod request;
pub mod table;
mod target;
pub mod tls;
mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_raft::HavenRaft;
use http::header;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::Either;
use hyper::body::{Bytes, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::RouterTuning;
use crate::https::Acceptor;
use crate::logs::Logs;
use crate::metrics::Metrics;
use body::Guarded;
use errors::Code;
use forward::{forward, Forwarded, Replay};
use log_line::{idle_line, log_line, LogFields};
use ready::Readiness;
use request::RequestInfo;
use table::{InFlight, Table};
use target::Target;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RBody = BoxBody<Bytes, BoxError>;

/// How often a held request looks again when nothing woke it.
const RECHECK: Duration = Duration::from_millis(100);

struct Inner {
    raft: HavenRaft,
    table: Arc<Table>,
    ready: Arc<Readiness>,
    logs: Logs,
    metrics: Metrics,
    tuning: RouterTuning,
    port: u16,
}

/// One node's router. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Router {
    pub fn new(
        raft: HavenRaft,
        table: Arc<Table>,
        ready: Arc<Readiness>,
        logs: Logs,
        metrics: Metrics,
        tuning: RouterTuning,
        port: u16,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                raft,
                table,
                ready,
                logs,
                metrics,
                tuning,
                port,
            }),
        }
    }

    /// Runs the router on a thread of its own with a single-threaded runtime: proxying is
    /// short non-blocking work, and one thread avoids cross-thread wakeups per request.
    pub fn spawn_thread(
        self,
        listener: std::net::TcpListener,
        acceptor: Acceptor,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("haven-router".into())
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => self.serve(l, acceptor, shutdown).await,
                        Err(e) => warn!(error = %e, "router listener unusable"),
                    }
                })
            })
    }

    /// Accepts connections, HTTP or HTTPS, until shutdown.
    pub async fn serve(
        self,
        listener: TcpListener,
        acceptor: Acceptor,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, remote) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "router accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Some(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let tls = stream.is_tls();
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req, remote, tls).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    debug!(error = %e, "router connection ended with an error");
                }
            });
        }
    }

    /// One request: find the app, refuse it if nothing can answer, else forward it to a
    /// dyno and stream the answer back. While no dyno can take it but one is coming (the
    /// router is still syncing, a dyno is starting or moving), it waits, up to `hold_ms`.
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        remote: SocketAddr,
        tls: bool,
    ) -> Response<RBody> {
        let info = RequestInfo::read(&req, remote, tls);
        let hold_until = info.started + Duration::from_millis(self.inner.tuning.hold_ms);
        let Some(mut t) = self.target(&info.host).await else {
            return self.no_such_app(&info);
        };
        if t.maintenance {
            return self.fail(&t, &info, Code::H80, "", 0);
        }
        headers::add_heroku_headers(req.headers_mut(), &info, self.inner.port);
        let client_upgrade = websocket::client_upgrade(&mut req);
        let upgrade = client_upgrade.is_some();
        let replay = Replay::of(&req, upgrade);
        let mut req = req.map(Either::Left);
        let ready = &self.inner.ready;
        let silent = |n| ready.silent(n);
        loop {
            // Subscribe before reading the table: a route added after the read wakes us.
            let mut changes = self.inner.table.subscribe();
            let backends = self.inner.table.backends(t.app, &t.down_nodes);
            let (code, dyno, connect_ms, back) = if backends.is_empty() {
                (self.no_dyno_code(&t), String::new(), 0, Some(req))
            } else {
                let tuning = &self.inner.tuning;
                match forward(&backends, req, replay.as_ref(), upgrade, tuning, &silent).await {
                    Ok(f) => return self.answer(&t, &info, f, client_upgrade),
                    Err(e) => (e.code, e.dyno().to_string(), e.connect_ms, e.req),
                }
            };
            match back {
                Some(r) if Instant::now() < hold_until && self.may_hold(&t) => req = r,
                _ => return self.fail(&t, &info, code, &dyno, connect_ms),
            }
            let wake = (Instant::now() + RECHECK).min(hold_until);
            if backends.is_empty() {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
            } else {
                // Every dyno failed at once (refused): give the table time to change.
                tokio::time::sleep_until(wake.into()).await;
            }
            t = match self
                .inner
                .raft
                .with_state(|s| Target::resolve(s, &info.host))
            {
                Some(t) => t,
                None => return self.no_such_app(&info),
            };
            if t.maintenance {
                return self.fail(&t, &info, Code::H80, "", 0);
            }
        }
    }

    /// The app `host` names. A host the replica does not know is looked up again until
    /// the replica has caught up with the leader once since start (within the grace
    /// period): a restarted node's state may lag.
    async fn target(&self, host: &str) -> Option<Target> {
        loop {
            let t = self.inner.raft.with_state(|s| Target::resolve(s, host));
            let ready = &self.inner.ready;
            if t.is_some() || ready.caught_up() || !ready.in_grace() {
                return t;
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Whether a request no dyno took now may wait for one (see [`ready::hold`]).
    fn may_hold(&self, t: &Target) -> bool {
        self.inner.raft.with_state(|s| {
            let synced = self.inner.ready.routes_synced(s, &self.inner.table);
            ready::hold(t.web_wanted, synced, t.web_expected(s))
        })
    }

    fn no_such_app(&self, info: &RequestInfo) -> Response<RBody> {
        self.inner
            .metrics
            .request(None, 404, info.started.elapsed());
        errors::no_such_app(&info.host)
    }

    /// Why no dyno is there to answer: H10 if web dynos are wanted and one crashed, else
    /// H14.
    fn no_dyno_code(&self, t: &Target) -> Code {
        let crashed = t.web_wanted > 0 && self.inner.raft.with_state(|s| t.web_crashed(s));
        if crashed {
            Code::H10
        } else {
            Code::H14
        }
    }

    /// Logs the request's error line and answers with the error's page.
    fn fail(
        &self,
        t: &Target,
        info: &RequestInfo,
        code: Code,
        dyno: &str,
        connect_ms: u128,
    ) -> Response<RBody> {
        let line = log_line(Some(code), &LogFields::of(info, dyno, connect_ms, 503, 0));
        self.inner.logs.emit(t.app, "heroku", "router", &line);
        self.inner
            .metrics
            .request(Some(&t.name), 503, info.started.elapsed());
        errors::error_page(code)
    }

    /// Logs the request's line and hands the dyno's response to the client: an upgrade
    /// passes through, any other body streams under the idle timeout.
    fn answer(
        &self,
        t: &Target,
        info: &RequestInfo,
        f: Forwarded,
        client_upgrade: Option<OnUpgrade>,
    ) -> Response<RBody> {
        let Forwarded {
            backend,
            sender,
            resp,
            connect_ms,
        } = f;
        let status = resp.status().as_u16();
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let line = log_line(
            None,
            &LogFields::of(info, &backend.entry.name, connect_ms, status, bytes),
        );
        let inflight = InFlight::new(backend.clone());
        let active = self.inner.metrics.active(&t.name);
        // A connection that carried an upgrade is the WebSocket's for good.
        let reuse = client_upgrade.is_none().then_some((backend, sender));
        self.inner.logs.emit(t.app, "heroku", "router", &line);
        self.inner
            .metrics
            .request(Some(&t.name), status, info.started.elapsed());

        if status == 101 {
            if let Some(client) = client_upgrade {
                return websocket::pass_through(client, resp, (inflight, active));
            }
        }
        let on_idle: Box<dyn FnOnce() + Send + Sync> = {
            let logs = self.inner.logs.clone();
            let app = t.app;
            Box::new(move || logs.emit(app, "heroku", "router", &idle_line(&line)))
        };
        let idle_limit = Duration::from_millis(self.inner.tuning.idle_timeout_ms);
        resp.map(|body| Guarded::wrap(body, (inflight, active), reuse, idle_limit, on_idle))
    }
}

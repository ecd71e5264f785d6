//! The HTTP router every node runs (design §8): routes a request by its `Host` to a web
//! dyno of the app, wherever in the cluster it runs.
//!
//! A request goes through these steps, each in its own module:
//! - [`request`]: read what the router needs (host, request id, `X-Forwarded-For`).
//! - [`target`]: `<app>.<app domain>` and the app's custom domains name the app; anything
//!   else gets a 404 page. Maintenance mode answers H80; no dyno, H10 or H14.
//! - Dynos come from [`table`], filled by every node's registrations ([`registry`]).
//! - [`headers`]: Heroku's headers (`X-Forwarded-For/-Proto/-Port`, `X-Request-Id`,
//!   `X-Request-Start`, `Via`).
//! - [`forward`]: least outstanding requests between two random choices; a refused or
//!   timed-out connect quarantines the dyno and tries another (up to `max_tries`); H12,
//!   H13, H18, H19, H21, H99.
//! - [`body`]: response bodies stream back; a silent one ends with H15.
//! - [`websocket`]: WebSocket (any `Upgrade`) connections pass through.
//! - [`errors`]: the error codes and their plain pages; [`log_line`]: one
//!   `heroku[router]` line per request.

mod body;
mod errors;
mod forward;
mod headers;
mod log_line;
pub mod registry;
mod request;
pub mod table;
mod target;
mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use haven_raft::HavenRaft;
use http::header;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::RouterTuning;
use crate::logs::Logs;
use crate::metrics::Metrics;
use body::Guarded;
use errors::Code;
use forward::{forward, Forwarded};
use log_line::{idle_line, log_line, LogFields};
use request::RequestInfo;
use table::{InFlight, Table};
use target::Target;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RBody = BoxBody<Bytes, BoxError>;

struct Inner {
    raft: HavenRaft,
    table: Arc<Table>,
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
        logs: Logs,
        metrics: Metrics,
        tuning: RouterTuning,
        port: u16,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                raft,
                table,
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
                        Ok(l) => self.serve(l, shutdown).await,
                        Err(e) => warn!(error = %e, "router listener unusable"),
                    }
                })
            })
    }

    /// Accepts connections until shutdown.
    pub async fn serve(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
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
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req, remote).await) }
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
    /// dyno and stream the answer back.
    async fn handle(&self, mut req: Request<Incoming>, remote: SocketAddr) -> Response<RBody> {
        let info = RequestInfo::read(&req, remote);
        let Some(t) = self
            .inner
            .raft
            .with_state(|s| Target::resolve(s, &info.host))
        else {
            self.inner
                .metrics
                .request(None, 404, info.started.elapsed());
            return errors::no_such_app(&info.host);
        };
        if t.maintenance {
            return self.fail(&t, &info, Code::H80, "", 0);
        }
        let backends = self.inner.table.backends(t.app, &t.down_nodes);
        if backends.is_empty() {
            return self.fail(&t, &info, self.no_dyno_code(&t), "", 0);
        }
        headers::add_heroku_headers(req.headers_mut(), &info, self.inner.port);
        let client_upgrade = websocket::client_upgrade(&mut req);
        let upgrade = client_upgrade.is_some();
        match forward(&backends, req, upgrade, &self.inner.tuning).await {
            Ok(f) => self.answer(&t, &info, f, client_upgrade),
            Err(e) => self.fail(&t, &info, e.code, e.dyno(), e.connect_ms),
        }
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

//! The HTTP router every node runs (design §8): routes a request by its `Host` to a web
//! dyno of the app, wherever in the cluster it runs.
//!
//! - `<app>.<app domain>` and the app's custom domains name the app; anything else gets a
//!   404 page.
//! - Dynos come from [`table`], filled by every node's registrations ([`registry`]).
//! - Balancing: least outstanding requests between two random choices; a refused or
//!   timed-out connect quarantines the dyno and tries another (up to `max_tries`).
//! - Heroku's headers (`X-Forwarded-For/-Proto/-Port`, `X-Request-Id`, `X-Request-Start`,
//!   `Via`), its error codes (H10, H12, H13, H14, H15, H18, H19, H21, H80, H99) as plain
//!   error pages,
//!   and one `heroku[router]` log line per request.
//! - Bodies stream both ways; WebSocket (any `Upgrade`) connections pass through.

pub mod registry;
pub mod table;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use haven_raft::model::{DynoState, NodeId, NodeStatus};
use haven_raft::HavenRaft;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::config::RouterTuning;
use crate::logs::Logs;
use crate::metrics::{ActiveGuard, Metrics};
use table::{choose, InFlight, Table};

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

/// What the routing table and the state say about an app, for one request.
struct Target {
    app: Uuid,
    name: String,
    maintenance: bool,
    /// Web dynos the formation asks for.
    web_wanted: u32,
    /// Nodes the cluster marks down: their routes are not used.
    down_nodes: Vec<NodeId>,
}

/// The host part of a `Host` header, lowercased, without the port.
pub fn host_only(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map_or(h, |(n, _)| n)
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Heroku's error descriptions.
fn describe(code: &str) -> &'static str {
    match code {
        "H10" => "App crashed",
        "H12" => "Request timeout",
        "H13" => "Connection closed without response",
        "H14" => "No web processes running",
        "H15" => "Idle connection",
        "H18" => "Server Request Interrupted",
        "H19" => "Backend connection timeout",
        "H21" => "Backend connection refused",
        "H80" => "Maintenance mode",
        _ => "Platform error",
    }
}

fn full(status: StatusCode, content_type: &'static str, body: String) -> Response<RBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The plain page of a router error.
fn error_page(code: &str) -> Response<RBody> {
    let (title, text) = match code {
        "H80" => (
            "Offline for Maintenance",
            "This app is in maintenance mode. Please check back soon.",
        ),
        _ => (
            "Application Error",
            "An error occurred in the application and your page could not be served. If you are the application owner, check your logs for details (hctl logs --tail).",
        ),
    };
    full(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html; charset=utf-8",
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1><p>{text}</p><p><code>{code}: {}</code></p></body></html>\n",
            describe(code)
        ),
    )
}

/// A response body that keeps guards (in-flight count, active connection) until it ends.
/// When the body has been read to its end, the dyno connection goes back to the pool.
struct Guarded {
    inner: Incoming,
    _guards: (InFlight, ActiveGuard),
    reuse: Option<(Arc<table::Backend>, table::Sender)>,
    /// Armed while the body waits for the dyno; fires after `idle_limit` of silence.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_limit: Duration,
    /// Logs H15 when the idle timer fires.
    on_idle: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection unusable.
        if hyper::body::Body::is_end_stream(&self.inner) {
            self.give_back();
        }
    }
}

impl Guarded {
    fn give_back(&mut self) {
        if let Some((backend, sender)) = self.reuse.take() {
            backend.put_idle(sender);
        }
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError);
        if polled.is_pending() {
            let limit = self.idle_limit;
            let timer = self
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if timer.as_mut().poll(cx).is_ready() {
                self.reuse = None;
                if let Some(f) = self.on_idle.take() {
                    f();
                }
                return Poll::Ready(Some(Err("H15: the dyno sent nothing for too long".into())));
            }
            return Poll::Pending;
        }
        // Data came: the next wait gets a fresh window.
        self.idle = None;
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.reuse = None,
            // hyper stops polling a body that says it has ended.
            Poll::Ready(Some(Ok(_))) if hyper::body::Body::is_end_stream(&self.inner) => {
                self.give_back()
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The fields of one router log line.
struct LogFields<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    request_id: &'a str,
    fwd: &'a str,
    dyno: &'a str,
    connect_ms: u128,
    service_ms: u128,
    status: u16,
    bytes: u64,
}

/// `at=info method=GET path="/" host=… request_id=… fwd="…" dyno=web.1 connect=1ms
/// service=18ms status=200 bytes=13 protocol=http`, or `at=error code=H12 desc="…" …`.
fn log_line(code: Option<&str>, f: &LogFields) -> String {
    let head = match code {
        Some(c) => format!("at=error code={c} desc=\"{}\"", describe(c)),
        None => "at=info".to_string(),
    };
    format!(
        "{head} method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={}ms service={}ms status={} bytes={} protocol=http",
        f.method,
        // Quoted: a `"` in the path would end the field.
        f.path.replace('"', "%22"),
        f.host,
        f.request_id,
        f.fwd,
        f.dyno,
        f.connect_ms,
        f.service_ms,
        f.status,
        f.bytes
    )
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

    fn target(&self, host: &str) -> Option<Target> {
        self.inner.raft.with_state(|s| {
            let domain = s
                .cluster
                .as_ref()
                .map_or("localhost", |c| c.app_domain.as_str());
            let by_name = host
                .strip_suffix(domain)
                .and_then(|rest| rest.strip_suffix('.'))
                .and_then(|name| s.apps.values().find(|a| a.name == name));
            let app = by_name.or_else(|| {
                s.apps
                    .values()
                    .find(|a| a.domains.iter().any(|d| d.hostname == host))
            })?;
            let web_wanted = app.formation.get("web").map_or(0, |f| f.quantity);
            let down_nodes = s
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Down)
                .map(|n| n.id)
                .collect();
            Some(Target {
                app: app.id,
                name: app.name.clone(),
                maintenance: app.maintenance,
                web_wanted,
                down_nodes,
            })
        })
    }

    async fn handle(&self, mut req: Request<Incoming>, remote: SocketAddr) -> Response<RBody> {
        let started = Instant::now();
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let host_header = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = host_only(&host_header);
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| haven_api::valid_request_id(v))
            .map(str::to_string)
            .unwrap_or_else(|| {
                // A v4 uuid from the thread's fast generator: no system call per request.
                uuid::Builder::from_random_bytes(rand::random::<[u8; 16]>())
                    .into_uuid()
                    .to_string()
            });
        let method = req.method().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let fwd = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", remote.ip()),
            None => remote.ip().to_string(),
        };
        let metrics = &self.inner.metrics;

        let Some(t) = self.target(&host) else {
            metrics.request(None, 404, started.elapsed());
            return full(
                StatusCode::NOT_FOUND,
                "text/html; charset=utf-8",
                format!(
                    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>No such app</title></head>\n<body><h1>No such app</h1><p>There is no app at {} on this Haven cluster. Apps answer at APP.DOMAIN or at a custom domain added with hctl domains:add.</p></body></html>\n",
                    html_escape(&host)
                ),
            );
        };
        let line_for =
            |code: Option<&str>, dyno: &str, connect_ms: u128, status: u16, bytes: u64| {
                log_line(
                    code,
                    &LogFields {
                        method: &method,
                        path: &path,
                        host: &host,
                        request_id: &request_id,
                        fwd: &fwd,
                        dyno,
                        connect_ms,
                        service_ms: started.elapsed().as_millis(),
                        status,
                        bytes,
                    },
                )
            };
        let fail = |code: &str, dyno: &str, connect_ms: u128| {
            let line = line_for(Some(code), dyno, connect_ms, 503, 0);
            self.inner.logs.emit(t.app, "heroku", "router", &line);
            metrics.request(Some(&t.name), 503, started.elapsed());
            error_page(code)
        };
        if t.maintenance {
            return fail("H80", "", 0);
        }
        let backends = self.inner.table.backends(t.app, &t.down_nodes);
        if backends.is_empty() {
            let crashed = t.web_wanted > 0
                && self.inner.raft.with_state(|s| {
                    s.dynos.values().any(|d| {
                        d.app == t.app
                            && d.process_type == "web"
                            && d.run
                            && d.state == DynoState::Crashed
                    })
                });
            return fail(if crashed { "H10" } else { "H14" }, "", 0);
        }

        // Heroku's request headers.
        {
            let h = req.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&fwd) {
                h.insert("x-forwarded-for", v);
            }
            h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
            if let Ok(v) = HeaderValue::from_str(&self.inner.port.to_string()) {
                h.insert("x-forwarded-port", v);
            }
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert("x-request-id", v);
            }
            if let Ok(v) = HeaderValue::from_str(&start_ms.to_string()) {
                h.insert("x-request-start", v);
            }
            let via = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, 1.1 haven"),
                None => "1.1 haven".into(),
            };
            if let Ok(v) = HeaderValue::from_str(&via) {
                h.insert(header::VIA, v);
            }
        }
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        // Pick a dyno and get a connection to it: an idle pooled one, else a new one;
        // a refused or timed-out connect quarantines the dyno and tries another.
        let tuning = &self.inner.tuning;
        let connect_timeout = Duration::from_millis(tuning.connect_timeout_ms);
        let quarantine = Duration::from_millis(tuning.quarantine_ms);
        let first_byte = Duration::from_millis(tuning.first_byte_timeout_ms);
        let mut tried: Vec<Uuid> = Vec::new();
        let mut last_code = "H21";
        let connect_started = Instant::now();
        let mut req = req;
        let mut attempt = 0;
        let (backend, sender, mut resp) = loop {
            attempt += 1;
            if attempt > tuning.max_tries.max(1) as usize + 4 {
                return fail(last_code, "", connect_started.elapsed().as_millis());
            }
            let Some(b) = choose(&backends, &tried, Instant::now(), |n| {
                rand::random::<usize>() % n
            }) else {
                return fail(last_code, "", connect_started.elapsed().as_millis());
            };
            // Upgrades take their connection for good: never pool those.
            let pooled = if upgrade { None } else { b.take_idle() };
            let mut sender = match pooled {
                Some(s) => s,
                None => {
                    tried.push(b.entry.dyno);
                    let stream = match tokio::time::timeout(
                        connect_timeout,
                        TcpStream::connect(&b.entry.addr),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            debug!(dyno = %b.entry.name, error = %e, "connect refused; quarantined");
                            last_code = "H21";
                            b.quarantine(quarantine);
                            continue;
                        }
                        Err(_) => {
                            last_code = "H19";
                            b.quarantine(quarantine);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let (sender, conn) =
                        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                            Ok(x) => x,
                            Err(_) => {
                                // The dyno accepted but the HTTP handshake broke: ours.
                                last_code = "H99";
                                continue;
                            }
                        };
                    tokio::spawn(async move {
                        let _ = conn.with_upgrades().await;
                    });
                    sender
                }
            };
            if sender.ready().await.is_err() {
                // A pooled connection the dyno closed meanwhile: try again.
                continue;
            }
            match tokio::time::timeout(first_byte, sender.try_send_request(req)).await {
                Err(_) => return fail("H12", &b.entry.name, connect_started.elapsed().as_millis()),
                Ok(Ok(r)) => break (b, sender, r),
                Ok(Err(mut e)) => match e.take_message() {
                    // Not sent (the connection was gone): the request can go elsewhere.
                    Some(r) => {
                        req = r;
                        continue;
                    }
                    None => {
                        // The request body broke off while it was being sent (H18), or
                        // the dyno closed the connection without answering (H13).
                        let code = if e.error().is_body_write_aborted() || e.error().is_user() {
                            "H18"
                        } else {
                            "H13"
                        };
                        debug!(error = %e.error(), code, "no response from the dyno");
                        return fail(code, &b.entry.name, connect_started.elapsed().as_millis());
                    }
                },
            }
        };
        let connect_ms = connect_started.elapsed().as_millis();
        let dyno_name = backend.entry.name.clone();
        let inflight = InFlight::new(backend.clone());
        let active = metrics.active(&t.name);
        // A connection that carried an upgrade is the WebSocket's for good.
        let reuse = (!upgrade).then(|| (backend, sender));
        let status = resp.status().as_u16();
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let line = line_for(None, &dyno_name, connect_ms, status, bytes);
        self.inner.logs.emit(t.app, "heroku", "router", &line);
        metrics.request(Some(&t.name), status, started.elapsed());

        if status == 101 {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let _guards = (inflight, active);
                    if let (Ok(c), Ok(b)) = (client_upgrade.await, backend_upgrade.await) {
                        let mut c = TokioIo::new(c);
                        let mut b = TokioIo::new(b);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                    }
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(
                    parts,
                    http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
                );
            }
        }
        // The H15 line is the request's line with the error in front: nothing more is
        // formatted unless the body goes idle.
        let on_idle: Box<dyn FnOnce() + Send + Sync> = {
            let logs = self.inner.logs.clone();
            let app = t.app;
            Box::new(move || {
                let rest = line.strip_prefix("at=info ").unwrap_or(&line);
                let err = format!("at=error code=H15 desc=\"{}\" {rest}", describe("H15"));
                logs.emit(app, "heroku", "router", &err)
            })
        };
        let idle_limit = Duration::from_millis(self.inner.tuning.idle_timeout_ms);
        resp.map(|body| {
            let mut g = Guarded {
                inner: body,
                _guards: (inflight, active),
                reuse,
                idle: None,
                idle_limit,
                on_idle: Some(on_idle),
            };
            // An empty body is complete already.
            if hyper::body::Body::is_end_stream(&g.inner) {
                g.give_back();
            }
            g.boxed()
        })
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_case() {
        for (h, want) in [
            ("App.Example.com", "app.example.com"),
            ("app.localhost:7480", "app.localhost"),
            ("app.localhost.", "app.localhost"),
            ("[::1]:80", "::1"),
            ("10.0.0.1", "10.0.0.1"),
        ] {
            assert_eq!(host_only(h), want, "{h}");
        }
    }

    #[test]
    fn router_lines_read_like_heroku() {
        let f = LogFields {
            method: "GET",
            path: "/a?b=\"c\"",
            host: "x.localhost",
            request_id: "rid",
            fwd: "1.2.3.4",
            dyno: "web.1",
            connect_ms: 1,
            service_ms: 18,
            status: 200,
            bytes: 13,
        };
        assert_eq!(
            log_line(None, &f),
            "at=info method=GET path=\"/a?b=%22c%22\" host=x.localhost request_id=rid fwd=\"1.2.3.4\" dyno=web.1 connect=1ms service=18ms status=200 bytes=13 protocol=http"
        );
        let e = log_line(Some("H12"), &f);
        assert!(
            e.starts_with("at=error code=H12 desc=\"Request timeout\" method=GET"),
            "{e}"
        );
    }
}

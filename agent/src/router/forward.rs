//! Getting a request to a dyno: pick one, get a connection (an idle pooled one, else a
//! new one; a refused or timed-out connect quarantines the dyno and tries another), send
//! the request, and wait for the response's head.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;
use uuid::Uuid;

use super::errors::Code;
use super::table::{choose, Backend, Sender};
use crate::config::RouterTuning;

/// A request a dyno answered.
pub struct Forwarded {
    pub backend: Arc<Backend>,
    /// The connection that carried it.
    pub sender: Sender,
    pub resp: Response<Incoming>,
    /// Time spent choosing and connecting, up to the response's head.
    pub connect_ms: u128,
}

/// A request no dyno answered.
pub struct Failed {
    pub code: Code,
    /// The dyno it was sent to, if it got that far.
    pub backend: Option<Arc<Backend>>,
    pub connect_ms: u128,
}

impl Failed {
    /// The dyno's name for the log line: empty if none was reached.
    pub fn dyno(&self) -> &str {
        self.backend.as_ref().map_or("", |b| &b.entry.name)
    }
}

/// Sends `req` to one of `backends`. `upgrade`: the request asks for a protocol upgrade,
/// which takes a connection of its own (never a pooled one).
pub async fn forward(
    backends: &[Arc<Backend>],
    mut req: Request<Incoming>,
    upgrade: bool,
    tuning: &RouterTuning,
) -> Result<Forwarded, Failed> {
    let connect_timeout = Duration::from_millis(tuning.connect_timeout_ms);
    let quarantine = Duration::from_millis(tuning.quarantine_ms);
    let first_byte = Duration::from_millis(tuning.first_byte_timeout_ms);
    let started = Instant::now();
    let failed = |code, backend| Failed {
        code,
        backend,
        connect_ms: started.elapsed().as_millis(),
    };
    // Dynos a new connection was tried to: each gets one per request.
    let mut tried: Vec<Uuid> = Vec::new();
    let mut last_code = Code::H21;
    // Pooled connections found closed use up no dyno; the bound keeps them from looping.
    for _attempt in 0..tuning.max_tries.max(1) as usize + 4 {
        let Some(b) = choose(backends, &tried, Instant::now(), |n| {
            rand::random::<usize>() % n
        }) else {
            return Err(failed(last_code, None));
        };
        let pooled = if upgrade { None } else { b.take_idle() };
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                tried.push(b.entry.dyno);
                match connect(&b, connect_timeout, quarantine).await {
                    Ok(s) => s,
                    Err(code) => {
                        last_code = code;
                        continue;
                    }
                }
            }
        };
        if sender.ready().await.is_err() {
            // A pooled connection the dyno closed meanwhile: try again.
            continue;
        }
        match tokio::time::timeout(first_byte, sender.try_send_request(req)).await {
            Err(_) => return Err(failed(Code::H12, Some(b))),
            Ok(Ok(resp)) => {
                return Ok(Forwarded {
                    backend: b,
                    sender,
                    resp,
                    connect_ms: started.elapsed().as_millis(),
                })
            }
            Ok(Err(mut e)) => match e.take_message() {
                // Not sent (the connection was gone): the request can go elsewhere.
                Some(r) => req = r,
                None => {
                    let code = unanswered(e.error());
                    debug!(error = %e.error(), %code, "no response from the dyno");
                    return Err(failed(code, Some(b)));
                }
            },
        }
    }
    Err(failed(last_code, None))
}

/// A new connection to the dyno, or the error code of the failure: H21 (refused) and H19
/// (timed out) quarantine the dyno; H99 (the HTTP handshake broke) is ours.
async fn connect(b: &Backend, timeout: Duration, quarantine: Duration) -> Result<Sender, Code> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(&b.entry.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(dyno = %b.entry.name, error = %e, "connect refused; quarantined");
            b.quarantine(quarantine);
            return Err(Code::H21);
        }
        Err(_) => {
            b.quarantine(quarantine);
            return Err(Code::H19);
        }
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Code::H99)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Why a sent request got no response: its body broke off while it was being sent (H18),
/// or the dyno closed the connection without answering (H13).
fn unanswered(e: &hyper::Error) -> Code {
    if e.is_body_write_aborted() || e.is_user() {
        Code::H18
    } else {
        Code::H13
    }
}

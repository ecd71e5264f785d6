//! Getting a request to a dyno: pick one, get a connection (an idle pooled one, else a
//! new one), send the request, and wait for the response's head.
//!
//! A request goes to another dyno when the attempt failed before the dyno could have acted
//! on it: the connect was refused or timed out (the dyno is quarantined), or a pooled
//! connection turned out closed before the request was written. A request without a body
//! whose method is safe (GET, HEAD, OPTIONS) is also sent again, to another dyno, when the
//! connection closed without an answer (the dyno died under it) or when the dyno's node
//! went silent while the router waited for the answer (a frozen host: its TCP accepts but
//! nothing answers). Any other request that was written is never sent twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_raft::model::NodeId;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::Either;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;
use uuid::Uuid;

use super::errors::Code;
use super::table::{choose, Backend, ReqBody, Sender};
use crate::config::RouterTuning;

/// How often a request waiting on a dyno checks that the dyno's node is still heard from.
const SILENCE_CHECK: Duration = Duration::from_millis(100);

/// A request no dyno answered.
pub struct Failed {
    pub code: Code,
    /// The dyno it was sent to, if it got that far.
    pub backend: Option<Arc<Backend>>,
    pub connect_ms: u128,
    /// The request, if no dyno can have acted on it: it may go to a dyno again.
    pub req: Option<Request<ReqBody>>,
}

/// A request a dyno answered.
pub struct Forwarded {
    pub backend: Arc<Backend>,
    /// The connection that carried it.
    pub sender: Sender,
    pub resp: Response<Incoming>,
    /// Time spent choosing and connecting, up to the response's head.
    pub connect_ms: u128,
}

impl Failed {
    /// The dyno's name for the log line: empty if none was reached.
    pub fn dyno(&self) -> &str {
        self.backend.as_ref().map_or("", |b| &b.entry.name)
    }
}

/// What it takes to send a request again after it was written once: kept only for a
/// request that may be repeated ([`replayable`]).
#[derive(Clone)]
pub struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// The copy of `req` that allows sending it again, if it may be.
    pub fn of(req: &Request<Incoming>, upgrade: bool) -> Option<Replay> {
        let body_empty = hyper::body::Body::is_end_stream(req.body());
        replayable(req.method(), body_empty, upgrade).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    /// The request again, without a body.
    pub fn request(&self) -> Request<ReqBody> {
        let mut r = Request::new(Either::Right(http_body_util::Empty::<Bytes>::new()));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// Whether a request that was written to a dyno may be written to another one: a safe
/// method (GET, HEAD, OPTIONS), no body, no protocol upgrade.
pub fn replayable(method: &Method, body_empty: bool, upgrade: bool) -> bool {
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS].contains(method);
    safe && body_empty && !upgrade
}

/// How an attempt on one dyno ended, when it got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The request was not written (connect failed, or the pooled connection was closed).
    NotSent,
    /// Written, and the connection closed without an answer (H13) or the body broke (H18).
    Unanswered(Code),
    /// Written, and the dyno's node went silent while the answer was awaited.
    NodeSilent,
    /// Written, and no first byte within the timeout (H12): the dyno is slow, not gone.
    TimedOut,
}

/// Whether the request goes to another dyno after `miss`: always if it was not written;
/// after it was written only if it is replayable and the dyno is gone rather than slow.
pub fn try_another(miss: Miss, replayable: bool) -> bool {
    match miss {
        Miss::NotSent => true,
        Miss::Unanswered(Code::H13) | Miss::NodeSilent => replayable,
        Miss::Unanswered(_) | Miss::TimedOut => false,
    }
}

/// Sends `req` to one of `backends`. `upgrade`: the request asks for a protocol upgrade,
/// which takes a connection of its own (never a pooled one). `replay`: how to send it again
/// once written (see [`Replay::of`]). `silent`: whether a node has gone silent.
pub async fn forward(
    backends: &[Arc<Backend>],
    mut req: Request<ReqBody>,
    replay: Option<&Replay>,
    upgrade: bool,
    tuning: &RouterTuning,
    silent: &(dyn Fn(NodeId) -> bool + Sync),
) -> Result<Forwarded, Failed> {
    let connect_timeout = Duration::from_millis(tuning.connect_timeout_ms);
    let quarantine = Duration::from_millis(tuning.quarantine_ms);
    let first_byte = Duration::from_millis(tuning.first_byte_timeout_ms);
    let started = Instant::now();
    let elapsed = || started.elapsed().as_millis();
    let silent_nodes: Vec<NodeId> = {
        let mut v: Vec<NodeId> = backends.iter().map(|b| b.node).collect();
        v.sort_unstable();
        v.dedup();
        v.retain(|n| silent(*n));
        v
    };
    // Dynos a new connection was tried to: each gets one per request.
    let mut tried: Vec<Uuid> = Vec::new();
    let mut last_code = Code::H21;
    // Pooled connections found closed use up no dyno; the bound keeps them from looping.
    for _attempt in 0..tuning.max_tries.max(1) as usize + 4 {
        let Some(b) = choose(backends, &tried, &silent_nodes, Instant::now(), |n| {
            rand::random::<usize>() % n
        }) else {
            return Err(Failed {
                code: last_code,
                backend: None,
                connect_ms: elapsed(),
                req: Some(req),
            });
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
        let send = tokio::time::timeout(first_byte, sender.try_send_request(req));
        let outcome = match replay {
            // Only a request that may be sent again stops waiting on a silent node.
            Some(_) => tokio::select! {
                r = send => Some(r),
                _ = until_silent(b.node, silent) => None,
            },
            None => Some(send.await),
        };
        let (miss, unsent) = match outcome {
            Some(Ok(Ok(resp))) => {
                return Ok(Forwarded {
                    backend: b,
                    sender,
                    resp,
                    connect_ms: elapsed(),
                })
            }
            Some(Ok(Err(mut e))) => match e.take_message() {
                // Not sent (the connection was gone): the request can go elsewhere.
                Some(r) => (Miss::NotSent, Some(r)),
                None => {
                    let code = unanswered(e.error());
                    debug!(error = %e.error(), %code, dyno = %b.entry.name, "no response from the dyno");
                    (Miss::Unanswered(code), None)
                }
            },
            Some(Err(_)) => (Miss::TimedOut, None),
            None => {
                debug!(dyno = %b.entry.name, node = b.node, "the dyno's node went silent with a request in flight");
                (Miss::NodeSilent, None)
            }
        };
        let code = match miss {
            Miss::Unanswered(code) => code,
            _ => Code::H12,
        };
        let fail = |b| Failed {
            code,
            backend: Some(b),
            connect_ms: elapsed(),
            req: None,
        };
        if !try_another(miss, replay.is_some()) {
            return Err(fail(b));
        }
        req = match (unsent, replay) {
            (Some(r), _) => r,
            (None, Some(r)) => {
                // The dyno got the request and is gone: leave it out, send a copy.
                b.quarantine(quarantine);
                if !tried.contains(&b.entry.dyno) {
                    tried.push(b.entry.dyno);
                }
                last_code = code;
                r.request()
            }
            (None, None) => return Err(fail(b)),
        };
    }
    Err(Failed {
        code: last_code,
        backend: None,
        connect_ms: elapsed(),
        req: Some(req),
    })
}

/// Resolves once `node` is silent.
async fn until_silent(node: NodeId, silent: &(dyn Fn(NodeId) -> bool + Sync)) {
    loop {
        if silent(node) {
            return;
        }
        tokio::time::sleep(SILENCE_CHECK).await;
    }
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
            debug!(dyno = %b.entry.name, "connect timed out; quarantined");
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_requests_without_a_body_may_be_sent_twice() {
        assert!(replayable(&Method::GET, true, false));
        assert!(replayable(&Method::HEAD, true, false));
        assert!(replayable(&Method::OPTIONS, true, false));
        assert!(!replayable(&Method::POST, true, false));
        assert!(!replayable(&Method::PUT, true, false));
        assert!(!replayable(&Method::DELETE, true, false));
        // A GET with a body, or one that asks for an upgrade (a WebSocket), is not.
        assert!(!replayable(&Method::GET, false, false));
        assert!(!replayable(&Method::GET, true, true));
    }

    #[test]
    fn a_request_goes_elsewhere_only_if_no_dyno_can_have_acted_on_it() {
        for replayable in [true, false] {
            // Never written: always.
            assert!(try_another(Miss::NotSent, replayable));
            // A slow dyno is not retried (that would double its load); a broken request
            // body cannot be sent again.
            assert!(!try_another(Miss::TimedOut, replayable));
            assert!(!try_another(Miss::Unanswered(Code::H18), replayable));
        }
        // Written, then the dyno died or its node froze: only a replayable request.
        assert!(try_another(Miss::Unanswered(Code::H13), true));
        assert!(try_another(Miss::NodeSilent, true));
        assert!(!try_another(Miss::Unanswered(Code::H13), false));
        assert!(!try_another(Miss::NodeSilent, false));
    }

    #[test]
    fn a_replayed_request_keeps_its_method_target_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc".parse().unwrap());
        let r = Replay {
            method: Method::HEAD,
            uri: "/a?b=1".parse().unwrap(),
            version: Version::HTTP_11,
            headers: h,
        };
        let req = r.request();
        assert_eq!(req.method(), Method::HEAD);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["x-request-id"], "abc");
        assert!(hyper::body::Body::is_end_stream(req.body()));
    }
}

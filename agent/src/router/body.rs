//! A dyno's response body on its way to the client: it holds the request's guards until it
//! ends, gives the connection back to the pool when read to its end, and ends with H15
//! when the dyno goes silent for too long.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};

use super::table::{Backend, InFlight, Sender};
use super::{BoxError, RBody};
use crate::metrics::ActiveGuard;

/// A response body that keeps guards (in-flight count, active connection) until it ends.
/// When the body has been read to its end, the dyno connection goes back to the pool.
pub struct Guarded {
    inner: Incoming,
    _guards: (InFlight, ActiveGuard),
    reuse: Option<(Arc<Backend>, Sender)>,
    /// Armed while the body waits for the dyno; fires after `idle_limit` of silence.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_limit: Duration,
    /// Logs H15 when the idle timer fires.
    on_idle: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Guarded {
    /// The client's body of `inner`. `reuse` is the connection to pool once the body
    /// has ended (none for a connection that cannot be reused).
    pub fn wrap(
        inner: Incoming,
        guards: (InFlight, ActiveGuard),
        reuse: Option<(Arc<Backend>, Sender)>,
        idle_limit: Duration,
        on_idle: Box<dyn FnOnce() + Send + Sync>,
    ) -> RBody {
        let mut g = Guarded {
            inner,
            _guards: guards,
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
    }

    fn give_back(&mut self) {
        if let Some((backend, sender)) = self.reuse.take() {
            backend.put_idle(sender);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection unusable.
        if hyper::body::Body::is_end_stream(&self.inner) {
            self.give_back();
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

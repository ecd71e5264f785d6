//! The headers Heroku's router adds to a request before it reaches the dyno.

use http::header::{self, HeaderMap, HeaderValue};

use super::request::RequestInfo;

/// Sets `X-Forwarded-For/-Proto/-Port`, `X-Request-Id`, `X-Request-Start`, and appends
/// this router to `Via`. `port` is the router's listening port.
pub fn add_heroku_headers(h: &mut HeaderMap, req: &RequestInfo, port: u16) {
    if let Ok(v) = HeaderValue::from_str(&req.fwd) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(&port.to_string()) {
        h.insert("x-forwarded-port", v);
    }
    if let Ok(v) = HeaderValue::from_str(&req.request_id) {
        h.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&req.start_ms.to_string()) {
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

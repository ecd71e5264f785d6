//! What the router reads from a request as it arrives: the `Host` it routes by, and the
//! fields of its log line and of the headers it adds.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::Request;

/// One request as it arrived at the router.
pub struct RequestInfo {
    /// When the router got it (for `service=` and the metrics).
    pub started: Instant,
    /// The same moment in milliseconds since the epoch (`X-Request-Start`).
    pub start_ms: u128,
    /// The host part of `Host`, lowercased, without the port.
    pub host: String,
    /// The client's `X-Request-Id` if valid, else a new uuid.
    pub request_id: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `X-Forwarded-For` with the client's address appended.
    pub fwd: String,
    /// `https` when the request came over TLS, else `http`.
    pub proto: &'static str,
}

impl RequestInfo {
    pub fn read<B>(req: &Request<B>, remote: SocketAddr, tls: bool) -> RequestInfo {
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
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        RequestInfo {
            started,
            start_ms,
            host: host_only(&host_header),
            request_id: request_id(req.headers()),
            method: req.method().to_string(),
            path,
            fwd: forwarded_for(req.headers(), remote),
            proto: if tls { "https" } else { "http" },
        }
    }
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

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| haven_api::valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| {
            // A v4 uuid from the thread's fast generator: no system call per request.
            uuid::Builder::from_random_bytes(rand::random::<[u8; 16]>())
                .into_uuid()
                .to_string()
        })
}

fn forwarded_for(headers: &HeaderMap, remote: SocketAddr) -> String {
    match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {}", remote.ip()),
        None => remote.ip().to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use uuid::Uuid;

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

    fn remote() -> SocketAddr {
        "10.1.2.3:5555".parse().unwrap()
    }

    #[test]
    fn reads_what_the_line_and_headers_need() {
        let req = Request::post("/a/b?c=d")
            .header("host", "My-App.localhost:7480")
            .header("x-request-id", "abcdefghij0123456789")
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap();
        let r = RequestInfo::read(&req, remote(), false);
        assert_eq!(r.host, "my-app.localhost");
        assert_eq!(r.request_id, "abcdefghij0123456789");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/a/b?c=d");
        assert_eq!(r.fwd, "1.2.3.4, 10.1.2.3");
        assert!(r.start_ms > 0);
    }

    #[test]
    fn falls_back_to_the_authority_and_a_new_request_id() {
        let req = Request::get("http://other.localhost:80/")
            .header("x-request-id", "too short")
            .body(())
            .unwrap();
        let r = RequestInfo::read(&req, remote(), false);
        assert_eq!(r.host, "other.localhost");
        assert_ne!(r.request_id, "too short");
        assert!(Uuid::parse_str(&r.request_id).is_ok(), "{}", r.request_id);
        assert_eq!(r.fwd, "10.1.2.3");

        let bare = Request::get("/").body(()).unwrap();
        assert_eq!(RequestInfo::read(&bare, remote(), false).host, "");
    }
}

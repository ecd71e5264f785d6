//! The headers Heroku's router adds to a request before it reaches the dyno.

use http::header::{self, HeaderMap, HeaderValue};

use super::request::RequestInfo;

/// Sets `X-Forwarded-For/-Proto/-Port`, `X-Request-Id`, `X-Request-Start`, and appends
/// this router to `Via`. `port` is the router's listening port.
pub fn add_heroku_headers(h: &mut HeaderMap, req: &RequestInfo, port: u16) {
    if let Ok(v) = HeaderValue::from_str(&req.fwd) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(req.proto));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;

    use http::Request;

    use super::*;

    fn arrived(headers: &[(&str, &str)]) -> (Request<()>, RequestInfo) {
        arrived_over(headers, false)
    }

    fn arrived_over(headers: &[(&str, &str)], tls: bool) -> (Request<()>, RequestInfo) {
        let mut b = Request::get("/").header("host", "app.localhost");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(()).unwrap();
        let remote: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let info = RequestInfo::read(&req, remote, tls);
        (req, info)
    }

    #[test]
    fn adds_herokus_headers() {
        let (mut req, info) = arrived(&[]);
        add_heroku_headers(req.headers_mut(), &info, 7480);
        let h = req.headers();
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "7480");
        assert_eq!(h["x-request-id"], info.request_id.as_str());
        assert_eq!(h["x-request-start"], info.start_ms.to_string().as_str());
        assert_eq!(h[header::VIA], "1.1 haven");
    }

    #[test]
    fn appends_to_what_proxies_before_set() {
        let (mut req, info) = arrived(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("via", "1.1 lb"),
        ]);
        add_heroku_headers(req.headers_mut(), &info, 80);
        let h = req.headers();
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.1.2.3");
        // The request reached the router over plain HTTP: it says so whatever came before.
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[header::VIA], "1.1 lb, 1.1 haven");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn tls_requests_are_forwarded_as_https() {
        let (mut req, info) = arrived_over(&[], true);
        add_heroku_headers(req.headers_mut(), &info, 443);
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        assert_eq!(req.headers()["x-forwarded-port"], "443");
    }
}

//! Heroku's router error codes and the plain pages the router answers with.

use std::fmt;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::RBody;

/// A Heroku router error: what went wrong between the client and the dyno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// App crashed: web dynos are wanted but crashed.
    H10,
    /// Request timeout: no response within the first-byte timeout.
    H12,
    /// Connection closed without response.
    H13,
    /// No web processes running.
    H14,
    /// Idle connection: the response body went silent for too long.
    H15,
    /// Server request interrupted: the request body broke off.
    H18,
    /// Backend connection timeout.
    H19,
    /// Backend connection refused.
    H21,
    /// Maintenance mode.
    H80,
    /// Platform error: the router's own fault.
    H99,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::H10 => "H10",
            Code::H12 => "H12",
            Code::H13 => "H13",
            Code::H14 => "H14",
            Code::H15 => "H15",
            Code::H18 => "H18",
            Code::H19 => "H19",
            Code::H21 => "H21",
            Code::H80 => "H80",
            Code::H99 => "H99",
        }
    }

    /// Heroku's description of the error.
    pub fn describe(self) -> &'static str {
        match self {
            Code::H10 => "App crashed",
            Code::H12 => "Request timeout",
            Code::H13 => "Connection closed without response",
            Code::H14 => "No web processes running",
            Code::H15 => "Idle connection",
            Code::H18 => "Server Request Interrupted",
            Code::H19 => "Backend connection timeout",
            Code::H21 => "Backend connection refused",
            Code::H80 => "Maintenance mode",
            Code::H99 => "Platform error",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn html(status: StatusCode, body: String) -> Response<RBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The 503 page of a router error.
pub fn error_page(code: Code) -> Response<RBody> {
    let (title, text) = match code {
        Code::H80 => (
            "Offline for Maintenance",
            "This app is in maintenance mode. Please check back soon.",
        ),
        _ => (
            "Application Error",
            "An error occurred in the application and your page could not be served. If you are the application owner, check your logs for details (hctl logs --tail).",
        ),
    };
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1><p>{text}</p><p><code>{code}: {}</code></p></body></html>\n",
            code.describe()
        ),
    )
}

/// The 404 page for a `Host` that names no app.
pub fn no_such_app(host: &str) -> Response<RBody> {
    html(
        StatusCode::NOT_FOUND,
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>No such app</title></head>\n<body><h1>No such app</h1><p>There is no app at {} on this Haven cluster. Apps answer at APP.DOMAIN or at a custom domain added with hctl domains:add.</p></body></html>\n",
            html_escape(host)
        ),
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn text(r: Response<RBody>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn error_pages_name_the_code() {
        let r = error_page(Code::H12);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = text(r).await;
        assert!(body.contains("<title>Application Error</title>"), "{body}");
        assert!(body.contains("<code>H12: Request timeout</code>"), "{body}");

        let body = text(error_page(Code::H80)).await;
        assert!(body.contains("Offline for Maintenance"), "{body}");
        assert!(
            body.contains("<code>H80: Maintenance mode</code>"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn unknown_hosts_are_escaped_in_the_404_page() {
        let r = no_such_app("<a href=\"x\">&");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = text(r).await;
        assert!(
            body.contains("no app at &lt;a href=&quot;x&quot;&gt;&amp; on"),
            "{body}"
        );
    }
}

//! The `heroku[router]` line logged for every request.

use super::errors::Code;
use super::request::RequestInfo;

/// The fields of one router log line.
pub struct LogFields<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub request_id: &'a str,
    pub fwd: &'a str,
    pub dyno: &'a str,
    pub connect_ms: u128,
    pub service_ms: u128,
    pub status: u16,
    pub bytes: u64,
    /// `http` or `https`.
    pub proto: &'a str,
}

impl<'a> LogFields<'a> {
    /// The line's fields for `req` now: `service=` is the time since it arrived.
    pub fn of(
        req: &'a RequestInfo,
        dyno: &'a str,
        connect_ms: u128,
        status: u16,
        bytes: u64,
    ) -> LogFields<'a> {
        LogFields {
            method: &req.method,
            path: &req.path,
            host: &req.host,
            request_id: &req.request_id,
            fwd: &req.fwd,
            dyno,
            connect_ms,
            service_ms: req.started.elapsed().as_millis(),
            status,
            bytes,
            proto: req.proto,
        }
    }
}

/// `at=info method=GET path="/" host=… request_id=… fwd="…" dyno=web.1 connect=1ms
/// service=18ms status=200 bytes=13 protocol=http`, or `at=error code=H12 desc="…" …`.
pub fn log_line(code: Option<Code>, f: &LogFields) -> String {
    let head = match code {
        Some(c) => format!("at=error code={c} desc=\"{}\"", c.describe()),
        None => "at=info".to_string(),
    };
    format!(
        "{head} method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={}ms service={}ms status={} bytes={} protocol={}",
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
        f.bytes,
        f.proto
    )
}

/// The H15 line of a request whose response body went idle: its `at=info` line with the
/// error in front, so nothing is formatted for a request unless its body goes idle.
pub fn idle_line(info_line: &str) -> String {
    let rest = info_line.strip_prefix("at=info ").unwrap_or(info_line);
    format!(
        "at=error code={} desc=\"{}\" {rest}",
        Code::H15,
        Code::H15.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> LogFields<'static> {
        LogFields {
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
            proto: "http",
        }
    }

    #[test]
    fn router_lines_read_like_heroku() {
        let f = fields();
        assert_eq!(
            log_line(None, &f),
            "at=info method=GET path=\"/a?b=%22c%22\" host=x.localhost request_id=rid fwd=\"1.2.3.4\" dyno=web.1 connect=1ms service=18ms status=200 bytes=13 protocol=http"
        );
        let e = log_line(Some(Code::H12), &f);
        assert!(
            e.starts_with("at=error code=H12 desc=\"Request timeout\" method=GET"),
            "{e}"
        );
    }

    #[test]
    fn idle_lines_are_the_request_line_with_h15_in_front() {
        let line = log_line(None, &fields());
        assert_eq!(
            idle_line(&line),
            format!(
                "at=error code=H15 desc=\"Idle connection\" {}",
                line.strip_prefix("at=info ").unwrap_or_default()
            )
        );
    }
}

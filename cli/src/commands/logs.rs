//! `logs`: the app's lines from every node, merged by time.

use std::io::IsTerminal;

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::Api;

/// What `hctl logs` asks for.
pub struct LogsRequest {
    pub num: usize,
    pub tail: bool,
    pub dyno: Option<String>,
    pub process_type: Option<String>,
    pub source: Option<String>,
    pub no_color: bool,
}

/// `hctl logs`: opens a log session and prints its lines as they come.
pub fn logs(api: &Api, app: &str, req: LogsRequest) -> Result<()> {
    let body = w::LogSessionCreate {
        dyno: req.dyno,
        process_type: req.process_type,
        source: req.source,
        lines: Some(req.num),
        tail: Some(req.tail),
    };
    let session: w::LogSession = api
        .call_with(
            Method::POST,
            &format!("{}/log-sessions", app_path(app)),
            &body,
        )?
        .value;
    let color = !req.no_color && std::io::stdout().is_terminal();
    api.stream_lines(&session.logplex_url, |line| {
        if let Some(text) = line.strip_prefix("data: ") {
            println!("{}", colorize(text, color));
        }
    })
}

/// Colors a log line by its source on a terminal: `app[...]` lines by process (as the
/// Heroku CLI does), `heroku[...]` lines in magenta.
fn colorize(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let Some((time, rest)) = line.split_once(' ') else {
        return line.to_string();
    };
    let Some((tag, msg)) = rest.split_once(": ") else {
        return line.to_string();
    };
    let code = if tag.starts_with("heroku[") {
        35
    } else {
        // A stable color per process name.
        let palette = [32, 33, 34, 36, 92, 93, 94, 96];
        let h = tag
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        palette[h % palette.len()]
    };
    format!("\x1b[2m{time}\x1b[0m \x1b[{code}m{tag}:\x1b[0m {msg}")
}

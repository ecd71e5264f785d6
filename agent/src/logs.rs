//! App log lines as Heroku writes them (`TIME SOURCE[PROCESS]: MESSAGE`), kept per app in
//! a bounded buffer on the node that produced them.
//!
//! Today the dyno runtime writes here (dyno output as `app[web.1]`, platform events as
//! `heroku[web.1]`); reading them across nodes comes with the logs issue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Lines kept per app on one node.
pub const LINES_PER_APP: usize = 1500;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    /// `app` or `heroku`.
    pub source: String,
    /// `web.1`, `router`, `api`.
    pub process: String,
    pub message: String,
}

impl LogLine {
    /// `2026-11-22T10:00:00.123456+00:00 app[web.1]: message`.
    pub fn render(&self) -> String {
        format!(
            "{} {}[{}]: {}",
            self.at
                .to_rfc3339_opts(SecondsFormat::Micros, false)
                .replace('Z', "+00:00"),
            self.source,
            self.process,
            self.message
        )
    }
}

/// The node's log buffers. Cheap to clone.
#[derive(Clone, Default)]
pub struct Logs {
    apps: Arc<Mutex<HashMap<Uuid, VecDeque<LogLine>>>>,
}

impl Logs {
    pub fn emit(&self, app: Uuid, source: &str, process: &str, message: &str) {
        let line = LogLine {
            at: Utc::now(),
            source: source.to_string(),
            process: process.to_string(),
            message: message.to_string(),
        };
        if let Ok(mut m) = self.apps.lock() {
            let q = m.entry(app).or_default();
            if q.len() >= LINES_PER_APP {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    /// A platform event: `heroku[web.1]: State changed from starting to up`.
    pub fn platform(&self, app: Uuid, process: &str, message: &str) {
        self.emit(app, "heroku", process, message)
    }

    /// The app's buffered lines, oldest first.
    pub fn lines(&self, app: Uuid) -> Vec<LogLine> {
        self.apps
            .lock()
            .ok()
            .and_then(|m| m.get(&app).map(|q| q.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_like_heroku_and_the_buffer_is_bounded() {
        let logs = Logs::default();
        let app = Uuid::new_v4();
        for i in 0..LINES_PER_APP + 10 {
            logs.emit(app, "app", "web.1", &format!("line {i}"));
        }
        let lines = logs.lines(app);
        assert_eq!(lines.len(), LINES_PER_APP);
        assert_eq!(lines[0].message, "line 10");
        let text = lines[0].render();
        let (time, rest) = text.split_once(' ').unwrap();
        assert_eq!(rest, "app[web.1]: line 10");
        assert!(time.ends_with("+00:00"), "{time}");
        assert_eq!(time.split('.').nth(1).unwrap().len(), 6 + 6, "{time}");
    }
}

//! App logs (design §9): every node keeps the lines its dynos, router, builds and API calls
//! produce, Heroku-formatted (`TIME SOURCE[PROCESS]: MESSAGE`), the last [`LINES_PER_APP`]
//! per app, and serves them to log sessions on any node over QUIC.
//!
//! Each line carries a per-node sequence number, so a reader that reconnects (or lags
//! behind the live feed) resumes after the last line it saw without gaps or repeats.
//!
//! Wire protocol on a bi-stream of kind [`StreamKind::Logs`]: the reader sends one
//! [`LogRequest`] (u32 length + bincode); the node answers with frames (u32 length +
//! bincode `Vec<LogLine>`): first the lines it holds after `after_seq`, then, when `tail`
//! is set, new lines as they come, until the reader closes the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Lines kept per app on one node.
pub const LINES_PER_APP: usize = 1500;

/// Largest log message kept, bytes (longer lines are cut).
pub const MAX_LINE: usize = 10_000;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Per-node sequence number, increasing.
    pub seq: u64,
    pub app: Uuid,
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
            self.at.to_rfc3339_opts(SecondsFormat::Micros, false),
            self.source,
            self.process,
            self.message
        )
    }

    /// Whether the line passes a session's filters: a dyno (`web.1`), a process type
    /// (`web`), a source (`app`, `heroku`).
    pub fn matches(&self, dyno: Option<&str>, ptype: Option<&str>, source: Option<&str>) -> bool {
        dyno.is_none_or(|d| self.process == d)
            && ptype.is_none_or(|t| {
                self.process == t
                    || self
                        .process
                        .strip_prefix(t)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            && source.is_none_or(|s| self.source == s)
    }
}

/// What a reader asks a node for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRequest {
    pub app: Uuid,
    /// Only lines after this sequence number (None: all that are kept).
    pub after_seq: Option<u64>,
    /// Keep the stream open and send new lines.
    pub tail: bool,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<Uuid, VecDeque<LogLine>>,
    seq: u64,
    /// Lines taken in since start.
    total: u64,
}

/// The node's log buffers. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Mutex<Inner>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for Logs {
    fn default() -> Self {
        // Sequence numbers start at the boot time in microseconds: they keep increasing
        // across restarts, so a reader resuming after a restarted node misses nothing.
        let boot = Utc::now().timestamp_micros().max(0) as u64;
        Logs {
            inner: Arc::new(Mutex::new(Inner {
                apps: HashMap::new(),
                seq: boot,
                total: 0,
            })),
            live: broadcast::channel(8192).0,
        }
    }
}

impl Logs {
    pub fn emit(&self, app: Uuid, source: &str, process: &str, message: &str) {
        let mut message = message.trim_end_matches(['\n', '\r']).to_string();
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        m.seq += 1;
        m.total += 1;
        let line = LogLine {
            seq: m.seq,
            app,
            at: Utc::now(),
            source: source.to_string(),
            process: process.to_string(),
            message,
        };
        let q = m.apps.entry(app).or_default();
        if q.len() >= LINES_PER_APP {
            q.pop_front();
        }
        q.push_back(line.clone());
        // Sent under the lock so that live lines reach subscribers in sequence order.
        let _ = self.live.send(line);
    }

    /// Lines taken in since this node started.
    pub fn total(&self) -> u64 {
        self.inner.lock().map(|m| m.total).unwrap_or(0)
    }

    /// A platform event: `heroku[web.1]: State changed from starting to up`.
    pub fn platform(&self, app: Uuid, process: &str, message: &str) {
        self.emit(app, "heroku", process, message)
    }

    /// An API action: `app[api]: Set FOO config vars by admin@example.com`.
    pub fn api(&self, app: Uuid, message: &str) {
        self.emit(app, "app", "api", message)
    }

    /// The app's kept lines after `after_seq`, oldest first.
    pub fn history(&self, app: Uuid, after_seq: Option<u64>) -> Vec<LogLine> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| {
                m.apps.get(&app).map(|q| {
                    q.iter()
                        .filter(|l| after_seq.is_none_or(|s| l.seq > s))
                        .cloned()
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// New lines of every app as they are emitted.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }

    /// Answers a [`crate::peer::StreamKind::Logs`] stream.
    pub async fn serve(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let Ok(req) = read_frame::<LogRequest>(&mut recv, 64 * 1024).await else {
            return;
        };
        // Subscribe before reading the history: no line falls between the two.
        let mut live = self.subscribe();
        let history = self.history(req.app, req.after_seq);
        let mut last = history.last().map(|l| l.seq).or(req.after_seq);
        if write_frame(&mut send, &history).await.is_err() {
            return;
        }
        if !req.tail {
            let _ = send.finish();
            return;
        }
        loop {
            let batch = tokio::select! {
                got = live.recv() => match got {
                    Ok(l) if l.app == req.app && last.is_none_or(|s| l.seq > s) => {
                        let mut batch = vec![l];
                        // Whatever else is already queued goes in the same frame.
                        while let Ok(more) = live.try_recv() {
                            if more.app == req.app {
                                batch.push(more);
                            }
                        }
                        batch
                    }
                    Ok(_) => continue,
                    // Fell behind the live feed: catch up from the buffer.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.history(req.app, last),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                // The reader went away.
                _ = send.stopped() => return,
            };
            if batch.is_empty() {
                continue;
            }
            last = batch.last().map(|l| l.seq);
            if write_frame(&mut send, &batch).await.is_err() {
                return;
            }
        }
    }
}

/// Writes `u32 length + bincode(value)`.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), String> {
    let bytes = bincode::serialize(value).map_err(|e| e.to_string())?;
    let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Reads one `u32 length + bincode` frame of at most `max` bytes.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, String> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(format!("frame of {len} bytes is over {max}"));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    bincode::deserialize(&buf).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_like_heroku_and_the_buffer_is_bounded() {
        let logs = Logs::default();
        let app = Uuid::new_v4();
        let other = Uuid::new_v4();
        for i in 0..LINES_PER_APP + 10 {
            logs.emit(app, "app", "web.1", &format!("line {i}\n"));
        }
        logs.emit(other, "app", "web.1", "other app");
        let lines = logs.history(app, None);
        assert_eq!(lines.len(), LINES_PER_APP);
        assert_eq!(lines[0].message, "line 10");
        assert_eq!(
            logs.history(other, None).len(),
            1,
            "a flood of one app leaves the others"
        );
        let text = lines[0].render();
        let (time, rest) = text.split_once(' ').unwrap();
        assert_eq!(rest, "app[web.1]: line 10");
        assert!(time.ends_with("+00:00"), "{time}");
        assert_eq!(time.split('.').nth(1).unwrap().len(), 6 + 6, "{time}");
        // Resuming after a sequence number gives only newer lines.
        let last = lines[LINES_PER_APP - 2].seq;
        let after = logs.history(app, Some(last));
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].message, format!("line {}", LINES_PER_APP + 9));
        // Long lines are cut.
        logs.emit(other, "app", "web.1", &"x".repeat(MAX_LINE * 2));
        assert_eq!(logs.history(other, None)[1].message.len(), MAX_LINE);
    }

    #[test]
    fn filters_select_dyno_type_and_source() {
        let l = |source: &str, process: &str| LogLine {
            seq: 1,
            app: Uuid::nil(),
            at: Utc::now(),
            source: source.into(),
            process: process.into(),
            message: String::new(),
        };
        assert!(l("app", "web.1").matches(Some("web.1"), None, None));
        assert!(!l("app", "web.10").matches(Some("web.1"), None, None));
        assert!(l("app", "web.10").matches(None, Some("web"), None));
        assert!(!l("app", "webhook.1").matches(None, Some("web"), None));
        assert!(l("heroku", "router").matches(None, Some("router"), Some("heroku")));
        assert!(!l("heroku", "web.1").matches(None, None, Some("app")));
        assert!(l("app", "api").matches(None, None, Some("app")));
    }
}

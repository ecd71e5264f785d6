//! Log drains (design §9): every node ships the lines it produced (and only those, so each
//! line leaves the cluster once) to each of the app's drains.
//!
//! - `syslog://HOST:PORT`: RFC 5424 over TCP with RFC 6587 octet counting,
//!   `<190>1 TIME TOKEN SOURCE PROCESS - - MESSAGE`.
//! - `http://…`, `https://…`: POSTs of octet-framed lines with `Content-Type:
//!   application/logplex-1`, `Logplex-Msg-Count`, `Logplex-Frame-Id` and
//!   `Logplex-Drain-Token`. 2xx is delivered; another 4xx (not 429) drops the batch; the
//!   rest is retried.
//!
//! Each drain has a bounded buffer of [`BUFFER`] lines; when a drain falls behind, the
//! oldest lines go and the app's log gets `Error L10 (output buffer overflow)`. A failing
//! endpoint is retried with back-off on its own task and slows nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::SecondsFormat;
use haven_raft::HavenRaft;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, watch, Notify};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::logs::{LogLine, Logs};

/// Lines buffered per drain.
pub const BUFFER: usize = 1024;
/// Lines per delivery.
const BATCH: usize = 256;

/// One line in RFC 5424 with RFC 6587 octet counting: `LEN <190>1 TIME TOKEN SOURCE PROC - - MSG`.
pub fn syslog_frame(token: &str, line: &LogLine) -> String {
    let msg = format!(
        "<190>1 {} {token} {} {} - - {}",
        line.at.to_rfc3339_opts(SecondsFormat::Micros, false),
        line.source,
        line.process,
        line.message
    );
    format!("{} {msg}", msg.len())
}

/// A drain's bounded buffer.
#[derive(Default)]
pub struct Buffer {
    lines: VecDeque<LogLine>,
    /// Lines dropped since the last L10 notice.
    dropped: u64,
}

impl Buffer {
    /// Adds a line; when full, the oldest goes. Returns true when this started a run of
    /// drops (time for one L10 notice).
    pub fn push(&mut self, line: LogLine) -> bool {
        let mut first_drop = false;
        if self.lines.len() >= BUFFER {
            self.lines.pop_front();
            first_drop = self.dropped == 0;
            self.dropped += 1;
        }
        self.lines.push_back(line);
        first_drop
    }

    pub fn take(&mut self, n: usize) -> Vec<LogLine> {
        let n = n.min(self.lines.len());
        self.lines.drain(..n).collect()
    }

    /// Puts an undelivered batch back at the front (newer lines win if space runs out).
    pub fn put_back(&mut self, batch: Vec<LogLine>) {
        for l in batch.into_iter().rev() {
            if self.lines.len() >= BUFFER {
                self.dropped += 1;
                continue;
            }
            self.lines.push_front(l);
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

struct Shipper {
    url: String,
    token: String,
    buffer: Mutex<Buffer>,
    ready: Notify,
}

/// Runs the drains of this node's lines until shutdown.
pub async fn run(raft: HavenRaft, logs: Logs, mut shutdown: watch::Receiver<bool>) {
    // Subscribed only while some app has a drain: without drains, emitting a line costs
    // nothing here.
    let mut live: Option<broadcast::Receiver<LogLine>> = None;
    let mut shippers: HashMap<Uuid, (Arc<Shipper>, tokio::task::JoinHandle<()>)> = HashMap::new();
    // Drains by app, refreshed from the replicated state.
    let mut by_app: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = refresh.tick() => {
                let want: Vec<(Uuid, Uuid, String, String)> = raft.with_state(|s| {
                    s.apps
                        .values()
                        .flat_map(|a| a.drains.iter().map(|d| (a.id, d.id, d.url.clone(), d.token.clone())))
                        .collect()
                });
                shippers.retain(|id, (_, task)| {
                    let keep = want.iter().any(|w| w.1 == *id);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                by_app.clear();
                let any = !want.is_empty();
                for (app, id, url, token) in want {
                    by_app.entry(app).or_default().push(id);
                    shippers.entry(id).or_insert_with(|| {
                        let s = Arc::new(Shipper {
                            url,
                            token,
                            buffer: Mutex::new(Buffer::default()),
                            ready: Notify::new(),
                        });
                        let task = tokio::spawn(ship(s.clone()));
                        (s, task)
                    });
                }
                match (any, live.is_some()) {
                    (true, false) => live = Some(logs.subscribe()),
                    (false, true) => live = None,
                    _ => {}
                }
            }
            got = async { Some(live.as_mut()?.recv().await) }, if live.is_some() => {
                let Some(got): Option<Result<LogLine, broadcast::error::RecvError>> = got else {
                    continue;
                };
                let line = match got {
                    Ok(l) => l,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(n, "drains fell behind the live log feed");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                // L10 notices are for people reading the logs, not for the drains.
                if line.process == "logplex" {
                    continue;
                }
                for id in by_app.get(&line.app).into_iter().flatten() {
                    let Some((s, _)) = shippers.get(id) else { continue };
                    let first_drop = s.buffer.lock().map(|mut b| b.push(line.clone())).unwrap_or(false);
                    if first_drop {
                        logs.platform(
                            line.app,
                            "logplex",
                            &format!(
                                "Error L10 (output buffer overflow): drain {} is behind; its buffer of {BUFFER} lines is full and the oldest are dropped",
                                s.token
                            ),
                        );
                    }
                    s.ready.notify_one();
                }
            }
        }
    }
    for (_, (_, t)) in shippers {
        t.abort();
    }
}

/// Delivers one drain's buffer, retrying with back-off.
async fn ship(s: Arc<Shipper>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let mut syslog: Option<tokio::net::TcpStream> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let batch = match s.buffer.lock() {
            Ok(mut b) => {
                if b.dropped > 0 && b.len() == 0 {
                    b.dropped = 0;
                }
                b.take(BATCH)
            }
            Err(_) => return,
        };
        if batch.is_empty() {
            s.ready.notified().await;
            continue;
        }
        let result = if let Some(hostport) = s.url.strip_prefix("syslog://") {
            send_syslog(
                &mut syslog,
                hostport.trim_end_matches('/'),
                &s.token,
                &batch,
            )
            .await
        } else {
            match &http {
                Ok(c) => send_http(c, &s.url, &s.token, &batch).await,
                Err(e) => Err(Delivery::Retry(e.to_string())),
            }
        };
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                if let Ok(mut b) = s.buffer.lock() {
                    if b.len() < BUFFER / 2 {
                        b.dropped = 0;
                    }
                }
            }
            Err(Delivery::Drop(why)) => {
                warn!(drain = %s.token, %why, "drain refused a batch; dropped");
            }
            Err(Delivery::Retry(why)) => {
                debug!(drain = %s.token, %why, "drain delivery failed; retrying");
                syslog = None;
                if let Ok(mut b) = s.buffer.lock() {
                    b.put_back(batch);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

enum Delivery {
    Retry(String),
    Drop(String),
}

async fn send_syslog(
    conn: &mut Option<tokio::net::TcpStream>,
    hostport: &str,
    token: &str,
    batch: &[LogLine],
) -> Result<(), Delivery> {
    if conn.is_none() {
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(hostport),
        )
        .await
        .map_err(|_| Delivery::Retry("connect timed out".into()))?
        .map_err(|e| Delivery::Retry(e.to_string()))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err(Delivery::Retry("no connection".into()));
    };
    let mut bytes = String::new();
    for l in batch {
        bytes.push_str(&syslog_frame(token, l));
    }
    c.write_all(bytes.as_bytes())
        .await
        .map_err(|e| Delivery::Retry(e.to_string()))
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &[LogLine],
) -> Result<(), Delivery> {
    let mut body = String::new();
    for l in batch {
        body.push_str(&syslog_frame(token, l));
    }
    let resp = client
        .post(url)
        .header("Content-Type", "application/logplex-1")
        .header("Logplex-Msg-Count", batch.len().to_string())
        .header("Logplex-Frame-Id", Uuid::new_v4().to_string())
        .header("Logplex-Drain-Token", token)
        .body(body)
        .send()
        .await
        .map_err(|e| Delivery::Retry(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else if status.is_client_error() && status.as_u16() != 429 {
        Err(Delivery::Drop(format!("HTTP {status}")))
    } else {
        Err(Delivery::Retry(format!("HTTP {status}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn line(n: u64) -> LogLine {
        LogLine {
            seq: n,
            app: Uuid::nil(),
            at: Utc::now(),
            source: "app".into(),
            process: "web.1".into(),
            message: format!("line {n}"),
        }
    }

    #[test]
    fn the_buffer_is_bounded_and_drops_the_oldest_once_noticed() {
        let mut b = Buffer::default();
        let mut notices = 0;
        for n in 0..(BUFFER as u64 + 100) {
            if b.push(line(n)) {
                notices += 1;
            }
        }
        assert_eq!(b.len(), BUFFER);
        assert_eq!(notices, 1, "one L10 per run of drops");
        let first = b.take(1);
        assert_eq!(first[0].seq, 100);
        b.put_back(first);
        assert_eq!(b.len(), BUFFER);
        assert_eq!(b.take(BUFFER).last().unwrap().seq, BUFFER as u64 + 99);
    }

    #[test]
    fn syslog_frames_count_their_octets() {
        let f = syslog_frame("d.abc", &line(1));
        let (len, msg) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<190>1 "), "{msg}");
        assert!(msg.ends_with(" d.abc app web.1 - - line 1"), "{msg}");
    }
}

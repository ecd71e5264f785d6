//! `heroku run`'s attach protocol ("rendezvous"), served on the API port over TLS.
//!
//! `POST /apps/{app}/dynos {attach: true}` from the Heroku CLI answers an `attach_url`
//! `rendezvous://HOST:PORT/SECRET` naming this node (the one that runs the one-off) as the
//! client reached it. The CLI connects with TLS (the node's HTTPS certificate), writes
//! `SECRET\r\n`; the node answers a banner `rendezvous\r\n` in a write of its own (the
//! CLI drops its first chunk), then the dyno's output, raw, stdout and stderr merged,
//! and last a line `\u{FFFF} heroku-command-exit-status: N`, which the CLI strips and
//! exits with. What the CLI writes after the secret is the dyno's stdin; a `\x04` byte is
//! the end of it (the CLI sends one at the end of a piped stdin). The connection ending
//! stops the dyno, as on Heroku.
//!
//! Secrets start with [`PREFIX`] (so the TLS listener can tell a rendezvous from HTTP by
//! its first bytes), are random, single-use, kept only in this node's memory (as their
//! sha256) for [`SECRET_TTL`], and never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::ApiContext;
use crate::dynos::{AttachInput, AttachOutput};
use crate::https::{ConnInfo, Replay};

/// Every rendezvous secret starts with this.
pub const PREFIX: &[u8] = b"rdv-";
/// A secret not used within this is forgotten.
const SECRET_TTL: Duration = Duration::from_secs(300);
/// Longest wait for the secret line.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest secret line taken.
const MAX_LINE: usize = 512;
/// What the client discards: its first chunk.
const BANNER: &[u8] = b"rendezvous\r\n";
/// The pause after the banner, so that output is not read in the same chunk.
const BANNER_GAP: Duration = Duration::from_millis(150);
/// End of a piped stdin, as the Heroku CLI sends it.
const EOT: u8 = 0x04;

/// Secrets handed out on this node and not yet used: sha256 → one-off dyno.
#[derive(Clone, Default)]
pub struct Rendezvous {
    inner: Arc<Mutex<HashMap<String, (Uuid, Instant)>>>,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Rendezvous {
    /// A new secret for attached one-off `dyno`.
    pub fn issue(&self, dyno: Uuid) -> String {
        let random: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let secret = format!("{}{random}", String::from_utf8_lossy(PREFIX));
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|_, (_, at)| at.elapsed() < SECRET_TTL);
            m.insert(digest(&secret), (dyno, Instant::now()));
        }
        secret
    }

    /// The dyno of `secret`, which is then used up.
    fn take(&self, secret: &str) -> Option<Uuid> {
        let mut m = self.inner.lock().ok()?;
        m.remove(&digest(secret))
            .filter(|(_, at)| at.elapsed() < SECRET_TTL)
            .map(|(d, _)| d)
    }
}

/// The `attach_url` of a secret, for a client that reached this node at `authority`
/// (`host:port`; without a port, `default_port`).
pub fn attach_url(authority: &str, default_port: u16, secret: &str) -> String {
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        format!("rendezvous://{authority}/{secret}")
    } else {
        format!("rendezvous://{authority}:{default_port}/{secret}")
    }
}

/// Whether a `Host` header value is a plain `host[:port]` (letters, digits, `.-:[]`).
pub fn valid_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The secret of a first line (`SECRET[?query]`, without its `\r\n`).
pub fn secret_of(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let secret = text.split('?').next()?.trim();
    (secret.as_bytes().starts_with(PREFIX)
        && secret.len() <= MAX_LINE
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then_some(secret)
}

/// The line that tells the Heroku CLI the exit status, at the start of a line (`\n` first
/// when the output so far did not end one).
pub fn exit_line(code: i32, at_line_start: bool) -> Vec<u8> {
    let nl = if at_line_start { "" } else { "\n" };
    format!("{nl}\u{FFFF} heroku-command-exit-status: {code}\n").into_bytes()
}

/// What a chunk from the client means for the dyno: bytes for its stdin, and whether the
/// chunk ended stdin (a `\x04`; anything after it is ignored).
pub fn split_input(chunk: &[u8]) -> (&[u8], bool) {
    match chunk.iter().position(|b| *b == EOT) {
        Some(i) => (&chunk[..i], true),
        None => (chunk, false),
    }
}

/// Serves the rendezvous connections the API port diverts here.
pub async fn serve(ctx: ApiContext, mut rx: mpsc::Receiver<(Replay, ConnInfo)>) {
    while let Some((conn, info)) = rx.recv().await {
        tokio::spawn(handle(ctx.clone(), conn, info));
    }
}

/// Reads up to and without `\r\n` (or `\n`).
async fn read_line(conn: &mut Replay) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() <= MAX_LINE + 2 {
        if conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        if byte[0] == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(line);
        }
        line.push(byte[0]);
    }
    None
}

async fn refuse(mut conn: Replay, why: &str) {
    let _ = conn.write_all(format!("{why}\r\n").as_bytes()).await;
    let _ = conn.write_all(&exit_line(1, true)).await;
    let _ = conn.shutdown().await;
}

async fn handle(ctx: ApiContext, mut conn: Replay, info: ConnInfo) {
    let line = match tokio::time::timeout(LINE_TIMEOUT, read_line(&mut conn)).await {
        Ok(Some(l)) => l,
        _ => return,
    };
    let Some(dyno) = secret_of(&line).and_then(|s| ctx.rendezvous.take(s)) else {
        tracing::debug!(remote = %info.remote, "rendezvous with an unknown secret");
        return refuse(
            conn,
            "This rendezvous is unknown or used: run the command again.",
        )
        .await;
    };
    let attachable = ctx.raft.with_state(|s| {
        s.dynos
            .get(&dyno)
            .is_some_and(|d| d.node == ctx.node_id && d.attach && d.run && d.exit_code.is_none())
    });
    if !attachable {
        return refuse(conn, "This dyno cannot be attached to any more.").await;
    }
    if conn.write_all(BANNER).await.is_err() || conn.flush().await.is_err() {
        return;
    }
    tokio::time::sleep(BANNER_GAP).await;

    let (mut reader, mut writer) = tokio::io::split(conn);
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let manager = ctx.dynos.clone();
    let run = tokio::spawn(async move { manager.attach(dyno, in_rx, out_tx).await });
    // The client's bytes: stdin until `\x04`; its end (or an error) is the caller gone,
    // which drops `in_tx` and so stops the dyno.
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdin_open = true;
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !stdin_open {
                continue;
            }
            let (data, eof) = split_input(&buf[..n]);
            if !data.is_empty() && in_tx.send(AttachInput::Stdin(data.to_vec())).await.is_err() {
                break;
            }
            if eof {
                stdin_open = false;
                if in_tx.send(AttachInput::StdinEof).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut at_line_start = true;
    let mut code = None;
    while let Some(out) = out_rx.recv().await {
        let bytes = match out {
            AttachOutput::Stdout(b) | AttachOutput::Stderr(b) => b,
            AttachOutput::Exit(c) => {
                code = Some(c);
                break;
            }
        };
        if let Some(last) = bytes.last() {
            at_line_start = *last == b'\n';
        }
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    // No exit code: the dyno never started (its error was the output) or the caller left.
    let _ = writer
        .write_all(&exit_line(code.unwrap_or(1), at_line_start))
        .await;
    let _ = writer.shutdown().await;
    input.abort();
    drop(out_rx);
    let _ = run.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_single_use_and_well_formed() {
        let r = Rendezvous::default();
        let d = Uuid::new_v4();
        let s = r.issue(d);
        assert!(s.as_bytes().starts_with(PREFIX) && s.len() == 44, "{s}");
        assert_eq!(secret_of(format!("{s}?x=1").as_bytes()), Some(s.as_str()));
        assert_eq!(r.take(&s), Some(d));
        assert_eq!(r.take(&s), None);
        assert_ne!(r.issue(d), r.issue(d));
    }

    #[test]
    fn first_lines_that_are_no_secret() {
        for bad in [
            &b"GET / HTTP/1.1"[..],
            b"rdv-a b",
            b"",
            b"\xff\xfe",
            b"xyz-abc",
        ] {
            assert_eq!(secret_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn attach_urls_name_the_host_the_client_used() {
        assert_eq!(
            attach_url("127.0.0.1:7400", 7400, "rdv-x"),
            "rendezvous://127.0.0.1:7400/rdv-x"
        );
        assert_eq!(
            attach_url("haven.localhost", 443, "rdv-x"),
            "rendezvous://haven.localhost:443/rdv-x"
        );
        assert_eq!(
            attach_url("[::1]", 7400, "rdv-x"),
            "rendezvous://[::1]:7400/rdv-x"
        );
        assert!(valid_authority("10.0.0.1:7400"));
        assert!(!valid_authority("evil/x"));
        assert!(!valid_authority(""));
    }

    #[test]
    fn the_exit_line_starts_a_line() {
        assert_eq!(
            exit_line(3, true),
            "\u{FFFF} heroku-command-exit-status: 3\n".as_bytes()
        );
        assert_eq!(
            exit_line(0, false),
            "\n\u{FFFF} heroku-command-exit-status: 0\n".as_bytes()
        );
    }

    #[test]
    fn eot_ends_stdin() {
        assert_eq!(split_input(b"hi there\n\x04"), (&b"hi there\n"[..], true));
        assert_eq!(split_input(b"\x04"), (&b""[..], true));
        assert_eq!(split_input(b"abc"), (&b"abc"[..], false));
        assert_eq!(split_input(b"a\x04b"), (&b"a"[..], true));
    }
}

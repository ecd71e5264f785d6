//! The peer protocol hello: the first thing a node says on every connection it opens to
//! another node (a peer connection, and the joiner's connection before it asks for a
//! certificate), so that nodes of incompatible versions refuse each other with a clear
//! message instead of failing on bytes they cannot decode. The versions and the pure check
//! are `haven_raft::version`; this module carries them over QUIC.
//!
//! The client opens a bi-stream, writes [`HELLO_BYTE`] and a JSON [`Hello`], and finishes
//! its side; the server answers with its own `Hello` (with `refused` set when it does not
//! accept the client's protocols) and finishes. On a peer connection [`HELLO_BYTE`] is the
//! stream kind `Hello`; on a join connection, where streams carry tarpc frames that start
//! with a zero byte (a length below 16 MiB), it tells a hello from a join call. A node from
//! before protocol versions drops such a stream without a word (an unknown stream kind, or
//! a frame too long for its join codec): a hello answered by an empty stream comes from a
//! node speaking protocol 1 ([`Protocols::UNANNOUNCED`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use haven_raft::version::{check_protocols, Mismatch, Protocols};
use serde::{Deserialize, Serialize};

/// The first byte of a hello stream.
pub const HELLO_BYTE: u8 = 6;
/// A hello is a few dozen bytes; anything longer is not one.
const MAX_HELLO: usize = 16 << 10;
/// How long a hello may take before the connection counts as failed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// This build's version, as nodes report it to each other and in `GET /cluster/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// When this agent started (the first call, made at start): a restart changes it, which
/// is how `hctl nodes:upgrade` sees that a node came back.
pub fn started_at() -> &'static DateTime<Utc> {
    static STARTED: OnceLock<DateTime<Utc>> = OnceLock::new();
    STARTED.get_or_init(Utc::now)
}

/// `started_at` as the API renders times.
pub fn started_at_rfc3339() -> String {
    started_at().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What each side of a hello says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The peer protocols the sender speaks.
    pub protocols: Protocols,
    /// The sender's havend version (for messages).
    #[serde(default)]
    pub version: String,
    /// In an answer: why the server refuses the client (the connection is then useless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Hello {
    pub fn this() -> Hello {
        Hello {
            protocols: Protocols::THIS,
            version: VERSION.to_string(),
            refused: None,
        }
    }
}

/// This node as messages name it: `node-1 at 10.0.0.1:7401`, or its id before it knows
/// its own record.
pub fn node_label(raft: &haven_raft::HavenRaft) -> String {
    let id = raft.status().node_id;
    raft.with_state(|s| {
        s.nodes
            .get(&id)
            .map(|n| format!("{} at {}", n.name, n.peer_addr))
    })
    .unwrap_or_else(|| format!("node {id}"))
}

/// Whether a refusal of `peer` is to be logged now: once a minute per peer, as Raft
/// retries a peer many times a second.
pub fn log_due(peer: &str) -> bool {
    static LOGGED: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());
    let Ok(mut logged) = LOGGED.lock() else {
        return true;
    };
    let now = Instant::now();
    let due = logged
        .get(peer)
        .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
    if due {
        logged.insert(peer.to_string(), now);
    }
    due
}

/// Why a hello failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The two nodes do not speak a common protocol (the message says who refused what).
    #[error("{0}")]
    Incompatible(String),
    /// The connection failed or the answer was garbage.
    #[error("peer hello: {0}")]
    Transport(String),
}

/// The server's refusal of a client, worded for the client's operator. `mismatch` is the
/// server's view (`PeerTooNew`: the client is newer than the server accepts).
pub fn refusal(server: &str, mismatch: &Mismatch) -> String {
    match mismatch {
        Mismatch::PeerTooNew { local, peer } => format!(
            "{server} (havend {VERSION}, peer protocol {local}) refused this node's peer \
             protocol {peer}: this node is newer than the cluster can accept; upgrade the \
             cluster's nodes first (one at a time, `hctl nodes:upgrade`), or run the havend \
             version the cluster runs"
        ),
        Mismatch::PeerTooOld { local, peer } => format!(
            "{server} (havend {VERSION}, peer protocol {local}) refused this node's peer \
             protocol {peer}: this node is older than the cluster still supports; install \
             the havend version the cluster runs"
        ),
    }
}

/// The client's own refusal of a server it cannot talk to. `mismatch` is the client's
/// view (`PeerTooNew`: the server is newer than this node accepts).
pub fn rejection(server: &str, server_version: &str, mismatch: &Mismatch) -> String {
    let version = if server_version.is_empty() {
        "a havend from before protocol versions".to_string()
    } else {
        format!("havend {server_version}")
    };
    match mismatch {
        Mismatch::PeerTooNew { local, peer } => format!(
            "{server} ({version}) speaks peer protocol {peer}, newer than this havend \
             {VERSION} accepts (protocol {local}): this node is older than the cluster still \
             supports; install the havend version the cluster runs"
        ),
        Mismatch::PeerTooOld { local, peer } => format!(
            "{server} ({version}) speaks peer protocol {peer}, older than this havend \
             {VERSION} still supports (protocol {local}): this node is newer than the cluster \
             can accept; upgrade the cluster's nodes first (one at a time, `hctl \
             nodes:upgrade`), or run the havend version the cluster runs"
        ),
    }
}

/// What a client makes of the server's answer (`None`: an empty answer, from a node
/// before protocol versions): the protocol both speak, or why not.
pub fn judge_answer(
    local: Protocols,
    server: &str,
    answer: Option<&Hello>,
) -> Result<u32, HelloError> {
    if let Some(why) = answer.and_then(|a| a.refused.as_ref()) {
        return Err(HelloError::Incompatible(why.clone()));
    }
    let (peer, version) = match answer {
        Some(a) => (a.protocols, a.version.as_str()),
        None => (Protocols::UNANNOUNCED, ""),
    };
    check_protocols(local, peer)
        .map_err(|m| HelloError::Incompatible(rejection(server, version, &m)))
}

/// What a server makes of a client's hello: its answer, and the mismatch if it refuses.
pub fn answer_to(local: Protocols, me: &str, client: &Hello) -> (Hello, Option<Mismatch>) {
    let mismatch = check_protocols(local, client.protocols).err();
    let answer = Hello {
        protocols: local,
        version: VERSION.to_string(),
        refused: mismatch.as_ref().map(|m| refusal(me, m)),
    };
    (answer, mismatch)
}

/// Says hello on a new bi-stream of `conn` to `server` (named in messages) with `local`
/// protocols; returns the protocol both speak.
pub async fn client_hello(
    conn: &quinn::Connection,
    server: &str,
    local: Protocols,
) -> Result<u32, HelloError> {
    let hello = Hello {
        protocols: local,
        ..Hello::this()
    };
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| HelloError::Transport(e.to_string()))?;
        let mut bytes = vec![HELLO_BYTE];
        bytes.extend(serde_json::to_vec(&hello).unwrap_or_default());
        match send.write_all(&bytes).await {
            // A node from before protocol versions stops reading at once; its empty
            // answer follows.
            Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(HelloError::Transport(e.to_string())),
        }
        let _ = send.finish();
        recv.read_to_end(MAX_HELLO)
            .await
            .map_err(|e| HelloError::Transport(e.to_string()))
    };
    let answer = tokio::time::timeout(HELLO_TIMEOUT, exchange)
        .await
        .map_err(|_| HelloError::Transport(format!("no answer within {HELLO_TIMEOUT:?}")))??;
    let answer: Option<Hello> = if answer.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&answer).map_err(|e| {
            HelloError::Transport(format!("malformed hello answer from {server}: {e}"))
        })?)
    };
    judge_answer(local, server, answer.as_ref())
}

/// Answers a hello whose first byte was read already: records the client's protocols
/// with `record` and answers. Returns the mismatch when the client is refused.
pub async fn serve_hello(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    local: Protocols,
    me: &str,
    record: impl FnOnce(Protocols),
) -> Result<Option<Mismatch>, String> {
    let read = tokio::time::timeout(HELLO_TIMEOUT, recv.read_to_end(MAX_HELLO))
        .await
        .map_err(|_| "the hello did not end in time".to_string())?
        .map_err(|e| format!("read the hello: {e}"))?;
    let client: Hello =
        serde_json::from_slice(&read).map_err(|e| format!("malformed hello: {e}"))?;
    let (answer, mismatch) = answer_to(local, me, &client);
    record(client.protocols);
    send.write_all(&serde_json::to_vec(&answer).unwrap_or_default())
        .await
        .map_err(|e| format!("answer the hello: {e}"))?;
    let _ = send.finish();
    // The answer must reach the client before the stream's end is dropped with us.
    let _ = tokio::time::timeout(HELLO_TIMEOUT, send.stopped()).await;
    Ok(mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(min: u32, max: u32) -> Protocols {
        Protocols { min, max }
    }

    #[test]
    fn hellos_are_json_that_ignores_unknown_fields() {
        let h = Hello::this();
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"protocols":{{"min":{},"max":{}}},"version":"{VERSION}"}}"#,
                Protocols::THIS.min,
                Protocols::THIS.max
            )
        );
        let later: Hello = serde_json::from_str(
            r#"{"protocols":{"min":3,"max":4},"version":"9.0.0","features":["x"]}"#,
        )
        .unwrap();
        assert_eq!(later.protocols, p(3, 4));
        // A hello's first byte never starts a join stream's tarpc frame.
        assert_ne!(HELLO_BYTE, 0);
    }

    #[test]
    fn an_empty_answer_is_a_node_from_before_protocol_versions() {
        assert_eq!(judge_answer(p(1, 1), "10.0.0.1:7401", None), Ok(1));
        let err = judge_answer(p(2, 3), "10.0.0.1:7401", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "10.0.0.1:7401 (a havend from before protocol versions) speaks peer protocol 1, \
                 older than this havend {VERSION} still supports (protocol 2 to 3): this node \
                 is newer than the cluster can accept; upgrade the cluster's nodes first (one \
                 at a time, `hctl nodes:upgrade`), or run the havend version the cluster runs"
            )
        );
    }

    #[test]
    fn a_server_refuses_a_newer_client_and_the_client_says_why() {
        let client = Hello {
            protocols: p(5, 6),
            version: "9.9.9".into(),
            refused: None,
        };
        let (answer, mismatch) = answer_to(p(1, 2), "node-0", &client);
        assert!(matches!(mismatch, Some(Mismatch::PeerTooNew { .. })));
        let why = answer.refused.clone().unwrap();
        assert!(
            why.starts_with(&format!(
                "node-0 (havend {VERSION}, peer protocol 1 to 2) refused this node's peer \
                 protocol 5 to 6: this node is newer than the cluster can accept"
            )),
            "{why}"
        );
        assert_eq!(
            judge_answer(p(5, 6), "node-0", Some(&answer)),
            Err(HelloError::Incompatible(why))
        );
        // An older client is refused the other way.
        let old = Hello {
            protocols: p(1, 1),
            ..client
        };
        let (answer, _) = answer_to(p(2, 3), "node-0", &old);
        assert!(answer
            .refused
            .unwrap()
            .contains("this node is older than the cluster still supports"));
    }

    #[test]
    fn a_client_refuses_a_server_it_cannot_talk_to() {
        let server = Hello {
            protocols: p(4, 4),
            version: "2.0.0".into(),
            refused: None,
        };
        let err = judge_answer(p(1, 3), "node-0", Some(&server)).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "node-0 (havend 2.0.0) speaks peer protocol 4, newer than this havend \
                 {VERSION} accepts (protocol 1 to 3): this node is older than the cluster \
                 still supports"
            )),
            "{err}"
        );
        assert_eq!(judge_answer(p(1, 4), "node-0", Some(&server)), Ok(4));
    }
}

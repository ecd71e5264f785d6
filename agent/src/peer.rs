//! The peer transport, client side: one QUIC endpoint per agent (design §3) and the
//! connector every module dials other nodes with.
//!
//! Every agent-to-agent call rides on it. A connection carries bi-streams whose first
//! byte is a [`StreamKind`]; the server side that answers them is [`crate::peer_server`].
//! This module names no service, so any module may use it without a cycle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use haven_raft::model::NodeId;
use haven_raft::rpc::{peer_client, PeerClient};
use haven_raft::version::Protocols;
use haven_raft::PeerConnector;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::tls::{self, CertKey, NODE_SERVER_NAME};
use crate::version::{self, HelloError};

/// QUIC transport settings shared by both sides: keep-alives well under the idle timeout
/// so that a dead peer is noticed within seconds.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(300)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(3)) {
        t.max_idle_timeout(Some(idle));
    }
    t.max_concurrent_bidi_streams(1024u32.into());
    Arc::new(t)
}

/// Builds the QUIC client config of a node holding a cluster certificate.
pub fn peer_quic_client(node: &CertKey, ca_pem: &str) -> Result<quinn::ClientConfig> {
    let crypto = QuicClientConfig::try_from(tls::peer_client_config(node, ca_pem)?)
        .context("QUIC client config")?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport_config());
    Ok(cfg)
}

/// The stateless-reset key of a node, derived from its private key so that it survives a
/// restart: a restarted node answers packets of its previous life's connections with a
/// reset the peer accepts, and the peer drops the dead connection at once instead of after
/// the idle timeout (its routes, heartbeats and Raft RPCs reconnect within a keep-alive).
struct ResetKey([u8; 32]);

impl ResetKey {
    fn of(node: &CertKey) -> ResetKey {
        let seed = Sha256::new()
            .chain_update(b"haven quic stateless reset key\n")
            .chain_update(node.key_pem.as_bytes())
            .finalize();
        ResetKey(seed.into())
    }

    fn hmac(&self, data: &[u8]) -> [u8; 32] {
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, k) in self.0.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(data)
            .finalize();
        Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], out: &mut [u8]) {
        let tag = self.hmac(data);
        let n = out.len().min(tag.len());
        out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let tag = self.hmac(data);
        let same = signature.len() == tag.len()
            && signature
                .iter()
                .zip(tag.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then_some(()).ok_or(quinn::crypto::CryptoError)
    }
}

/// Random 8-byte connection ids that any packet may carry: quinn's default generator
/// refuses ids it did not sign with a per-process key, so a restarted node would drop the
/// old connections' packets without sending the reset.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Binds the QUIC endpoint on `listen` with the node's certificate.
pub fn bind_endpoint(listen: SocketAddr, node: &CertKey, ca_pem: &str) -> Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(tls::server_config(node, ca_pem)?)
        .context("QUIC server config")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    let mut config = quinn::EndpointConfig::new(Arc::new(ResetKey::of(node)));
    config.cid_generator(|| Box::new(RandomCids));
    let socket = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("bind peer endpoint on udp {listen}"))?;
    let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
    let mut endpoint = quinn::Endpoint::new(config, Some(server), socket, runtime)
        .with_context(|| format!("bind peer endpoint on udp {listen}"))?;
    endpoint.set_default_client_config(peer_quic_client(node, ca_pem)?);
    Ok(endpoint)
}

/// Resolves `host:port` to a socket address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {addr}: no address"))
}

/// Opens tarpc `Peer` clients over the QUIC endpoint, one connection per peer address,
/// one bi-stream per client.
#[derive(Clone)]
pub struct QuicConnector {
    endpoint: quinn::Endpoint,
    conns: Arc<Mutex<HashMap<String, quinn::Connection>>>,
}

impl QuicConnector {
    pub fn new(endpoint: quinn::Endpoint) -> QuicConnector {
        QuicConnector {
            endpoint,
            conns: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A live connection to `addr`, reusing the cached one.
    pub async fn connection(&self, addr: &str) -> Result<quinn::Connection, String> {
        let cached = self
            .conns
            .lock()
            .ok()
            .and_then(|m| m.get(addr).cloned())
            .filter(|c| c.close_reason().is_none());
        if let Some(c) = cached {
            return Ok(c);
        }
        let sock = resolve(addr).await?;
        let connecting = self
            .endpoint
            .connect(sock, NODE_SERVER_NAME)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .map_err(|_| format!("connect to {addr}: timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        // Both sides check that they speak a common peer protocol before anything else.
        match version::client_hello(&conn, addr, Protocols::THIS).await {
            Ok(_) => {}
            Err(HelloError::Incompatible(why)) => {
                if version::log_due(addr) {
                    warn!(peer = addr, "refused a peer connection: {why}");
                }
                conn.close(4u32.into(), b"incompatible peer protocol");
                return Err(format!("connect to {addr}: {why}"));
            }
            Err(e) => {
                conn.close(0u32.into(), b"hello failed");
                return Err(format!("connect to {addr}: {e}"));
            }
        }
        if let Ok(mut m) = self.conns.lock() {
            m.insert(addr.to_string(), conn.clone());
        }
        Ok(conn)
    }

    /// Drops the cached connection to `addr` after a transfer on it failed: a peer that
    /// restarted leaves a connection that still opens streams but carries nothing until
    /// its idle timeout, and the next call must dial the new process.
    pub fn forget(&self, addr: &str) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(addr);
        }
    }

    /// A new bi-stream of `kind` to `addr` (the kind byte is already sent).
    pub async fn open(
        &self,
        addr: &str,
        kind: StreamKind,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let conn = self.connection(addr).await?;
        let opened = async {
            let (mut send, recv) = conn.open_bi().await?;
            send.write_all(&[kind as u8]).await?;
            Ok::<_, anyhow::Error>((send, recv))
        }
        .await;
        opened.map_err(|e| {
            if let Ok(mut m) = self.conns.lock() {
                m.remove(addr);
            }
            format!("open stream to {addr}: {e}")
        })
    }

    /// A new `Peer` client on a fresh bi-stream to `addr`.
    pub async fn client(&self, addr: &str) -> Result<PeerClient, String> {
        let (send, recv) = self.open(addr, StreamKind::Rpc).await?;
        Ok(peer_client(tokio::io::join(recv, send)))
    }
}

impl PeerConnector for QuicConnector {
    fn connect(
        &self,
        _target: NodeId,
        peer_addr: String,
    ) -> BoxFuture<'static, Result<PeerClient, String>> {
        let this = self.clone();
        Box::pin(async move { this.client(&peer_addr).await })
    }
}

/// The first byte of every bi-stream on a peer connection says what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// A tarpc `Peer` session.
    Rpc = 0,
    /// Fetch a slug's bytes ([`crate::slugs`]).
    SlugGet = 1,
    /// Store a slug's bytes ([`crate::slugs`]).
    SlugPut = 2,
    /// Heartbeats of the sending node ([`crate::liveness`]).
    Heartbeat = 3,
    /// Route registrations of the sending node ([`crate::router::registry`]).
    Routes = 4,
    /// An app's log lines on this node ([`crate::logs`]).
    Logs = 5,
    /// The peer protocol hello, the first stream of every connection ([`crate::version`]).
    Hello = version::HELLO_BYTE,
}

impl StreamKind {
    /// The kind a stream's first byte names; `None` for an unknown byte.
    pub fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            0 => Some(StreamKind::Rpc),
            1 => Some(StreamKind::SlugGet),
            2 => Some(StreamKind::SlugPut),
            3 => Some(StreamKind::Heartbeat),
            4 => Some(StreamKind::Routes),
            5 => Some(StreamKind::Logs),
            version::HELLO_BYTE => Some(StreamKind::Hello),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use haven_raft::version::Mismatch;

    use super::*;
    use crate::tls::{generate_ca, issue_node_cert};
    use crate::version::{client_hello, serve_hello, HELLO_BYTE, VERSION};

    #[test]
    fn a_peer_drops_its_connection_to_a_restarted_node_at_once() {
        let ca = generate_ca().unwrap();
        let a_cert = issue_node_cert(&ca, 1).unwrap();
        let b_cert = issue_node_cert(&ca, 2).unwrap();
        // Node A lives on a runtime of its own, so that it can die without a word (no
        // CONNECTION_CLOSE), like a killed process.
        let a_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let a = a_rt
            .block_on(async {
                bind_endpoint("127.0.0.1:0".parse().unwrap(), &a_cert, &ca.cert_pem)
            })
            .unwrap();
        let addr = a.local_addr().unwrap();
        let accept = {
            let a = a.clone();
            a_rt.spawn(async move { a.accept().await.unwrap().await.unwrap() })
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = rt
            .block_on(async {
                bind_endpoint("127.0.0.1:0".parse().unwrap(), &b_cert, &ca.cert_pem)
            })
            .unwrap();
        let (conn, server_side) = rt.block_on(async {
            let c = b.connect(addr, NODE_SERVER_NAME).unwrap().await.unwrap();
            (c, accept.await.unwrap())
        });
        // Its tasks stop first, so that dropping its handles sends nothing; then its socket
        // closes.
        a_rt.shutdown_timeout(Duration::from_secs(5));
        drop(server_side);
        drop(a);
        // A starts again on the same address with the same key.
        let restarted = rt.block_on(async {
            let started = Instant::now();
            let a2 = bind_endpoint(addr, &a_cert, &ca.cert_pem).unwrap();
            let why = tokio::time::timeout(Duration::from_secs(10), conn.closed())
                .await
                .unwrap();
            (a2, why, started.elapsed())
        });
        let (_a2, why, after) = restarted;
        assert!(
            matches!(why, quinn::ConnectionError::Reset),
            "closed by {why:?}"
        );
        // Well before the 3 s idle timeout: the first keep-alive gets the reset.
        assert!(after < Duration::from_millis(1500), "took {after:?}");
    }

    /// Two endpoints of one cluster; the server answers the first stream of the first
    /// connection with `server` (given the stream past its first byte).
    async fn exchange<F, Fut>(server: F) -> (quinn::Connection, quinn::Endpoint, quinn::Endpoint)
    where
        F: FnOnce(quinn::SendStream, quinn::RecvStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let ca = generate_ca().unwrap();
        let a = issue_node_cert(&ca, 1).unwrap();
        let b = issue_node_cert(&ca, 2).unwrap();
        let srv = bind_endpoint("127.0.0.1:0".parse().unwrap(), &a, &ca.cert_pem).unwrap();
        let cli = bind_endpoint("127.0.0.1:0".parse().unwrap(), &b, &ca.cert_pem).unwrap();
        let addr = srv.local_addr().unwrap();
        let accept = srv.clone();
        tokio::spawn(async move {
            let conn = accept.accept().await.unwrap().await.unwrap();
            let (send, mut recv) = conn.accept_bi().await.unwrap();
            let mut first = [0u8; 1];
            recv.read_exact(&mut first).await.unwrap();
            assert_eq!(first[0], HELLO_BYTE);
            server(send, recv).await;
            // Keep the connection until the client is done with it.
            conn.closed().await;
        });
        let conn = cli.connect(addr, NODE_SERVER_NAME).unwrap().await.unwrap();
        (conn, srv, cli)
    }

    #[tokio::test]
    async fn a_peer_refuses_an_older_client_over_quic_and_the_client_gets_the_reason() {
        let (conn, _s, _c) = exchange(|send, recv| async move {
            let newer = Protocols { min: 2, max: 3 };
            let m = serve_hello(send, recv, newer, "node-0 at 10.0.0.1:7401", |p| {
                assert_eq!(p, Protocols { min: 1, max: 1 })
            })
            .await
            .unwrap();
            assert!(matches!(m, Some(Mismatch::PeerTooOld { .. })));
        })
        .await;
        let err = client_hello(&conn, "10.0.0.1:7401", p(1, 1))
            .await
            .unwrap_err();
        match err {
            HelloError::Incompatible(why) => assert!(
                why.starts_with(&format!(
                    "node-0 at 10.0.0.1:7401 (havend {VERSION}, peer protocol 2 to 3) refused \
                     this node's peer protocol 1: this node is older than the cluster still \
                     supports"
                )),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_peer_from_before_protocol_versions_drops_the_hello_and_speaks_protocol_1() {
        // What an older agent does with a stream kind it does not know: drop the stream.
        let (conn, _s, _c) = exchange(|send, recv| async move {
            drop((send, recv));
        })
        .await;
        assert_eq!(client_hello(&conn, "10.0.0.1:7401", p(1, 1)).await, Ok(1));
        let (conn, _s, _c) = exchange(|send, recv| async move {
            drop((send, recv));
        })
        .await;
        let err = client_hello(&conn, "10.0.0.1:7401", p(2, 2))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("(a havend from before protocol versions) speaks peer protocol 1"),
            "{err}"
        );
    }

    fn p(min: u32, max: u32) -> Protocols {
        Protocols { min, max }
    }
}

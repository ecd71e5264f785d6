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
use haven_raft::PeerConnector;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::tls::{self, CertKey, NODE_SERVER_NAME};

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

/// Binds the QUIC endpoint on `listen` with the node's certificate.
pub fn bind_endpoint(listen: SocketAddr, node: &CertKey, ca_pem: &str) -> Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(tls::server_config(node, ca_pem)?)
        .context("QUIC server config")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    let mut endpoint = quinn::Endpoint::server(server, listen)
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
            _ => None,
        }
    }
}

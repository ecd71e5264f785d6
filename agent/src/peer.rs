//! The peer transport: one QUIC endpoint per agent (design §3).
//!
//! Every agent-to-agent call rides on it. Connections with ALPN [`ALPN_PEER`] must present
//! a certificate from the cluster CA (rustls verifies the chain; we refuse connections
//! without one); each bi-stream on them carries one tarpc `Peer` session (Raft RPCs,
//! write forwarding, read index, joining). Connections with ALPN [`ALPN_JOIN`] come from
//! nodes that have no certificate yet and may only call the join service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use haven_raft::model::NodeId;
use haven_raft::rpc::{peer_client, PeerClient, PeerServer};
use haven_raft::PeerConnector;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use tracing::{debug, info, warn};

use crate::join::JoinServer;
use crate::tls::{self, CertKey, ALPN_JOIN, ALPN_PEER, NODE_SERVER_NAME};

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
    /// Heartbeats of the sending node ([`crate::leader`]).
    Heartbeat = 3,
    /// Route registrations of the sending node ([`crate::router::registry`]).
    Routes = 4,
    /// An app's log lines on this node ([`crate::logs`]).
    Logs = 5,
}

impl StreamKind {
    fn from_byte(b: u8) -> Option<StreamKind> {
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

/// What incoming connections are served with.
#[derive(Clone)]
pub struct Services {
    pub peer: PeerServer,
    pub join: JoinServer,
    pub slugs: crate::slugs::SlugStore,
    pub liveness: crate::leader::Liveness,
    pub routes: Arc<crate::router::registry::Receiver>,
    pub logs: crate::logs::Logs,
}

/// Accepts connections until the endpoint closes.
pub async fn serve(endpoint: quinn::Endpoint, services: Services) {
    while let Some(incoming) = endpoint.accept().await {
        let services = services.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => handle_connection(conn, services).await,
                Err(e) => debug!(%remote, error = %e, "peer handshake failed"),
            }
        });
    }
}

fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?
        .protocol
}

/// The node id in a peer's certificate: node certificates name `node-<id>` as a DNS name
/// (see `tls::issue_node_cert`); the CA signed it, so the bytes are trusted.
fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    node_id_in_cert(certs.first()?.as_ref())
}

/// Finds the DNS name `node-<id>` in a DER certificate: a subjectAltName dNSName is
/// encoded as tag 0x82, a short length, then the name's bytes.
pub fn node_id_in_cert(der: &[u8]) -> Option<NodeId> {
    let pat = b"node-";
    (0..der.len().saturating_sub(2)).find_map(|i| {
        if der[i] != 0x82 {
            return None;
        }
        let len = usize::from(der[i + 1]);
        let name = der.get(i + 2..i + 2 + len)?;
        let digits = name.strip_prefix(pat.as_slice())?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

fn has_client_cert(conn: &quinn::Connection) -> bool {
    conn.peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .is_some_and(|certs| !certs.is_empty())
}

async fn handle_connection(conn: quinn::Connection, services: Services) {
    let remote = conn.remote_address();
    match alpn_of(&conn).as_deref() {
        Some(p) if p == ALPN_PEER => {
            if !has_client_cert(&conn) {
                warn!(%remote, "refused a peer connection without a cluster certificate");
                conn.close(1u32.into(), b"a cluster certificate is required");
                return;
            }
            loop {
                let (send, recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(%remote, error = %e, "peer connection closed");
                        return;
                    }
                };
                tokio::spawn(serve_stream(
                    send,
                    recv,
                    services.clone(),
                    peer_node_id(&conn),
                ));
            }
        }
        Some(p) if p == ALPN_JOIN => {
            info!(%remote, "join connection");
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(crate::join::serve(
                    tokio::io::join(recv, send),
                    services.join.clone(),
                ));
            }
        }
        _ => {
            conn.close(2u32.into(), b"unknown protocol");
        }
    }
}

/// Serves one bi-stream of a peer connection by its kind byte.
async fn serve_stream(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    services: Services,
    peer: Option<NodeId>,
) {
    let mut kind = [0u8; 1];
    if recv.read_exact(&mut kind).await.is_err() {
        return;
    }
    match StreamKind::from_byte(kind[0]) {
        Some(StreamKind::Rpc) => {
            haven_raft::rpc::serve_peer(tokio::io::join(recv, send), services.peer).await
        }
        Some(StreamKind::SlugGet) => services.slugs.serve_get(send, recv).await,
        Some(StreamKind::SlugPut) => services.slugs.serve_put(send, recv).await,
        Some(StreamKind::Heartbeat) => services.liveness.serve(recv).await,
        Some(StreamKind::Logs) => services.logs.serve(send, recv).await,
        Some(StreamKind::Routes) => match peer {
            Some(node) => services.routes.serve(node, send, recv).await,
            None => {
                warn!("refused route registrations from a peer whose certificate names no node")
            }
        },
        None => debug!(kind = kind[0], "unknown peer stream kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{generate_ca, issue_node_cert};

    /// Accepts one connection; returns it when its handshake succeeded and it carries a
    /// client certificate (the rule `handle_connection` applies to peer connections).
    async fn accept_one(endpoint: quinn::Endpoint) -> Option<quinn::Connection> {
        let conn = endpoint.accept().await?.await.ok()?;
        (alpn_of(&conn).as_deref() == Some(ALPN_PEER) && has_client_cert(&conn)).then_some(conn)
    }

    /// Connects; returns the connection if the handshake completed.
    async fn connect(
        client: quinn::ClientConfig,
        server: SocketAddr,
    ) -> (quinn::Endpoint, Option<quinn::Connection>) {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(client);
        let conn = match ep.connect(server, NODE_SERVER_NAME) {
            Ok(c) => tokio::time::timeout(Duration::from_secs(5), c)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        (ep, conn)
    }

    #[test]
    fn node_ids_are_read_from_node_certificates() {
        use rustls::pki_types::pem::PemObject;
        let ca = generate_ca().unwrap();
        let cert = issue_node_cert(&ca, 1234567890123).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        assert_eq!(node_id_in_cert(der.as_ref()), Some(1234567890123));
        let ca_der =
            rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert_eq!(node_id_in_cert(ca_der.as_ref()), None);
    }

    #[tokio::test]
    async fn only_certificates_from_the_cluster_ca_are_accepted() {
        let ca = generate_ca().unwrap();
        let server_cert = issue_node_cert(&ca, 1).unwrap();
        let server =
            bind_endpoint("127.0.0.1:0".parse().unwrap(), &server_cert, &ca.cert_pem).unwrap();
        let addr = server.local_addr().unwrap();

        // A member of the cluster is accepted.
        let member = issue_node_cert(&ca, 2).unwrap();
        let accept = tokio::spawn(accept_one(server.clone()));
        let (_ep, conn) = connect(peer_quic_client(&member, &ca.cert_pem).unwrap(), addr).await;
        let server_side = accept
            .await
            .unwrap()
            .expect("the server accepts a cluster certificate");
        let conn = conn.expect("the member's handshake completes");
        // The connection carries data both ways.
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(b"hello").await.unwrap();
        s.finish().unwrap();
        let mut r = server_side.accept_uni().await.unwrap();
        assert_eq!(r.read_to_end(64).await.unwrap(), b"hello");

        // A node of another cluster (its own CA), trusting our CA, is refused.
        let other_ca = generate_ca().unwrap();
        let stranger = issue_node_cert(&other_ca, 3).unwrap();
        // The stranger presents its own chain but verifies the server against our CA.
        let crypto = {
            let (chain, key) = parse_test_chain(&stranger, &other_ca.cert_pem);
            let roots = {
                let mut r = rustls::RootCertStore::empty();
                r.add(
                    rustls::pki_types::pem::PemObject::from_pem_slice(ca.cert_pem.as_bytes())
                        .unwrap(),
                )
                .unwrap();
                r
            };
            let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
            c.alpn_protocols = vec![ALPN_PEER.to_vec()];
            c
        };
        let accept = tokio::spawn(accept_one(server.clone()));
        let client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto).unwrap()));
        let (_ep, conn) = connect(client, addr).await;
        assert!(
            accept.await.unwrap().is_none(),
            "the server refuses a foreign certificate"
        );
        // With TLS 1.3 the client may finish its side first; the server's refusal closes it.
        if let Some(conn) = conn {
            let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            assert!(
                closed.is_ok(),
                "the stranger's connection is closed by the server"
            );
        }
    }

    fn parse_test_chain(
        node: &CertKey,
        ca_pem: &str,
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        use rustls::pki_types::pem::PemObject;
        let leaf =
            rustls::pki_types::CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).unwrap();
        (vec![leaf, ca], key)
    }
}

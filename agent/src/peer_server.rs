//! The peer transport, server side: accepts connections on the QUIC endpoint and hands
//! each stream to the service its [`StreamKind`] names (design §3).
//!
//! Connections with ALPN [`ALPN_PEER`] must present a certificate from the cluster CA
//! (rustls verifies the chain; we refuse connections without one); each bi-stream on
//! them starts with a kind byte. Connections with ALPN [`ALPN_JOIN`] come from nodes that
//! have no certificate yet and may only call the join service. This is the one module
//! that names every service; the services dial out through [`crate::peer`].

use std::sync::{Arc, OnceLock};

use haven_raft::model::NodeId;
use haven_raft::rpc::PeerServer;
use haven_raft::version::{check_protocols, Protocols};
use quinn::crypto::rustls::HandshakeData;
use tracing::{debug, info, warn};

use crate::join::JoinServer;
use crate::peer::StreamKind;
use crate::tls::{ALPN_JOIN, ALPN_PEER};
use crate::version;

/// What incoming connections are served with.
#[derive(Clone)]
pub struct Services {
    pub peer: PeerServer,
    pub join: JoinServer,
    pub slugs: crate::slugs::SlugStore,
    pub liveness: crate::liveness::Liveness,
    pub routes: Arc<crate::router::registry::Receiver>,
    pub logs: crate::logs::Logs,
    /// The replicated state: a removed node's identity is refused.
    pub raft: haven_raft::HavenRaft,
}

impl Services {
    /// Whether the node `id` (from a peer's certificate) was removed from the cluster.
    fn removed(&self, id: Option<NodeId>) -> bool {
        id.is_some_and(|id| self.raft.with_state(|s| s.removed_nodes.contains(&id)))
    }
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
            let peer = peer_node_id(&conn);
            // The protocols the client announced in its hello (none: a node from before
            // protocol versions).
            let announced = Arc::new(OnceLock::new());
            loop {
                let accepted = if services.removed(peer) {
                    None
                } else {
                    match conn.accept_bi().await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            debug!(%remote, error = %e, "peer connection closed");
                            return;
                        }
                    }
                };
                // Checked on every stream: a connection opened before its node was
                // removed ends at its next stream.
                let Some((send, recv)) = accepted.filter(|_| !services.removed(peer)) else {
                    warn!(%remote, node = ?peer, "refused a removed node's connection");
                    conn.close(3u32.into(), b"this node was removed from the cluster");
                    return;
                };
                let conn = Peer {
                    conn: conn.clone(),
                    node: peer,
                    announced: announced.clone(),
                };
                tokio::spawn(serve_stream(send, recv, services.clone(), conn));
            }
        }
        Some(p) if p == ALPN_JOIN => {
            info!(%remote, "join connection");
            crate::join::serve_connection(conn, services.join.clone()).await;
        }
        _ => {
            conn.close(2u32.into(), b"unknown protocol");
        }
    }
}

/// The client of a peer connection.
struct Peer {
    conn: quinn::Connection,
    /// The node its certificate names.
    node: Option<NodeId>,
    /// The protocols it said hello with.
    announced: Arc<OnceLock<Protocols>>,
}

/// Serves one bi-stream of a peer connection by its kind byte.
async fn serve_stream(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    services: Services,
    client: Peer,
) {
    let mut kind = [0u8; 1];
    if recv.read_exact(&mut kind).await.is_err() {
        return;
    }
    let peer = client.node;
    let kind = StreamKind::from_byte(kind[0]);
    if kind == Some(StreamKind::Hello) {
        let me = version::node_label(&services.raft);
        let announced = client.announced.clone();
        let record = move |p| {
            let _ = announced.set(p);
        };
        match version::serve_hello(send, recv, Protocols::THIS, &me, record).await {
            Ok(None) => {}
            Ok(Some(m)) => {
                let remote = client.conn.remote_address();
                if version::log_due(&remote.to_string()) {
                    warn!(%remote, node = ?peer, "refused a peer connection: {m}");
                }
                client
                    .conn
                    .close(4u32.into(), b"incompatible peer protocol");
            }
            Err(e) => debug!(node = ?peer, error = %e, "peer hello failed"),
        }
        return;
    }
    // A client that said no hello is from before protocol versions.
    let protocols = client
        .announced
        .get()
        .copied()
        .unwrap_or(Protocols::UNANNOUNCED);
    if let Err(m) = check_protocols(Protocols::THIS, protocols) {
        let remote = client.conn.remote_address();
        if version::log_due(&remote.to_string()) {
            warn!(%remote, node = ?peer, "refused a peer connection: {m}");
        }
        client
            .conn
            .close(4u32.into(), b"incompatible peer protocol");
        return;
    }
    match kind {
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
        Some(StreamKind::Hello) => {}
        None => debug!("unknown peer stream kind"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use quinn::crypto::rustls::QuicClientConfig;

    use super::*;
    use crate::peer::{bind_endpoint, peer_quic_client};
    use crate::tls::{generate_ca, issue_node_cert, CertKey, NODE_SERVER_NAME};

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

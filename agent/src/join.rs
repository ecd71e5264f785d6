//! Joining a cluster.
//!
//! `havend init` prints a join token: `HVNJ1.` + base64url(JSON {cluster id, CA
//! fingerprint, secret}). `havend join --token T PEER` connects to PEER with the join
//! ALPN (no client certificate), checks that PEER's chain holds the CA named by the
//! fingerprint, and calls [`Join::join`] with the secret. The peer checks the secret
//! against the sha256 kept in the replicated cluster record and answers with the CA and a
//! new node certificate. The new node then starts its agent and asks, over an
//! authenticated peer connection, to be added to the Raft cluster.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use futures::prelude::*;
use haven_raft::version::{check_protocols, Protocols};
use haven_raft::HavenRaft;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tarpc::serde_transport as transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use crate::tls::{self, CertKey, NODE_SERVER_NAME};
use crate::version;

const TOKEN_PREFIX: &str = "HVNJ1.";

/// What a join token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinToken {
    /// Cluster id.
    pub c: String,
    /// sha256 (hex) of the CA certificate.
    pub f: String,
    /// The join secret.
    pub s: String,
}

impl JoinToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    pub fn decode(text: &str) -> Result<JoinToken> {
        let bad = || {
            anyhow::anyhow!(
                "the join token is malformed; copy it again from the output of `havend init`"
            )
        };
        let body = text.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad())?;
        let token: JoinToken = serde_json::from_slice(&json).map_err(|_| bad())?;
        if token.f.len() != 64 || token.s.is_empty() {
            return Err(bad());
        }
        Ok(token)
    }
}

/// sha256 (hex) of a secret; only this is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinApplication {
    pub secret: String,
    pub node_id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinGrant {
    pub cluster_id: String,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub node_cert_pem: String,
    pub node_key_pem: String,
}

#[tarpc::service]
pub trait Join {
    /// Proves the join secret and receives a node certificate.
    async fn join(req: JoinApplication) -> Result<JoinGrant, String>;
}

/// Answers joins on this node.
#[derive(Clone)]
pub struct JoinServer {
    pub ca: CertKey,
    pub raft: HavenRaft,
}

/// A join stream of one connection: the server and what the joiner said hello with.
#[derive(Clone)]
struct JoinSession {
    server: JoinServer,
    /// `None`: the joiner said no hello (a node from before protocol versions).
    joiner: Option<Protocols>,
}

impl Join for JoinSession {
    async fn join(
        self,
        _: tarpc::context::Context,
        req: JoinApplication,
    ) -> Result<JoinGrant, String> {
        let joiner = self.joiner.unwrap_or(Protocols::UNANNOUNCED);
        if let Err(m) = check_protocols(Protocols::THIS, joiner) {
            warn!(node_name = %req.name, "join refused: {m}");
            return Err(version::refusal(
                &version::node_label(&self.server.raft),
                &m,
            ));
        }
        self.server.grant(req)
    }
}

impl JoinServer {
    fn grant(&self, req: JoinApplication) -> Result<JoinGrant, String> {
        let cluster = self.raft.with_state(|s| s.cluster.clone()).ok_or_else(|| {
            "this node's cluster is not bootstrapped yet; retry in a moment".to_string()
        })?;
        // Constant-time comparison is moot: we compare hashes of the secret.
        if secret_hash(&req.secret) != cluster.join_secret_sha256 {
            warn!(node_name = %req.name, "join refused: wrong secret");
            return Err(
                "the join secret was refused; use the join token printed by `havend init`".into(),
            );
        }
        if req.node_id == 0 {
            return Err("node id 0 is reserved".into());
        }
        let node = tls::issue_node_cert(&self.ca, req.node_id)
            .map_err(|e| format!("issue certificate: {e}"))?;
        info!(node_id = req.node_id, node_name = %req.name, "issued a node certificate");
        Ok(JoinGrant {
            cluster_id: cluster.id.to_string(),
            ca_cert_pem: self.ca.cert_pem.clone(),
            ca_key_pem: self.ca.key_pem.clone(),
            node_cert_pem: node.cert_pem,
            node_key_pem: node.key_pem,
        })
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(1 << 20)
        .new_codec()
}

/// Serves a join connection (ALPN `haven-join/1`): each bi-stream is a hello (its first
/// byte [`version::HELLO_BYTE`]) or the join service (tarpc frames, whose first byte is 0).
pub async fn serve_connection(conn: quinn::Connection, server: JoinServer) {
    let joiner: Arc<OnceLock<Protocols>> = Arc::new(OnceLock::new());
    while let Ok((send, mut recv)) = conn.accept_bi().await {
        let (server, joiner) = (server.clone(), joiner.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            if recv.read_exact(&mut first).await.is_err() {
                return;
            }
            if first[0] == version::HELLO_BYTE {
                let me = version::node_label(&server.raft);
                let record = |p| {
                    let _ = joiner.set(p);
                };
                match version::serve_hello(send, recv, Protocols::THIS, &me, record).await {
                    Ok(Some(m)) => warn!("refused a joining node: {m}"),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "a joining node's hello failed"),
                }
                return;
            }
            // The joiner waited for the hello's answer before this stream: it is recorded.
            let session = JoinSession {
                server,
                joiner: joiner.get().copied(),
            };
            let read = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(first), recv);
            serve(tokio::io::join(read, send), session).await;
        });
    }
}

/// Serves the join service on one stream.
async fn serve<IO>(io: IO, session: JoinSession)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let framed = tokio_util::codec::Framed::new(io, codec());
    let transport = transport::new(framed, Bincode::default());
    BaseChannel::with_defaults(transport)
        .execute(session.serve())
        .for_each(|f| async {
            tokio::spawn(f);
        })
        .await;
}

/// Asks the node at `peer_addr` for a certificate. Uses a temporary client endpoint.
pub async fn request_grant(
    token: &JoinToken,
    peer_addr: &str,
    node_id: u64,
    name: &str,
) -> Result<JoinGrant> {
    request_grant_speaking(token, peer_addr, node_id, name, Protocols::THIS).await
}

/// [`request_grant`] from a node that speaks `protocols`: first the hello, so that a
/// node the cluster cannot talk to (or that cannot talk to the cluster) stops here, with
/// the reason, before it has a certificate.
async fn request_grant_speaking(
    token: &JoinToken,
    peer_addr: &str,
    node_id: u64,
    name: &str,
    protocols: Protocols,
) -> Result<JoinGrant> {
    let sock = crate::peer::resolve(peer_addr)
        .await
        .map_err(anyhow::Error::msg)?;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls::join_client_config(&token.f)?)?;
    let bind: std::net::SocketAddr = if sock.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        endpoint.connect(sock, NODE_SERVER_NAME)?,
    )
    .await
    .with_context(|| {
        format!("connecting to {peer_addr} timed out; check the address and that havend runs there")
    })?
    .with_context(|| format!("connect to {peer_addr}"))?;
    version::client_hello(&conn, peer_addr, protocols)
        .await
        .map_err(|e| anyhow::anyhow!("cannot join through {peer_addr}: {e}"))?;
    let (send, recv) = conn.open_bi().await.context("open join stream")?;
    let framed = tokio_util::codec::Framed::new(tokio::io::join(recv, send), codec());
    let client = JoinClient::new(
        Default::default(),
        transport::new(framed, Bincode::default()),
    )
    .spawn();
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::SystemTime::now() + Duration::from_secs(15);
    let grant = client
        .join(
            ctx,
            JoinApplication {
                secret: token.s.clone(),
                node_id,
                name: name.to_string(),
            },
        )
        .await
        .with_context(|| format!("join request to {peer_addr}"))?
        .map_err(|e| anyhow::anyhow!("{peer_addr} refused the join: {e}"))?;
    if grant.cluster_id != token.c {
        bail!(
            "{peer_addr} belongs to cluster {} but the token is for cluster {}",
            grant.cluster_id,
            token.c
        );
    }
    if tls::pem_fingerprint(&grant.ca_cert_pem)? != token.f {
        bail!("{peer_addr} sent a CA that does not match the token's fingerprint");
    }
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(grant)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;
    use haven_raft::command::Command;
    use haven_raft::model::{Cluster, Node, NodeStatus, Token, User};
    use uuid::Uuid;

    use super::*;
    use crate::peer::bind_endpoint;
    use crate::tls::{generate_ca, issue_node_cert};

    const SECRET: &str = "join-secret";

    /// A bootstrapped one-node cluster answering joins on a loopback endpoint; each
    /// connection is served by `serve` (the join service of this build, or an older one).
    async fn join_server<F, Fut>(
        dir: &std::path::Path,
        serve: F,
    ) -> (JoinToken, std::net::SocketAddr, quinn::Endpoint)
    where
        F: Fn(quinn::Connection, JoinServer) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let raft = crate::testkit::single_node_raft(dir, 1).await;
        let now = Utc::now();
        let admin = User {
            id: Uuid::new_v4(),
            email: "admin@haven.local".into(),
            created_at: now,
            admin: true,
            password_hash: None,
        };
        let cluster = Cluster {
            id: Uuid::new_v4(),
            name: "haven".into(),
            app_domain: "haven.test".into(),
            created_at: now,
            join_secret_sha256: secret_hash(SECRET),
            ca_fingerprint: String::new(),
        };
        let node = Node {
            id: 1,
            name: "node-0".into(),
            peer_addr: "127.0.0.1:7000".into(),
            api_url: "http://127.0.0.1:5000".into(),
            router_url: "http://127.0.0.1:8080".into(),
            memory_mb: 1024,
            cpus: 2,
            labels: Default::default(),
            status: NodeStatus::Up,
            draining: false,
            joined_at: now,
        };
        let admin_token = Token {
            id: Uuid::new_v4(),
            sha256: "ab".repeat(32),
            user_email: admin.email.clone(),
            user_id: admin.id,
            description: "admin".into(),
            created_at: now,
            expires_at: None,
        };
        let cluster_id = cluster.id.to_string();
        raft.write(Command::Bootstrap {
            cluster,
            node,
            admin_token,
            admin,
        })
        .await
        .unwrap()
        .unwrap();
        let ca = generate_ca().unwrap();
        let cert = issue_node_cert(&ca, 1).unwrap();
        let endpoint = bind_endpoint("127.0.0.1:0".parse().unwrap(), &cert, &ca.cert_pem).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let token = JoinToken {
            c: cluster_id,
            f: tls::pem_fingerprint(&ca.cert_pem).unwrap(),
            s: SECRET.into(),
        };
        let server = JoinServer { ca, raft };
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                if let Ok(conn) = incoming.await {
                    tokio::spawn(serve(conn, server.clone()));
                }
            }
        });
        (token, addr, endpoint)
    }

    /// How a join connection was served before protocol versions: every stream is the
    /// join service, with no hello and no check.
    async fn serve_like_before_versions(conn: quinn::Connection, server: JoinServer) {
        while let Ok((send, recv)) = conn.accept_bi().await {
            let session = JoinSession {
                server: server.clone(),
                joiner: Some(Protocols::THIS),
            };
            tokio::spawn(serve(tokio::io::join(recv, send), session));
        }
    }

    #[tokio::test]
    async fn a_joiner_newer_than_the_cluster_accepts_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (token, addr, _ep) = join_server(dir.path(), serve_connection).await;
        let peer = addr.to_string();
        let newer = Protocols {
            min: Protocols::THIS.max + 1,
            max: Protocols::THIS.max + 2,
        };
        let err = request_grant_speaking(&token, &peer, 7, "node-7", newer)
            .await
            .unwrap_err();
        let want = format!(
 "cannot join through {peer}: node-0 at 127.0.0.1:7000 (havend {}, peer protocol {}) refused this node's peer protocol {newer}: this node is newer than the cluster can accept",
            version::VERSION,
            Protocols::THIS
        );
        assert!(format!("{err:#}").starts_with(&want), "{err:#}");
        // Too old is refused as well, the other way round.
        if Protocols::THIS.min > 1 {
            let older = Protocols {
                min: 1,
                max: Protocols::THIS.min - 1,
            };
            let err = request_grant_speaking(&token, &peer, 7, "node-7", older)
                .await
                .unwrap_err();
            assert!(format!("{err:#}").contains("older than the cluster still supports"));
        }
        // This build joins.
        let grant = request_grant(&token, &peer, 7, "node-7").await.unwrap();
        assert_eq!(grant.cluster_id, token.c);
    }

    #[tokio::test]
    async fn a_joiner_refuses_a_cluster_too_old_for_it() {
        let dir = tempfile::tempdir().unwrap();
        // A cluster from before protocol versions speaks protocol 1 and says no hello.
        let (token, addr, _ep) = join_server(dir.path(), serve_like_before_versions).await;
        let peer = addr.to_string();
        let grant = request_grant(&token, &peer, 7, "node-7").await.unwrap();
        assert_eq!(grant.cluster_id, token.c);
        let newer = Protocols { min: 2, max: 3 };
        let err = request_grant_speaking(&token, &peer, 8, "node-8", newer)
            .await
            .unwrap_err();
        let want = format!(
 "cannot join through {peer}: {peer} (a havend from before protocol versions) speaks peer protocol 1, older than this havend {} still supports (protocol 2 to 3): this node is newer than the cluster can accept",
            version::VERSION
        );
        assert!(format!("{err:#}").starts_with(&want), "{err:#}");
    }

    #[tokio::test]
    async fn a_joiner_from_before_protocol_versions_joins_this_build() {
        let dir = tempfile::tempdir().unwrap();
        let (token, addr, _ep) = join_server(dir.path(), serve_connection).await;
        // The old joiner: no hello, straight to the join call.
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
            tls::join_client_config(&token.f).unwrap(),
        )
        .unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = ep.connect(addr, NODE_SERVER_NAME).unwrap().await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        let framed = tokio_util::codec::Framed::new(tokio::io::join(recv, send), codec());
        let client = JoinClient::new(
            Default::default(),
            transport::new(framed, Bincode::default()),
        )
        .spawn();
        let grant = client
            .join(
                tarpc::context::current(),
                JoinApplication {
                    secret: SECRET.into(),
                    node_id: 9,
                    name: "node-9".into(),
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(grant.cluster_id, token.c);
    }

    #[test]
    fn tokens_roundtrip_and_reject_garbage() {
        let t = JoinToken {
            c: "abc".into(),
            f: "a".repeat(64),
            s: "secret".into(),
        };
        let enc = t.encode();
        assert!(enc.starts_with("HVNJ1."));
        assert_eq!(JoinToken::decode(&enc).unwrap(), t);
        assert_eq!(JoinToken::decode(&format!("  {enc}\n")).unwrap(), t);
        for bad in ["", "HVNJ1.", "HVNJ1.!!!", "nope", &enc[..enc.len() - 4]] {
            assert!(JoinToken::decode(bad).is_err(), "{bad:?}");
        }
    }
}

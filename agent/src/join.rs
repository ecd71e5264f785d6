//! Joining a cluster.
//!
//! `havend init` prints a join token: `HVNJ1.` + base64url(JSON {cluster id, CA
//! fingerprint, secret}). `havend join --token T PEER` connects to PEER with the join
//! ALPN (no client certificate), checks that PEER's chain holds the CA named by the
//! fingerprint, and calls [`Join::join`] with the secret. The peer checks the secret
//! against the sha256 kept in the replicated cluster record and answers with the CA and a
//! new node certificate. The new node then starts its agent and asks, over an
//! authenticated peer connection, to be added to the Raft cluster.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use futures::prelude::*;
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

impl Join for JoinServer {
    async fn join(
        self,
        _: tarpc::context::Context,
        req: JoinApplication,
    ) -> Result<JoinGrant, String> {
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

/// Serves the join service on one stream.
pub async fn serve<IO>(io: IO, server: JoinServer)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let framed = tokio_util::codec::Framed::new(io, codec());
    let transport = transport::new(framed, Bincode::default());
    BaseChannel::with_defaults(transport)
        .execute(server.serve())
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
mod tests {
    use super::*;

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

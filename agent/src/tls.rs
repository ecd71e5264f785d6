//! The cluster CA and node certificates, and the rustls configurations of the peer
//! transport.
//!
//! `havend init` makes a CA (ECDSA P-256); every node gets a certificate signed by it.
//! Peers authenticate both ways with these certificates. A joining node has no
//! certificate yet: it connects with the join ALPN, checks the server's chain against the
//! CA fingerprint carried in the join token, proves the join secret and receives its own.

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// ALPN of authenticated peer connections (Raft RPCs, forwarding).
pub const ALPN_PEER: &[u8] = b"haven-peer/1";
/// ALPN of a joining node that has no certificate yet.
pub const ALPN_JOIN: &[u8] = b"haven-join/1";
/// The DNS name in every node certificate; peers are identified by the CA, not by name.
pub const NODE_SERVER_NAME: &str = "haven-node";
const CA_COMMON_NAME: &str = "Haven cluster CA";

/// PEM-encoded certificate and private key.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// sha256 (hex) of a certificate's DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// sha256 (hex) of the first certificate in `pem`.
pub fn pem_fingerprint(pem: &str) -> Result<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).context("parse certificate PEM")?;
    Ok(fingerprint(&der))
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// Makes a new cluster CA.
pub fn generate_ca() -> Result<CertKey> {
    let key = KeyPair::generate().context("generate CA key")?;
    let cert = ca_params()?.self_signed(&key).context("self-sign CA")?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a node certificate (server and client auth) signed by the CA.
pub fn issue_node_cert(ca: &CertKey, node_id: u64) -> Result<CertKey> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("parse CA key")?;
    // The issuer is rebuilt from the same name and key: signatures made with it verify
    // against the stored CA certificate.
    let issuer = ca_params()?.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        NODE_SERVER_NAME.to_string(),
        format!("node-{node_id}"),
    ])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("haven node {node_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parse_chain(
    node: &CertKey,
    ca_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let leaf =
        CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).context("parse node cert")?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parse CA cert")?;
    let key = PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).context("parse node key")?;
    Ok((vec![leaf, ca], key))
}

fn roots(ca_pem: &str) -> Result<RootCertStore> {
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parse CA cert")?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).context("add CA to roots")?;
    Ok(roots)
}

/// Server side of the peer endpoint: presents the node's chain; a client certificate is
/// verified against the CA when given, and required on [`ALPN_PEER`] connections (checked
/// after the handshake, since joining clients have none).
pub fn server_config(node: &CertKey, ca_pem: &str) -> Result<rustls::ServerConfig> {
    let (chain, key) = parse_chain(node, ca_pem)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()
            .context("build client verifier")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_JOIN.to_vec()];
    Ok(cfg)
}

/// Client side of peer connections: verifies the server against the CA and presents the
/// node's certificate.
pub fn peer_client_config(node: &CertKey, ca_pem: &str) -> Result<rustls::ClientConfig> {
    let (chain, key) = parse_chain(node, ca_pem)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN_PEER.to_vec()];
    Ok(cfg)
}

/// Client side of a join: no client certificate; the server's chain must contain the CA
/// whose fingerprint the join token carries, and the leaf must be signed by it.
pub fn join_client_config(ca_fingerprint: &str) -> Result<rustls::ClientConfig> {
    let verifier = PinnedCaVerifier {
        fingerprint: ca_fingerprint.to_ascii_lowercase(),
        provider: provider(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    Ok(cfg)
}

#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the peer's certificate is not from the cluster CA named in the join token"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("bad CA certificate: {e}")))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certs_chain_to_the_ca() {
        let ca = generate_ca().unwrap();
        let node = issue_node_cert(&ca, 42).unwrap();
        // Both configs build: the key matches and the chain parses.
        server_config(&node, &ca.cert_pem).unwrap();
        peer_client_config(&node, &ca.cert_pem).unwrap();
        let fp = pem_fingerprint(&ca.cert_pem).unwrap();
        assert_eq!(fp.len(), 64);
        // The leaf verifies against the CA with webpki.
        let leaf = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(&ca.cert_pem).unwrap()),
            provider(),
        )
        .build()
        .unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(NODE_SERVER_NAME).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap();
        // A certificate from another CA does not.
        let other = generate_ca().unwrap();
        let stranger = issue_node_cert(&other, 7).unwrap();
        let leaf = CertificateDer::from_pem_slice(stranger.cert_pem.as_bytes()).unwrap();
        assert!(verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(NODE_SERVER_NAME).unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_err());
    }
}

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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

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

pub use haven_api::pin::fingerprint;

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

/// Issues a server certificate for the HTTPS API and router, signed by the CA, valid for
/// `names` (DNS names, `*.` wildcards and IP addresses).
pub fn issue_server_cert(ca: &CertKey, names: &[String]) -> Result<CertKey> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("parse CA key")?;
    let issuer = ca_params()?.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for name in names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                name.clone()
                    .try_into()
                    .with_context(|| format!("{name:?} is not a valid DNS name"))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "haven".into()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A PEM chain (leaf first) and its key as rustls serves them; refuses a chain that does
/// not parse, a key it cannot use, and a key that is not the leaf's.
pub fn certified_key(
    chain_pem: &str,
    key_pem: &str,
) -> std::result::Result<Arc<rustls::sign::CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("the certificate chain is not valid PEM: {e:?}"))?;
    if chain.is_empty() {
        return Err("the certificate chain holds no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the private key is not valid PEM: {e:?}"))?;
    rustls::sign::CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not match the certificate".to_string()
            }
            e => format!("the private key cannot be used: {e}"),
        })
}

/// Parses a PEM chain and key as the router will load them, and reads the leaf.
pub fn read_certificate(
    chain_pem: &str,
    key_pem: &str,
) -> std::result::Result<haven_raft::model::CertInfo, String> {
    let chain = certified_key(chain_pem, key_pem)?;
    let leaf = chain
        .cert
        .first()
        .ok_or("the certificate chain holds no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("the first certificate does not parse: {e}"))?;
    let mut domains: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                domains.push(d.to_ascii_lowercase());
            }
        }
    }
    if domains.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            domains.push(cn.to_ascii_lowercase());
        }
    }
    if domains.is_empty() {
        return Err(
            "the certificate names no domain (no DNS subject alternative name or common name)"
                .into(),
        );
    }
    let at = |t: x509_parser::time::ASN1Time| {
        chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    Ok(haven_raft::model::CertInfo {
        domains,
        self_signed: subject == issuer,
        subject,
        issuer,
        starts_at: at(cert.validity().not_before),
        expires_at: at(cert.validity().not_after),
    })
}

/// An HTTP client for other nodes' APIs: it trusts the cluster CA (besides the usual
/// roots), so `https://` node URLs work.
pub fn cluster_http_client(ca_pem: &str) -> Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("parse CA cert")?;
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .context("build the HTTP client")
}

/// Server side of the HTTPS API and router: TLS 1.2 and 1.3, HTTP/1.1, certificates
/// picked by `resolver` (by SNI).
pub fn https_server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
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
    let verifier = haven_api::pin::PinnedCaVerifier::new(ca_fingerprint, provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod https_cert_tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_is_read_for_its_names_and_dates() {
        let (cert, key) = self_signed(&["www.example.com", "*.example.org"]);
        let info = read_certificate(&cert, &key).unwrap();
        assert_eq!(info.domains, vec!["www.example.com", "*.example.org"]);
        assert!(info.self_signed);
        assert!(info.expires_at > info.starts_at);
        assert!(info.covers("shop.example.org"));
    }

    #[test]
    fn bad_pem_and_a_key_of_another_certificate_are_refused() {
        let (cert, _) = self_signed(&["a.example.com"]);
        let (_, other_key) = self_signed(&["b.example.com"]);
        let err = read_certificate(&cert, &other_key).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = read_certificate("not a certificate", &other_key).unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        let err = read_certificate(&cert, "garbage").unwrap_err();
        assert!(err.contains("key"), "{err}");
    }
}

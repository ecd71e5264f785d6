//! Trusting a cluster CA by its fingerprint: the check a joining node and `hctl login
//! --ca-fingerprint` make before they know the CA certificate itself.
//!
//! The server's chain must contain a certificate whose sha256 (of its DER bytes, hex) is
//! the pinned fingerprint, and the leaf must verify against it as the only root (with the
//! server name checked as usual). The CA that matched is kept, so a client can save it
//! and trust it as a root from then on.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// sha256 (hex) of a certificate's DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fingerprint as people paste it: any case, colons or spaces between bytes allowed.
pub fn normalize_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

#[derive(Debug)]
pub struct PinnedCaVerifier {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    matched: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCaVerifier {
    pub fn new(fingerprint: &str, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        PinnedCaVerifier {
            fingerprint: normalize_fingerprint(fingerprint),
            provider,
            matched: Mutex::new(None),
        }
    }

    /// The CA certificate (DER) that matched in the last verified handshake.
    pub fn matched_ca(&self) -> Option<CertificateDer<'static>> {
        self.matched.lock().ok().and_then(|m| m.clone())
    }
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
                    "the server's certificate is not from the CA with the pinned fingerprint"
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
        let verified = inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        if let Ok(mut m) = self.matched.lock() {
            *m = Some(ca.clone().into_owned());
        }
        Ok(verified)
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
    fn fingerprints_are_pasted_in_any_form() {
        assert_eq!(normalize_fingerprint("AB:cd 01"), "abcd01");
        assert_eq!(fingerprint(b"").len(), 64);
    }
}

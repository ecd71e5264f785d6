//! Certificates an app brings for its custom domains (Heroku's SNI endpoints).
//!
//! The proposer parses the PEM and fills [`CertInfo`]; applying a command only stores it,
//! so this crate needs no X.509 parser and apply stays pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A certificate chain and its private key, served by every router for the app's hosts
/// the certificate covers (picked by SNI).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SniEndpoint {
    pub id: Uuid,
    pub app: Uuid,
    /// Heroku-style generated name, such as `curved-12345`; unique in the cluster.
    pub name: String,
    /// PEM, leaf first.
    pub certificate_chain: String,
    /// PEM. A secret: shown by no API answer and no log line.
    pub private_key: String,
    pub cert: CertInfo,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the leaf certificate says, read once by the proposer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CertInfo {
    /// DNS names of the subject alternative names (lowercase; `*.example.com` allowed),
    /// else the common name.
    pub domains: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub self_signed: bool,
}

impl CertInfo {
    /// Whether the certificate is valid for `host` (lowercase, no port): an exact name, or
    /// a wildcard that stands for exactly one leftmost label.
    pub fn covers(&self, host: &str) -> bool {
        self.domains.iter().any(|d| name_matches(d, host))
    }
}

impl super::State {
    /// The endpoint routers serve for `host` of `app`: the newest that covers it.
    pub fn serving_endpoint(&self, app: Uuid, host: &str) -> Option<&SniEndpoint> {
        self.sni_endpoints
            .values()
            .filter(|e| e.app == app && e.cert.covers(host))
            .max_by_key(|e| (e.updated_at, e.id))
    }
}

/// A Heroku-style endpoint name from a random number: `curved-12345`.
pub fn generated_endpoint_name(random: u64) -> String {
    let words = super::addon_rules::ADJECTIVES;
    let adj = words[(random % words.len() as u64) as usize];
    let digits = (random / words.len() as u64) % 100_000;
    format!("{adj}-{digits:05}")
}

/// RFC 6125 matching as browsers do it: `*.a.b` matches `x.a.b`, not `a.b` or `y.x.a.b`.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(name_matches("www.example.com", "WWW.example.com."));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("example.com", "www.example.com"));
        let info = CertInfo {
            domains: vec!["shop.example.org".into(), "*.example.net".into()],
            ..CertInfo::default()
        };
        assert!(info.covers("x.example.net"));
        assert!(info.covers("shop.example.org"));
        assert!(!info.covers("example.org"));
    }
}

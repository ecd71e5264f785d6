//! Which certificate the router shows a TLS client, by the name it asks for (SNI).
//!
//! The app the name routes to (`APP.DOMAIN` or a custom domain, as for requests) picks
//! first: its newest SNI endpoint that covers the name. Then the node's own certificate,
//! when it covers the name (an operator's certificate, or the one issued from the cluster
//! CA for the node's addresses). Names under the app domain otherwise get a wildcard
//! certificate for `*.DOMAIN` issued from the cluster CA once and kept (for a one-label
//! domain such as `localhost`, whose wildcard TLS clients refuse, one per host).
//!
//! Endpoints' parsed keys are cached by id and update time, so a handshake parses no PEM
//! unless an endpoint changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use haven_raft::HavenRaft;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::warn;
use uuid::Uuid;

use super::target::Target;
use crate::tls::{self, CertKey};

/// What a handshake needs from the replicated state.
enum Pick {
    Endpoint {
        id: Uuid,
        updated_at: DateTime<Utc>,
        pem: Option<(String, String)>,
    },
    AppDomain(String),
    Default,
}

pub struct SniResolver {
    raft: HavenRaft,
    ca: CertKey,
    /// The node's certificate and the names it covers.
    default: Arc<CertifiedKey>,
    default_names: Vec<String>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    endpoints: HashMap<Uuid, (DateTime<Utc>, Arc<CertifiedKey>)>,
    /// The app domain's certificates, by what they were issued for: the domain (one
    /// wildcard), or — for a one-label domain such as `localhost`, whose wildcard
    /// verifiers refuse — each host.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl SniResolver {
    pub fn new(
        raft: HavenRaft,
        ca: CertKey,
        default: Arc<CertifiedKey>,
        default_names: Vec<String>,
    ) -> SniResolver {
        SniResolver {
            raft,
            ca,
            default,
            default_names,
            cache: Mutex::default(),
        }
    }

    fn pick(&self, host: &str, cached: &Cache) -> Pick {
        self.raft.with_state(|s| {
            if let Some(t) = Target::resolve(s, host) {
                if let Some(e) = s.serving_endpoint(t.app, host) {
                    let fresh = cached
                        .endpoints
                        .get(&e.id)
                        .is_some_and(|(at, _)| *at == e.updated_at);
                    return Pick::Endpoint {
                        id: e.id,
                        updated_at: e.updated_at,
                        pem: (!fresh).then(|| (e.certificate_chain.clone(), e.private_key.clone())),
                    };
                }
            }
            let domain = s.cluster.as_ref().map(|c| c.app_domain.clone());
            match domain {
                Some(d) if host.ends_with(&format!(".{d}")) && !self.covered_by_default(host) => {
                    Pick::AppDomain(d)
                }
                _ => Pick::Default,
            }
        })
    }

    fn covered_by_default(&self, host: &str) -> bool {
        self.default_names
            .iter()
            .any(|n| haven_raft::model::name_matches(n, host))
    }
}

/// Most app-domain certificates kept (per-host ones of a one-label domain).
const MAX_HOST_CERTS: usize = 1024;

/// The cache key and names of the certificate for `host` under app domain `domain`:
/// `*.DOMAIN` and `DOMAIN`, plus the host itself when `domain` is one label (TLS
/// verifiers refuse a wildcard such as `*.localhost`).
fn app_domain_names(host: &str, domain: &str) -> (String, Vec<String>) {
    let mut names = vec![format!("*.{domain}"), domain.to_string()];
    if domain.contains('.') {
        (domain.to_string(), names)
    } else {
        names.insert(0, host.to_string());
        (host.to_string(), names)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(host) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match self.pick(&host, &cache) {
            Pick::Default => Some(self.default.clone()),
            Pick::Endpoint {
                id,
                updated_at,
                pem,
            } => {
                if let Some((chain, key)) = pem {
                    match tls::certified_key(&chain, &key) {
                        Ok(k) => {
                            cache.endpoints.insert(id, (updated_at, k));
                        }
                        Err(e) => {
                            warn!(endpoint = %id, error = %e, "an SNI endpoint's certificate is unusable");
                            return Some(self.default.clone());
                        }
                    }
                }
                cache.endpoints.get(&id).map(|(_, k)| k.clone())
            }
            Pick::AppDomain(domain) => {
                let (key, names) = app_domain_names(&host, &domain);
                if let Some(k) = cache.wildcard.get(&key) {
                    return Some(k.clone());
                }
                let issued = tls::issue_server_cert(&self.ca, &names)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        tls::certified_key(
                            &format!("{}{}", c.cert_pem, self.ca.cert_pem),
                            &c.key_pem,
                        )
                    });
                match issued {
                    Ok(k) => {
                        if cache.wildcard.len() >= MAX_HOST_CERTS {
                            cache.wildcard.clear();
                        }
                        cache.wildcard.insert(key, k.clone());
                        Some(k)
                    }
                    Err(e) => {
                        warn!(error = %e, "could not issue the app domain's certificate");
                        Some(self.default.clone())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::app_domain_names;

    #[test]
    fn a_one_label_domain_gets_certificates_per_host() {
        let (key, names) = app_domain_names("a.apps.example", "apps.example");
        assert_eq!(key, "apps.example");
        assert_eq!(names, ["*.apps.example", "apps.example"]);
        let (key, names) = app_domain_names("a.localhost", "localhost");
        assert_eq!(key, "a.localhost");
        assert_eq!(names, ["a.localhost", "*.localhost", "localhost"]);
    }
}

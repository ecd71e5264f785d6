//! Which certificate the router shows a TLS client, by the name it asks for (SNI).
//!
//! The app the name routes to (`APP.DOMAIN` or a custom domain, as for requests) picks
//! first: its newest SNI endpoint that covers the name. Then the node's own certificate,
//! when it covers the name (an operator's certificate, or the one issued from the cluster
//! CA for the node's addresses). Names under the app domain otherwise get a certificate
//! issued from the cluster CA once and kept: `*.DOMAIN` when the domain has two labels or
//! more, else (`localhost`: clients refuse a wildcard over a single label) one for the
//! app's own host, for apps that exist.
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
    /// Issue (or reuse) a certificate from the cluster CA for these names.
    Issue(Vec<String>),
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
    /// Certificates issued from the cluster CA, by their first name.
    issued: HashMap<String, Arc<CertifiedKey>>,
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
            let target = Target::resolve(s, host);
            if let Some(t) = &target {
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
                    if d.contains('.') {
                        Pick::Issue(vec![format!("*.{d}"), d])
                    } else if target.is_some() {
                        Pick::Issue(vec![host.to_string()])
                    } else {
                        Pick::Default
                    }
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
            Pick::Issue(names) => {
                if let Some(k) = cache.issued.get(&names[0]) {
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
                        cache.issued.insert(names[0].clone(), k.clone());
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

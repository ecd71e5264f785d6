//! SNI endpoints: the certificates an app brings for its custom domains
//! (`/apps/{app}/sni-endpoints`, as in the Platform API).

use serde::{Deserialize, Serialize};

use crate::AppRef;

/// An SNI endpoint as the API shows it. The private key is never shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SniEndpoint {
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub certificate_chain: String,
    /// Ids of the app's custom domains the certificate covers.
    pub domains: Vec<String>,
    pub app: AppRef,
    pub ssl_cert: SslCert,
    pub created_at: String,
    pub updated_at: String,
}

/// What the endpoint's leaf certificate says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SslCert {
    pub id: String,
    #[serde(rename = "ca_signed?")]
    pub ca_signed: bool,
    #[serde(rename = "self_signed?")]
    pub self_signed: bool,
    pub cert_domains: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub starts_at: String,
    pub expires_at: String,
}

/// `POST /apps/{app}/sni-endpoints` and `PATCH .../{id}` body: PEM text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SniEndpointCreate {
    pub certificate_chain: String,
    pub private_key: String,
}

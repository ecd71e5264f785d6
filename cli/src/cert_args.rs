//! The certificate commands' arguments (`certs*`), flattened into `hctl`'s command list
//! by `main`, and their dispatch to [`crate::commands::certs`].

use anyhow::Result;
use clap::Subcommand;

use crate::client::Api;
use crate::commands::certs;
use crate::{AppArg, JsonArg};

#[derive(Subcommand)]
pub enum CertCmd {
    /// List the app's SSL certificates (served by SNI for its custom domains).
    Certs {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add an SSL certificate: a PEM chain (leaf first) and its private key.
    #[command(name = "certs:add")]
    CertsAdd {
        cert: String,
        key: String,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show a certificate.
    #[command(name = "certs:info")]
    CertsInfo {
        /// The certificate's name (needed when the app has several).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Replace a certificate and key.
    #[command(name = "certs:update")]
    CertsUpdate {
        cert: String,
        key: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove a certificate.
    #[command(name = "certs:remove")]
    CertsRemove {
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
}

impl CertCmd {
    pub fn run(&self, api: impl Fn() -> Result<Api>) -> Result<()> {
        match self {
            CertCmd::Certs { app, json } => certs::list(&api()?, app.name()?, json.json),
            CertCmd::CertsAdd {
                cert,
                key,
                app,
                json,
            } => certs::add(&api()?, app.name()?, cert, key, json.json),
            CertCmd::CertsInfo { name, app, json } => {
                certs::info(&api()?, app.name()?, name.as_deref(), json.json)
            }
            CertCmd::CertsUpdate {
                cert,
                key,
                name,
                app,
            } => certs::update(&api()?, app.name()?, cert, key, name.as_deref()),
            CertCmd::CertsRemove { name, app } => {
                certs::remove(&api()?, app.name()?, name.as_deref())
            }
        }
    }
}

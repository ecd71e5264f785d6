//! One module per resource; each command is a function that takes the API client and
//! what `main` parsed. Answers are read only through `haven-api` types (see
//! [`crate::client::Answer`]).

pub mod access;
pub mod addons;
pub mod apps;
pub mod auth;
pub mod buildpacks;
pub mod builds;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod datastores;
pub mod domains;
pub mod drains;
pub mod logs;
pub mod pg_backups;
pub mod ps;
pub mod releases;
pub mod repos;
pub mod stacks;
pub mod upgrade;

/// The API path of an app.
fn app_path(app: &str) -> String {
    format!("/apps/{app}")
}

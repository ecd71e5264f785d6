//! Connected repositories (`/apps/{app}/repo`, Haven's own resource: Heroku's GitHub
//! integration, for any git host).

use serde::{Deserialize, Serialize};

use crate::AppRef;

/// `PUT /apps/{app}/repo`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConnect {
    pub url: String,
    /// Default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// The build of the newest commit taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoBuild {
    pub id: String,
    pub status: String,
    pub created_at: String,
}

/// An app's connected repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Repo {
    pub app: AppRef,
    /// Credentials in it are shown as `***`.
    pub url: String,
    pub branch: String,
    pub connected_by: String,
    pub connected_at: String,
    pub last_commit: Option<String>,
    pub last_build: Option<RepoBuild>,
    /// Where a git host's push webhook goes.
    pub webhook_url: String,
    /// Signs the webhook's calls; answered only by `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

//! Connected repositories (Heroku's GitHub integration, for any git host): an app follows
//! one branch of a git repository, and every new commit on it is built and released once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An app's connected repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoLink {
    pub app: Uuid,
    /// The repository: `https://`, `http://`, `ssh://`, `git://` or `file://` (a path on
    /// the nodes). May hold credentials (`https://user:token@host/x`): never shown.
    pub url: String,
    pub branch: String,
    /// Signs webhook calls (`X-Hub-Signature-256`, HMAC-SHA256 of the body), chosen by
    /// the proposer; shown once, at connect.
    pub webhook_secret: String,
    /// Whose builds the automatic deploys are (the user who connected it).
    pub user_id: Uuid,
    pub user_email: String,
    pub connected_at: DateTime<Utc>,
    /// The newest commit of the branch taken for a build (exactly once: the build that
    /// took it was recorded in the same command).
    pub last_commit: Option<String>,
    pub last_build: Option<Uuid>,
}

/// Checks a repository URL given to `repo:connect`.
pub fn validate_repo_url(url: &str) -> Result<(), String> {
    let ok_scheme = ["https://", "http://", "ssh://", "git://", "file:///"]
        .iter()
        .any(|p| url.starts_with(p));
    let ok_chars = !url.is_empty()
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok_scheme && ok_chars && !url.contains("/-") {
        Ok(())
    } else {
        Err(format!(
            "repository URL {:?} is invalid: give https://…, http://…, ssh://…, git://… or file:///PATH",
            redact_url(url)
        ))
    }
}

/// Checks a branch name (git's rules, in short).
pub fn validate_branch(branch: &str) -> Result<(), String> {
    let ok = !branch.is_empty()
        && branch.len() <= 255
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.contains("..")
        && !branch.contains("@{")
        && !branch.ends_with(".lock")
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("{branch:?} is not a branch name git accepts"))
    }
}

/// A commit id as `git ls-remote` gives it (40 or 64 hex digits).
pub fn validate_commit(commit: &str) -> Result<(), String> {
    if matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{commit:?} is not a commit id"))
    }
}

/// `https://user:token@host/x` → `https://***@host/x`: a URL as it may be shown.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_branches_and_commits_are_checked() {
        assert!(validate_repo_url("https://git.example.com/a/b.git").is_ok());
        assert!(validate_repo_url("file:///srv/git/app.git").is_ok());
        assert!(validate_repo_url("file://relative").is_err());
        assert!(validate_repo_url("ext::sh -c evil").is_err());
        assert!(validate_repo_url("https://h/x --upload-pack=evil").is_err());
        assert!(validate_repo_url("").is_err());
        let e = validate_repo_url("ftp://u:secret@h/x").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(validate_branch("main").is_ok());
        assert!(validate_branch("release/2026.12").is_ok());
        for bad in ["", "-x", "a..b", "a b", "x.lock", "a/", "@{u}"] {
            assert!(validate_branch(bad).is_err(), "{bad}");
        }
        assert!(validate_commit(&"a".repeat(40)).is_ok());
        assert!(validate_commit("abc").is_err());
        assert_eq!(
            redact_url("https://me:tok@git.example.com/a"),
            "https://***@git.example.com/a"
        );
        assert_eq!(redact_url("file:///srv/a"), "file:///srv/a");
    }
}

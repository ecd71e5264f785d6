//! Automatic deploys from connected repositories (Heroku's GitHub integration, for any
//! git host): the leader asks each connected repository for its branch's newest commit
//! (`git ls-remote`) every `[builds] repo_poll_ms`, or at once when a webhook call comes,
//! and when it is new fetches it (`git fetch --depth 1`), archives it and starts a build
//! as a `git push` would. The build takes the commit in the same Raft command that
//! records it ([`haven_raft::command::Command::StartRepoBuild`]), so each commit is built
//! once, whichever leader or wake-up saw it first.
//!
//! Git runs without prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), without the
//! `ext::` transport, and under a deadline; a repository that cannot be read is told in
//! the app's log (`app[api]`) once per distinct error, with credentials in its URL
//! redacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_raft::model::{redact_url, BuildStatus, NodeId, RepoLink};
use haven_raft::HavenRaft;
use tokio::process::Command;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::builder::{BuildError, BuildSource, Builder, Requester};
use crate::logs::Logs;

/// How long one git call may take.
const GIT_DEADLINE: Duration = Duration::from_secs(120);

/// The follower of connected repositories. Cheap to clone.
#[derive(Clone)]
pub struct Repos {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    raft: HavenRaft,
    builder: Builder,
    logs: Logs,
    poll: Duration,
    work_dir: PathBuf,
    wake: Notify,
    /// The last error told per app, so that a failing repository is told once.
    told: Mutex<HashMap<Uuid, String>>,
}

impl Repos {
    pub fn new(
        me: NodeId,
        raft: HavenRaft,
        builder: Builder,
        logs: Logs,
        poll: Duration,
        work_dir: PathBuf,
    ) -> Repos {
        Repos {
            inner: Arc::new(Inner {
                me,
                raft,
                builder,
                logs,
                poll: poll.max(Duration::from_millis(100)),
                work_dir,
                wake: Notify::new(),
                told: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Asks every connected repository now (a webhook call on this node).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.poll) => {}
                _ = self.inner.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            if self.inner.raft.status().leader != Some(self.inner.me) {
                continue;
            }
            for link in self.due() {
                let app = link.app;
                match self.follow(&link).await {
                    Ok(()) => {
                        if let Ok(mut t) = self.inner.told.lock() {
                            t.remove(&app);
                        }
                    }
                    Err(e) => self.tell(&link, &e),
                }
            }
        }
    }

    /// Connected apps with no build running (a build lost with its node does not count).
    fn due(&self) -> Vec<RepoLink> {
        self.inner.raft.with_state(|s| {
            s.repos
                .values()
                .filter(|l| {
                    !s.builds.values().any(|b| {
                        b.app == l.app
                            && b.status == BuildStatus::Pending
                            && !haven_raft::command::build_lost(s, Some(b.id))
                    })
                })
                .cloned()
                .collect()
        })
    }

    /// Builds the branch's newest commit if it was not taken yet.
    async fn follow(&self, link: &RepoLink) -> Result<(), String> {
        let Some(head) = ls_remote(&link.url, &link.branch).await? else {
            return Err(format!("the branch {} does not exist", link.branch));
        };
        let taken = self.inner.raft.with_state(|s| {
            link.last_commit.as_deref() == Some(head.as_str())
                && !haven_raft::command::build_lost(s, link.last_build)
        });
        if taken {
            return Ok(());
        }
        let dir = self.inner.work_dir.join(Uuid::new_v4().to_string());
        let out = self.build(link, &dir).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        out
    }

    async fn build(&self, link: &RepoLink, dir: &Path) -> Result<(), String> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot make a work dir: {e}"))?;
        git(dir, &["init", "--quiet", "--bare", "."]).await?;
        let refspec = format!("refs/heads/{}", link.branch);
        git(
            dir,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "1",
                "--",
                &link.url,
                &refspec,
            ],
        )
        .await?;
        let commit = git(dir, &["rev-parse", "FETCH_HEAD^{commit}"])
            .await?
            .trim()
            .to_string();
        let tar = dir.join("source.tar");
        git(
            dir,
            &[
                "archive",
                "--format=tar",
                "-o",
                &tar.to_string_lossy(),
                &commit,
            ],
        )
        .await?;
        // The builder removes its source file when it is done; keep it out of `dir`.
        let file = self.inner.work_dir.join(format!("{}.tar", Uuid::new_v4()));
        tokio::fs::rename(&tar, &file)
            .await
            .map_err(|e| format!("cannot keep the source: {e}"))?;
        let Some(app) = self
            .inner
            .raft
            .with_state(|s| s.apps.get(&link.app).cloned())
        else {
            let _ = tokio::fs::remove_file(&file).await;
            return Ok(());
        };
        let source = BuildSource {
            file: file.clone(),
            url: redact_url(&link.url),
            checksum: None,
            version: Some(commit.clone()),
        };
        let who = Requester {
            email: link.user_email.clone(),
            user_id: link.user_id,
        };
        match self
            .inner
            .builder
            .start_claiming(&app, source, Vec::new(), who, Some(commit.clone()))
            .await
        {
            Ok(b) => {
                info!(app = %app.name, commit = %commit, build = %b.id, "automatic deploy started");
                self.inner.logs.emit(
                    app.id,
                    "app",
                    "api",
                    &format!(
                        "Automatic deploy of {}@{} started by {} (build {})",
                        link.branch,
                        &commit[..7.min(commit.len())],
                        link.user_email,
                        b.id
                    ),
                );
                Ok(())
            }
            // Another leader or wake-up took it first, or a build is running: nothing
            // to tell.
            Err(BuildError::Refused(e)) => {
                let _ = tokio::fs::remove_file(&file).await;
                debug!(app = %app.name, error = %e, "automatic deploy not started");
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&file).await;
                Err(e.to_string())
            }
        }
    }

    /// Tells the app's log why its repository cannot be followed, once per distinct
    /// error.
    fn tell(&self, link: &RepoLink, error: &str) {
        let error = scrub(error, &link.url);
        let new = self
            .inner
            .told
            .lock()
            .map(|mut t| t.insert(link.app, error.clone()).as_deref() != Some(error.as_str()))
            .unwrap_or(true);
        if new {
            warn!(app = %link.app, error = %error, "cannot follow a connected repository");
            self.inner.logs.emit(
                link.app,
                "app",
                "api",
                &format!(
                    "Automatic deploys of {} ({}) are failing: {error}",
                    link.branch,
                    redact_url(&link.url)
                ),
            );
        }
    }
}

/// Removes the URL (which may hold credentials) from git's messages.
pub(crate) fn scrub(msg: &str, url: &str) -> String {
    let safe = redact_url(url);
    let mut out = msg.replace(url, &safe);
    if let Some((_, rest)) = url.split_once("://") {
        if let Some((cred, _)) = rest.split_once('@') {
            if !cred.is_empty() {
                out = out.replace(cred, "***");
            }
        }
    }
    out
}

/// The commit `refs/heads/BRANCH` points at in `url`, if the branch exists.
pub(crate) async fn ls_remote(url: &str, branch: &str) -> Result<Option<String>, String> {
    let refname = format!("refs/heads/{branch}");
    let out = git(
        Path::new("/"),
        &["ls-remote", "--heads", "--", url, &refname],
    )
    .await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, r)| *r == refname)
        .map(|(c, _)| c.trim().to_string()))
}

/// Runs git in `dir` without prompts, the `ext::` transport or the user's config, under
/// [`GIT_DEADLINE`]: its stdout, or its stderr's last lines as the error.
async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.arg("-c")
        .arg("protocol.ext.allow=never")
        .arg("-c")
        .arg("core.sshCommand=ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = cmd.output();
    let out = match tokio::time::timeout(GIT_DEADLINE, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run git (is it installed?): {e}")),
        Err(_) => {
            return Err(format!(
                "git {} took longer than {} s",
                args.first().unwrap_or(&""),
                GIT_DEADLINE.as_secs()
            ))
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = last[last.len().saturating_sub(3)..].join("; ");
        Err(format!(
            "git {} failed: {}",
            args.first().unwrap_or(&""),
            if tail.is_empty() {
                out.status.to_string()
            } else {
                tail
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_log() {
        let url = "https://me:s3cret@git.example.com/a.git";
        let msg = format!("fatal: unable to access '{url}': 403; me:s3cret");
        let out = scrub(&msg, url);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("https://***@git.example.com/a.git"), "{out}");
    }

    #[tokio::test]
    async fn ls_remote_reads_a_branch_of_a_local_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("r");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "--quiet", "-b", "main"])
            .await
            .unwrap();
        std::fs::write(repo.join("f"), "x").unwrap();
        git(&repo, &["add", "f"]).await.unwrap();
        git(
            &repo,
            &[
                "-c",
                "user.email=t@example.com",
                "-c",
                "user.name=t",
                "commit",
                "--quiet",
                "-m",
                "one",
            ],
        )
        .await
        .unwrap();
        let url = format!("file://{}", repo.display());
        let head = ls_remote(&url, "main").await.unwrap().unwrap();
        assert_eq!(head.len(), 40);
        assert_eq!(ls_remote(&url, "nope").await.unwrap(), None);
        let e = ls_remote("file:///nonexistent/repo", "main")
            .await
            .unwrap_err();
        assert!(e.contains("git ls-remote failed"), "{e}");
    }
}

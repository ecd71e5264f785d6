//! One build in progress: extract, compile (in the sandbox or as child processes), pack,
//! replicate the slug, record the result, and wait for the release phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use haven_raft::command::{BuildResult, Command, CommandOutput};
use haven_raft::model::{self, Build, NodeId};
use haven_raft::HavenRaft;
use tracing::{info, warn};
use uuid::Uuid;

use super::{Builder, OutputSink, SLUG_COPIES};

/// Attempts to copy a slug to one peer (each after a failure dials it anew).

/// How long a build keeps trying to commit its result through leader changes.
const RECORD_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// What became of a build's result.
enum Finished {
    /// Committed as a success: the release it made.
    Released {
        version: u64,
        description: Option<String>,
    },
    /// Committed as a failure.
    Failed,
    /// The state machine refused it.
    Rejected(String),
    /// Not committed: the cluster stayed unavailable.
    Unrecorded(String),
}

/// Why a build failed, and whether the output already says so.
pub(super) struct Failure {
    pub(super) reason: String,
    pub(super) reported: bool,
}

impl Failure {
    pub(super) fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            reported: false,
        }
    }
}

/// One build in progress.
pub(super) struct Job {
    pub(super) builder: Builder,
    pub(super) build: Build,
    pub(super) app_name: String,
    pub(super) config: BTreeMap<String, String>,
    pub(super) source_file: PathBuf,
    pub(super) source_sha: String,
    pub(super) out: Arc<Mutex<OutputSink>>,
}

impl Job {
    pub(super) fn say(&self, line: &str) {
        if let Ok(mut o) = self.out.lock() {
            o.line(line);
        }
    }

    pub(super) async fn run(self) {
        let id = self.build.id;
        let app_logs = self.builder.inner.logs.clone();
        let who = self.build.user_email.clone();
        app_logs.api(self.build.app, &format!("Build started by {who}"));
        info!(build = %id, app = %self.app_name, "build started");
        let result = self.execute().await;
        let (outcome, status) = match result {
            Ok(success) => (success, "succeeded"),
            Err(Failure { reason, reported }) => {
                // The buildpack runner writes its own error lines.
                if !reported {
                    self.say(&format!(" !     {reason}"));
                    self.say(" !     Push rejected.");
                }
                (BuildResult::Failed { reason }, "failed")
            }
        };
        match self.record(outcome).await {
            Finished::Released {
                version,
                description,
            } => {
                app_logs.api(self.build.app, "Build succeeded");
                if let Some(description) = description {
                    app_logs.api(self.build.app, &format!("{description} by {who}"));
                }
                app_logs.api(
                    self.build.app,
                    &format!("Release v{version} created by {who}"),
                );
                if !self.await_release_phase(version).await {
                    self.say(&format!(" !     Release phase failed: v{version} is not deployed; the previous release keeps running"));
                    self.say(" !     See its output with hctl logs --dyno release");
                } else {
                    self.say(&format!("       Released v{version}"));
                }
                self.say(&format!(
                    "       {} deployed to Haven",
                    self.builder.web_url(&self.app_name)
                ));
            }
            Finished::Failed => {
                app_logs.api(
                    self.build.app,
                    &format!(
                        "Build failed -- check your build output: {}",
                        self.build.output_stream_url
                    ),
                );
            }
            Finished::Rejected(e) => {
                self.say(&format!(" !     The release could not be made: {e}"));
            }
            Finished::Unrecorded(e) => {
                self.say(&format!(" !     The release could not be recorded: {e}"));
            }
        }
        info!(build = %id, app = %self.app_name, status, "build ended");
        if let Ok(mut o) = self.out.lock() {
            o.finish();
        }
        self.builder.live().remove(&id);
        let dir = self.builder.inner.data.builds_dir().join(id.to_string());
        let _ = tokio::fs::remove_dir_all(dir.join("app")).await;
        let _ = tokio::fs::remove_dir_all(dir.join("work")).await;
        let _ = tokio::fs::remove_file(&self.source_file).await;
    }

    /// Commits the build's result. A write that may or may not have been applied (the
    /// leader died or did not answer in time) is settled by reading the build back after
    /// a read barrier, and retried while the build is still pending, so a build never
    /// stays pending while its node lives (clients wait for the build's status).
    async fn record(&self, outcome: BuildResult) -> Finished {
        let raft = &self.builder.inner.raft;
        let deadline = tokio::time::Instant::now() + RECORD_FOR;
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            let written = raft
                .write(Command::FinishBuild {
                    build: self.build.id,
                    result: outcome.clone(),
                    at: Utc::now(),
                })
                .await;
            let why = match written {
                Ok(Ok(CommandOutput::Release { version, app })) => {
                    let description = app
                        .releases
                        .iter()
                        .find(|r| r.version == version)
                        .map(|r| r.description.clone());
                    return Finished::Released {
                        version,
                        description,
                    };
                }
                Ok(Ok(_)) => return Finished::Failed,
                // An earlier attempt that seemed lost was applied after all.
                Ok(Err(haven_raft::command::CommandError::Conflict(e))) => {
                    match self.recorded().await {
                        Some(f) => return f,
                        None => return Finished::Rejected(e),
                    }
                }
                Ok(Err(e)) => return Finished::Rejected(e.to_string()),
                Err(e) => e.to_string(),
            };
            if let Some(f) = self.recorded().await {
                return f;
            }
            if tokio::time::Instant::now() + delay >= deadline {
                return Finished::Unrecorded(why);
            }
            warn!(build = %self.build.id, error = %why, "recording the build's result: will retry");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
    }

    /// The build's committed result, read after a read barrier; `None` while it is still
    /// pending or the barrier fails.
    async fn recorded(&self) -> Option<Finished> {
        let raft = &self.builder.inner.raft;
        raft.read_barrier().await.ok()?;
        raft.with_state(|s| {
            let b = s.builds.get(&self.build.id)?;
            match b.status {
                model::BuildStatus::Pending => None,
                model::BuildStatus::Failed => Some(Finished::Failed),
                model::BuildStatus::Succeeded => {
                    let release = b.release?;
                    let r = s
                        .apps
                        .get(&b.app)?
                        .releases
                        .iter()
                        .find(|r| r.id == release)?;
                    Some(Finished::Released {
                        version: r.version,
                        description: Some(r.description.clone()),
                    })
                }
            }
        })
    }

    /// Waits for a pending release's release phase; true when the release succeeded.
    async fn await_release_phase(&self, version: u64) -> bool {
        let raft = &self.builder.inner.raft;
        let status = |raft: &HavenRaft| {
            raft.with_state(|s| {
                s.apps.get(&self.build.app).and_then(|a| {
                    a.releases
                        .iter()
                        .find(|r| r.version == version)
                        .map(|r| r.status)
                })
            })
        };
        if status(raft) != Some(model::ReleaseStatus::Pending) {
            return true;
        }
        self.say("-----> Running release command...");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        loop {
            match status(raft) {
                Some(model::ReleaseStatus::Pending) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Some(model::ReleaseStatus::Succeeded) => return true,
                _ => return false,
            }
        }
    }

    /// Everything up to the release; an error is the one-line reason.
    async fn execute(&self) -> Result<BuildResult, Failure> {
        let inner = &self.builder.inner;
        let dir = inner.data.builds_dir().join(self.build.id.to_string());
        let app_dir = dir.join("app");
        let work_dir = dir.join("work");
        let cache_dir = inner.data.cache_dir().join(self.build.app.to_string());
        for d in [&app_dir, &work_dir, &cache_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| Failure::new(format!("create {}: {e}", d.display())))?;
        }
        let source = self.source_file.clone();
        let dest = app_dir.clone();
        tokio::task::spawn_blocking(move || extract_source(&source, &dest))
            .await
            .map_err(|e| Failure::new(e.to_string()))?
            .map_err(Failure::new)?;

        let mut buildpacks = self.build.buildpacks.clone();
        if buildpacks.is_empty() {
            if let Some(url) = self.config.get("BUILDPACK_URL") {
                buildpacks.push(url.clone());
            }
        }
        let compile_timeout = std::time::Duration::from_secs(inner.tuning.compile_timeout_secs);
        let sandboxed = (inner.runtime.mode() == crate::runtime::Mode::Container)
            .then(|| inner.runtime.clone());
        let outcome = match sandboxed {
            Some(runtime) => {
                self.compile_in_sandbox(
                    &runtime,
                    &app_dir,
                    &cache_dir,
                    &work_dir,
                    buildpacks,
                    compile_timeout,
                )
                .await?
            }
            None => {
                // No container runtime on this host: the runner's scripts run as child
                // processes with a clean environment (config vars only in ENV_DIR).
                let req = haven_buildpacks::BuildRequest {
                    build_dir: app_dir.clone(),
                    cache_dir,
                    work_dir: work_dir.clone(),
                    env: self.config.clone(),
                    buildpacks,
                    builtin_dir: inner.builtin_dir.clone(),
                    stack: self.build.stack.clone(),
                    compile_timeout,
                };
                let out = self.out.clone();
                tokio::task::spawn_blocking(move || {
                    let mut emit = |line: &str| {
                        if let Ok(mut o) = out.lock() {
                            o.line(line);
                        }
                    };
                    haven_buildpacks::run(&req, &mut emit).map_err(|e| Failure {
                        reason: e.to_string(),
                        reported: true,
                    })
                })
                .await
                .map_err(|e| Failure::new(e.to_string()))??
            }
        };
        let out = self.out.clone();
        let slug_file = dir.join("slug.tar.zst");
        let slug_path = slug_file.clone();
        let max = self.builder.max_bytes();
        let build_dir = app_dir.clone();
        let built = tokio::task::spawn_blocking(move || {
            let emit = |line: &str| {
                if let Ok(mut o) = out.lock() {
                    o.line(line);
                }
            };
            emit("-----> Compressing...");
            let info = haven_buildpacks::slug::pack(&build_dir, &slug_path, max)
                .map_err(|e| Failure::new(e.to_string()))?;
            emit(&format!("       Done: {}", human_size(info.size)));
            Ok::<_, Failure>((outcome, info))
        })
        .await
        .map_err(|e| Failure::new(e.to_string()))??;
        let (outcome, info) = built;
        inner
            .slugs
            .add_file(&info.sha256, &slug_file)
            .map_err(|e| Failure::new(format!("store the slug: {e}")))?;
        self.say("-----> Launching...");
        let holders = self.replicate(&info.sha256).await.map_err(Failure::new)?;
        let short = match &self.build.source_version {
            Some(v) => v.chars().take(7).collect::<String>(),
            None => self.source_sha.chars().take(7).collect(),
        };
        let slug = model::Slug {
            id: Uuid::new_v4(),
            app: self.build.app,
            sha256: info.sha256,
            size: info.size,
            process_types: outcome.process_types,
            holders: holders.into_iter().collect(),
            commit: self.build.source_version.clone(),
            stack: self.build.stack.clone(),
            buildpack_provided_description: outcome.frameworks.last().cloned(),
            created_at: Utc::now(),
        };
        Ok(BuildResult::Succeeded {
            slug,
            release_id: Uuid::new_v4(),
            description: format!("Deploy {short}"),
        })
    }

    /// Writes the slug to this node and others until min(3, nodes up) hold it.
    async fn replicate(&self, sha: &str) -> Result<Vec<NodeId>, String> {
        let inner = &self.builder.inner;
        inner
            .slugs
            .replicate(&inner.raft, inner.node_id, &inner.peers, sha, SLUG_COPIES)
            .await
            .map_err(|e| format!("the slug {e}"))
    }
}

/// Extracts a tar or gzipped tar into `dest`. `tar`'s `unpack_in` refuses entries that
/// would land outside `dest`. A single top-level directory (as GitHub tarballs have) is
/// not stripped: the source root is the archive root.
fn extract_source(file: &Path, dest: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(file).map_err(|e| format!("open source: {e}"))?;
    let mut magic = [0u8; 2];
    let gz = std::io::Read::read(&mut f, &mut magic).map_err(|e| e.to_string())? == 2
        && magic == [0x1f, 0x8b];
    let f = std::fs::File::open(file).map_err(|e| format!("open source: {e}"))?;
    let reader: Box<dyn std::io::Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    let entries = archive
        .entries()
        .map_err(|e| format!("the source is not a tar archive: {e}"))?;
    let mut count = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the source archive is damaged: {e}"))?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        let ok = entry
            .unpack_in(dest)
            .map_err(|e| format!("cannot extract the source: {e}"))?;
        if !ok {
            return Err(format!(
                "the source archive has an entry outside its root: {}",
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
        count += 1;
    }
    if count == 0 {
        return Err("the source archive is empty".into());
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1}M", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1}K", b / 1024.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name to make hostile archives.
            let name = h.as_gnu_mut().unwrap();
            name.name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn sources_extract_plain_and_gzipped_and_refuse_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let plain = tar_of(&[("app.py", b"print(1)"), ("sub/x.txt", b"x")]);
        let f = dir.path().join("src.tar");
        std::fs::write(&f, &plain).unwrap();
        let out = dir.path().join("out1");
        std::fs::create_dir(&out).unwrap();
        extract_source(&f, &out).unwrap();
        assert_eq!(std::fs::read(out.join("sub/x.txt")).unwrap(), b"x");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        std::fs::write(&f, gz.finish().unwrap()).unwrap();
        let out = dir.path().join("out2");
        std::fs::create_dir(&out).unwrap();
        extract_source(&f, &out).unwrap();
        assert_eq!(std::fs::read(out.join("app.py")).unwrap(), b"print(1)");

        std::fs::write(&f, tar_of(&[("../evil.txt", b"x")])).unwrap();
        let out = dir.path().join("out3");
        std::fs::create_dir(&out).unwrap();
        assert!(extract_source(&f, &out).is_err());
        assert!(!dir.path().join("evil.txt").exists());

        std::fs::write(&f, b"not a tarball at all, just text").unwrap();
        assert!(extract_source(&f, &out).is_err());
        std::fs::write(&f, tar_of(&[])).unwrap();
        let err = extract_source(&f, &out).unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn sizes_read_like_heroku() {
        assert_eq!(human_size(2048), "2.0K");
        assert_eq!(human_size(23 * 1024 * 1024 + 400 * 1024), "23.4M");
    }
}

//! The builder: turns a source tarball into a slug and a release, on the node that
//! received the source (design §6).
//!
//! A build is recorded pending in Raft first (which refuses a second concurrent build of
//! the app), then runs as a [`job`]: extract the source, run the buildpacks
//! (`haven-buildpacks`) inside the dyno sandbox ([`sandbox`]), pack the slug, write it to
//! at least min(3, nodes up) holders over QUIC, and only then commit `FinishBuild`, which
//! makes the release. Output goes to `builds/<id>/output.log` on this node as it happens;
//! readers follow it until the build ends. Config vars reach the buildpacks only as
//! ENV_DIR files.

mod error;
mod job;
mod sandbox;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::Utc;
use futures::Stream;
use haven_raft::command::{BuildResult, Command, CommandOutput};
use haven_raft::model::{self, Build, BuildStatus, NodeId};
use haven_raft::HavenRaft;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{BuildTuning, DataDir};
use crate::peer::QuicConnector;
use crate::slugs::SlugStore;

use crate::slugs::sha256_file;
pub use error::BuildError;
use job::Job;
pub use sandbox::build_exec;

/// How many nodes must hold a slug before its release is made.
pub const SLUG_COPIES: usize = 3;

/// Progress of one build's output file.
#[derive(Debug, Clone, Copy, Default)]
struct OutputState {
    len: u64,
    done: bool,
}

/// Runs builds on this node. Cheap to clone.
#[derive(Clone)]
pub struct Builder {
    inner: Arc<Inner>,
}

struct Inner {
    raft: HavenRaft,
    node_id: NodeId,
    api_url: String,
    router_port: u16,
    data: DataDir,
    slugs: SlugStore,
    peers: QuicConnector,
    tuning: BuildTuning,
    builtin_dir: PathBuf,
    live: Mutex<HashMap<Uuid, watch::Sender<OutputState>>>,
    /// The dyno runtime: builds run in its sandbox when it runs containers.
    runtime: Arc<crate::runtime::Runtime>,
    /// Sandboxed builds get a network namespace of their own (the outside world only).
    network: crate::network::Network,
    /// Build events go to the app's log (`app[api]: Build started by …`).
    logs: crate::logs::Logs,
    /// Stack images on this node: sandboxed builds run on their stack's build image.
    stacks: crate::stacks::roots::StackRoots,
}

/// What a new build starts from.
pub struct BuildSource {
    /// The source tarball (tar or tar.gz) on this node; removed after the build.
    pub file: PathBuf,
    pub url: String,
    pub checksum: Option<String>,
    pub version: Option<String>,
}

/// Who asked for a build.
pub struct Requester {
    pub email: String,
    pub user_id: Uuid,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: HavenRaft,
        node_id: NodeId,
        api_url: String,
        router_port: u16,
        data: DataDir,
        slugs: SlugStore,
        peers: QuicConnector,
        tuning: BuildTuning,
        runtime: Arc<crate::runtime::Runtime>,
        network: crate::network::Network,
        logs: crate::logs::Logs,
        stack_mode: crate::stacks::roots::StackMode,
    ) -> std::io::Result<Builder> {
        let stacks = crate::stacks::roots::StackRoots::open(
            &data.stacks_dir(),
            slugs.clone(),
            peers.clone(),
            raft.clone(),
            node_id,
            stack_mode,
        )?;
        let builtin_dir = data.root.join("buildpacks");
        haven_buildpacks::install_builtins(&builtin_dir)?;
        for dir in [data.builds_dir(), data.cache_dir(), data.sources_dir()] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Builder {
            inner: Arc::new(Inner {
                raft,
                node_id,
                api_url,
                router_port,
                data,
                slugs,
                peers,
                tuning,
                builtin_dir,
                live: Mutex::new(HashMap::new()),
                runtime,
                network,
                logs,
                stacks,
            }),
        })
    }

    /// Stack images on this node.
    pub fn stacks(&self) -> &crate::stacks::roots::StackRoots {
        &self.inner.stacks
    }

    pub fn slugs(&self) -> &SlugStore {
        &self.inner.slugs
    }

    pub fn data(&self) -> &DataDir {
        &self.inner.data
    }

    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// Largest source or slug this node takes, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.tuning.max_slug_mb.saturating_mul(1024 * 1024)
    }

    fn output_path(&self, id: Uuid) -> PathBuf {
        self.inner
            .data
            .builds_dir()
            .join(id.to_string())
            .join("output.log")
    }

    /// Records a pending build of `app` and starts it. Fails (nothing recorded) when the
    /// source is unreadable, its checksum does not match, or another build of the app runs.
    pub async fn start(
        &self,
        app: &model::App,
        source: BuildSource,
        buildpacks: Vec<String>,
        who: Requester,
    ) -> Result<Build, BuildError> {
        self.start_claiming(app, source, buildpacks, who, None)
            .await
    }

    /// [`Builder::start`], and with `commit` an automatic deploy of a connected
    /// repository: the build is recorded only if it is the first to take that commit
    /// (`StartRepoBuild`).
    pub async fn start_claiming(
        &self,
        app: &model::App,
        source: BuildSource,
        buildpacks: Vec<String>,
        who: Requester,
        commit: Option<String>,
    ) -> Result<Build, BuildError> {
        let sha = sha256_file(&source.file)
            .await
            .map_err(|e| BuildError::SourceUnreadable(e.to_string()))?;
        if let Some(want) = &source.checksum {
            let want_hex = want
                .strip_prefix("SHA256:")
                .or_else(|| want.strip_prefix("sha256:"))
                .ok_or_else(|| BuildError::ChecksumUnsupported(want.clone()))?;
            if !want_hex.eq_ignore_ascii_case(&sha) {
                let _ = tokio::fs::remove_file(&source.file).await;
                return Err(BuildError::ChecksumMismatch {
                    actual: format!("SHA256:{sha}"),
                    expected: want.clone(),
                });
            }
        }
        let id = Uuid::new_v4();
        let now = Utc::now();
        let build = Build {
            id,
            app: app.id,
            status: BuildStatus::Pending,
            node: self.inner.node_id,
            source_url: source.url.clone(),
            source_checksum: Some(format!("SHA256:{sha}")),
            source_version: source.version.clone(),
            buildpacks: if buildpacks.is_empty() {
                app.buildpacks.clone()
            } else {
                buildpacks
            },
            stack: app.stack.clone(),
            user_email: who.email.clone(),
            user_id: who.user_id,
            output_stream_url: format!("{}/apps/{}/builds/{id}/output", self.inner.api_url, app.id),
            slug: None,
            release: None,
            failure: None,
            created_at: now,
            updated_at: now,
        };
        // The output file and its watch exist before the build is visible, so that a
        // reader who asks at once finds them.
        let out_path = self.output_path(id);
        if let Some(dir) = out_path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| BuildError::Internal(format!("build dir: {e}")))?;
        }
        let file = std::fs::File::create(&out_path)
            .map_err(|e| BuildError::Internal(format!("build output: {e}")))?;
        let (tx, _) = watch::channel(OutputState::default());
        self.live().insert(id, tx.clone());
        let cmd = match commit {
            Some(commit) => Command::StartRepoBuild {
                build: build.clone(),
                commit,
            },
            None => Command::StartBuild {
                build: build.clone(),
            },
        };
        let recorded = match self.inner.raft.write(cmd).await {
            Ok(Ok(CommandOutput::Build(b))) => Ok(*b),
            Ok(Ok(_)) => Err(BuildError::Internal("StartBuild returned no build".into())),
            Ok(Err(e)) => Err(BuildError::Refused(e)),
            Err(e) => Err(BuildError::Cluster(e)),
        };
        let build = match recorded {
            Ok(b) => b,
            Err(e) => {
                self.live().remove(&id);
                let _ = std::fs::remove_dir_all(out_path.parent().unwrap_or(&out_path));
                let _ = tokio::fs::remove_file(&source.file).await;
                return Err(e);
            }
        };
        let config = app.config.to_map();
        let job = Job {
            builder: self.clone(),
            build: build.clone(),
            app_name: app.name.clone(),
            config,
            source_file: source.file,
            source_sha: sha,
            out: Arc::new(Mutex::new(OutputSink { file, tx, len: 0 })),
        };
        tokio::spawn(job.run());
        Ok(build)
    }

    /// Fails the builds the state still shows as running on this node that this process
    /// did not start: they died with an earlier `havend` (killed during a build). Until
    /// they are failed, every new build of their apps would be refused as "already
    /// running". Retries until the cluster answers; run once at start.
    pub async fn fail_lost_builds(&self) {
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match self.try_fail_lost_builds().await {
                Ok(0) => return,
                Ok(n) => {
                    tracing::info!(
                        builds = n,
                        "failed builds lost in an earlier run of this node"
                    );
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "failing lost builds: will retry"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
    }

    async fn try_fail_lost_builds(&self) -> Result<usize, String> {
        self.inner
            .raft
            .read_barrier()
            .await
            .map_err(|e| e.to_string())?;
        let me = self.inner.node_id;
        let lost: Vec<Uuid> = self.inner.raft.with_state(|s| {
            s.builds
                .values()
                .filter(|b| b.node == me && b.status == BuildStatus::Pending)
                .map(|b| b.id)
                .collect()
        });
        let lost: Vec<Uuid> = lost
            .into_iter()
            .filter(|id| !self.live().contains_key(id))
            .collect();
        let mut failed = 0;
        for id in lost {
            let r = self
                .inner
                .raft
                .write(Command::FinishBuild {
                    build: id,
                    result: BuildResult::Failed {
                        reason: format!(
                            "{}: its node restarted during the build",
                            haven_raft::model::LOST_BUILD
                        ),
                    },
                    at: Utc::now(),
                })
                .await
                .map_err(|e| e.to_string())?;
            // Refused: it ended meanwhile (e.g. finished by an earlier attempt).
            if r.is_ok() {
                failed += 1;
            }
        }
        Ok(failed)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, watch::Sender<OutputState>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The output of build `id` on this node as a byte stream that follows the build until
    /// it ends; `None` if this node has no output for it.
    pub async fn output(
        &self,
        id: Uuid,
    ) -> Option<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
        let rx = self.live().get(&id).map(|tx| tx.subscribe());
        let file = tokio::fs::File::open(self.output_path(id)).await.ok()?;
        Some(futures::stream::unfold(
            (file, rx, false),
            |(mut file, mut rx, ended)| async move {
                if ended {
                    return None;
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match file.read(&mut buf).await {
                        Ok(0) => {
                            let Some(r) = rx.as_mut() else {
                                return None;
                            };
                            if r.borrow_and_update().done {
                                // Everything was written before `done`: one last read.
                                rx = None;
                                continue;
                            }
                            if r.changed().await.is_err() {
                                rx = None;
                            }
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            return Some((Ok(Bytes::from(buf)), (file, rx, false)));
                        }
                        Err(e) => return Some((Err(e), (file, None, true))),
                    }
                }
            },
        ))
    }

    /// `http://APP.DOMAIN:PORT/`: where the router answers for an app.
    pub fn web_url(&self, app_name: &str) -> String {
        let domain = self
            .inner
            .raft
            .with_state(|s| s.cluster.as_ref().map(|c| c.app_domain.clone()))
            .unwrap_or_else(|| "localhost".into());
        haven_api::web_url(
            app_name,
            &domain,
            self.inner.router_port,
            self.inner.api_url.starts_with("https://"),
        )
    }
}

struct OutputSink {
    file: std::fs::File,
    tx: watch::Sender<OutputState>,
    len: u64,
}

impl OutputSink {
    fn line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        if self.file.write_all(&bytes).is_ok() {
            self.len += bytes.len() as u64;
            let len = self.len;
            self.tx.send_modify(|s| s.len = len);
        }
    }

    fn finish(&mut self) {
        let _ = self.file.sync_all();
        self.tx.send_modify(|s| s.done = true);
    }
}

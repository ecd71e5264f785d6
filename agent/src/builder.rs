//! The builder: turns a source tarball into a slug and a release, on the node that
//! received the source (design §6).
//!
//! A build is recorded pending in Raft first (which refuses a second concurrent build of
//! the app), then runs on a blocking thread: extract the source, run the buildpacks
//! (`haven-buildpacks`), pack the slug, write it to at least min(3, nodes up) holders over
//! QUIC, and only then commit `FinishBuild`, which makes the release. Output goes to
//! `builds/<id>/output.log` on this node as it happens; readers follow it until the build
//! ends. Config vars reach the buildpacks only as ENV_DIR files.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::Utc;
use futures::Stream;
use haven_raft::command::{BuildResult, Command, CommandOutput};
use haven_raft::model::{self, Build, BuildStatus, NodeId, NodeStatus};
use haven_raft::HavenRaft;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{BuildTuning, DataDir};
use crate::peer::QuicConnector;
use crate::slugs::SlugStore;

/// Memory a build's sandbox may use, MiB.
pub const BUILD_MEMORY_MB: u64 = 4096;

/// What `havend build-exec` reads: a buildpack run with paths as the sandbox sees them.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SandboxRequest {
    pub build_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub work_dir: PathBuf,
    pub builtin_dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub compile_timeout_secs: u64,
}

/// What `havend build-exec` writes next to its request.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SandboxOutcome {
    pub result: Result<SandboxBuilt, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct SandboxBuilt {
    pub process_types: BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
    pub frameworks: Vec<String>,
}

impl From<SandboxBuilt> for haven_buildpacks::BuildOutcome {
    fn from(b: SandboxBuilt) -> Self {
        haven_buildpacks::BuildOutcome {
            process_types: b.process_types,
            buildpacks: b.buildpacks,
            frameworks: b.frameworks,
        }
    }
}

/// `havend build-exec REQUEST`: runs inside the build sandbox. Streams the build output on
/// stdout and writes the outcome next to the request; exits 0 when the build succeeded.
pub fn build_exec(request: &Path) -> i32 {
    let req: SandboxRequest = match std::fs::read(request)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(" !     cannot read the build request: {e}");
            return 2;
        }
    };
    let outcome_path = request.with_file_name("outcome.json");
    let run = haven_buildpacks::BuildRequest {
        build_dir: req.build_dir,
        cache_dir: req.cache_dir,
        work_dir: req.work_dir,
        env: req.env,
        buildpacks: req.buildpacks,
        builtin_dir: req.builtin_dir,
        stack: req.stack,
        compile_timeout: std::time::Duration::from_secs(req.compile_timeout_secs),
    };
    let mut emit = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let result = haven_buildpacks::run(&run, &mut emit)
        .map(|o| SandboxBuilt {
            process_types: o.process_types,
            buildpacks: o.buildpacks,
            frameworks: o.frameworks,
        })
        .map_err(|e| e.to_string());
    let code = i32::from(result.is_err());
    let bytes = serde_json::to_vec(&SandboxOutcome { result }).unwrap_or_default();
    if std::fs::write(&outcome_path, bytes).is_err() {
        return 3;
    }
    code
}

/// `chown -R` without following symlinks.
pub(crate) fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// How many nodes must hold a slug before its release is made.
pub const SLUG_COPIES: usize = 3;

/// The stack name builds and slugs carry: the host's toolchains.
pub const STACK: &str = "haven-1";

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
    peers: Option<QuicConnector>,
    tuning: BuildTuning,
    builtin_dir: PathBuf,
    live: Mutex<HashMap<Uuid, watch::Sender<OutputState>>>,
    /// The dyno runtime: builds run in its sandbox when it runs containers.
    runtime: Option<Arc<crate::runtime::Runtime>>,
    /// Build events go to the app's log (`app[api]: Build started by …`).
    logs: crate::logs::Logs,
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
        peers: Option<QuicConnector>,
        tuning: BuildTuning,
        runtime: Option<Arc<crate::runtime::Runtime>>,
        logs: crate::logs::Logs,
    ) -> std::io::Result<Builder> {
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
                logs,
            }),
        })
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
    ) -> Result<Build, crate::api::ApiError> {
        use crate::api::ApiError;
        let sha = sha256_file(&source.file)
            .await
            .map_err(|e| ApiError::bad_request(format!("source unreadable: {e}")))?;
        if let Some(want) = &source.checksum {
            let want_hex = want
                .strip_prefix("SHA256:")
                .or_else(|| want.strip_prefix("sha256:"))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "checksum {want:?} is not supported: use SHA256:<hex>"
                    ))
                })?;
            if !want_hex.eq_ignore_ascii_case(&sha) {
                let _ = tokio::fs::remove_file(&source.file).await;
                return Err(ApiError::invalid(format!(
                    "source checksum mismatch: the blob hashes to SHA256:{sha}, not {want}"
                )));
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
            stack: STACK.into(),
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
                .map_err(|e| ApiError::internal(format!("build dir: {e}")))?;
        }
        let file = std::fs::File::create(&out_path)
            .map_err(|e| ApiError::internal(format!("build output: {e}")))?;
        let (tx, _) = watch::channel(OutputState::default());
        self.live().insert(id, tx.clone());
        let recorded = match self
            .inner
            .raft
            .write(Command::StartBuild {
                build: build.clone(),
            })
            .await
        {
            Ok(Ok(CommandOutput::Build(b))) => Ok(*b),
            Ok(Ok(_)) => Err(ApiError::internal("StartBuild returned no build")),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
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
        let config = app.config.clone();
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
        if self.inner.router_port == 80 {
            format!("http://{app_name}.{domain}/")
        } else {
            format!("http://{app_name}.{domain}:{}/", self.inner.router_port)
        }
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

/// Why a build failed, and whether the output already says so.
struct Failure {
    reason: String,
    reported: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            reported: false,
        }
    }
}

/// One build in progress.
struct Job {
    builder: Builder,
    build: Build,
    app_name: String,
    config: BTreeMap<String, String>,
    source_file: PathBuf,
    source_sha: String,
    out: Arc<Mutex<OutputSink>>,
}

impl Job {
    fn say(&self, line: &str) {
        if let Ok(mut o) = self.out.lock() {
            o.line(line);
        }
    }

    async fn run(self) {
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
        let finished = self
            .builder
            .inner
            .raft
            .write(Command::FinishBuild {
                build: id,
                result: outcome,
                at: Utc::now(),
            })
            .await;
        match finished {
            Ok(Ok(CommandOutput::Release { version, app })) => {
                app_logs.api(self.build.app, "Build succeeded");
                if let Some(r) = app.releases.iter().find(|r| r.version == version) {
                    app_logs.api(self.build.app, &format!("{} by {who}", r.description));
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
            Ok(Ok(_)) => {
                app_logs.api(
                    self.build.app,
                    &format!(
                        "Build failed -- check your build output: {}",
                        self.build.output_stream_url
                    ),
                );
            }
            Ok(Err(e)) => {
                self.say(&format!(" !     The release could not be made: {e}"));
            }
            Err(e) => {
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

    /// Runs the buildpacks inside the dyno sandbox: `havend build-exec` in a container
    /// with the build, cache and work dirs bound at `/tmp/build`, `/tmp/cache` and
    /// `/tmp/work` (writable, owned by the dyno user) and the built-in buildpacks at
    /// `/tmp/buildpacks` (read-only), as an unprivileged user with a memory cap.
    async fn compile_in_sandbox(
        &self,
        runtime: &crate::runtime::Runtime,
        app_dir: &Path,
        cache_dir: &Path,
        work_dir: &Path,
        buildpacks: Vec<String>,
        compile_timeout: std::time::Duration,
    ) -> Result<haven_buildpacks::BuildOutcome, Failure> {
        use crate::runtime::{Bind, DynoSpec, DYNO_GID, DYNO_UID};
        let inner = &self.builder.inner;
        // Buildpacks given as host paths are bound read-only into the sandbox.
        let mut extra_binds = Vec::new();
        let buildpacks: Vec<String> = buildpacks
            .into_iter()
            .enumerate()
            .map(|(i, bp)| {
                let path = Path::new(&bp);
                if path.is_absolute() && path.is_dir() {
                    let target = format!("/tmp/buildpack-{i}");
                    extra_binds.push(Bind {
                        host: path.to_path_buf(),
                        target: target.clone().into(),
                        writable: false,
                    });
                    target
                } else {
                    bp
                }
            })
            .collect();
        let request = SandboxRequest {
            build_dir: "/tmp/build".into(),
            cache_dir: "/tmp/cache".into(),
            work_dir: "/tmp/work/run".into(),
            builtin_dir: "/tmp/buildpacks".into(),
            env: self.config.clone(),
            buildpacks,
            stack: STACK.into(),
            compile_timeout_secs: compile_timeout.as_secs(),
        };
        let req_path = work_dir.join("request.json");
        let outcome_path = work_dir.join("outcome.json");
        let dirs = [
            app_dir.to_path_buf(),
            cache_dir.to_path_buf(),
            work_dir.to_path_buf(),
        ];
        let req_json = serde_json::to_vec(&request).map_err(|e| Failure::new(e.to_string()))?;
        let rp = req_path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&rp)?;
            f.write_all(&req_json)?;
            for d in &dirs {
                chown_tree(d, DYNO_UID, DYNO_GID)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Failure::new(e.to_string()))?
        .map_err(|e| Failure::new(format!("prepare the build sandbox: {e}")))?;
        let exe = std::env::current_exe().map_err(|e| Failure::new(e.to_string()))?;
        let spec = DynoSpec {
            id: format!("build-{}", self.build.id),
            hostname: "build".into(),
            slug_dir: None,
            binds: vec![
                Bind {
                    host: app_dir.to_path_buf(),
                    target: "/tmp/build".into(),
                    writable: true,
                },
                Bind {
                    host: cache_dir.to_path_buf(),
                    target: "/tmp/cache".into(),
                    writable: true,
                },
                Bind {
                    host: work_dir.to_path_buf(),
                    target: "/tmp/work".into(),
                    writable: true,
                },
                Bind {
                    host: inner.builtin_dir.clone(),
                    target: "/tmp/buildpacks".into(),
                    writable: false,
                },
                Bind {
                    host: exe,
                    target: "/tmp/haven/havend".into(),
                    writable: false,
                },
            ]
            .into_iter()
            .chain(extra_binds)
            .collect(),
            command: "/tmp/haven/havend build-exec /tmp/work/request.json".into(),
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("HOME".into(), "/tmp/work".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("STACK".into(), STACK.into()),
            ],
            memory_limit_bytes: BUILD_MEMORY_MB * 1024 * 1024,
            pids_limit: 8192,
            stdin: false,
        };
        let mut proc = runtime
            .spawn(&spec)
            .map_err(|e| Failure::new(format!("start the build sandbox: {e}")))?;
        let mut pipes = Vec::new();
        for reader in [
            proc.take_stdout()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            proc.take_stderr()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = self.out.clone();
            pipes.push(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(reader).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Ok(mut o) = out.lock() {
                        o.line(&l);
                    }
                }
            }));
        }
        // The runner enforces the compile limit; this bounds a sandbox that hangs anyway.
        let limit = compile_timeout + std::time::Duration::from_secs(600);
        let exit = match tokio::time::timeout(limit, proc.wait()).await {
            Ok(e) => e,
            Err(_) => {
                proc.kill();
                proc.wait().await
            }
        };
        for p in pipes {
            let _ = p.await;
        }
        proc.cleanup();
        let _ = tokio::fs::remove_file(&req_path).await;
        let outcome: Option<SandboxOutcome> = tokio::fs::read(&outcome_path)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match outcome {
            Some(SandboxOutcome { result: Ok(o), .. }) => Ok(o.into()),
            Some(SandboxOutcome {
                result: Err(reason),
                ..
            }) => Err(Failure {
                reason,
                reported: true,
            }),
            None if exit.oom_killed => Err(Failure::new(format!(
                "the build ran out of memory (the build sandbox allows {BUILD_MEMORY_MB} MiB)"
            ))),
            None => Err(Failure::new(format!(
                "the build sandbox ended without a result (exit {:?}, signal {:?})",
                exit.code, exit.signal
            ))),
        }
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
        let sandboxed = inner
            .runtime
            .as_ref()
            .filter(|r| r.mode() == crate::runtime::Mode::Container)
            .cloned();
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
                    stack: STACK.into(),
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
            stack: STACK.into(),
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
        let others: Vec<(NodeId, String, String)> = inner.raft.with_state(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != inner.node_id && n.status != NodeStatus::Down)
                .map(|n| (n.id, n.name.clone(), n.peer_addr.clone()))
                .collect()
        });
        let want = SLUG_COPIES.min(others.len() + 1);
        let mut holders = vec![inner.node_id];
        if let Some(peers) = &inner.peers {
            // Send to the candidates concurrently; keep the first that succeed.
            let sends = others.iter().map(|(id, name, addr)| {
                let slugs = inner.slugs.clone();
                async move {
                    let r = tokio::time::timeout(
                        std::time::Duration::from_secs(600),
                        slugs.push_to(peers, addr, sha),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    (*id, name.clone(), r)
                }
            });
            for (id, name, r) in futures::future::join_all(sends).await {
                match r {
                    Ok(()) => holders.push(id),
                    Err(e) => warn!(node = %name, error = %e, "could not copy a slug"),
                }
            }
        }
        if holders.len() < want {
            return Err(format!(
                "the slug reached only {} of the {want} nodes it must be on before release",
                holders.len()
            ));
        }
        Ok(holders)
    }
}

async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
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

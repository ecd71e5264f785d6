//! The build sandbox: builds run in the dyno runtime as the dyno user. The agent writes a
//! [`SandboxRequest`], starts `havend build-exec` in a container with the build dirs bound
//! in, relays its output, and reads the [`SandboxOutcome`] it leaves behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::job::{Failure, Job};

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

impl Job {
    /// Runs the buildpacks inside the dyno sandbox: `havend build-exec` in a container
    /// with the build, cache and work dirs bound at `/tmp/build`, `/tmp/cache` and
    /// `/tmp/work` (writable, owned by the dyno user) and the built-in buildpacks at
    /// `/tmp/buildpacks` (read-only), as an unprivileged user with a memory cap.
    pub(super) async fn compile_in_sandbox(
        &self,
        runtime: &crate::runtime::Runtime,
        app_dir: &Path,
        cache_dir: &Path,
        work_dir: &Path,
        buildpacks: Vec<String>,
        compile_timeout: std::time::Duration,
    ) -> Result<haven_buildpacks::BuildOutcome, Failure> {
        use crate::runtime::{chown_tree, Bind, DynoSpec, DYNO_GID, DYNO_UID};
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
            stack: self.build.stack.clone(),
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
        let stack = &self.build.stack;
        let root = inner
            .stacks
            .root(stack, haven_raft::model::StackImageKind::Build)
            .await
            .map_err(|e| Failure::new(format!("the {stack} build image is not ready here: {e}")))?;
        match &root {
            Some(r) => self.say(&format!(
                "-----> Using the {stack} build image {} ({})",
                crate::stacks::roots::short(&r.sha256),
                r.os
            )),
            None if inner.stacks.mode() == crate::stacks::roots::StackMode::Image => {
                self.say(&format!(
                    "-----> Using the host's root: no {stack} image is imported (hctl stacks:import)"
                ))
            }
            None => self.say("-----> Using the host's root ([dynos] stack = \"host\")"),
        }
        let exe = std::env::current_exe().map_err(|e| Failure::new(e.to_string()))?;
        let sandbox_id = format!("build-{}", self.build.id);
        let net = inner
            .network
            .attach(&sandbox_id, None)
            .await
            .map_err(|e| Failure::new(format!("start the build sandbox: {e}")))?;
        let spec = DynoSpec {
            id: sandbox_id.clone(),
            hostname: "build".into(),
            slug_dir: None,
            root: root.map(|r| r.dir),
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
                ("STACK".into(), self.build.stack.clone()),
            ],
            memory_limit_bytes: BUILD_MEMORY_MB * 1024 * 1024,
            pids_limit: 8192,
            cpu_shares: 0,
            stdin: false,
            // A build ends with the agent that runs it.
            outlives_agent: false,
            note: String::new(),
            net,
        };
        let mut proc = runtime.spawn(&spec).map_err(|e| {
            inner.network.release(&sandbox_id);
            Failure::new(format!("start the build sandbox: {e}"))
        })?;
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
        inner.network.release(&sandbox_id);
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
}

//! TEMPORARY: process-mode-only runtime until the container runtime lands.
use std::path::PathBuf;
use std::process::Stdio;

pub enum Mode {
    Container,
    Process,
}

pub struct Runtime {
    state_dir: PathBuf,
}

pub struct Bind {
    pub host: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

pub struct DynoSpec {
    pub id: String,
    pub hostname: String,
    pub slug_dir: Option<PathBuf>,
    pub binds: Vec<Bind>,
    pub command: String,
    pub env: Vec<(String, String)>,
    pub memory_limit_bytes: u64,
    pub pids_limit: u64,
    pub stdin: bool,
}

pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

pub struct DynoProcess {
    child: tokio::process::Child,
    pid: i32,
    dir: PathBuf,
}

impl Runtime {
    pub fn new(state_dir: PathBuf, _init_exe: PathBuf) -> Runtime {
        Runtime { state_dir }
    }
    pub fn mode(&self) -> Mode {
        Mode::Process
    }
    pub fn spawn(&self, spec: &DynoSpec) -> std::io::Result<DynoProcess> {
        let dir = self.state_dir.join(&spec.id).join("app");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().unwrap_or(&dir))?;
        if let Some(slug) = &spec.slug_dir {
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(slug)
                .arg(&dir)
                .status()?;
            if !st.success() {
                return Err(std::io::Error::other("copy slug"));
            }
        } else {
            std::fs::create_dir_all(&dir)?;
        }
        let script = format!(
            "for f in \"$HOME\"/.profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done; {}",
            spec.command
        );
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c").arg(script).env_clear().current_dir(&dir);
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.env("HOME", &dir);
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        Ok(DynoProcess { child, pid, dir })
    }
}

impl DynoProcess {
    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }
    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }
    pub fn take_stdin(&mut self) -> Option<tokio::process::ChildStdin> {
        self.child.stdin.take()
    }
    pub async fn wait(&mut self) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait().await {
            Ok(s) => ExitInfo {
                code: s.code(),
                signal: s.signal(),
                oom_killed: false,
            },
            Err(_) => ExitInfo {
                code: None,
                signal: None,
                oom_killed: false,
            },
        }
    }
    pub fn terminate(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    pub fn kill(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pub fn memory_usage_bytes(&self) -> Option<u64> {
        None
    }
    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(self.dir.parent().unwrap_or(&self.dir));
    }
}

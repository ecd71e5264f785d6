//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use haven_buildpacks::{BuildError, BuildOutcome, BuildRequest};

pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub build: PathBuf,
    pub cache: PathBuf,
    pub work: PathBuf,
    pub builtin: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let build = tmp.path().join("build");
        let cache = tmp.path().join("cache");
        let work = tmp.path().join("work");
        let builtin = tmp.path().join("builtin");
        fs::create_dir_all(&build).expect("mkdir build");
        haven_buildpacks::install_builtins(&builtin).expect("install builtins");
        Sandbox {
            tmp,
            build,
            cache,
            work,
            builtin,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn request(&self) -> BuildRequest {
        BuildRequest::new(&self.build, &self.cache, &self.work, &self.builtin)
    }

    /// Starts over with an empty build dir (the cache and work dir stay).
    pub fn fresh_build_dir(&mut self, name: &str) {
        self.build = self.tmp.path().join(name);
        fs::create_dir_all(&self.build).expect("mkdir build");
    }
}

pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

pub fn write_exec(path: &Path, text: &str) {
    write(path, text);
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A classic buildpack in `dir` with the given script bodies (bash).
pub fn make_buildpack(dir: &Path, detect: &str, compile: &str, release: Option<&str>) {
    write_exec(
        &dir.join("bin/detect"),
        &format!("#!/usr/bin/env bash\n{detect}\n"),
    );
    write_exec(
        &dir.join("bin/compile"),
        &format!("#!/usr/bin/env bash\n{compile}\n"),
    );
    if let Some(r) = release {
        write_exec(
            &dir.join("bin/release"),
            &format!("#!/usr/bin/env bash\n{r}\n"),
        );
    }
}

/// Runs a build, collecting its output lines.
pub fn build(req: &BuildRequest) -> (Result<BuildOutcome, BuildError>, Vec<String>) {
    let mut lines = Vec::new();
    // HAVEN_BP_PRINT=1 shows the build output (with --nocapture).
    let print = std::env::var_os("HAVEN_BP_PRINT").is_some();
    let r = haven_buildpacks::run(req, &mut |l: &str| {
        if print {
            eprintln!("| {l}");
        }
        lines.push(l.to_string())
    });
    (r, lines)
}

pub fn has_line(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// `cp -a from to` (a copy of a built app at another path, as a slug extract would be).
pub fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a failed");
}

/// Whether a pid is gone (a zombie counts as gone: it runs nothing).
pub fn pid_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

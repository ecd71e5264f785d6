//! The apps a chaos run deploys: the embedded fixture (a web and a worker process), `hctl`
//! to deploy it as a user would, and the formation every app asks for.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::{find_binary, TestCluster};

/// The formation of every chaos app.
pub const FORMATION: &[(&str, u32)] = &[("web", 2), ("worker", 1)];

const FIXTURE: &[(&str, &str)] = &[
    (
        "Procfile",
        include_str!("../../fixtures/chaos-app/Procfile"),
    ),
    ("app.py", include_str!("../../fixtures/chaos-app/app.py")),
    (
        "worker.py",
        include_str!("../../fixtures/chaos-app/worker.py"),
    ),
    (
        "requirements.txt",
        include_str!("../../fixtures/chaos-app/requirements.txt"),
    ),
];

/// Name of chaos app `i`.
pub fn app_name(i: usize) -> String {
    format!("chaos-{i}")
}

/// Writes the fixture app into `dir/app-src` and returns that path.
pub fn write_fixture(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("app-src");
    fs::create_dir_all(&src).with_context(|| format!("create {}", src.display()))?;
    for (name, text) in FIXTURE {
        fs::write(src.join(name), text).with_context(|| format!("write {name}"))?;
    }
    Ok(src)
}

/// `hctl` against the nodes of one cluster, with the admin token and a home of its own.
#[derive(Clone)]
pub struct Hctl {
    bin: PathBuf,
    apis: Vec<String>,
    token: String,
    home: PathBuf,
}

impl Hctl {
    pub fn new(tc: &TestCluster) -> Result<Hctl> {
        let bin = find_binary("hctl", None, "HCTL_BIN")?;
        let home = tc.dir().join("hctl-home");
        fs::create_dir_all(&home)?;
        Ok(Hctl {
            bin,
            apis: (0..tc.len()).map(|i| tc.api(i).to_string()).collect(),
            token: tc.token().to_string(),
            home,
        })
    }

    /// Runs `hctl ARGS` against node `node`, killed after `timeout`; the error carries
    /// its output.
    pub fn run(&self, node: usize, args: &[&str], timeout: Duration) -> Result<String> {
        let out_path = self.home.join(format!(
            "out-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out = fs::File::create(&out_path)?;
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("HAVEN_API", &self.apis[node])
            .env("HAVEN_TOKEN", &self.token)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("run {}", self.bin.display()))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        let _ = fs::remove_file(&out_path);
        match status {
            Some(s) if s.success() => Ok(text),
            Some(s) => bail!(
                "hctl {} on node {node}: {s}: {}",
                args.join(" "),
                last_lines(&text)
            ),
            None => bail!(
                "hctl {} on node {node}: no answer within {timeout:?}: {}",
                args.join(" "),
                last_lines(&text)
            ),
        }
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Deploys `src` to `app` through node `node`.
pub fn deploy(hctl: &Hctl, node: usize, app: &str, src: &Path) -> Result<()> {
    hctl.run(
        node,
        &["deploy", &src.to_string_lossy(), "-a", app],
        Duration::from_secs(300),
    )
    .map(|_| ())
}

/// Creates `app`, deploys the fixture and scales it to [`FORMATION`].
pub fn create(tc: &TestCluster, hctl: &Hctl, app: &str, src: &Path) -> Result<()> {
    tc.post_json(0, "/apps", &json!({ "name": app }))?;
    deploy(hctl, 0, app, src)?;
    let updates: Vec<_> = FORMATION
        .iter()
        .map(|(t, q)| json!({"type": t, "quantity": q}))
        .collect();
    let (status, body) = tc.request(
        0,
        reqwest::Method::PATCH,
        &format!("/apps/{app}/formation"),
        Some(&json!({ "updates": updates })),
    )?;
    if !status.is_success() {
        bail!("scale {app}: {status} {body}");
    }
    Ok(())
}

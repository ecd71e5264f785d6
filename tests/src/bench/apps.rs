//! Apps on a benchmark cluster: `hctl` and `git` runs that return errors instead of
//! panicking, dynos and the nodes they run on, fixture paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::Env;

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs `hctl ARGS` against node `node`; its stdout, or an error with its stderr.
pub fn hctl(env: &Env, node: usize, args: &[&str]) -> Result<String> {
    let out = crate::hctl_command(env, node, args)
        .output()
        .context("run hctl")?;
    if !out.status.success() {
        bail!(
            "hctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates app `name`.
pub fn create_app(env: &Env, name: &str) -> Result<()> {
    env.post_json(0, "/apps", &serde_json::json!({ "name": name }))
        .with_context(|| format!("create app {name}"))?;
    Ok(())
}

/// The dynos of `app` of type `kind` in state `up`, as node 0 sees them.
pub fn up_dynos(env: &Env, app: &str, kind: &str) -> Vec<Value> {
    env.get_json(0, &format!("/apps/{app}/dynos"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["type"] == kind && d["state"] == "up")
        .collect()
}

/// The node name of every node index (empty when a node does not answer).
pub fn node_names(env: &Env) -> Vec<String> {
    (0..env.len())
        .map(|i| {
            env.status(i)
                .ok()
                .and_then(|s| s["node_name"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

/// The index of the node named `name`.
pub fn index_of_node(env: &Env, name: &str) -> Option<usize> {
    node_names(env).iter().position(|n| n == name)
}

/// The host part of node `name`'s API address (where its dynos listen).
pub fn node_host(env: &Env, name: &str) -> Result<String> {
    let nodes = env.get_json(0, "/cluster/nodes")?;
    let api = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .and_then(|n| n["api_url"].as_str())
        .with_context(|| format!("node {name} is not listed"))?;
    let hostport = api.trim_start_matches("http://");
    Ok(hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .to_string())
}

/// The host part of a `http://HOST:PORT` URL.
pub fn url_host(url: &str) -> String {
    let hp = url.trim_start_matches("http://");
    hp.rsplit_once(':').map_or(hp, |(h, _)| h).to_string()
}

/// `git ARGS` in `dir` with a fixed identity and no prompts; stdout or an error.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@haven.local",
        ])
        .args(["-c", "credential.helper=", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies the files of `src` (one level, as the example apps are) into `dest`.
pub fn copy_files(src: &Path, dest: &Path) -> Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), dest.join(e.file_name()))?;
        }
    }
    Ok(())
}

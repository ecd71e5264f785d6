//! The workspace's dependency invariants (design §1), read from `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn metadata() -> Option<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Only this host's platform: packages of other targets are not downloaded, and tests
    // do not touch the network.
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    if !out.status.success() {
        // Only when a package of the lock file was never downloaded (no build yet).
        eprintln!(
            "skipped: cargo metadata --offline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Every package `name` depends on (normal dependencies, transitively), by name.
fn closure(meta: &Value, name: &str) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    let start = names.iter().find(|(_, n)| **n == name).unwrap().0;
    let mut seen = BTreeSet::new();
    let mut stack = vec![*start];
    while let Some(id) = stack.pop() {
        for d in nodes.get(id).into_iter().flatten() {
            if seen.insert(names[d].to_string()) {
                stack.push(d);
            }
        }
    }
    seen
}

#[test]
fn the_scheduler_does_no_io_and_hctl_links_no_server_crate() {
    let Some(meta) = metadata() else {
        return;
    };
    let sched = closure(&meta, "haven-scheduler");
    for banned in ["tokio", "rocksdb", "librocksdb-sys", "nix", "mio"] {
        assert!(
            !sched.contains(banned),
            "haven-scheduler depends on {banned}"
        );
    }
    let hctl = closure(&meta, "hctl");
    for banned in [
        "haven-raft",
        "haven-agent",
        "haven-scheduler",
        "rocksdb",
        "openraft",
    ] {
        assert!(!hctl.contains(banned), "hctl depends on {banned}");
    }
    for member in [
        "haven-api",
        "haven-catalog",
        "haven-raft",
        "haven-scheduler",
        "haven-buildpacks",
        "hctl",
    ] {
        assert!(
            !closure(&meta, member).contains("nix"),
            "{member} depends on nix"
        );
    }
}

#[test]
fn the_catalog_depends_on_no_haven_crate() {
    let Some(meta) = metadata() else {
        return;
    };
    let catalog = closure(&meta, "haven-catalog");
    let haven: Vec<&String> = catalog
        .iter()
        .filter(|d| d.starts_with("haven") || *d == "hctl")
        .collect();
    assert!(
        haven.is_empty(),
        "haven-catalog depends on {haven:?}; it is the table every crate reads, so it reads none"
    );
}

/// Whether source text names the `nix` crate (`nix::`, not `unix::`).
fn uses_nix(text: &str) -> bool {
    text.match_indices("nix::").any(|(i, _)| {
        i == 0 || {
            let b = text.as_bytes()[i - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        }
    })
}

#[test]
fn only_the_agent_runtime_calls_nix() {
    assert!(
        uses_nix("use nix::unistd;") && uses_nix("x(nix::sys)") && !uses_nix("std::os::unix::fs")
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/src");
    let mut stack = vec![src.clone()];
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !p.starts_with(src.join("runtime"))
                && uses_nix(&std::fs::read_to_string(&p).unwrap())
            {
                offenders.push(p.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "nix used outside agent/src/runtime: {offenders:?}"
    );
}

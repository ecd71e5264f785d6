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
fn the_dyno_init_links_no_c_plus_plus_and_no_async_runtime() {
    let Some(meta) = metadata() else {
        return;
    };
    // Exec'd for every dyno start: its size and dynamic libraries are start time.
    let init = closure(&meta, "haven-init");
    for banned in [
        "rocksdb",
        "librocksdb-sys",
        "tokio",
        "mio",
        "ring",
        "zstd-sys",
    ] {
        assert!(!init.contains(banned), "haven-init depends on {banned}");
    }
    let haven: Vec<&String> = init
        .iter()
        .filter(|d| d.starts_with("haven") || *d == "hctl")
        .collect();
    assert!(haven.is_empty(), "haven-init depends on {haven:?}");
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

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules that `code` names through `crate::`: `crate::peer::X`,
/// `use crate::{logs, peer::StreamKind}`. Comments are left out.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // One level of braces: the first segment of each item.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        refs.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        }
    }
    refs
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn module_cycles_are_found() {
    let refs = crate_refs(
        "use crate::peer::{A, B};\nuse crate::{logs, runtime::Bind};\n// crate::api\nx(crate::tls::f); nocrate::x",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["logs", "peer", "runtime", "tls"]
    );
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// The agent's top-level modules (`api`, `builder`, `peer`, …) form no import cycle:
/// data flows one way, and each module can be read knowing only what it names.
#[test]
fn the_agents_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" {
            continue;
        }
        let code = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(crate_refs(&code).into_iter().filter(|m| *m != module));
    }
    assert!(graph.contains_key("peer") && graph.contains_key("api"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the agent's modules form a cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_dashboard_reaches_state_only_through_the_api() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/src/dashboard");
    let files = rust_files(&dir);
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let code = std::fs::read_to_string(&f).unwrap();
        for banned in ["haven_raft", "HavenRaft", "ApiContext", "crate::api::"] {
            assert!(
                !code.contains(banned),
                "{} names {banned}: the dashboard goes through the API router",
                f.display()
            );
        }
    }
}

//! The checks of a chaos run, made after every fault healed: each is a named pass/fail
//! with the figures behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use haven_api as w;
use serde_json::Value;

use super::apps::FORMATION;
use super::faults::Window;
use super::linearizable::{self, Op, Outcome, RegOp};
use super::workload::{KeyOp, RouterSample, WriteCounts, KEYS, KV_APP};
use crate::TestCluster;

/// Router errors allowed overall, as a fraction of requests to healthy routers.
pub const MAX_ERROR_RATE: f64 = 0.001;

/// One check of the verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

fn get<T: serde::de::DeserializeOwned>(
    tc: &TestCluster,
    i: usize,
    path: &str,
) -> Result<T, String> {
    let v = tc.get_json(i, path).map_err(|e| format!("{e:#}"))?;
    serde_json::from_value(v).map_err(|e| format!("decode {path}: {e}"))
}

/// The highest release version of `app`, read on node `i`.
pub fn latest_version(tc: &TestCluster, i: usize, app: &str) -> Result<u64, String> {
    let url = format!("{}/apps/{app}/releases", tc.api(i));
    let resp = reqwest::blocking::Client::new()
        .get(&url)
        .bearer_auth(tc.token())
        .header("Accept", "application/vnd.heroku+json; version=3")
        .header("Range", "version ..; max=1, order=desc")
        .timeout(Duration::from_secs(10))
        .send()
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    let list: Vec<w::Release> = resp.json().map_err(|e| format!("{url}: {e}"))?;
    Ok(list.first().map_or(0, |r| r.version))
}

/// Acknowledged writes are all there: each config-var write makes one release, so the
/// releases made during the run are at least the acknowledged writes and at most those
/// plus the ones of unknown outcome.
pub fn writes_present(tc: &TestCluster, counts: WriteCounts, before: u64) -> Check {
    let name = "acknowledged writes present";
    match latest_version(tc, 0, KV_APP) {
        Err(e) => Check::new(name, false, e),
        Ok(v) => {
            let made = v.saturating_sub(before);
            let ok = made >= counts.acked && made <= counts.acked + counts.unknown;
            Check::new(
                name,
                ok,
                format!(
                    "{} acked, {} unknown, {} failed; {made} releases made (must be {}..={})",
                    counts.acked,
                    counts.unknown,
                    counts.failed,
                    counts.acked,
                    counts.acked + counts.unknown
                ),
            )
        }
    }
}

/// Every node answers the same value for every register; the reads join the history.
pub fn values_agree(tc: &TestCluster, ops: &mut Vec<KeyOp>, start: Instant) -> Check {
    let name = "every node reads the same values";
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut seen: Vec<Vec<(String, Option<String>)>> = Vec::new();
    for i in 0..tc.len() {
        let invoke = start.elapsed();
        let Some(values) = super::workload::read_all(&http, tc.api(i), tc.token()) else {
            return Check::new(name, false, format!("node {i} did not answer a read"));
        };
        let complete = Some(start.elapsed());
        for (key, v) in &values {
            ops.push(KeyOp {
                key: key.clone(),
                op: Op {
                    invoke,
                    complete,
                    op: RegOp::Read(v.clone()),
                },
            });
        }
        seen.push(values);
    }
    let first = seen.first().cloned().unwrap_or_default();
    match seen.iter().position(|s| *s != first) {
        Some(i) => Check::new(
            name,
            false,
            format!("node 0 read {first:?}, node {i} read {:?}", seen[i]),
        ),
        None => Check::new(
            name,
            true,
            format!("{} nodes, {} keys", tc.len(), KEYS.len()),
        ),
    }
}

/// Each register's history is linearizable.
pub fn linearizable(ops: &[KeyOp], init: &str) -> Check {
    let name = "each key's history linearizable";
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for k in ops {
        by_key.entry(&k.key).or_default().push(k.op.clone());
    }
    let mut total = 0;
    let mut dropped = 0;
    for (key, ops) in &mut by_key {
        // A write of unknown outcome whose value nobody read is the same as one that
        // never happened: leaving it out keeps the search small and changes no answer.
        let read: HashSet<String> = ops
            .iter()
            .filter_map(|o| match &o.op {
                RegOp::Read(Some(v)) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let before = ops.len();
        ops.retain(|o| match &o.op {
            RegOp::Write(v) => o.complete.is_some() || read.contains(v),
            RegOp::Read(_) => true,
        });
        dropped += before - ops.len();
        total += ops.len();
        match linearizable::check(Some(init), ops) {
            Outcome::Linearizable => {}
            Outcome::Violation { op, placed } => {
                return Check::new(
                    name,
                    false,
                    format!(
                        "key {key}: no order fits {:?} invoked at {:.3}s, completed at {}, after {placed} of {} operations placed",
                        op.op,
                        op.invoke.as_secs_f64(),
                        op.complete
                            .map_or("unknown".into(), |c| format!("{:.3}s", c.as_secs_f64())),
                        ops.len()
                    ),
                )
            }
            Outcome::Undecided => {
                return Check::new(
                    name,
                    false,
                    format!("key {key}: the search ran out of steps ({} operations)", ops.len()),
                )
            }
        }
    }
    Check::new(
        name,
        true,
        format!(
            "{} keys, {total} operations ({dropped} unread writes of unknown outcome left out)",
            by_key.len()
        ),
    )
}

/// Why `app`'s dynos are not exactly its formation on its current release, on up nodes
/// with distinct names; `Ok` when they are.
pub fn formation_exact(tc: &TestCluster, i: usize, app: &str) -> Result<(), String> {
    let formation: Vec<w::Formation> = get(tc, i, &format!("/apps/{app}/formation"))?;
    let dynos: Vec<w::Dyno> = get(tc, i, &format!("/apps/{app}/dynos"))?;
    let nodes: Vec<w::ClusterNode> = get(tc, i, "/cluster/nodes")?;
    let up: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.status == "up")
        .map(|n| n.name.as_str())
        .collect();
    let current = latest_version(tc, i, app)?;
    let mut names = BTreeSet::new();
    for d in &dynos {
        if !names.insert(d.name.as_str()) {
            return Err(format!("two dynos named {}", d.name));
        }
        if d.state != "up" {
            return Err(format!("{} is {}", d.name, d.state));
        }
        if d.release.version != current {
            return Err(format!(
                "{} runs v{}, the current release is v{current}",
                d.name, d.release.version
            ));
        }
        match &d.node {
            Some(n) if up.contains(n.name.as_str()) => {}
            Some(n) => return Err(format!("{} is on {}, which is not up", d.name, n.name)),
            None => return Err(format!("{} is on no node", d.name)),
        }
    }
    for (ptype, want) in FORMATION {
        let q = formation
            .iter()
            .find(|f| f.process_type == *ptype)
            .map_or(0, |f| f.quantity);
        if q != *want {
            return Err(format!("formation {ptype}={q}, asked {want}"));
        }
        let have = dynos.iter().filter(|d| d.process_type == *ptype).count();
        if have != q as usize {
            return Err(format!("{have} {ptype} dynos for {ptype}={q}"));
        }
    }
    Ok(())
}

/// Waits up to `settle` for every app's formation to be exact.
pub fn formations_converge(
    tc: &TestCluster,
    apps: &[String],
    settle: Duration,
    name: &str,
) -> Check {
    let start = Instant::now();
    let mut last = String::new();
    let ok = crate::wait_until(settle, || {
        for app in apps {
            if let Err(e) = formation_exact(tc, 0, app) {
                last = format!("{app}: {e}");
                return false;
            }
        }
        true
    });
    if ok {
        Check::new(
            name,
            true,
            format!(
                "{} apps exact after {:.1}s",
                apps.len(),
                start.elapsed().as_secs_f64()
            ),
        )
    } else {
        Check::new(name, false, format!("not within {settle:?}: {last}"))
    }
}

/// Every release of every app names a slug that a running node holds.
pub fn releases_hold_slugs(tc: &TestCluster, apps: &[String]) -> Check {
    let name = "no half-made release";
    let mut checked = 0;
    for app in apps {
        let releases: Vec<w::Release> = match get(tc, 0, &format!("/apps/{app}/releases")) {
            Ok(r) => r,
            Err(e) => return Check::new(name, false, e),
        };
        for r in releases {
            let Some(slug) = &r.slug else { continue };
            let s: w::Slug = match get(tc, 0, &format!("/apps/{app}/slugs/{}", slug.id)) {
                Ok(s) => s,
                Err(e) => return Check::new(name, false, format!("{app} v{}: {e}", r.version)),
            };
            let sha = s
                .checksum
                .as_deref()
                .and_then(|c| c.strip_prefix("SHA256:"))
                .unwrap_or_default()
                .to_string();
            let holders = tc
                .file
                .nodes
                .iter()
                .filter(|n| {
                    n.data_dir
                        .join("slugs")
                        .join(format!("{sha}.tar.zst"))
                        .is_file()
                })
                .count();
            if sha.is_empty() || holders == 0 {
                return Check::new(
                    name,
                    false,
                    format!(
                        "{app} v{} names slug {} that no node holds",
                        r.version, slug.id
                    ),
                );
            }
            checked += 1;
        }
    }
    Check::new(
        name,
        true,
        format!("{checked} releases with slugs, each held"),
    )
}

/// Router errors on healthy routers: none outside the windows after faults, and at most
/// [`MAX_ERROR_RATE`] overall.
pub fn router_errors(samples: &[RouterSample], windows: &[Window]) -> (Check, Value) {
    let name = "no router error outside fault windows";
    let healthy: Vec<&RouterSample> = samples.iter().filter(|s| !s.router_faulted).collect();
    let errors: Vec<&&RouterSample> = healthy.iter().filter(|s| s.error.is_some()).collect();
    let in_window = |s: &RouterSample| windows.iter().any(|w| s.sent >= w.start && s.sent <= w.end);
    let outside: Vec<&&&RouterSample> = errors.iter().filter(|s| !in_window(s)).collect();
    let rate = if healthy.is_empty() {
        0.0
    } else {
        errors.len() as f64 / healthy.len() as f64
    };
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for e in &errors {
        let text = e.error.clone().unwrap_or_default();
        let kind: String = text.chars().take(60).collect();
        *kinds.entry(kind).or_default() += 1;
    }
    let mut detail = format!(
        "{} requests to healthy routers, {} errors ({:.3}%), {} outside windows",
        healthy.len(),
        errors.len(),
        rate * 100.0,
        outside.len()
    );
    if let Some(first) = outside.first() {
        detail.push_str(&format!(
            "; first outside: node {} at {:.2}s: {}",
            first.node,
            first.sent.as_secs_f64(),
            first.error.as_deref().unwrap_or("")
        ));
    }
    let ok = outside.is_empty() && rate <= MAX_ERROR_RATE && !healthy.is_empty();
    let figures = serde_json::json!({
        "requests": healthy.len(),
        "errors": errors.len(),
        "errors_outside_windows": outside.len(),
        "error_rate": rate,
        "excluded_router_faulted": samples.len() - healthy.len(),
        "error_kinds": kinds,
    });
    (Check::new(name, ok, detail), figures)
}

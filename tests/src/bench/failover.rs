//! Failover: on a 3-node cluster with three web dynos, SIGKILL of a node that runs one
//! (the node and its dynos), and the time until the formation is whole again elsewhere
//! (three web dynos `up`, none on the killed node), median of several runs. Meanwhile
//! clients send requests through the routers of the other nodes: the requests that fail
//! and over how long.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::apps::{create_app, fixture, hctl, node_names, up_dynos};
use super::{median, Opts, Progress, Row, Target};

const APP: &str = "failover";

/// One kill: how long until the formation was whole, and what clients saw.
#[derive(Debug, Clone)]
pub struct Run {
    pub replaced_s: f64,
    pub answered: u64,
    pub failed: usize,
    pub error_window_s: f64,
}

fn whole_without(env: &crate::Env, victim: &str) -> bool {
    let d = up_dynos(env, APP, "web");
    d.len() == 3 && d.iter().all(|d| d["node"]["name"] != victim)
}

/// Kills node `victim` under load through the routers of the others.
fn one_run(env: &mut crate::Env, victim: usize, names: &[String]) -> Result<Run> {
    let routers: Vec<String> = (0..env.len())
        .filter(|i| *i != victim)
        .map(|i| env.router(i).to_string())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
        let url = format!("{}/", routers[t % routers.len()]);
        threads.push(std::thread::spawn(move || {
            let Ok(c) = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).header("Host", "failover.localhost").send() {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes();
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        if let Ok(mut f) = failures.lock() {
                            f.push(Instant::now());
                        }
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    env.kill(victim)?;
    let whole = haven_testcluster::wait_until(Duration::from_secs(60), || {
        whole_without(env, &names[victim])
    });
    let replaced = killed.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if !whole {
        bail!("the formation was not whole 60 s after the kill");
    }
    let fails = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let window = match (fails.first(), fails.last()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    Ok(Run {
        replaced_s: replaced.as_secs_f64(),
        answered: answered.load(Ordering::Relaxed),
        failed: fails.len(),
        error_window_s: window.as_secs_f64(),
    })
}

/// `runs` kills, each of a node other than node 0 that runs a web dyno; the killed node
/// is restarted before the next run.
pub fn measure(runs: usize, progress: Progress<'_>) -> Result<Vec<Run>> {
    progress("failover: starting a 3-node cluster with web=3");
    let mut env = super::cluster(3, None);
    create_app(&env, APP)?;
    hctl(
        &env,
        0,
        &[
            "deploy",
            &fixture("router-app").to_string_lossy(),
            "-a",
            APP,
        ],
    )?;
    hctl(&env, 0, &["ps:scale", "web=3", "-a", APP])?;
    let mut out = Vec::new();
    for r in 0..runs {
        if !haven_testcluster::wait_until(Duration::from_secs(90), || {
            up_dynos(&env, APP, "web").len() == 3
        }) {
            bail!("three web dynos were not up within 90 s");
        }
        let names = node_names(&env);
        let dynos = up_dynos(&env, APP, "web");
        let victim = (1..env.len())
            .find(|i| {
                dynos
                    .iter()
                    .any(|d| d["node"]["name"] == names[*i].as_str())
            })
            .context("no node but node 0 runs a web dyno")?;
        let run = one_run(&mut env, victim, &names)?;
        progress(&format!(
            "failover: run {} of {runs}: node {victim} killed, formation whole after {:.2} s; {} requests answered, {} failed over {:.2} s",
            r + 1,
            run.replaced_s,
            run.answered,
            run.failed,
            run.error_window_s
        ));
        out.push(run);
        env.restart(victim)?;
        env.wait_ready(victim, Duration::from_secs(60))?;
    }
    env.down();
    Ok(out)
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let runs = measure(opts.pick(5, 3), progress)?;
    let mut times: Vec<f64> = runs.iter().map(|r| r.replaced_s).collect();
    let n = times.len();
    let med = median(&mut times);
    let answered: u64 = runs.iter().map(|r| r.answered).sum();
    let failed: usize = runs.iter().map(|r| r.failed).sum();
    let mut windows: Vec<f64> = runs.iter().map(|r| r.error_window_s).collect();
    Ok(vec![
        Row::new(
            "failover",
            "failover: SIGKILL of a node → its web dynos up elsewhere (median)",
            med,
            "s",
        )
        .target(Target::at_most(3.0))
        .note(format!(
            "{n} kills; each: {}",
            runs.iter()
                .map(|r| format!("{:.2}", r.replaced_s))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Row::new(
            "failover",
            "failover: error window through healthy routers during a kill (median)",
            median(&mut windows),
            "s",
        )
        .note(format!(
            "first to last failed request; {failed} failed and {answered} answered over {n} kills (4 clients retrying at once)"
        )),
    ])
}

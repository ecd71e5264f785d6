//! Issue 14's crash test: a node killed (SIGKILL of its process group, as a host's death)
//! at random points of a write loop, several times — followers and leaders alike, so
//! that some die between appending, applying and recording what they applied — loses
//! no acknowledged write and applies none twice: every acknowledged config var is on
//! every node, each write made exactly one release, and the nodes list the same history.
//! The seed is printed (`HAVEN_CRASH_SEED` replays a run's choice of victims and pauses).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_tests::{cluster, eventually, hctl, hctl_ok as ok};
use serde_json::{json, Value};

/// A small deterministic generator (xorshift), so that a run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn crashes_during_a_write_loop_lose_no_acknowledged_write_and_apply_none_twice() {
    let mut env = cluster(3);
    env.post_json(0, "/apps", &json!({ "name": "crashy" }))
        .unwrap();
    let seed = std::env::var("HAVEN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("HAVEN_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let apis: Vec<String> = (0..3).map(|i| env.api(i).to_string()).collect();
    let token = env.token().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/apps/crashy/config-vars", apis[(i % 3) as usize]);
                let ok = c
                    .patch(&url)
                    .bearer_auth(&token)
                    .header("Accept", "application/vnd.heroku+json; version=3")
                    .json(&json!({ format!("K{i}"): i.to_string() }))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().push(i);
                }
                i += 1;
            }
            i
        })
    };
    let count = |acked: &Arc<Mutex<Vec<u64>>>| acked.lock().unwrap().len();
    for round in 0..5 {
        // A random point of the loop: some writes in, then a random pause.
        let at = count(&acked) + 5 + rng.next(20) as usize;
        eventually("writes before the crash", Duration::from_secs(60), || {
            (count(&acked) >= at).then_some(())
        });
        std::thread::sleep(Duration::from_millis(rng.next(300)));
        let victim = rng.next(3) as usize;
        let leader = env.leader_index();
        eprintln!(
            "round {round}: killing node {victim}{} after {} acknowledged writes",
            if leader == Some(victim) {
                " (the leader)"
            } else {
                ""
            },
            count(&acked)
        );
        env.kill(victim).unwrap();
        // The two others go on (after an election when the leader died).
        let more = count(&acked) + 5;
        eventually(
            "writes while a node is down",
            Duration::from_secs(60),
            || (count(&acked) >= more).then_some(()),
        );
        env.restart(victim).unwrap();
        eventually(
            "the restarted node answers",
            Duration::from_secs(60),
            || env.status(victim).ok().map(|_| ()),
        );
    }
    let last = count(&acked) + 5;
    eventually(
        "writes after the last restart",
        Duration::from_secs(60),
        || (count(&acked) >= last).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let attempted = writer.join().unwrap();
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    eprintln!("{} of {attempted} writes acknowledged", acked.len());

    let mut histories = Vec::new();
    for i in 0..3 {
        // Every acknowledged write is there (the read waits at the read barrier).
        let config: Value = eventually(
            &format!("node {i} answers"),
            Duration::from_secs(30),
            || env.get_json(i, "/apps/crashy/config-vars").ok(),
        );
        for k in &acked {
            assert_eq!(
                config[format!("K{k}")],
                json!(k.to_string()),
                "node {i} lost the acknowledged write K{k} (seed {seed})"
            );
        }
        // Each write made one release: no description twice, versions without a gap.
        let out = ok(hctl(&env, i, &["releases", "-a", "crashy", "--json"]));
        let releases: Vec<Value> = serde_json::from_str(&out).unwrap();
        let mut versions: Vec<u64> = releases
            .iter()
            .map(|r| r["version"].as_u64().unwrap())
            .collect();
        versions.sort_unstable();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "node {i}: versions with gaps or twice (seed {seed})"
        );
        let descriptions: Vec<String> = releases
            .iter()
            .map(|r| r["description"].as_str().unwrap().to_string())
            .collect();
        let distinct: BTreeSet<&String> = descriptions.iter().collect();
        assert_eq!(
            distinct.len(),
            descriptions.len(),
            "node {i}: a write applied twice (seed {seed})"
        );
        // Writes that were not acknowledged may have applied once, never more.
        assert!(descriptions.len() as u64 <= attempted + 1);
        assert!(descriptions.len() > acked.len());
        let mut by_version: Vec<(u64, String)> = releases
            .iter()
            .map(|r| {
                (
                    r["version"].as_u64().unwrap(),
                    r["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        by_version.sort();
        histories.push(by_version);
    }
    assert_eq!(
        histories[0], histories[1],
        "nodes 0 and 1 differ (seed {seed})"
    );
    assert_eq!(
        histories[0], histories[2],
        "nodes 0 and 2 differ (seed {seed})"
    );
}

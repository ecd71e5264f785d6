//! The voter autopilot over a real 6-node cluster: a voter killed for longer than
//! `voter_replace_after_secs` gives its seat to the learner and leaves the membership,
//! writes go on, and the node, restarted, comes back as a learner with the writes it
//! missed.

use std::time::Duration;

use haven_tests::{eventually, hctl, hctl_ok as ok};
use serde_json::Value;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_dead_voter_gives_its_seat_to_a_learner_and_returns_as_a_learner() {
    let mut env = haven_tests::cluster_with(6, Some("[dynos]\nvoter_replace_after_secs = 2\n"));
    let st = env.get_json(0, "/cluster/status").unwrap();
    let (voters, learners) = (ids(&st["voters"]), ids(&st["learners"]));
    assert_eq!((voters.len(), learners.len()), (5, 1), "{st}");
    let learner = learners[0].clone();
    let leader = env.leader_index().unwrap();
    let victim = voters
        .iter()
        .map(|id| env.index_of(id).unwrap())
        .find(|i| *i != leader)
        .unwrap();
    let victim_id = env.node_id(victim).to_string();
    ok(hctl(&env, leader, &["apps:create", "keeps-writing"]));
    env.kill(victim).unwrap();

    eventually(
        "the learner to take the dead voter's seat",
        Duration::from_secs(60),
        || {
            let st = env.get_json(leader, "/cluster/status").ok()?;
            let (v, l) = (ids(&st["voters"]), ids(&st["learners"]));
            // Two membership changes: the seat moves, then the dead node leaves.
            (v.len() == 5
                && v.contains(&learner)
                && !v.contains(&victim_id)
                && !l.contains(&victim_id))
            .then_some(())
        },
    );
    // Writes go on with the new voters, through any live node.
    let writer = (0..6).find(|i| *i != victim && *i != leader).unwrap();
    ok(hctl(
        &env,
        writer,
        &["config:set", "AFTER_AUTOPILOT=1", "-a", "keeps-writing"],
    ));
    let events = env.get_json(leader, "/cluster/events").unwrap();
    let said: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "autopilot")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        said.iter()
            .any(|m| m.contains("autopilot removed") && m.contains("promoted")),
        "{said:?}"
    );

    let shown = ok(hctl(&env, leader, &["cluster:status"]));
    assert!(
        shown.contains("=== Autopilot") && shown.contains("promoted"),
        "{shown}"
    );
    let table = ok(hctl(&env, writer, &["cluster:events"]));
    assert!(table.contains("autopilot removed"), "{table}");

    // The node returns: it is a learner now, and has the write it missed.
    env.restart(victim).unwrap();
    eventually(
        "the returning node back as a learner",
        Duration::from_secs(90),
        || {
            let st = env.get_json(leader, "/cluster/status").ok()?;
            ids(&st["learners"]).contains(&victim_id).then_some(())
        },
    );
    eventually(
        "the missed write on the returning node",
        Duration::from_secs(60),
        || {
            let c = env
                .get_json(victim, "/apps/keeps-writing/config-vars")
                .ok()?;
            (c["AFTER_AUTOPILOT"] == "1").then_some(())
        },
    );
    let st = env.get_json(leader, "/cluster/status").unwrap();
    assert_eq!(ids(&st["voters"]).len(), 5, "{st}");
}

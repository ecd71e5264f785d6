//! Desired dynos against running ones: what the dyno manager must do. Pure.

use std::collections::HashMap;

use uuid::Uuid;

/// What the replicated state says about one dyno placed on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub id: Uuid,
    pub run: bool,
    pub restart_seq: u32,
    /// Whether this node's manager starts it (attached one-offs are started by their
    /// caller, and a finished one-off is not started again).
    pub managed: bool,
}

/// A dyno this node has a supervisor for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub id: Uuid,
    pub restart_seq: u32,
    /// The supervisor has ended.
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(Uuid),
    Restart(Uuid, u32),
    Stop(Uuid),
    /// The supervisor ended: drop it.
    Reap(Uuid),
    /// Stopped for good and not running: report it gone so the state forgets it.
    Forget(Uuid),
}

/// Desired against actual → actions. Pure.
pub fn reconcile(desired: &[Desired], actual: &[Actual]) -> Vec<Action> {
    let mut out = Vec::new();
    let actual_by: HashMap<Uuid, &Actual> = actual.iter().map(|a| (a.id, a)).collect();
    let desired_by: HashMap<Uuid, &Desired> = desired.iter().map(|d| (d.id, d)).collect();
    for a in actual {
        if a.finished {
            out.push(Action::Reap(a.id));
            continue;
        }
        match desired_by.get(&a.id) {
            Some(d) if d.run => {
                if d.restart_seq != a.restart_seq {
                    out.push(Action::Restart(a.id, d.restart_seq));
                }
            }
            _ => out.push(Action::Stop(a.id)),
        }
    }
    for d in desired {
        let running = actual_by.get(&d.id).is_some_and(|a| !a.finished);
        if d.run && d.managed && !actual_by.contains_key(&d.id) {
            out.push(Action::Start(d.id));
        }
        if !d.run && !running {
            out.push(Action::Forget(d.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn desired(n: u128, run: bool, seq: u32, managed: bool) -> Desired {
        Desired {
            id: id(n),
            run,
            restart_seq: seq,
            managed,
        }
    }

    fn actual(n: u128, seq: u32, finished: bool) -> Actual {
        Actual {
            id: id(n),
            restart_seq: seq,
            finished,
        }
    }

    #[test]
    fn reconcile_starts_stops_restarts_and_forgets() {
        let cases: Vec<(Vec<Desired>, Vec<Actual>, Vec<Action>)> = vec![
            (vec![], vec![], vec![]),
            (
                vec![desired(1, true, 0, true)],
                vec![],
                vec![Action::Start(id(1))],
            ),
            // Running as wanted: nothing.
            (
                vec![desired(1, true, 0, true)],
                vec![actual(1, 0, false)],
                vec![],
            ),
            // A restart asked.
            (
                vec![desired(1, true, 2, true)],
                vec![actual(1, 1, false)],
                vec![Action::Restart(id(1), 2)],
            ),
            // Asked to stop while running: stop, not yet forgotten.
            (
                vec![desired(1, false, 0, true)],
                vec![actual(1, 0, false)],
                vec![Action::Stop(id(1))],
            ),
            // Stopped and its supervisor ended: reap and forget.
            (
                vec![desired(1, false, 0, true)],
                vec![actual(1, 0, true)],
                vec![Action::Reap(id(1)), Action::Forget(id(1))],
            ),
            // Stopped and never ran here (e.g. moved while this node was down): forget.
            (
                vec![desired(1, false, 0, true)],
                vec![],
                vec![Action::Forget(id(1))],
            ),
            // Running but no longer in the state (app deleted): stop.
            (vec![], vec![actual(9, 0, false)], vec![Action::Stop(id(9))]),
            // Attached one-offs are started by their caller, not here.
            (vec![desired(1, true, 0, false)], vec![], vec![]),
            // A supervisor that ended while still wanted is reaped, then started again on
            // the next round.
            (
                vec![desired(1, true, 0, true)],
                vec![actual(1, 0, true)],
                vec![Action::Reap(id(1))],
            ),
        ];
        for (d, a, want) in cases {
            assert_eq!(reconcile(&d, &a), want, "desired {d:?} actual {a:?}");
        }
    }
}

//! A linearizability checker for one read/write register (the Wing & Gong search with
//! Lowe's memoization, as Knossos and Porcupine do it).
//!
//! A history is every operation on one key with its invoke and completion times as the
//! client saw them. A write whose outcome is unknown (timeout, connection reset after the
//! request went out) may have taken effect at any time after its invocation, or never:
//! it is given an infinite completion time. Failed writes (never sent) and reads without
//! an answer are left out by the caller: they constrain nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp {
    Write(String),
    /// The value read; `None`: the key was absent.
    Read(Option<String>),
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub invoke: Duration,
    /// `None`: the outcome is unknown (the write may or may not have happened).
    pub complete: Option<Duration>,
    pub op: RegOp,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order of the operations fits their times and a register's rules. `op` is the
    /// operation the deepest attempt could not place, after `placed` others.
    Violation {
        op: Op,
        placed: usize,
    },
    /// The search gave up after its step budget (too many concurrent unknown writes).
    Undecided,
}

/// Steps before the search gives up.
const STEP_BUDGET: u64 = 20_000_000;
const NIL: usize = usize::MAX;

/// Whether `ops` on a register that starts as `init` is linearizable.
pub fn check(init: Option<&str>, ops: &[Op]) -> Outcome {
    let m = ops.len();
    if m == 0 {
        return Outcome::Linearizable;
    }
    // Values as small integers: the memo keys stay cheap.
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |s: &str| -> u32 {
        if let Some(id) = ids.get(s) {
            return *id;
        }
        let id = ids.len() as u32;
        ids.insert(s.to_string(), id);
        id
    };
    let init = init.map(&mut intern);
    let steps: Vec<Step> = ops
        .iter()
        .map(|o| match &o.op {
            RegOp::Write(v) => Step::Write(intern(v)),
            RegOp::Read(v) => Step::Read(v.as_deref().map(&mut intern)),
        })
        .collect();

    // Entries 1..=2m in time order (a call before a return at the same instant: touching
    // operations count as concurrent); 0 is the list head.
    let mut events: Vec<(Duration, u8, usize)> = Vec::with_capacity(2 * m);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoke, 0, i));
        events.push((o.complete.unwrap_or(Duration::MAX), 1, i));
    }
    events.sort();
    let len = 2 * m + 1;
    let mut op_of = vec![0usize; len];
    let mut is_call = vec![false; len];
    let mut ret_of = vec![0usize; m];
    for (k, (_, kind, i)) in events.iter().enumerate() {
        op_of[k + 1] = *i;
        is_call[k + 1] = *kind == 0;
        if *kind == 1 {
            ret_of[*i] = k + 1;
        }
    }
    let mut next: Vec<usize> = (0..len)
        .map(|k| if k + 1 < len { k + 1 } else { NIL })
        .collect();
    let mut prev: Vec<usize> = (0..len).map(|k| k.wrapping_sub(1)).collect();
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = n;
        if n != NIL {
            prev[n] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = e;
        if n != NIL {
            prev[n] = e;
        }
    };

    let mut state = init;
    let mut placed = vec![0u64; m.div_ceil(64)];
    let mut memo: HashSet<(Vec<u64>, Option<u32>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u32>)> = Vec::new();
    let mut deepest: (usize, usize) = (0, 0);
    let mut entry = next[0];
    let mut budget = STEP_BUDGET;
    loop {
        if next[0] == NIL {
            return Outcome::Linearizable;
        }
        if budget == 0 {
            return Outcome::Undecided;
        }
        budget -= 1;
        if entry == NIL {
            // Unreachable for well-formed lists (the last entry is a return); answer
            // conservatively.
            return Outcome::Undecided;
        }
        let i = op_of[entry];
        if is_call[entry] {
            if let Some(after) = steps[i].apply(state) {
                placed[i / 64] |= 1 << (i % 64);
                if memo.insert((placed.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    lift(&mut next, &mut prev, entry);
                    lift(&mut next, &mut prev, ret_of[i]);
                    entry = next[0];
                    continue;
                }
                placed[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), i);
            }
            let Some((call, before)) = stack.pop() else {
                return Outcome::Violation {
                    op: ops[deepest.1].clone(),
                    placed: deepest.0,
                };
            };
            let j = op_of[call];
            state = before;
            placed[j / 64] &= !(1 << (j % 64));
            unlift(&mut next, &mut prev, ret_of[j]);
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    Write(u32),
    Read(Option<u32>),
}

impl Step {
    /// The register's state after this step from `state`, or `None` if it cannot happen.
    fn apply(self, state: Option<u32>) -> Option<Option<u32>> {
        match self {
            Step::Write(v) => Some(Some(v)),
            Step::Read(v) => (v == state).then_some(state),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn w(v: &str, a: u64, b: u64) -> Op {
        Op {
            invoke: ms(a),
            complete: Some(ms(b)),
            op: RegOp::Write(v.into()),
        }
    }
    fn w_unknown(v: &str, a: u64) -> Op {
        Op {
            invoke: ms(a),
            complete: None,
            op: RegOp::Write(v.into()),
        }
    }
    fn r(v: Option<&str>, a: u64, b: u64) -> Op {
        Op {
            invoke: ms(a),
            complete: Some(ms(b)),
            op: RegOp::Read(v.map(str::to_string)),
        }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            r(None, 0, 1),
            w("a", 2, 3),
            r(Some("a"), 4, 5),
            w("b", 6, 7),
            r(Some("b"), 8, 9),
        ];
        assert_eq!(check(None, &h), Outcome::Linearizable);
        assert_eq!(
            check(Some("x"), &[r(Some("x"), 0, 1)]),
            Outcome::Linearizable
        );
        assert_eq!(check(None, &[]), Outcome::Linearizable);
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        // b was acknowledged before the read began, yet the read saw a.
        let h = [w("a", 0, 1), w("b", 2, 3), r(Some("a"), 4, 5)];
        match check(None, &h) {
            Outcome::Violation { op, .. } => assert_eq!(op, r(Some("a"), 4, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lost_write_is_a_violation() {
        // An acknowledged write that a later read does not see.
        let h = [w("a", 0, 1), r(None, 2, 3)];
        assert!(matches!(check(None, &h), Outcome::Violation { .. }));
        // Also when an older value comes back after the newer one was seen.
        let h = [
            w("a", 0, 1),
            w("b", 2, 3),
            r(Some("b"), 4, 5),
            r(Some("a"), 6, 7),
        ];
        assert!(matches!(check(None, &h), Outcome::Violation { .. }));
    }

    #[test]
    fn concurrent_operations_may_go_either_way_but_not_back() {
        // The write overlaps both reads: old value then new value fits.
        let h = [w("a", 0, 10), r(None, 1, 2), r(Some("a"), 3, 4)];
        assert_eq!(check(None, &h), Outcome::Linearizable);
        // New then old does not: a write cannot be undone.
        let h = [w("a", 0, 10), r(Some("a"), 1, 2), r(None, 3, 4)];
        assert!(matches!(check(None, &h), Outcome::Violation { .. }));
        // Two overlapping writes may land in either order.
        let h = [w("a", 0, 5), w("b", 1, 6), r(Some("a"), 7, 8)];
        assert_eq!(check(None, &h), Outcome::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_land_late_or_never() {
        let late = [
            w("a", 0, 1),
            w_unknown("b", 2),
            r(Some("a"), 10, 11),
            r(Some("b"), 20, 21),
        ];
        assert_eq!(check(None, &late), Outcome::Linearizable);
        let never = [w("a", 0, 1), w_unknown("b", 2), r(Some("a"), 10, 11)];
        assert_eq!(check(None, &never), Outcome::Linearizable);
        // But it lands once: b, then a again, is impossible with one write of each.
        let twice = [
            w("a", 0, 1),
            w_unknown("b", 2),
            r(Some("b"), 10, 11),
            r(Some("a"), 12, 13),
        ];
        assert!(matches!(check(None, &twice), Outcome::Violation { .. }));
    }

    /// Histories of a correct register (every op takes effect at a random instant inside
    /// its interval) pass; adding a read of an overwritten value at the end fails.
    #[test]
    fn random_histories_of_a_real_register_pass_and_a_stale_read_fails() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
        for round in 0..40 {
            let mut ops = Vec::new();
            let mut effects: Vec<(u64, usize)> = Vec::new(); // (instant, op index)
            for c in 0..4u64 {
                let mut t = rng.gen_range(0..5u64);
                for k in 0..30 {
                    let len = rng.gen_range(1..20u64);
                    let at = t + rng.gen_range(0..=len);
                    let op = if rng.gen_bool(0.5) {
                        RegOp::Write(format!("c{c}-{k}"))
                    } else {
                        RegOp::Read(None) // filled in below
                    };
                    effects.push((at * 8 + c, ops.len()));
                    ops.push(Op {
                        invoke: ms(t),
                        complete: Some(ms(t + len)),
                        op,
                    });
                    t += len + rng.gen_range(1..5u64);
                }
            }
            effects.sort();
            let mut value: Option<String> = None;
            for (_, i) in &effects {
                match &mut ops[*i].op {
                    RegOp::Write(v) => value = Some(v.clone()),
                    RegOp::Read(v) => *v = value.clone(),
                }
            }
            assert_eq!(check(None, &ops), Outcome::Linearizable, "round {round}");
            // A write that another write followed in real time cannot be the last one:
            // reading it after everything completed is impossible.
            let writes: Vec<&Op> = ops
                .iter()
                .filter(|o| matches!(o.op, RegOp::Write(_)))
                .collect();
            let overwritten = writes
                .iter()
                .find(|a| writes.iter().any(|b| b.invoke > a.complete.unwrap()));
            let Some(old) = overwritten else { continue };
            let RegOp::Write(v) = &old.op else { continue };
            let end = ops.iter().filter_map(|o| o.complete).max().unwrap();
            let mut bad = ops.clone();
            bad.push(Op {
                invoke: end + ms(1),
                complete: Some(end + ms(2)),
                op: RegOp::Read(Some(v.clone())),
            });
            assert!(
                matches!(check(None, &bad), Outcome::Violation { .. }),
                "round {round}"
            );
        }
    }
}

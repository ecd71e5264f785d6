//! Table-driven cases for [`plan`], and a randomized convergence check.

use super::*;

fn node(id: NodeId, memory_mb: u64) -> NodeView {
    NodeView {
        id,
        name: format!("node-{id}"),
        memory_mb,
        status: NodeStatus::Up,
        labels: BTreeMap::new(),
        slugs: BTreeSet::new(),
    }
}

fn with_status(mut n: NodeView, s: NodeStatus) -> NodeView {
    n.status = s;
    n
}

fn holding(mut n: NodeView) -> NodeView {
    n.slugs.insert("sha-a".into());
    n
}

fn form(app: &str, t: &str, quantity: u32, size: &str, release: u64) -> FormationView {
    FormationView {
        app: app.into(),
        process_type: t.into(),
        quantity,
        size: size.into(),
        release,
        slug: Some(format!("sha-{app}")),
    }
}

fn dyno(
    id: &str,
    app: &str,
    t: &str,
    index: u32,
    release: u64,
    node: NodeId,
    state: DynoState,
) -> DynoView {
    DynoView {
        id: id.into(),
        app: app.into(),
        process_type: t.into(),
        index,
        release,
        size: "standard-1x".into(),
        node,
        state,
        stopping: false,
        one_off: false,
    }
}

fn stopping(mut d: DynoView) -> DynoView {
    d.stopping = true;
    d
}

fn sized(mut d: DynoView, size: &str) -> DynoView {
    d.size = size.into();
    d
}

fn one_off(mut d: DynoView) -> DynoView {
    d.one_off = true;
    d
}

use DynoState::{Crashed, Starting, Up};

fn start(t: &str, index: u32, release: u64, node: NodeId, replaces: Option<&str>) -> Change {
    Change::Start {
        app: "a".into(),
        process_type: t.into(),
        index,
        release,
        size: "standard-1x".into(),
        node,
        replaces: replaces.map(str::to_string),
    }
}

fn stop(id: &str, reason: StopReason) -> Change {
    Change::Stop {
        dyno: id.into(),
        reason,
    }
}

struct Case {
    name: &'static str,
    nodes: Vec<NodeView>,
    formations: Vec<FormationView>,
    dynos: Vec<DynoView>,
    changes: Vec<Change>,
    /// Substrings of the unplaced reasons, in order.
    unplaced: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    use StopReason::*;
    let web = |q| form("a", "web", q, "standard-1x", 2);
    vec![
        Case {
            name: "nothing to do",
            nodes: vec![node(1, 1024)],
            formations: vec![],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "three web dynos spread over three nodes",
            nodes: vec![node(1, 4096), node(2, 4096), node(3, 4096)],
            formations: vec![web(3)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 2, 1, None),
                start("web", 2, 2, 2, None),
                start("web", 3, 2, 3, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "more dynos than nodes: spread evenly",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(3)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 2, 1, None),
                start("web", 2, 2, 2, None),
                start("web", 3, 2, 1, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "a node holding the slug wins a tie",
            nodes: vec![node(1, 4096), holding(node(2, 4096))],
            formations: vec![form("a", "web", 1, "standard-1x", 2)],
            dynos: vec![],
            changes: vec![start("web", 1, 2, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "spread beats holding the slug",
            nodes: vec![holding(node(1, 4096)), node(2, 4096)],
            formations: vec![web(2)],
            dynos: vec![dyno("d1", "a", "web", 1, 2, 1, Up)],
            changes: vec![start("web", 2, 2, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "most free memory breaks the next tie",
            nodes: vec![node(1, 2048), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![],
            changes: vec![start("web", 1, 2, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "scale down stops the highest indices",
            nodes: vec![node(1, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("d1", "a", "web", 1, 2, 1, Up),
                dyno("d2", "a", "web", 2, 2, 1, Up),
                dyno("d3", "a", "web", 3, 2, 1, Up),
            ],
            changes: vec![stop("d2", ScaledDown), stop("d3", ScaledDown)],
            unplaced: vec![],
        },
        Case {
            name: "scale to zero stops everything",
            nodes: vec![node(1, 4096)],
            formations: vec![web(0)],
            dynos: vec![dyno("d1", "a", "web", 1, 2, 1, Up)],
            changes: vec![stop("d1", ScaledDown)],
            unplaced: vec![],
        },
        Case {
            name: "a process type gone from the formation is orphaned",
            nodes: vec![node(1, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("d1", "a", "web", 1, 2, 1, Up),
                dyno("w1", "a", "worker", 1, 2, 1, Up),
            ],
            changes: vec![stop("w1", Orphaned)],
            unplaced: vec![],
        },
        Case {
            name: "an app gone is orphaned",
            nodes: vec![node(1, 4096)],
            formations: vec![],
            dynos: vec![dyno("d1", "gone", "web", 1, 2, 1, Up)],
            changes: vec![stop("d1", Orphaned)],
            unplaced: vec![],
        },
        Case {
            name: "a cluster matching its formations needs nothing",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(2)],
            dynos: vec![
                dyno("d1", "a", "web", 1, 2, 1, Up),
                dyno("d2", "a", "web", 2, 2, 2, Starting),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "a new release starts a replacement beside the running dyno",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![dyno("old", "a", "web", 1, 1, 1, Up)],
            changes: vec![start("web", 1, 2, 2, Some("old"))],
            unplaced: vec![],
        },
        Case {
            name: "while the replacement starts, nothing stops",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("old", "a", "web", 1, 1, 1, Up),
                dyno("new", "a", "web", 1, 2, 2, Starting),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "once the replacement is up, the old dyno stops",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("old", "a", "web", 1, 1, 1, Up),
                dyno("new", "a", "web", 1, 2, 2, Up),
            ],
            changes: vec![stop("old", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "a crashed replacement leaves the old dyno running",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("old", "a", "web", 1, 1, 1, Up),
                dyno("new", "a", "web", 1, 2, 2, Crashed),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "a size change rolls like a release",
            nodes: vec![node(1, 4096)],
            formations: vec![form("a", "web", 1, "standard-2x", 2)],
            dynos: vec![dyno("old", "a", "web", 1, 2, 1, Up)],
            changes: vec![Change::Start {
                app: "a".into(),
                process_type: "web".into(),
                index: 1,
                release: 2,
                size: "standard-2x".into(),
                node: 1,
                replaces: Some("old".into()),
            }],
            unplaced: vec![],
        },
        Case {
            name: "a dyno on a down node stops and starts elsewhere",
            nodes: vec![with_status(node(1, 4096), NodeStatus::Down), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![dyno("lost", "a", "web", 1, 2, 1, Up)],
            changes: vec![stop("lost", NodeDown), start("web", 1, 2, 2, Some("lost"))],
            unplaced: vec![],
        },
        Case {
            name: "a returning node's stopped dynos still use memory but never count",
            nodes: vec![node(1, 1024), node(2, 1024)],
            formations: vec![web(2)],
            dynos: vec![
                stopping(dyno("lost", "a", "web", 1, 2, 1, Up)),
                dyno("d1", "a", "web", 1, 2, 2, Up),
                dyno("d2", "a", "web", 2, 2, 2, Up),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "a draining node's dyno moves: replacement first",
            nodes: vec![
                with_status(node(1, 4096), NodeStatus::Draining),
                node(2, 4096),
            ],
            formations: vec![web(1)],
            dynos: vec![dyno("d1", "a", "web", 1, 2, 1, Up)],
            changes: vec![start("web", 1, 2, 2, Some("d1"))],
            unplaced: vec![],
        },
        Case {
            name: "a draining node's dyno stops once its replacement is up",
            nodes: vec![
                with_status(node(1, 4096), NodeStatus::Draining),
                node(2, 4096),
            ],
            formations: vec![web(1)],
            dynos: vec![
                dyno("d1", "a", "web", 1, 2, 1, Up),
                dyno("d2", "a", "web", 1, 2, 2, Up),
            ],
            changes: vec![stop("d1", Drained)],
            unplaced: vec![],
        },
        Case {
            name: "a draining node's dyno with nowhere to go stays",
            nodes: vec![with_status(node(1, 4096), NodeStatus::Draining)],
            formations: vec![web(1)],
            dynos: vec![dyno("d1", "a", "web", 1, 2, 1, Up)],
            changes: vec![],
            unplaced: vec!["every node that is up is draining"],
        },
        Case {
            name: "no room: the reason names the size and the best node",
            nodes: vec![node(1, 768), node(2, 512)],
            formations: vec![form("a", "web", 1, "standard-2x", 2)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![
                "no node has 1024 MiB free for a standard-2x dyno; most free: 768 MiB on node-1",
            ],
        },
        Case {
            name: "performance-l fits nowhere small",
            nodes: vec![node(1, 8192), node(2, 8192)],
            formations: vec![form("a", "web", 1, "performance-l", 2)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec!["14336 MiB"],
        },
        Case {
            name: "one-off dynos use memory",
            nodes: vec![node(1, 512), node(2, 512)],
            formations: vec![web(1)],
            dynos: vec![one_off(dyno("run", "a", "run", 4821, 2, 1, Up))],
            changes: vec![start("web", 1, 2, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "one-offs are never stopped by the plan",
            nodes: vec![node(1, 4096)],
            formations: vec![],
            dynos: vec![one_off(dyno("run", "a", "run", 4821, 2, 1, Up))],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "an unknown size is reported",
            nodes: vec![node(1, 4096)],
            formations: vec![form("a", "web", 1, "giant", 2)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec!["dyno size \"giant\" is unknown"],
        },
        Case {
            name: "no node up",
            nodes: vec![with_status(node(1, 4096), NodeStatus::Down)],
            formations: vec![web(1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec!["no node is up"],
        },
        Case {
            name: "an app without a slug has nothing to run",
            nodes: vec![node(1, 4096)],
            formations: vec![FormationView {
                slug: None,
                ..web(1)
            }],
            dynos: vec![],
            changes: vec![],
            unplaced: vec!["no slug yet"],
        },
        Case {
            name: "a roll without room stops the old dyno first",
            nodes: vec![node(1, 512)],
            formations: vec![web(1)],
            dynos: vec![dyno("old", "a", "web", 1, 1, 1, Up)],
            changes: vec![stop("old", Replaced)],
            unplaced: vec!["stops first to make room"],
        },
        Case {
            name: "a crashed dyno on an up node stays where it is",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![dyno("d1", "a", "web", 1, 2, 1, Crashed)],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "two current dynos of one index: one stops",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![web(1)],
            dynos: vec![
                dyno("d1", "a", "web", 1, 2, 1, Up),
                dyno("d2", "a", "web", 1, 2, 2, Up),
            ],
            changes: vec![stop("d2", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "starts in one plan count against memory",
            nodes: vec![node(1, 1024)],
            formations: vec![web(3)],
            dynos: vec![],
            changes: vec![start("web", 1, 2, 1, None), start("web", 2, 2, 1, None)],
            unplaced: vec!["no node has 512 MiB free"],
        },
        Case {
            name: "stopping dynos on up nodes still use memory",
            nodes: vec![node(1, 512), node(2, 1024)],
            formations: vec![web(1)],
            dynos: vec![stopping(sized(
                dyno("x", "a", "web", 7, 1, 2, Up),
                "standard-2x",
            ))],
            changes: vec![start("web", 1, 2, 1, None)],
            unplaced: vec![],
        },
    ]
}

fn input(c: &Case) -> Input {
    Input {
        nodes: c.nodes.clone(),
        formations: c.formations.clone(),
        dynos: c.dynos.clone(),
    }
}

#[test]
fn table() {
    let all = cases();
    assert!(all.len() >= 30);
    for c in &all {
        let p = plan(&input(c));
        assert_eq!(p.changes, c.changes, "case: {}", c.name);
        assert_eq!(
            p.unplaced.len(),
            c.unplaced.len(),
            "case: {}: {:?}",
            c.name,
            p.unplaced
        );
        for (u, want) in p.unplaced.iter().zip(&c.unplaced) {
            assert!(
                u.reason.contains(want),
                "case: {}: {:?} lacks {want:?}",
                c.name,
                u.reason
            );
        }
    }
}

/// A small deterministic generator (no dependency, same sequence every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn input_order_does_not_change_the_plan() {
    let mut rng = Lcg(7);
    for c in cases() {
        let base = plan(&input(&c));
        for _ in 0..5 {
            let mut i = input(&c);
            let n = i.nodes.len();
            for k in (1..n).rev() {
                i.nodes.swap(k, rng.next(k as u64 + 1) as usize);
            }
            let n = i.formations.len();
            for k in (1..n).rev() {
                i.formations.swap(k, rng.next(k as u64 + 1) as usize);
            }
            let n = i.dynos.len();
            for k in (1..n).rev() {
                i.dynos.swap(k, rng.next(k as u64 + 1) as usize);
            }
            assert_eq!(plan(&i), base, "case {}", c.name);
        }
    }
}

/// Applies a plan as the agents would: starts become starting dynos, stops are removed.
fn apply(i: &mut Input, p: &Plan, next_id: &mut u64) {
    for c in &p.changes {
        match c {
            Change::Start {
                app,
                process_type,
                index,
                release,
                size,
                node,
                ..
            } => {
                *next_id += 1;
                i.dynos.push(DynoView {
                    id: format!("n{next_id:05}"),
                    app: app.clone(),
                    process_type: process_type.clone(),
                    index: *index,
                    release: *release,
                    size: size.clone(),
                    node: *node,
                    state: Starting,
                    stopping: false,
                    one_off: false,
                });
            }
            Change::Stop { dyno, .. } => i.dynos.retain(|d| &d.id != dyno),
        }
    }
}

fn check_memory(i: &Input) {
    for n in i.nodes.iter().filter(|n| n.status != NodeStatus::Down) {
        let used: u64 = i
            .dynos
            .iter()
            .filter(|d| d.node == n.id)
            .map(|d| mem(&d.size))
            .sum();
        assert!(
            used <= n.memory_mb,
            "node {} over its memory: {used} > {}",
            n.id,
            n.memory_mb
        );
    }
}

#[test]
fn random_clusters_converge_to_exactly_the_formation_within_memory() {
    let sizes = ["standard-1x", "standard-2x", "performance-m"];
    let mut rng = Lcg(42);
    for round in 0..300 {
        let nodes: Vec<NodeView> = (1..=1 + rng.next(5))
            .map(|id| node(id, 512 * (1 + rng.next(8))))
            .collect();
        let mut i = Input {
            nodes,
            formations: Vec::new(),
            dynos: Vec::new(),
        };
        for a in 0..1 + rng.next(3) {
            for t in ["web", "worker"] {
                if rng.next(2) == 0 {
                    i.formations.push(form(
                        &format!("app{a}"),
                        t,
                        rng.next(5) as u32,
                        sizes[rng.next(3) as usize],
                        1 + rng.next(2),
                    ));
                }
            }
        }
        let mut next_id = 0;
        // Converge, then change the world (a release, a node down) and converge again.
        for phase in 0..3 {
            if phase == 1 {
                for f in &mut i.formations {
                    f.release += 1;
                }
            }
            if phase == 2 && i.nodes.len() > 1 {
                let k = rng.next(i.nodes.len() as u64) as usize;
                i.nodes[k].status = NodeStatus::Down;
                let dead = i.nodes[k].id;
                i.dynos.retain(|d| d.node != dead || !d.stopping);
            }
            let mut settled = false;
            for _ in 0..20 {
                let p = plan(&i);
                if p.changes.is_empty() {
                    settled = true;
                    // Exactly the wanted quantity runs, minus what cannot be placed.
                    for f in &i.formations {
                        let running = i
                            .dynos
                            .iter()
                            .filter(|d| {
                                d.app == f.app
                                    && d.process_type == f.process_type
                                    && !d.stopping
                                    && i.nodes
                                        .iter()
                                        .any(|n| n.id == d.node && n.status != NodeStatus::Down)
                            })
                            .count() as u32;
                        let missing = p
                            .unplaced
                            .iter()
                            .filter(|u| u.app == f.app && u.process_type == f.process_type)
                            .count() as u32;
                        assert_eq!(
                            running + missing,
                            f.quantity,
                            "round {round} phase {phase}: {f:?}\n{:?}",
                            i.dynos
                        );
                    }
                    break;
                }
                apply(&mut i, &p, &mut next_id);
                // Dynos on down nodes are gone for memory; the rest boot.
                for d in &mut i.dynos {
                    d.state = Up;
                }
                check_memory(&i);
                // Stopped dynos of the down node go away when it is dropped.
                let down: Vec<NodeId> = i
                    .nodes
                    .iter()
                    .filter(|n| n.status == NodeStatus::Down)
                    .map(|n| n.id)
                    .collect();
                i.dynos.retain(|d| !down.contains(&d.node) || !d.stopping);
            }
            assert!(settled, "round {round} phase {phase} did not converge");
        }
    }
}

#[test]
fn sizes_have_heroku_memory() {
    assert_eq!(size_memory_mb("eco"), Some(512));
    assert_eq!(size_memory_mb("basic"), Some(512));
    assert_eq!(size_memory_mb("standard-1x"), Some(512));
    assert_eq!(size_memory_mb("standard-2x"), Some(1024));
    assert_eq!(size_memory_mb("performance-m"), Some(2560));
    assert_eq!(size_memory_mb("performance-l"), Some(14336));
    assert_eq!(size_memory_mb("huge"), None);
}

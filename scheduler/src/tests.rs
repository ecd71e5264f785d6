//! Table-driven cases for the rules, plus simulations that apply plans until they are
//! empty over seeded random clusters.

use super::*;

const S1: &str = "standard-1x";
const S2: &str = "standard-2x";
const APP: &str = "app";

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

fn with_status(n: NodeView, status: NodeStatus) -> NodeView {
    NodeView { status, ..n }
}

fn holding(mut n: NodeView, slug: &str) -> NodeView {
    n.slugs.insert(slug.to_owned());
    n
}

fn slug(release: u64) -> String {
    format!("sha-{APP}-v{release}")
}

fn form(process_type: &str, quantity: u32, size: &str, release: u64) -> FormationView {
    FormationView {
        app: APP.to_owned(),
        process_type: process_type.to_owned(),
        quantity,
        size: size.to_owned(),
        release,
        slug: Some(slug(release)),
    }
}

/// An `Up` standard-1x dyno of [`APP`].
fn dyno(id: &str, process_type: &str, index: u32, release: u64, node: NodeId) -> DynoView {
    DynoView {
        id: id.to_owned(),
        app: APP.to_owned(),
        process_type: process_type.to_owned(),
        index,
        release,
        size: S1.to_owned(),
        node,
        state: DynoState::Up,
        stopping: false,
        one_off: false,
    }
}

fn in_state(d: DynoView, state: DynoState) -> DynoView {
    DynoView { state, ..d }
}

fn stopping(d: DynoView) -> DynoView {
    DynoView {
        stopping: true,
        ..d
    }
}

fn one_off(d: DynoView, size: &str) -> DynoView {
    DynoView {
        one_off: true,
        size: size.to_owned(),
        ..d
    }
}

fn start(
    process_type: &str,
    index: u32,
    release: u64,
    size: &str,
    node: NodeId,
    replaces: Option<&str>,
) -> Change {
    Change::Start {
        app: APP.to_owned(),
        process_type: process_type.to_owned(),
        index,
        release,
        size: size.to_owned(),
        node,
        replaces: replaces.map(str::to_owned),
    }
}

fn stop(dyno: &str, reason: StopReason) -> Change {
    Change::Stop {
        dyno: dyno.to_owned(),
        reason,
    }
}

fn three_nodes() -> Vec<NodeView> {
    vec![node(1, 4096), node(2, 4096), node(3, 4096)]
}

struct Case {
    name: &'static str,
    nodes: Vec<NodeView>,
    formations: Vec<FormationView>,
    dynos: Vec<DynoView>,
    changes: Vec<Change>,
    /// (process type, index, text the reason must contain)
    unplaced: Vec<(&'static str, u32, &'static str)>,
}

fn cases() -> Vec<Case> {
    use DynoState::{Crashed, Starting};
    use NodeStatus::{Down, Draining};
    use StopReason::*;
    vec![
        Case {
            name: "fresh scale-up spreads over 3 nodes",
            nodes: three_nodes(),
            formations: vec![form("web", 3, S1, 1)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 1, S1, 1, None),
                start("web", 2, 1, S1, 2, None),
                start("web", 3, 1, S1, 3, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "fresh scale-up of 5 wraps round the nodes",
            nodes: three_nodes(),
            formations: vec![form("web", 5, S1, 1)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 1, S1, 1, None),
                start("web", 2, 1, S1, 2, None),
                start("web", 3, 1, S1, 3, None),
                start("web", 4, 1, S1, 1, None),
                start("web", 5, 1, S1, 2, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "two process types spread independently, tie broken by free memory",
            nodes: three_nodes(),
            formations: vec![form("worker", 2, S1, 1), form("web", 2, S1, 1)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 1, S1, 1, None),
                start("web", 2, 1, S1, 2, None),
                start("worker", 1, 1, S1, 3, None),
                start("worker", 2, 1, S1, 1, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "scale up keeps existing dynos where they are",
            nodes: three_nodes(),
            formations: vec![form("web", 3, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 2)],
            changes: vec![
                start("web", 2, 1, S1, 1, None),
                start("web", 3, 1, S1, 3, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "scale down stops the highest indices first",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                dyno("d2", "web", 2, 1, 2),
                dyno("d3", "web", 3, 1, 3),
            ],
            changes: vec![stop("d3", ScaledDown), stop("d2", ScaledDown)],
            unplaced: vec![],
        },
        Case {
            name: "scale to 0 stops all",
            nodes: three_nodes(),
            formations: vec![form("web", 0, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 2)],
            changes: vec![stop("d2", ScaledDown), stop("d1", ScaledDown)],
            unplaced: vec![],
        },
        Case {
            name: "a state that matches the formation gives an empty plan",
            nodes: three_nodes(),
            formations: vec![form("web", 2, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 1)],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "size change starts the new size next to the old one",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S2, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1)],
            changes: vec![start("web", 1, 1, S2, 2, Some("d1"))],
            unplaced: vec![],
        },
        Case {
            name: "size change: once the new size is up the old one stops",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S2, 1)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                DynoView {
                    size: S2.to_owned(),
                    ..dyno("d2", "web", 1, 1, 2)
                },
            ],
            changes: vec![stop("d1", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "new release rolls: starts first, no stop",
            nodes: three_nodes(),
            formations: vec![form("web", 2, S1, 2)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 2)],
            changes: vec![
                start("web", 1, 2, S1, 3, Some("d1")),
                start("web", 2, 2, S1, 1, Some("d2")),
            ],
            unplaced: vec![],
        },
        Case {
            name: "rolling: nothing while the new dyno is starting",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 2)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                in_state(dyno("d2", "web", 1, 2, 2), Starting),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "rolling: the new dyno is up, the old one stops",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 2)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 1, 2, 2)],
            changes: vec![stop("d1", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "rolling: the new dyno crashed, the old one keeps running",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 2)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                in_state(dyno("d2", "web", 1, 2, 2), Crashed),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "a crashed dyno on an up node stays where it is",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![in_state(dyno("d1", "web", 1, 1, 1), Crashed)],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "node down: stop NodeDown and start elsewhere, spread kept",
            nodes: vec![
                with_status(node(1, 4096), Down),
                node(2, 4096),
                node(3, 4096),
            ],
            formations: vec![form("web", 2, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 2)],
            changes: vec![
                stop("d1", NodeDown),
                start("web", 1, 1, S1, 3, Some("d1")),
            ],
            unplaced: vec![],
        },
        Case {
            name: "a crashed dyno on a down node moves",
            nodes: vec![with_status(node(1, 4096), Down), node(2, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![in_state(dyno("d1", "web", 1, 1, 1), Crashed)],
            changes: vec![
                stop("d1", NodeDown),
                start("web", 1, 1, S1, 2, Some("d1")),
            ],
            unplaced: vec![],
        },
        Case {
            name: "a dyno on a node missing from the input counts as on a down node",
            nodes: vec![node(1, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 9)],
            changes: vec![
                stop("d1", NodeDown),
                start("web", 1, 1, S1, 1, Some("d1")),
            ],
            unplaced: vec![],
        },
        Case {
            name: "node back up: its stopping dyno does not count but no more than quantity run",
            nodes: vec![node(1, 4096), node(2, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![stopping(dyno("d1", "web", 1, 1, 1)), dyno("d2", "web", 1, 1, 2)],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "node back up: its stopping dyno still uses memory",
            nodes: vec![node(1, 1024), node(2, 1024)],
            formations: vec![form("web", 4, S1, 1)],
            dynos: vec![
                stopping(dyno("d1", "web", 1, 1, 1)),
                dyno("d2", "web", 1, 1, 2),
                dyno("d3", "web", 2, 1, 2),
            ],
            changes: vec![start("web", 3, 1, S1, 1, None)],
            unplaced: vec![(
                "web",
                4,
                "no node has 512 MiB free for a standard-1x dyno (largest free: 0 MiB on node-1)",
            )],
        },
        Case {
            name: "draining: the replacement starts elsewhere first",
            nodes: vec![
                with_status(node(1, 4096), Draining),
                node(2, 4096),
                node(3, 4096),
            ],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1)],
            changes: vec![start("web", 1, 1, S1, 2, Some("d1"))],
            unplaced: vec![],
        },
        Case {
            name: "draining: nothing while the replacement is starting",
            nodes: vec![with_status(node(1, 4096), Draining), node(2, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                in_state(dyno("d2", "web", 1, 1, 2), Starting),
            ],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "draining: the replacement is up, the old dyno stops Drained",
            nodes: vec![with_status(node(1, 4096), Draining), node(2, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 1, 1, 2)],
            changes: vec![stop("d1", Drained)],
            unplaced: vec![],
        },
        Case {
            name: "draining with nowhere to go keeps the dyno and says why",
            nodes: vec![with_status(node(1, 4096), Draining), node(2, 512)],
            formations: vec![form("web", 2, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 2)],
            changes: vec![],
            unplaced: vec![(
                "web",
                1,
                "web.1 stays on draining node node-1: no node has 512 MiB free",
            )],
        },
        Case {
            name: "all nodes draining",
            nodes: vec![
                with_status(node(1, 4096), Draining),
                with_status(node(2, 4096), Draining),
            ],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![("web", 1, "all nodes are draining")],
        },
        Case {
            name: "no node up",
            nodes: vec![
                with_status(node(1, 4096), Down),
                with_status(node(2, 4096), Down),
            ],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![("web", 1, "no node is up (2 down)")],
        },
        Case {
            name: "no node up, some draining",
            nodes: vec![
                with_status(node(1, 4096), Down),
                with_status(node(2, 4096), Draining),
            ],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![("web", 1, "no node is up (1 down, 1 draining)")],
        },
        Case {
            name: "no nodes at all",
            nodes: vec![],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![("web", 1, "no nodes in the cluster")],
        },
        Case {
            name: "capacity exhaustion places what fits and names the size",
            nodes: vec![node(1, 1024), node(2, 1024)],
            formations: vec![form("web", 5, S1, 1)],
            dynos: vec![],
            changes: vec![
                start("web", 1, 1, S1, 1, None),
                start("web", 2, 1, S1, 2, None),
                start("web", 3, 1, S1, 1, None),
                start("web", 4, 1, S1, 2, None),
            ],
            unplaced: vec![(
                "web",
                5,
                "no node has 512 MiB free for a standard-1x dyno (largest free: 0 MiB on node-1)",
            )],
        },
        Case {
            name: "a standard-2x that does not fit names the largest free memory",
            nodes: vec![node(1, 1024), node(2, 1024)],
            formations: vec![form("web", 1, S2, 1)],
            dynos: vec![
                one_off(dyno("r1", "run", 1, 1, 1), S2),
                one_off(dyno("r2", "run", 2, 1, 2), S1),
            ],
            changes: vec![],
            unplaced: vec![(
                "web",
                1,
                "no node has 1024 MiB free for a standard-2x dyno (largest free: 512 MiB on node-2)",
            )],
        },
        Case {
            name: "a performance-l fits nowhere",
            nodes: vec![node(1, 8192), node(2, 8192)],
            formations: vec![form("web", 1, "performance-l", 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![(
                "web",
                1,
                "no node has 14336 MiB free for a performance-l dyno (largest free: 8192 MiB on \
                 node-1); no node that is up is that large (largest: 8192 MiB on node-1)",
            )],
        },
        Case {
            name: "a node holding the slug is preferred",
            nodes: vec![node(1, 4096), holding(node(2, 4096), &slug(1))],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![start("web", 1, 1, S1, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "spread beats the slug",
            nodes: vec![node(1, 4096), holding(node(2, 4096), &slug(1))],
            formations: vec![form("web", 2, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 2)],
            changes: vec![start("web", 2, 1, S1, 1, None)],
            unplaced: vec![],
        },
        Case {
            name: "the slug beats free memory",
            nodes: vec![node(1, 8192), holding(node(2, 2048), &slug(1))],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![start("web", 1, 1, S1, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "the most free memory wins over a lower id",
            nodes: vec![node(1, 2048), node(2, 8192)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![],
            changes: vec![start("web", 1, 1, S1, 2, None)],
            unplaced: vec![],
        },
        Case {
            name: "one-off dynos use memory and are never stopped",
            nodes: vec![node(1, 1024), node(2, 1024)],
            formations: vec![form("web", 2, S1, 1)],
            dynos: vec![one_off(dyno("r1", "run", 1, 1, 1), S2)],
            changes: vec![
                start("web", 1, 1, S1, 2, None),
                start("web", 2, 1, S1, 2, None),
            ],
            unplaced: vec![],
        },
        Case {
            name: "orphaned dynos stop, one-off and stopping ones are left alone",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![
                dyno("d1", "web", 1, 1, 1),
                dyno("d2", "worker", 1, 1, 2),
                DynoView {
                    app: "other".to_owned(),
                    ..dyno("d3", "web", 1, 1, 3)
                },
                stopping(dyno("d4", "worker", 2, 1, 2)),
                one_off(dyno("d5", "run", 7, 1, 3), S1),
            ],
            changes: vec![stop("d2", Orphaned), stop("d3", Orphaned)],
            unplaced: vec![],
        },
        Case {
            name: "a release without a slug runs nothing",
            nodes: three_nodes(),
            formations: vec![FormationView {
                slug: None,
                ..form("web", 2, S1, 1)
            }],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![
                ("web", 1, "release v1 has no slug yet"),
                ("web", 2, "release v1 has no slug yet"),
            ],
        },
        Case {
            name: "an unknown formation size is reported",
            nodes: three_nodes(),
            formations: vec![form("web", 1, "huge", 1)],
            dynos: vec![],
            changes: vec![],
            unplaced: vec![("web", 1, "unknown dyno size \"huge\"")],
        },
        Case {
            name: "two current dynos for one index: the extra one stops",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![dyno("d2", "web", 1, 1, 2), dyno("d1", "web", 1, 1, 1)],
            changes: vec![stop("d2", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "roll without room: stop one old dyno first, wait with the rest",
            nodes: vec![node(1, 1024)],
            formations: vec![form("web", 2, S1, 2)],
            dynos: vec![dyno("d1", "web", 1, 1, 1), dyno("d2", "web", 2, 1, 1)],
            changes: vec![stop("d1", Replaced)],
            unplaced: vec![("web", 2, "cannot start web.2 at v2 yet: no node has 512 MiB free")],
        },
        Case {
            name: "roll without room: no second stop while the first old dyno is stopping",
            nodes: vec![node(1, 1024)],
            formations: vec![form("web", 2, S1, 2)],
            dynos: vec![stopping(dyno("d1", "web", 1, 1, 1)), dyno("d2", "web", 2, 1, 1)],
            changes: vec![],
            unplaced: vec![
                ("web", 1, "no node has 512 MiB free"),
                ("web", 2, "cannot start web.2 at v2 yet"),
            ],
        },
        Case {
            name: "roll without room: start once the old dyno is gone, second waits",
            nodes: vec![node(1, 1024)],
            formations: vec![form("web", 2, S1, 2)],
            dynos: vec![dyno("d2", "web", 2, 1, 1)],
            changes: vec![start("web", 1, 2, S1, 1, None)],
            unplaced: vec![("web", 2, "cannot start web.2 at v2 yet")],
        },
        Case {
            name: "roll without room: the next old dyno stops once the first new one is up",
            nodes: vec![node(1, 1024)],
            formations: vec![form("web", 2, S1, 2)],
            dynos: vec![dyno("n1", "web", 1, 2, 1), dyno("d2", "web", 2, 1, 1)],
            changes: vec![stop("d2", Replaced)],
            unplaced: vec![],
        },
        Case {
            name: "roll without room: no stop-first when it would not make room",
            nodes: vec![node(1, 1024)],
            formations: vec![form("web", 1, "performance-m", 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 1)],
            changes: vec![],
            unplaced: vec![(
                "web",
                1,
                "cannot start web.1 at v1 yet: no node has 2560 MiB free for a performance-m dyno",
            )],
        },
        Case {
            name: "a scaled-down dyno on a down node stops ScaledDown, nothing replaces it",
            nodes: vec![with_status(node(1, 4096), Down), node(2, 4096)],
            formations: vec![form("web", 1, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 1, 2), dyno("d2", "web", 2, 1, 1)],
            changes: vec![stop("d2", ScaledDown)],
            unplaced: vec![],
        },
        Case {
            name: "of duplicate formations the highest release wins",
            nodes: three_nodes(),
            formations: vec![form("web", 1, S1, 2), form("web", 3, S1, 1)],
            dynos: vec![dyno("d1", "web", 1, 2, 1)],
            changes: vec![],
            unplaced: vec![],
        },
        Case {
            name: "stops and starts are ordered by process type and index",
            nodes: vec![
                with_status(node(1, 4096), Down),
                node(2, 4096),
                node(3, 4096),
            ],
            formations: vec![form("worker", 1, S1, 1), form("web", 2, S1, 1)],
            dynos: vec![
                dyno("w3", "worker", 3, 1, 2),
                dyno("w2", "worker", 2, 1, 3),
                dyno("w1", "worker", 1, 1, 1),
                dyno("a1", "web", 1, 1, 2),
                dyno("a2", "web", 2, 1, 1),
            ],
            changes: vec![
                stop("a2", NodeDown),
                start("web", 2, 1, S1, 3, Some("a2")),
                stop("w3", ScaledDown),
                stop("w2", ScaledDown),
                stop("w1", NodeDown),
                start("worker", 1, 1, S1, 2, Some("w1")),
            ],
            unplaced: vec![],
        },
    ]
}

/// A small deterministic generator (64-bit LCG) for shuffles and random clusters.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

fn shuffled(input: &Input, rng: &mut Lcg) -> Input {
    let mut out = input.clone();
    rng.shuffle(&mut out.nodes);
    rng.shuffle(&mut out.formations);
    rng.shuffle(&mut out.dynos);
    out
}

/// Plans `input` and checks that shuffled copies give the very same plan.
fn plan_checked(input: &Input, rng: &mut Lcg) -> Plan {
    let p = plan(input);
    for _ in 0..3 {
        assert_eq!(
            plan(&shuffled(input, rng)),
            p,
            "plan depends on input order"
        );
    }
    p
}

#[test]
fn table() {
    let all = cases();
    assert!(all.len() >= 40);
    let mut rng = Lcg(7);
    let mut failures = Vec::new();
    for case in all {
        let input = Input {
            nodes: case.nodes,
            formations: case.formations,
            dynos: case.dynos,
        };
        let p = plan_checked(&input, &mut rng);
        if p.changes != case.changes {
            failures.push(format!(
                "{}: changes\n  got  {:?}\n  want {:?}",
                case.name, p.changes, case.changes
            ));
        }
        let got: Vec<(&str, u32)> = p
            .unplaced
            .iter()
            .map(|u| (u.process_type.as_str(), u.index))
            .collect();
        let want: Vec<(&str, u32)> = case.unplaced.iter().map(|u| (u.0, u.1)).collect();
        if got != want {
            failures.push(format!("{}: unplaced {:?}", case.name, p.unplaced));
            continue;
        }
        for (u, (_, _, text)) in p.unplaced.iter().zip(&case.unplaced) {
            if u.app != APP || !u.reason.contains(text) {
                failures.push(format!(
                    "{}: reason {:?} lacks {text:?}",
                    case.name, u.reason
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sizes() {
    assert_eq!(size_memory_mb("eco"), Some(512));
    assert_eq!(size_memory_mb("basic"), Some(512));
    assert_eq!(size_memory_mb("standard-1x"), Some(512));
    assert_eq!(size_memory_mb("Standard-2X"), Some(1024));
    assert_eq!(size_memory_mb("performance-m"), Some(2560));
    assert_eq!(size_memory_mb("performance-l"), Some(14336));
    assert_eq!(size_memory_mb("huge"), None);
}

#[test]
fn empty_input_gives_empty_plan() {
    assert_eq!(plan(&Input::default()), Plan::default());
    assert!(plan(&Input::default()).is_empty());
}

// ---- simulation ----

/// Applies a plan: stops mark dynos stopping, starts add `Starting` dynos.
fn apply(input: &mut Input, p: &Plan, next_id: &mut u64) {
    for change in &p.changes {
        match change {
            Change::Stop { dyno, .. } => {
                let d = input
                    .dynos
                    .iter_mut()
                    .find(|d| d.id == *dyno)
                    .unwrap_or_else(|| panic!("stop of unknown dyno {dyno}"));
                assert!(!d.stopping, "{dyno} stopped twice");
                assert!(!d.one_off, "one-off {dyno} stopped");
                d.stopping = true;
            }
            Change::Start {
                app,
                process_type,
                index,
                release,
                size,
                node,
                replaces,
            } => {
                if let Some(old) = replaces {
                    assert!(
                        input.dynos.iter().any(|d| d.id == *old),
                        "replaces unknown {old}"
                    );
                }
                *next_id += 1;
                input.dynos.push(DynoView {
                    id: format!("n{next_id:04}"),
                    app: app.clone(),
                    process_type: process_type.clone(),
                    index: *index,
                    release: *release,
                    size: size.clone(),
                    node: *node,
                    state: DynoState::Starting,
                    stopping: false,
                    one_off: false,
                });
            }
        }
    }
}

fn is_down(input: &Input, node: NodeId) -> bool {
    input
        .nodes
        .iter()
        .find(|n| n.id == node)
        .is_none_or(|n| n.status == NodeStatus::Down)
}

/// The agents' turn: stopped dynos on reachable nodes go away, starting ones come up
/// (or crash, for `crash_release`).
fn agents_tick(input: &mut Input, crash_release: Option<u64>) {
    let snapshot = input.clone();
    input
        .dynos
        .retain(|d| !d.stopping || is_down(&snapshot, d.node));
    for d in &mut input.dynos {
        if d.state == DynoState::Starting && !is_down(&snapshot, d.node) {
            d.state = if Some(d.release) == crash_release {
                DynoState::Crashed
            } else {
                DynoState::Up
            };
        }
    }
}

fn assert_memory_fits(input: &Input) {
    for n in input.nodes.iter().filter(|n| n.status != NodeStatus::Down) {
        let used: u64 = input
            .dynos
            .iter()
            .filter(|d| d.node == n.id)
            .map(|d| size_memory_mb(&d.size).unwrap_or(512))
            .sum();
        assert!(
            used <= n.memory_mb,
            "{} uses {used} of {} MiB",
            n.name,
            n.memory_mb
        );
    }
}

fn live<'a>(input: &'a Input) -> impl Iterator<Item = &'a DynoView> + 'a {
    input
        .dynos
        .iter()
        .filter(|d| !d.stopping && !d.one_off && !is_down(input, d.node))
}

fn assert_at_most_two_per_index(input: &Input) {
    let mut count: BTreeMap<(&str, &str, u32), u32> = BTreeMap::new();
    for d in live(input) {
        *count.entry((&d.app, &d.process_type, d.index)).or_default() += 1;
    }
    for (key, n) in count {
        assert!(n <= 2, "{key:?} has {n} live dynos");
    }
}

/// Stops of `Replaced`/`Drained` must follow an up current dyno of the same index.
fn stops_follow_up_replacements(input: &Input, p: &Plan) -> bool {
    p.changes.iter().all(|c| match c {
        Change::Stop {
            dyno,
            reason: StopReason::Replaced | StopReason::Drained,
        } => {
            let Some(old) = input.dynos.iter().find(|d| d.id == *dyno) else {
                return false;
            };
            let f = input
                .formations
                .iter()
                .find(|f| f.app == old.app && f.process_type == old.process_type);
            live(input).any(|d| {
                d.id != old.id
                    && d.app == old.app
                    && d.process_type == old.process_type
                    && d.index == old.index
                    && d.state == DynoState::Up
                    && f.is_some_and(|f| d.release == f.release && d.size == f.size)
                    && input
                        .nodes
                        .iter()
                        .any(|n| n.id == d.node && n.status == NodeStatus::Up)
            })
        }
        _ => true,
    })
}

struct Run {
    input: Input,
    rounds: usize,
    plans: Vec<Plan>,
}

/// Plans, applies and ticks until a plan has no changes; panics after `max_rounds`.
fn converge(mut input: Input, max_rounds: usize, crash_release: Option<u64>, rng: &mut Lcg) -> Run {
    let mut next_id = 0;
    let mut plans = Vec::new();
    for round in 0..max_rounds {
        assert_memory_fits(&input);
        let p = plan_checked(&input, rng);
        if p.changes.is_empty() {
            plans.push(p);
            return Run {
                input,
                rounds: round,
                plans,
            };
        }
        apply(&mut input, &p, &mut next_id);
        assert_memory_fits(&input);
        assert_at_most_two_per_index(&input);
        plans.push(p);
        agents_tick(&mut input, crash_release);
    }
    panic!("no convergence in {max_rounds} rounds: {:#?}", plans.last());
}

/// Every formation has exactly its indices, each once, current and on an up node.
fn assert_matches_formations(input: &Input) {
    let mut seen: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
    for d in live(input) {
        let f = input
            .formations
            .iter()
            .find(|f| f.app == d.app && f.process_type == d.process_type)
            .unwrap_or_else(|| panic!("{} left without formation", d.id));
        assert_eq!(
            (d.release, &d.size),
            (f.release, &f.size),
            "{} not current",
            d.id
        );
        assert!(
            input
                .nodes
                .iter()
                .any(|n| n.id == d.node && n.status == NodeStatus::Up),
            "{} not on an up node",
            d.id
        );
        seen.entry((&d.app, &d.process_type))
            .or_default()
            .push(d.index);
    }
    for f in &input.formations {
        let mut got = seen
            .remove(&(&f.app[..], &f.process_type[..]))
            .unwrap_or_default();
        got.sort_unstable();
        let want: Vec<u32> = (1..=f.quantity).collect();
        assert_eq!(got, want, "{}/{}", f.app, f.process_type);
    }
}

#[test]
fn simulation_fresh_deploy_then_roll_then_node_loss() {
    let mut rng = Lcg(11);
    let input = Input {
        nodes: three_nodes(),
        formations: vec![form("web", 4, S1, 1), form("worker", 2, S2, 1)],
        dynos: vec![],
    };
    let run = converge(input, 4, None, &mut rng);
    assert_eq!(run.rounds, 1, "a fresh deploy is one plan");
    assert_matches_formations(&run.input);

    // New release: starts, then stops once the new dynos are up.
    let mut input = run.input;
    for f in &mut input.formations {
        f.release = 2;
        f.slug = Some(slug(2));
    }
    let run = converge(input, 4, None, &mut rng);
    assert_eq!(run.rounds, 2);
    assert!(run.plans[0]
        .changes
        .iter()
        .all(|c| matches!(c, Change::Start { .. })));
    assert!(run.plans[1].changes.iter().all(|c| matches!(
        c,
        Change::Stop {
            reason: StopReason::Replaced,
            ..
        }
    )));
    assert_matches_formations(&run.input);

    // Node 2 goes down: its dynos move; when it returns nothing more runs than wanted.
    let mut input = run.input;
    input.nodes[1].status = NodeStatus::Down;
    let on_node_2 = input.dynos.iter().filter(|d| d.node == 2).count();
    assert!(on_node_2 > 0);
    let run = converge(input, 4, None, &mut rng);
    assert_eq!(run.rounds, 1);
    let node_down_stops = run.plans[0]
        .changes
        .iter()
        .filter(|c| {
            matches!(
                c,
                Change::Stop {
                    reason: StopReason::NodeDown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(node_down_stops, on_node_2);
    assert_matches_formations(&run.input);
    let mut input = run.input;
    input.nodes[1].status = NodeStatus::Up;
    assert!(plan(&input).is_empty(), "a returning node changes nothing");
    let running: usize = input.dynos.iter().filter(|d| !d.stopping).count();
    assert_eq!(running, 6);
    assert_memory_fits(&input);
}

#[test]
fn simulation_crashing_release_keeps_old_dynos() {
    let mut rng = Lcg(12);
    let mut input = Input {
        nodes: three_nodes(),
        formations: vec![form("web", 3, S1, 2)],
        dynos: vec![
            dyno("d1", "web", 1, 1, 1),
            dyno("d2", "web", 2, 1, 2),
            dyno("d3", "web", 3, 1, 3),
        ],
    };
    let run = converge(input.clone(), 4, Some(2), &mut rng);
    assert_eq!(run.rounds, 1);
    for id in ["d1", "d2", "d3"] {
        assert!(run.input.dynos.iter().any(|d| d.id == id && !d.stopping));
    }
    // The same under memory pressure: one old dyno is sacrificed, no more.
    input.nodes = vec![node(1, 1536)];
    for d in &mut input.dynos {
        d.node = 1;
    }
    let run = converge(input, 8, Some(2), &mut rng);
    let old_left = run.input.dynos.iter().filter(|d| d.release == 1).count();
    assert_eq!(old_left, 2, "{:#?}", run.input.dynos);
}

#[test]
fn simulation_drain_moves_everything_off() {
    let mut rng = Lcg(13);
    let mut input = Input {
        nodes: three_nodes(),
        formations: vec![form("web", 3, S1, 1)],
        dynos: vec![],
    };
    input = converge(input, 4, None, &mut rng).input;
    input.nodes[0].status = NodeStatus::Draining;
    let run = converge(input, 4, None, &mut rng);
    assert_eq!(run.rounds, 2);
    assert!(run.input.dynos.iter().all(|d| d.node != 1));
    assert_matches_formations(&run.input);
}

#[test]
fn simulation_roll_under_memory_pressure_converges() {
    let mut rng = Lcg(14);
    let input = Input {
        nodes: vec![node(1, 1024), node(2, 512)],
        formations: vec![form("web", 3, S1, 2)],
        dynos: vec![
            dyno("d1", "web", 1, 1, 1),
            dyno("d2", "web", 2, 1, 1),
            dyno("d3", "web", 3, 1, 2),
        ],
    };
    let run = converge(input, 20, None, &mut rng);
    assert_matches_formations(&run.input);
    assert_eq!(run.rounds, 6, "stop, start, stop, start, stop, start");
    // One old dyno at a time makes room.
    assert!(run.plans.iter().all(|p| {
        p.changes
            .iter()
            .filter(|c| matches!(c, Change::Stop { .. }))
            .count()
            <= 1
    }));
}

const SIZES: &[&str] = &["standard-1x", "standard-2x", "eco"];

/// A random cluster whose memory fits. With `ample`, every Up node has room for twice
/// everything (old and new dynos) and no size exceeds half a node, so no start can fail.
fn random_input(rng: &mut Lcg, ample: bool) -> Input {
    let node_count = 1 + rng.below(5);
    let mut nodes = Vec::new();
    for id in 1..=node_count {
        let memory = if ample {
            [8192, 16384, 32768][rng.below(3) as usize]
        } else {
            [512, 1024, 2048][rng.below(3) as usize]
        };
        let mut n = node(id * 10, memory);
        n.status = match rng.below(10) {
            0 | 1 => NodeStatus::Down,
            2 | 3 => NodeStatus::Draining,
            _ => NodeStatus::Up,
        };
        if rng.chance(50) {
            n.slugs.insert(format!("sha-a-v{}", 1 + rng.below(3)));
        }
        nodes.push(n);
    }
    if !nodes.iter().any(|n| n.status == NodeStatus::Up) {
        nodes[0].status = NodeStatus::Up;
    }
    let mut formations = Vec::new();
    for app in ["a", "b"] {
        for process_type in ["web", "worker"] {
            if rng.chance(80) {
                let release = 1 + rng.below(3);
                formations.push(FormationView {
                    app: app.to_owned(),
                    process_type: process_type.to_owned(),
                    quantity: rng.below(5) as u32,
                    size: SIZES[rng.below(SIZES.len() as u64) as usize].to_owned(),
                    release,
                    slug: Some(format!("sha-{app}-v{release}")),
                });
            }
        }
    }
    let mut input = Input {
        nodes,
        formations,
        dynos: Vec::new(),
    };
    let mut id = 0;
    for app in ["a", "b", "c"] {
        for process_type in ["web", "worker", "run"] {
            for index in 0..6 {
                if !rng.chance(40) {
                    continue;
                }
                id += 1;
                let n = &input.nodes[rng.below(input.nodes.len() as u64) as usize];
                let size = SIZES[rng.below(SIZES.len() as u64) as usize];
                let d = DynoView {
                    id: format!("d{id:03}"),
                    app: app.to_owned(),
                    process_type: process_type.to_owned(),
                    index,
                    release: 1 + rng.below(3),
                    size: size.to_owned(),
                    node: if rng.chance(5) { 999 } else { n.id },
                    state: [
                        DynoState::Up,
                        DynoState::Up,
                        DynoState::Starting,
                        DynoState::Crashed,
                        DynoState::Down,
                    ][rng.below(5) as usize],
                    stopping: rng.chance(15),
                    one_off: process_type == "run",
                };
                let used: u64 = input
                    .dynos
                    .iter()
                    .filter(|o| o.node == d.node)
                    .map(|o| size_memory_mb(&o.size).unwrap_or(512))
                    .sum();
                let fits = n.status == NodeStatus::Down
                    || d.node == 999
                    || used + size_memory_mb(size).unwrap_or(512) <= n.memory_mb;
                if fits {
                    input.dynos.push(d);
                }
            }
        }
    }
    input
}

fn is_ample(input: &Input) -> bool {
    let up: Vec<&NodeView> = input
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Up)
        .collect();
    let capacity: u64 = up.iter().map(|n| n.memory_mb).sum();
    let smallest = up.iter().map(|n| n.memory_mb).min().unwrap_or(0);
    let wanted: u64 = input
        .formations
        .iter()
        .map(|f| u64::from(f.quantity) * size_memory_mb(&f.size).unwrap_or(512))
        .sum();
    let existing: u64 = input
        .dynos
        .iter()
        .filter(|d| !is_down(input, d.node))
        .map(|d| size_memory_mb(&d.size).unwrap_or(512))
        .sum();
    let largest_size = SIZES
        .iter()
        .filter_map(|s| size_memory_mb(s))
        .max()
        .unwrap_or(0);
    largest_size * 2 <= smallest && (wanted + existing) * 2 <= capacity
}

#[test]
fn random_clusters_with_room_converge_exactly() {
    let mut rng = Lcg(2024);
    let mut tried = 0;
    let mut ran = 0;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    while ran < 300 {
        tried += 1;
        assert!(tried < 10_000, "generator rarely makes ample clusters");
        let input = random_input(&mut rng, true);
        if !is_ample(&input) {
            continue;
        }
        ran += 1;
        let mut check = input.clone();
        let mut next_id = 0;
        // Step through by hand to check rolling stops at every round.
        for _ in 0..4 {
            let p = plan_checked(&check, &mut rng);
            assert!(
                p.unplaced.is_empty(),
                "unplaced with room: {:?}",
                p.unplaced
            );
            assert!(
                stops_follow_up_replacements(&check, &p),
                "stop before the replacement is up: {p:#?}"
            );
            apply(&mut check, &p, &mut next_id);
            agents_tick(&mut check, None);
        }
        let run = converge(input, 4, None, &mut rng);
        assert!(run.rounds <= 3, "took {} rounds", run.rounds);
        for c in run.plans.iter().flat_map(|p| &p.changes) {
            let what = match c {
                Change::Stop { reason, .. } => format!("{reason:?}"),
                Change::Start { replaces: None, .. } => "Start".to_owned(),
                Change::Start {
                    replaces: Some(_), ..
                } => "StartReplacing".to_owned(),
            };
            *seen.entry(what).or_default() += 1;
        }
        assert_matches_formations(&run.input);
        assert!(plan(&run.input).is_empty(), "idempotent at the end");
    }
    // The generator exercises every rule.
    for what in [
        "Start",
        "StartReplacing",
        "ScaledDown",
        "NodeDown",
        "Replaced",
        "Drained",
        "Orphaned",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) > 5,
            "{what} rarely seen: {seen:?}"
        );
    }
}

#[test]
fn random_tight_clusters_reach_a_fixed_point() {
    let mut rng = Lcg(99);
    let mut with_unplaced = 0;
    for _ in 0..400 {
        let input = random_input(&mut rng, false);
        let run = converge(input, 40, None, &mut rng);
        let end = &run.input;
        let last = run.plans.last().expect("at least one plan");
        if !last.unplaced.is_empty() {
            with_unplaced += 1;
        }
        // Each wanted index is either running (exactly once) or reported unplaced.
        for f in &end.formations {
            for index in 1..=f.quantity {
                let running = live(end)
                    .filter(|d| {
                        d.app == f.app && d.process_type == f.process_type && d.index == index
                    })
                    .count();
                let reported = last.unplaced.iter().any(|u| {
                    u.app == f.app && u.process_type == f.process_type && u.index == index
                });
                assert!(
                    running == 1 || (running <= 2 && reported) || (running == 0 && reported),
                    "{}/{}.{index}: {running} running, reported {reported}",
                    f.app,
                    f.process_type
                );
            }
            let beyond = live(end)
                .filter(|d| d.app == f.app && d.process_type == f.process_type)
                .filter(|d| d.index == 0 || d.index > f.quantity)
                .count();
            assert_eq!(beyond, 0);
        }
        // Nothing runs for an app or process type without a formation.
        assert!(live(end).all(|d| end
            .formations
            .iter()
            .any(|f| f.app == d.app && f.process_type == d.process_type)));
    }
    assert!(
        with_unplaced > 50,
        "tight clusters rarely run out of room: {with_unplaced}"
    );
}

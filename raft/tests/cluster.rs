//! Multi-node behaviour of `HavenRaft`: real openraft, real RocksDB stores in temp dirs,
//! and the real tarpc `Peer` service over in-process byte pipes (`tokio::io::duplex`)
//! instead of QUIC, which lives in the agent.

#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use haven_raft::command::{Command, CommandOutput};
use haven_raft::model::{Node, NodeId, NodeStatus, State, Token};
use haven_raft::rpc::{peer_client, serve_peer, PeerClient, PeerServer};
use haven_raft::{HavenRaft, PeerConnector, RaftSettings};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// An in-process network: a peer address maps to a running node's server; every
/// `connect` makes a fresh pipe and serves the Peer service on its far end.
#[derive(Clone, Default)]
struct PipeNet {
    nodes: Arc<Mutex<HashMap<String, Attached>>>,
}

/// A node on the network: its server and the pipes served by it.
type Attached = (PeerServer, Vec<AbortHandle>);

impl PipeNet {
    fn attach(&self, addr: &str, server: PeerServer) {
        self.nodes
            .lock()
            .unwrap()
            .insert(addr.to_string(), (server, Vec::new()));
    }

    /// Takes `addr` off the network and cuts every pipe into it, as a crash would.
    fn detach(&self, addr: &str) {
        if let Some((_, pipes)) = self.nodes.lock().unwrap().remove(addr) {
            for p in pipes {
                p.abort();
            }
        }
    }
}

impl PeerConnector for PipeNet {
    fn connect(
        &self,
        _target: NodeId,
        peer_addr: String,
    ) -> BoxFuture<'static, Result<PeerClient, String>> {
        let this = self.clone();
        Box::pin(async move {
            let mut nodes = this.nodes.lock().unwrap();
            let (server, pipes) = nodes
                .get_mut(&peer_addr)
                .ok_or_else(|| format!("connect to {peer_addr}: unreachable"))?;
            let (near, far) = tokio::io::duplex(1 << 20);
            let serving = tokio::spawn(serve_peer(far, server.clone()));
            pipes.push(serving.abort_handle());
            Ok(peer_client(near))
        })
    }
}

fn settings() -> RaftSettings {
    RaftSettings {
        heartbeat: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        request_timeout: Duration::from_secs(10),
        ..RaftSettings::default()
    }
}

fn addr(id: NodeId) -> String {
    format!("node{id}.test:7000")
}

fn node_record(id: NodeId) -> Node {
    Node {
        id,
        name: format!("node-{id}"),
        peer_addr: addr(id),
        api_url: format!("http://node{id}.test:8080"),
        router_url: format!("http://node{id}.test:8081"),
        memory_mb: 1024,
        cpus: 2,
        labels: Default::default(),
        status: NodeStatus::Up,
        draining: false,
        joined_at: chrono::Utc::now(),
    }
}

fn add_token(n: usize) -> Command {
    Command::AddToken {
        token: Token {
            id: uuid::Uuid::new_v4(),
            sha256: format!("token-{n:04}"),
            user_email: "admin@example.com".into(),
            user_id: uuid::Uuid::nil(),
            description: format!("token {n}"),
            created_at: chrono::Utc::now(),
            expires_at: None,
        },
    }
}

fn has_token(state: &State, n: usize) -> bool {
    state.tokens.contains_key(&format!("token-{n:04}"))
}

/// Polls `cond` until it holds, failing the test after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WAIT: Duration = Duration::from_secs(30);

struct TestCluster {
    net: PipeNet,
    root: tempfile::TempDir,
    settings: RaftSettings,
    nodes: HashMap<NodeId, HavenRaft>,
}

impl TestCluster {
    fn new(settings: RaftSettings) -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        TestCluster {
            net: PipeNet::default(),
            root: tempfile::tempdir().unwrap(),
            settings,
            nodes: HashMap::new(),
        }
    }

    fn dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node{id}")).join("raft")
    }

    /// Opens node `id` from its directory and puts it on the network.
    async fn start(&mut self, id: NodeId) -> HavenRaft {
        let raft = open(id, &self.dir(id), &self.net, self.settings.clone()).await;
        self.net.attach(&addr(id), raft.peer_server());
        self.nodes.insert(id, raft.clone());
        raft
    }

    fn node(&self, id: NodeId) -> &HavenRaft {
        &self.nodes[&id]
    }

    /// Takes node `id` off the network and shuts it down.
    async fn stop(&mut self, id: NodeId) {
        self.net.detach(&addr(id));
        if let Some(raft) = self.nodes.remove(&id) {
            raft.shutdown().await;
        }
    }

    /// Node 1 alone, initialized and leader.
    async fn bootstrap(&mut self) {
        let first = self.start(1).await;
        assert!(first.initialize_single(&addr(1)).await.unwrap());
        assert!(
            !first.initialize_single(&addr(1)).await.unwrap(),
            "initialize twice"
        );
        assert!(first.is_initialized());
        assert_eq!(first.wait_for_leader(WAIT).await.unwrap(), 1);
    }

    /// Starts node `id` and adds it through `via`.
    async fn join(&mut self, id: NodeId, via: NodeId) {
        let joining = self.start(id).await;
        assert!(!joining.is_initialized());
        let result = self.node(via).add_node(node_record(id)).await.unwrap();
        assert_eq!(result, Ok(CommandOutput::Done));
        let joining = joining.clone();
        eventually("the new node knows its membership", WAIT, || {
            let joining = joining.clone();
            async move { joining.is_initialized() }
        })
        .await;
    }

    /// The current leader as seen by every running node, once they agree.
    async fn agreed_leader(&self) -> NodeId {
        let mut leader = None;
        eventually("every node sees the same leader", WAIT, || {
            let seen: Vec<Option<NodeId>> =
                self.nodes.values().map(|n| n.status().leader).collect();
            let agreed = match seen.first() {
                Some(Some(l))
                    if seen.iter().all(|s| *s == Some(*l)) && self.nodes.contains_key(l) =>
                {
                    Some(*l)
                }
                _ => None,
            };
            leader = agreed;
            async move { agreed.is_some() }
        })
        .await;
        leader.unwrap()
    }
}

async fn open(id: NodeId, dir: &Path, net: &PipeNet, settings: RaftSettings) -> HavenRaft {
    HavenRaft::open(id, dir, Arc::new(net.clone()), settings)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_a_follower_write_is_seen_everywhere() {
    let mut c = TestCluster::new(settings());
    c.bootstrap().await;
    c.join(2, 1).await;
    // Through a follower: the add is forwarded to the leader.
    c.join(3, 2).await;

    let status = c.node(1).status();
    assert_eq!(status.voters, vec![1, 2, 3]);
    assert!(status.learners.is_empty());
    assert_eq!(status.members.len(), 3);
    // Adding a member again changes nothing.
    assert_eq!(
        c.node(1).add_node(node_record(3)).await.unwrap(),
        Ok(CommandOutput::Done)
    );
    assert_eq!(c.node(1).status().voters, vec![1, 2, 3]);

    let leader = c.agreed_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let result = c.node(follower).write(add_token(1)).await.unwrap();
    assert_eq!(result, Ok(CommandOutput::Done));
    // A rejected command comes back as the state machine's verdict, not a cluster error.
    let again = c.node(follower).write(add_token(1)).await.unwrap();
    assert!(again.is_err(), "duplicate token accepted: {again:?}");

    for id in [1, 2, 3] {
        c.node(id).read_barrier().await.unwrap();
        assert!(
            c.node(id).with_state(|s| has_token(s, 1)),
            "node {id} misses the write"
        );
        assert_eq!(
            c.node(id).with_state(|s| s.nodes.len()),
            2,
            "nodes 2 and 3 registered"
        );
    }
    for id in [3, 2, 1] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_of_every_node() {
    // A low snapshot threshold so that the restart loads a snapshot and re-applies the
    // committed log after it.
    let mut c = TestCluster::new(RaftSettings {
        snapshot_after: 20,
        keep_logs: 5,
        ..settings()
    });
    c.bootstrap().await;
    c.join(2, 1).await;
    c.join(3, 1).await;
    for n in 0..30 {
        let via = [1, 2, 3][n % 3];
        assert_eq!(
            c.node(via).write(add_token(n)).await.unwrap(),
            Ok(CommandOutput::Done)
        );
    }
    // Leave entries after node 1's last snapshot, so that the restart must re-apply them
    // — and fewer than `snapshot_after`, so that no newer snapshot is being built (in the
    // background) when the nodes stop.
    let mut written = 30;
    loop {
        for id in [1, 2, 3] {
            c.node(id).read_barrier().await.unwrap();
        }
        let st = c.node(1).status();
        if let (Some(snap), Some(applied)) = (st.snapshot_index, st.applied_index) {
            if applied > snap && applied - snap < 20 {
                break;
            }
        }
        assert!(
            written < 80,
            "node 1 never has entries after its snapshot: {st:?}"
        );
        assert_eq!(
            c.node(1).write(add_token(written)).await.unwrap(),
            Ok(CommandOutput::Done)
        );
        written += 1;
    }
    let before = c.node(1).with_state(|s| s.clone());
    assert_eq!(before.tokens.len(), written);

    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    // Node 1 alone first: with no quorum there is no leader to learn anything from, so
    // its state comes from its own store (snapshot plus the committed log after it).
    let alone = c.start(1).await;
    assert!(alone.is_initialized(), "node 1 forgot its membership");
    assert!(!alone.initialize_single(&addr(1)).await.unwrap());
    let restored = alone.status();
    assert!(
        restored.snapshot_index.is_some(),
        "no snapshot was taken: {restored:?}"
    );
    assert!(
        restored.applied_index > restored.snapshot_index,
        "nothing re-applied after the snapshot: {restored:?}"
    );
    assert!(
        alone.with_state(|s| *s == before),
        "node 1 restored a different state"
    );
    for id in [2, 3] {
        let raft = c.start(id).await;
        assert!(raft.is_initialized(), "node {id} forgot its membership");
        assert!(!raft.initialize_single(&addr(id)).await.unwrap());
    }
    // The committed state is back on every node without any new write.
    for id in [1, 2, 3] {
        let node = c.node(id).clone();
        let expected = before.clone();
        eventually(&format!("node {id} restores its state"), WAIT, || {
            let same = node.with_state(|s| *s == expected);
            async move { same }
        })
        .await;
    }
    c.node(1).wait_for_leader(WAIT).await.unwrap();
    assert_eq!(
        c.node(2).write(add_token(100)).await.unwrap(),
        Ok(CommandOutput::Done)
    );
    for id in [1, 2, 3] {
        c.node(id).read_barrier().await.unwrap();
        assert!(c
            .node(id)
            .with_state(|s| has_token(s, 100) && s.tokens.len() == written + 1));
    }
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_catches_up_from_a_snapshot() {
    let mut c = TestCluster::new(RaftSettings {
        snapshot_after: 20,
        keep_logs: 5,
        ..settings()
    });
    c.bootstrap().await;
    c.join(2, 1).await;
    for n in 0..100 {
        let via = if n % 2 == 0 { 1 } else { 2 };
        assert_eq!(
            c.node(via).write(add_token(n)).await.unwrap(),
            Ok(CommandOutput::Done)
        );
    }
    let leader = c.agreed_leader().await;
    let leader_node = c.node(leader).clone();
    eventually("the leader purges its log", WAIT, || {
        let purged = leader_node.status().purged_index.unwrap_or(0);
        async move { purged > 1 }
    })
    .await;
    let status = leader_node.status();
    assert!(status.snapshot_index.is_some(), "no snapshot: {status:?}");

    // Entries 1.. are gone from the leader's log: node 3 can only catch up by snapshot.
    c.join(3, leader).await;
    let third = c.node(3).clone();
    third.read_barrier().await.unwrap();
    let expected = leader_node.with_state(|s| s.clone());
    assert_eq!(expected.tokens.len(), 100);
    assert!(
        third.with_state(|s| *s == expected),
        "node 3 state differs from the leader's"
    );
    let third_status = third.status();
    assert!(
        third_status.snapshot_index.is_some(),
        "node 3 has no snapshot: {third_status:?}"
    );
    assert_eq!(third_status.voters, vec![1, 2, 3]);

    // It keeps up with new writes by log replication.
    assert_eq!(
        third.write(add_token(1000)).await.unwrap(),
        Ok(CommandOutput::Done)
    );
    third.read_barrier().await.unwrap();
    assert!(third.with_state(|s| has_token(s, 1000)));
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_keeps_acknowledged_writes() {
    let mut c = TestCluster::new(settings());
    c.bootstrap().await;
    c.join(2, 1).await;
    c.join(3, 1).await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let via = [1, 2, 3][n % 3];
        if c.node(via).write(add_token(n)).await.unwrap().is_ok() {
            acknowledged.push(n);
        }
    }
    assert_eq!(acknowledged.len(), 20);

    let old = c.agreed_leader().await;
    c.stop(old).await;
    let survivors: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let new = c.agreed_leader().await;
    assert_ne!(new, old);
    assert!(survivors.contains(&new));

    // Writes go on, through either survivor.
    for (i, n) in (20..30).enumerate() {
        let via = survivors[i % 2];
        assert_eq!(
            c.node(via).write(add_token(n)).await.unwrap(),
            Ok(CommandOutput::Done)
        );
        acknowledged.push(n);
    }
    for id in &survivors {
        c.node(*id).read_barrier().await.unwrap();
        let node = c.node(*id);
        for n in &acknowledged {
            assert!(
                node.with_state(|s| has_token(s, *n)),
                "node {id} lost write {n}"
            );
        }
    }
    for id in survivors {
        c.stop(id).await;
    }
}

/// How many config releases the history test makes: `HAVEN_TEST_RELEASES`, else 2,000
/// (enough for several snapshots and a history mostly on disk, in CI time).
fn releases_to_make() -> usize {
    std::env::var("HAVEN_TEST_RELEASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

const OWNER: uuid::Uuid = uuid::Uuid::from_u128(0xad);

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn actor() -> haven_raft::command::Actor {
    haven_raft::command::Actor {
        email: "admin@example.com".into(),
        at: at(),
    }
}

/// Creates app `name` and deploys it once (so that its later releases have a slug to
/// roll back to); returns its id.
async fn deployed_app(raft: &HavenRaft, name: &str) -> uuid::Uuid {
    use haven_raft::command::BuildResult;
    use haven_raft::model::{Build, BuildStatus, Slug};
    let id = uuid::Uuid::new_v4();
    let created = raft
        .write(Command::CreateApp {
            id,
            name: name.into(),
            stack: "heroku-24".into(),
            release_id: uuid::Uuid::new_v4(),
            actor: actor(),
            owner: OWNER,
        })
        .await
        .unwrap();
    assert!(created.is_ok(), "{created:?}");
    let build = Build {
        id: uuid::Uuid::new_v4(),
        app: id,
        status: BuildStatus::Pending,
        node: 1,
        source_url: "http://n/sources/x".into(),
        source_checksum: None,
        source_version: Some("1a2b3c4".into()),
        buildpacks: vec![],
        stack: "heroku-24".into(),
        user_email: "admin@example.com".into(),
        user_id: OWNER,
        output_stream_url: String::new(),
        slug: None,
        release: None,
        failure: None,
        created_at: at(),
        updated_at: at(),
    };
    let started = raft
        .write(Command::StartBuild {
            build: build.clone(),
        })
        .await
        .unwrap();
    assert!(started.is_ok(), "{started:?}");
    let slug = Slug {
        id: uuid::Uuid::new_v4(),
        app: id,
        sha256: "ab".repeat(32),
        size: 10,
        process_types: [("web".to_string(), "python app.py".to_string())].into(),
        holders: [1].into(),
        commit: None,
        stack: "heroku-24".into(),
        buildpack_provided_description: None,
        created_at: at(),
    };
    let finished = raft
        .write(Command::FinishBuild {
            build: build.id,
            result: BuildResult::Succeeded {
                slug,
                release_id: uuid::Uuid::new_v4(),
                description: "Deploy 1a2b3c4".into(),
            },
            at: at(),
        })
        .await
        .unwrap();
    assert!(
        matches!(finished, Ok(CommandOutput::Release { version: 2, .. })),
        "{finished:?}"
    );
    id
}

fn set_config(app: uuid::Uuid, n: usize) -> Command {
    Command::SetConfig {
        app,
        changes: [
            ("N".to_string(), Some(n.to_string())),
            (format!("K{}", n % 7), Some("x".repeat(40))),
        ]
        .into(),
        release_id: uuid::Uuid::new_v4(),
        actor: actor(),
    }
}

/// The digests of `ids` once they have applied the same entries (no writes meanwhile).
async fn agreed_digest(c: &TestCluster, ids: &[NodeId]) -> u64 {
    let mut digest = 0;
    eventually("the nodes' digests agree", WAIT, || {
        let mut seen = Vec::new();
        for id in ids {
            let n = c.node(*id);
            seen.push((n.status().applied_index, n.digest().unwrap()));
        }
        let agreed = seen.windows(2).all(|w| w[0] == w[1]);
        digest = seen[0].1;
        async move { agreed }
    })
    .await;
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_history_on_disk_survives_restarts_and_reaches_a_lagging_node() {
    let releases = releases_to_make();
    let keep = 10;
    let mut c = TestCluster::new(RaftSettings {
        snapshot_after: 300,
        keep_logs: 50,
        releases_in_memory: keep,
        ..settings()
    });
    c.bootstrap().await;
    c.join(2, 1).await;
    let owner = haven_raft::model::User {
        id: OWNER,
        email: "admin@example.com".into(),
        created_at: at(),
        admin: true,
        password_hash: None,
    };
    let made = c
        .node(1)
        .write(Command::CreateUser {
            user: owner,
            token: None,
        })
        .await
        .unwrap();
    assert!(made.is_ok(), "{made:?}");
    let apps = [
        deployed_app(c.node(1), "app-one").await,
        deployed_app(c.node(1), "app-two").await,
    ];

    // Config releases, 16 at a time, through both nodes.
    let mut n = 0;
    while n < releases {
        let writes: Vec<_> = (n..(n + 16).min(releases))
            .map(|i| {
                let node = c.node([1, 2][i % 2]).clone();
                let app = apps[i % 2];
                async move { node.write(set_config(app, i)).await }
            })
            .collect();
        for r in futures::future::join_all(writes).await {
            assert!(
                matches!(r.unwrap(), Ok(CommandOutput::Release { .. })),
                "a config write failed"
            );
        }
        n += 16;
    }
    let per_app = (releases / 2) as u64 + 2;
    for id in [1, 2] {
        let node = c.node(id);
        node.read_barrier().await.unwrap();
        node.with_state(|s| {
            for a in s.apps.values() {
                assert!(
                    a.releases.len() <= keep,
                    "node {id} keeps {} releases of {} in memory",
                    a.releases.len(),
                    a.name
                );
                assert!(a.last_version() >= per_app - 1);
            }
        });
        assert!(node.history().stored_count() >= releases - 2 * keep);
    }
    let digest = agreed_digest(&c, &[1, 2]).await;

    // Reads see the whole history: the oldest releases from disk, the newest from memory.
    let node = c.node(2).clone();
    let history = node.history();
    node.with_state(|s| {
        let a = &s.apps[&apps[0]];
        let last = a.last_version();
        let first: Vec<u64> = history
            .window(a, 1, u64::MAX, false, 5)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(first, [1, 2, 3, 4, 5]);
        let newest: Vec<u64> = history
            .window(a, 1, u64::MAX, true, 3)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(newest, [last, last - 1, last - 2]);
        // A page across the boundary between disk and memory.
        let across: Vec<u64> = history
            .window(a, last - 14, last, false, 100)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(across, (last - 14..=last).collect::<Vec<_>>());
        let all = history.all(a).unwrap();
        assert_eq!(all.len() as u64, last);
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, r)| r.version == i as u64 + 1));
        let v3 = history.find(a, "v3").unwrap().unwrap();
        assert!(a.find_release("v3").is_none(), "v3 is still in memory");
        assert_eq!(history.find(a, &v3.id.to_string()).unwrap(), Some(v3));
        assert_eq!(history.find(a, &(last + 1).to_string()).unwrap(), None);
    });

    // Rollback to a release only on disk, carried by the command as the proposer read it.
    let target = node
        .with_state(|s| history.find(&s.apps[&apps[0]], "v3"))
        .unwrap()
        .unwrap();
    let out = c
        .node(1)
        .write(Command::RollbackTo {
            app: apps[0],
            target: Box::new(target.clone()),
            release_id: uuid::Uuid::new_v4(),
            actor: actor(),
        })
        .await
        .unwrap();
    let Ok(CommandOutput::Release { version, .. }) = out else {
        panic!("the rollback failed: {out:?}");
    };
    for id in [1, 2] {
        let node = c.node(id);
        node.read_barrier().await.unwrap();
        node.with_state(|s| {
            let a = &s.apps[&apps[0]];
            let r = a.find_release(&version.to_string()).unwrap();
            assert_eq!(r.description, "Rollback to v3");
            assert_eq!((&r.config, r.slug), (&target.config, target.slug));
            assert_eq!(a.config, target.config);
        });
    }
    let digest_after_rollback = agreed_digest(&c, &[1, 2]).await;
    assert_ne!(digest, digest_after_rollback);

    // Node 3 joins after the leader purged its log: it catches up by snapshot, history
    // included.
    let leader = c.agreed_leader().await;
    assert!(c.node(leader).status().purged_index.unwrap_or(0) > 1);
    c.join(3, leader).await;
    c.node(3).read_barrier().await.unwrap();
    let third = c.node(3).status();
    assert!(third.snapshot_index.is_some(), "no snapshot: {third:?}");
    assert!(c.node(3).history().stored_count() >= releases - 2 * keep);
    // (Joining registered node 3 in the model: the state moved on.)
    let digest = agreed_digest(&c, &[1, 2, 3]).await;
    assert_ne!(digest, digest_after_rollback);

    // Every node restarted comes back with the same state.
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.start(id).await;
    }
    c.agreed_leader().await;
    assert_eq!(agreed_digest(&c, &[1, 2, 3]).await, digest);
    // And goes on from there.
    let out = c.node(3).write(set_config(apps[1], 0)).await.unwrap();
    assert!(
        matches!(out, Ok(CommandOutput::Release { version, .. }) if version == per_app + 1),
        "{out:?}"
    );
    agreed_digest(&c, &[1, 2, 3]).await;
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

fn big_releases() -> u64 {
    std::env::var("HAVEN_TEST_BIG_RELEASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// A state of `apps` apps with `per_app` releases each: the head (each app's newest
/// release in memory) and every app's older releases.
fn big_state(
    apps: usize,
    per_app: u64,
) -> (State, Vec<(uuid::Uuid, Vec<haven_raft::model::Release>)>) {
    let mut s = State {
        cluster: Some(haven_raft::model::Cluster {
            id: uuid::Uuid::new_v4(),
            name: "haven".into(),
            app_domain: "localhost".into(),
            created_at: at(),
            join_secret_sha256: "j".into(),
            ca_fingerprint: "c".into(),
        }),
        ..State::default()
    };
    Command::CreateUser {
        user: haven_raft::model::User {
            id: OWNER,
            email: "admin@example.com".into(),
            created_at: at(),
            admin: true,
            password_hash: None,
        },
        token: None,
    }
    .apply(&mut s)
    .unwrap();
    let mut older = Vec::new();
    for n in 0..apps {
        let id = uuid::Uuid::new_v4();
        Command::CreateApp {
            id,
            name: format!("big-{n}"),
            stack: "heroku-24".into(),
            release_id: uuid::Uuid::new_v4(),
            actor: actor(),
            owner: OWNER,
        }
        .apply(&mut s)
        .unwrap();
        set_config(id, n).apply(&mut s).unwrap();
        let a = s.apps.get_mut(&id).unwrap();
        let base = a.releases.last().unwrap().clone();
        let make = |v: u64| haven_raft::model::Release {
            id: uuid::Uuid::new_v4(),
            version: v,
            description: format!("Set N config var (v{v})"),
            ..base.clone()
        };
        older.push((id, (1..per_app).map(make).collect()));
        a.releases = vec![make(per_app)];
    }
    (s, older)
}

/// Issue 14: a lagging node catches up by snapshot with at least 100,000 releases in the
/// history (made through Raft as a restore does, in chunks), and ends with the same state;
/// the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_by_snapshot_at_100k_releases() {
    let total = big_releases();
    let apps = 10;
    let per_app = total / apps as u64;
    let mut c = TestCluster::new(RaftSettings {
        snapshot_after: 40,
        keep_logs: 5,
        releases_in_memory: 10,
        ..settings()
    });
    c.bootstrap().await;
    c.join(2, 1).await;
    let (head, older) = big_state(apps, per_app);
    let out = c
        .node(1)
        .write(Command::RestoreState {
            state: Box::new(head),
        })
        .await
        .unwrap();
    assert!(out.is_ok(), "{out:?}");
    let t = Instant::now();
    for (app, releases) in older {
        for chunk in releases.chunks(1000) {
            let out = c
                .node(1)
                .write(Command::RestoreReleases {
                    app,
                    releases: chunk.to_vec(),
                })
                .await
                .unwrap();
            assert!(out.is_ok(), "{out:?}");
        }
    }
    eprintln!("wrote {total} releases in {:?}", t.elapsed());
    // A snapshot that covers them, built by the leader in the background.
    let last = c.node(1).status().applied_index.unwrap();
    let t = Instant::now();
    let mut n = 0;
    loop {
        let st = c.node(1).status();
        if st.snapshot_index.is_some_and(|s| s >= last) && st.purged_index.is_some_and(|p| p > 1) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no snapshot: {st:?}"
        );
        // Entries move the snapshot policy along.
        let out = c.node(1).write(add_token(10_000 + n)).await.unwrap();
        assert!(out.is_ok());
        n += 1;
    }
    eprintln!("snapshot covering them built within {:?}", t.elapsed());
    let t = Instant::now();
    c.join(3, 1).await;
    // Its catch-up can take more than one read barrier's wait (10 s): the leader may
    // stream an older snapshot first and then a newer one, 30 MB each in a debug build.
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Err(e) = c.node(3).read_barrier().await {
        assert!(Instant::now() < deadline, "node 3 did not catch up: {e:?}");
    }
    let third = c.node(3).status();
    assert!(third.snapshot_index.is_some(), "no snapshot: {third:?}");
    eprintln!("node 3 installed it and caught up in {:?}", t.elapsed());
    let stored = c.node(3).history().stored_count() as u64;
    assert!(
        stored >= total - 20 * apps as u64,
        "node 3 holds {stored} releases on disk"
    );
    let digest = agreed_digest(&c, &[1, 2, 3]).await;
    // Every node restarted at that size comes back with the same state.
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    let t = Instant::now();
    for id in [1, 2, 3] {
        c.start(id).await;
    }
    for id in [1, 2, 3] {
        c.node(id).read_barrier().await.unwrap();
    }
    eprintln!("the three nodes restarted and agreed in {:?}", t.elapsed());
    assert_eq!(agreed_digest(&c, &[1, 2, 3]).await, digest);
    for id in [3, 2, 1] {
        c.stop(id).await;
    }
}

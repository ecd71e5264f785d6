//! One running agent: wires the peer endpoint, the Raft node, the HTTP API and the router
//! listener, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use haven_raft::command::{Command, CommandError};
use haven_raft::model::{Node, NodeStatus};
use haven_raft::HavenRaft;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::addons::AddonManager;
use crate::api::{self, ApiContext};
use crate::builder::Builder;
use crate::config::{host_cpus, host_memory_mb, DataDir, NodeConfig};
use crate::dynos::DynoManager;
use crate::https::{Acceptor, ConnInfo, HttpsListener};
use crate::join::JoinServer;
use crate::leader;
use crate::liveness::{self, Liveness};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::peer::{self, QuicConnector};
use crate::peer_server::{self, Services};
use crate::router::ready::Readiness;
use crate::router::registry::{Receiver, Registrar};
use crate::router::table::Table;
use crate::router::Router;
use crate::runtime::Runtime;
use crate::slugcache::SlugCache;
use crate::slugs::SlugStore;

/// The port of a listen address (`0.0.0.0:7480` → 7480).
fn router_port(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80)
}

/// This node as the replicated model describes it.
pub fn node_record(cfg: &NodeConfig) -> Result<Node> {
    Ok(Node {
        id: cfg.node_id,
        name: cfg.name.clone(),
        peer_addr: cfg.peer_addr()?,
        api_url: cfg.api_url()?,
        router_url: cfg.router_url()?,
        memory_mb: cfg.dynos.memory_mb.unwrap_or_else(host_memory_mb),
        cpus: host_cpus(),
        labels: Default::default(),
        status: NodeStatus::Up,
        draining: false,
        joined_at: Utc::now(),
    })
}

/// A started agent.
pub struct Agent {
    pub cfg: NodeConfig,
    pub raft: HavenRaft,
    pub connector: QuicConnector,
    endpoint: quinn::Endpoint,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The dyno manager: awaited at shutdown so that dynos get their SIGTERM.
    dyno_task: Option<tokio::task::JoinHandle<()>>,
    dynos: DynoManager,
    /// The add-on manager: awaited at shutdown so that servers stop cleanly.
    addon_task: Option<tokio::task::JoinHandle<()>>,
    addons: AddonManager,
    /// Notified once `havend leave` took the node out of the cluster.
    pub left: Arc<tokio::sync::Notify>,
}

impl Agent {
    /// Starts every part of the agent from its data dir.
    pub async fn start(data: &DataDir) -> Result<Agent> {
        // Fixes the start time `GET /cluster/status` reports (a restart changes it).
        crate::version::started_at();
        crate::leave::check_not_left(&data.root)?;
        let cfg = data.load_config()?;
        // The router's port is bound first, before anything slow: a client that connects
        // while the agent starts waits in the backlog instead of being refused, and the
        // router holds its request until it knows the routes (`router::ready`).
        let router_listener = std::net::TcpListener::bind(&cfg.router_listen)
            .with_context(|| format!("bind the router on {}", cfg.router_listen))?;
        let (ca, node_cert) = data.load_certs()?;
        let server_cert = data.server_cert(&cfg, &ca)?;
        let server_key = crate::tls::certified_key(&server_cert.cert_pem, &server_cert.key_pem)
            .map_err(anyhow::Error::msg)
            .context("load the HTTPS certificate")?;
        let server_names =
            crate::tls::read_certificate(&server_cert.cert_pem, &server_cert.key_pem)
                .map_err(anyhow::Error::msg)
                .context("read the HTTPS certificate")?
                .domains;
        let peer_listen: SocketAddr = cfg.peer_listen.parse()?;
        let endpoint = peer::bind_endpoint(peer_listen, &node_cert, &ca.cert_pem)?;
        let connector = QuicConnector::new(endpoint.clone());
        let raft = HavenRaft::open(
            cfg.node_id,
            &data.raft_dir(),
            Arc::new(connector.clone()),
            cfg.raft.settings()?,
        )
        .await
        .context("open the raft store")?;
        let slugs = SlugStore::open(
            &data.slugs_dir(),
            cfg.builds.max_slug_mb.saturating_mul(1024 * 1024),
        )
        .context("open the slug store")?;
        let liveness = Liveness::default();
        let table = Arc::new(Table::default());
        let logs = Logs::default();
        let events = crate::events::Events::new(&cfg.name);
        events.record(
            "node",
            format!("havend {} started", env!("CARGO_PKG_VERSION")),
        );
        let metrics = Metrics::default();
        let services = Services {
            peer: raft.peer_server(),
            join: JoinServer {
                ca: ca.clone(),
                raft: raft.clone(),
            },
            slugs: slugs.clone(),
            liveness: liveness.clone(),
            routes: Arc::new(Receiver::new(table.clone(), raft.clone())),
            logs: logs.clone(),
            raft: raft.clone(),
        };
        let mut tasks = vec![tokio::spawn(peer_server::serve(endpoint.clone(), services))];
        info!(node_id = cfg.node_id, name = %cfg.name, peer = %peer_listen, "peer endpoint listening");

        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        let api_listener = TcpListener::bind(&cfg.api_listen)
            .await
            .with_context(|| format!("bind the API on {}", cfg.api_listen))?;
        let api_tls = crate::tls::https_server_config(Arc::new(
            rustls::sign::SingleCertAndKey::from(server_key.clone()),
        ))?;
        // `heroku run` rendezvous connections come on the API port too (TLS, then a secret).
        let (rendezvous_tx, rendezvous_rx) = tokio::sync::mpsc::channel(64);
        let api_listener = HttpsListener::spawn(
            api_listener,
            Acceptor::new(api_tls, cfg.tls.plain_http),
            Some(crate::https::Divert {
                prefix: api::rendezvous::PREFIX,
                tx: rendezvous_tx,
            }),
        )?;
        // The dyno runtime (containers where the host allows) also sandboxes builds.
        let runtime = Arc::new(if cfg.dynos.containers {
            Runtime::new(
                data.dynos_dir(),
                std::env::current_exe().context("find the havend binary")?,
            )
        } else {
            Runtime::process_only(data.dynos_dir())
        });
        // Dynos' and builds' own network namespaces, and the node's firewall.
        let network = crate::network::Network::start(&cfg.dynos, &runtime, raft.clone()).await;
        let builder = Builder::new(
            raft.clone(),
            cfg.node_id,
            cfg.api_url()?,
            router_port(&cfg.router_listen),
            data.clone(),
            slugs.clone(),
            connector.clone(),
            cfg.builds.clone(),
            runtime.clone(),
            network.clone(),
            logs.clone(),
            cfg.dynos.stack,
        )
        .context("set up the builder")?;
        tasks.push(tokio::spawn(
            builder
                .stacks()
                .clone()
                .keep_up(Duration::from_secs(5), shutdown_rx.clone()),
        ));

        // Dynos: slug cache, runtime, the reconcile loop; liveness and the leader's loops.
        let cache = SlugCache::open(
            &data.slug_cache_dir(),
            slugs.clone(),
            connector.clone(),
            raft.clone(),
            cfg.node_id,
            cfg.dynos.slug_cache_mb.saturating_mul(1024 * 1024),
            Some(builder.stacks().clone()),
        )
        .context("open the slug cache")?;
        let registrar = Registrar::new(
            cfg.node_id,
            raft.clone(),
            connector.clone(),
            table.clone(),
            Duration::from_millis(cfg.router.withdraw_timeout_ms),
        );
        tasks.push(tokio::spawn(registrar.clone().run(shutdown_rx.clone())));
        tasks.push(tokio::spawn(crate::drains::run(
            raft.clone(),
            logs.clone(),
            shutdown_rx.clone(),
        )));
        let dynos = DynoManager::new(
            cfg.node_id,
            raft.clone(),
            runtime,
            cache,
            logs.clone(),
            cfg.dynos.clone(),
            registrar,
            cfg.advertise_host.clone(),
            network.clone(),
            events.clone(),
        );
        tasks.push(tokio::spawn(network.run(shutdown_rx.clone())));
        let dyno_task = tokio::spawn(dynos.clone().run(shutdown_rx.clone()));
        // Add-on servers: the same runtime, with process records of their own.
        let addon_runtime = Arc::new(if cfg.dynos.containers {
            Runtime::new(
                data.addons_run_dir(),
                std::env::current_exe().context("find the havend binary")?,
            )
        } else {
            Runtime::process_only(data.addons_run_dir())
        });
        let addons = AddonManager::new(
            cfg.node_id,
            raft.clone(),
            addon_runtime,
            data.addons_data_dir(),
            logs.clone(),
            ca.clone(),
        );
        let addon_task = tokio::spawn(addons.clone().run(shutdown_rx.clone()));
        tasks.push(tokio::spawn(liveness::heartbeats(
            cfg.node_id,
            raft.clone(),
            connector.clone(),
            liveness.clone(),
            cfg.dynos.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(leader::control_loop(
            cfg.node_id,
            raft.clone(),
            liveness.clone(),
            cfg.dynos.clone(),
            events.clone(),
            crate::slugkeeper::Keeper::new(
                cfg.node_id,
                raft.clone(),
                slugs.clone(),
                connector.clone(),
                events.clone(),
            ),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::retention::run(
            cfg.node_id,
            raft.clone(),
            cfg.raft.retain_releases,
            events.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::slugkeeper::collect(
            raft.clone(),
            slugs.clone(),
            Duration::from_secs(cfg.builds.slug_gc_grace_secs),
            shutdown_rx.clone(),
        )));
        // Detached: it ends by itself once the cluster answered, and holds up no shutdown.
        tokio::spawn({
            let builder = builder.clone();
            async move { builder.fail_lost_builds().await }
        });
        let repos = crate::repos::Repos::new(
            cfg.node_id,
            raft.clone(),
            builder.clone(),
            logs.clone(),
            Duration::from_millis(cfg.builds.repo_poll_ms),
            data.root.join("repos-tmp"),
        );
        tasks.push(tokio::spawn(repos.clone().run(shutdown_rx.clone())));
        let backups = crate::addons::backups::Backups::new(
            raft.clone(),
            cfg.node_id,
            slugs.clone(),
            connector.clone(),
            data.root.join("backups-tmp"),
        );
        tasks.push(tokio::spawn(crate::addons::schedule::run(
            cfg.node_id,
            raft.clone(),
            backups.clone(),
            shutdown_rx.clone(),
        )));
        let left = Arc::new(tokio::sync::Notify::new());
        tasks.push(tokio::spawn(crate::leave::serve(
            crate::leave::Leaver {
                raft: raft.clone(),
                me: cfg.node_id,
                name: cfg.name.clone(),
                data_dir: data.root.clone(),
                events: events.clone(),
                left: left.clone(),
            },
            shutdown_rx.clone(),
        )));
        let ctx = ApiContext {
            raft: raft.clone(),
            node_id: cfg.node_id,
            builder,
            dynos: dynos.clone(),
            metrics: metrics.clone(),
            node_name: cfg.name.clone(),
            logs: logs.clone(),
            sessions: Default::default(),
            peers: connector.clone(),
            http: crate::tls::cluster_http_client(&ca.cert_pem)?,
            ca_pem: ca.cert_pem.clone(),
            backups,
            rendezvous: Default::default(),
            events,
            repos,
        };
        tasks.push(tokio::spawn(api::rendezvous::serve(
            ctx.clone(),
            rendezvous_rx,
        )));
        let app = api::router(ctx.clone())
            .merge(crate::git::router(ctx.clone()))
            .merge(crate::dashboard::router(api::router(ctx)));
        tasks.push(tokio::spawn(serve_http(
            "api",
            api_listener,
            app,
            shutdown_rx.clone(),
        )));
        info!(addr = %cfg.api_listen, "API listening");

        let ready = Readiness::new(cfg.node_id, liveness.clone(), &cfg.router);
        tasks.push(tokio::spawn(crate::router::ready::catch_up(
            raft.clone(),
            ready.clone(),
            shutdown_rx.clone(),
        )));
        let router = Router::new(
            raft.clone(),
            table.clone(),
            ready,
            logs.clone(),
            metrics.clone(),
            cfg.router.clone(),
            router_port(&cfg.router_listen),
        );
        let sni = crate::router::tls::SniResolver::new(
            raft.clone(),
            ca.clone(),
            server_key,
            server_names,
        );
        let router_tls = crate::tls::https_server_config(Arc::new(sni))?;
        router
            .spawn_thread(
                router_listener,
                Acceptor::new(router_tls, cfg.tls.plain_http),
                shutdown_rx.clone(),
            )
            .context("start the router")?;
        info!(addr = %cfg.router_listen, "router listening");

        let agent = Agent {
            cfg,
            raft,
            connector,
            endpoint,
            shutdown_tx,
            tasks,
            dyno_task: Some(dyno_task),
            dynos,
            addon_task: Some(addon_task),
            addons,
            left,
        };
        agent.bootstrap_if_new(data).await?;
        tasks_push_register(&agent);
        agent.resume_interrupted_join();
        Ok(agent)
    }

    /// On the first run after `init`: make a one-node cluster and commit the bootstrap
    /// command kept in the data dir (after `restore`: the restored state).
    async fn bootstrap_if_new(&self, data: &DataDir) -> Result<()> {
        crate::restore::commit_pending(&self.raft, data, &self.cfg.peer_addr()?).await?;
        let path = data.bootstrap_path();
        if !path.exists() {
            return Ok(());
        }
        let cmd: Command = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parse {}", path.display()))?;
        if !self.raft.is_initialized() {
            self.raft.initialize_single(&self.cfg.peer_addr()?).await?;
            info!("initialized a new one-node cluster");
        }
        self.raft
            .wait_for_leader(Duration::from_secs(30))
            .await
            .context("wait for this node to lead the new cluster")?;
        match self.raft.write(cmd).await {
            Ok(Ok(_)) => info!("cluster bootstrapped"),
            Ok(Err(CommandError::Conflict(_))) => info!("cluster was already bootstrapped"),
            Ok(Err(e)) => anyhow::bail!("bootstrap command rejected: {e}"),
            Err(e) => anyhow::bail!("bootstrap: {e}"),
        }
        std::fs::remove_file(&path)?;
        Ok(())
    }

    /// A node that joined but is not yet a member (its join was cut short) asks again.
    fn resume_interrupted_join(&self) {
        let Some(peer) = self.cfg.join_peer.clone() else {
            return;
        };
        let raft = self.raft.clone();
        let connector = self.connector.clone();
        let Ok(node) = node_record(&self.cfg) else {
            return;
        };
        tokio::spawn(async move {
            // A member hears from the leader within a few election timeouts.
            if raft.wait_for_leader(Duration::from_secs(5)).await.is_ok() {
                return;
            }
            info!(%peer, "not a cluster member yet; asking to join again");
            if let Err(e) =
                request_membership(&connector, &node, &peer, Duration::from_secs(300)).await
            {
                error!(error = %e, "joining the cluster failed");
            }
        });
    }

    /// Asks the cluster, through the node at `peer_addr`, to add this node.
    pub async fn request_membership(&self, peer_addr: &str, deadline: Duration) -> Result<()> {
        request_membership(
            &self.connector,
            &node_record(&self.cfg)?,
            peer_addr,
            deadline,
        )
        .await
    }

    /// Stops serving and closes the store. Dynos get their SIGTERM first, unless
    /// `keep_dynos` (an upgrade: the next agent adopts them).
    pub async fn shutdown(self, keep_dynos: bool) {
        if keep_dynos {
            info!("shutting down, leaving the dynos running");
            self.dynos.keep_dynos_at_shutdown();
            self.addons.keep_servers_at_shutdown();
        } else {
            info!("shutting down");
        }
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.dyno_task {
            let limit = Duration::from_secs(self.cfg.dynos.stop_timeout_secs + 5);
            let _ = tokio::time::timeout(limit, t).await;
        }
        if let Some(t) = self.addon_task {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        self.raft.shutdown().await;
        for t in self.tasks {
            t.abort();
        }
        self.endpoint.wait_idle().await;
        info!("stopped");
    }
}

/// Asks the cluster, through the node at `peer_addr`, to add `node`, retrying until
/// `deadline` while the cluster is unreachable or has no leader.
async fn request_membership(
    connector: &QuicConnector,
    node: &Node,
    peer_addr: &str,
    deadline: Duration,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < deadline {
        match connector.client(peer_addr).await {
            Ok(client) => {
                let mut ctx = tarpc::context::current();
                ctx.deadline = std::time::SystemTime::now() + Duration::from_secs(60);
                match client.add_node(ctx, node.clone()).await {
                    Ok(Ok(Ok(_))) => return Ok(()),
                    Ok(Ok(Err(e))) => anyhow::bail!("the cluster refused this node: {e}"),
                    Ok(Err(e)) => last = e.to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("could not join through {peer_addr}: {last}")
}

/// Keeps this node's record (addresses, capacity) current in the model after a restart.
fn tasks_push_register(agent: &Agent) {
    let raft = agent.raft.clone();
    let Ok(me) = node_record(&agent.cfg) else {
        return;
    };
    tokio::spawn(async move {
        for _ in 0..120 {
            if raft.wait_for_leader(Duration::from_secs(5)).await.is_ok() {
                let known = raft.with_state(|s| s.nodes.get(&me.id).cloned());
                let Some(known) = known else {
                    // Not registered yet: a joining node is registered by `add_node`.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                if known.peer_addr == me.peer_addr
                    && known.api_url == me.api_url
                    && known.router_url == me.router_url
                    && known.memory_mb == me.memory_mb
                    && known.cpus == me.cpus
                {
                    return;
                }
                match raft.write(Command::RegisterNode { node: me.clone() }).await {
                    Ok(Ok(_)) => {
                        info!("updated this node's record");
                        return;
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "node record update rejected");
                        return;
                    }
                    Err(e) => warn!(error = %e, "node record update failed; retrying"),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn serve_http(
    what: &'static str,
    listener: HttpsListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ConnInfo>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
    .await;
    if let Err(e) = result {
        error!(error = %e, "{what} server failed");
    }
}

//! Which app a request's host names, and what the state says about serving it.

use haven_raft::model::{DynoState, NodeId, NodeStatus, State};
use uuid::Uuid;

/// What the state says about an app, for one request.
pub struct Target {
    pub app: Uuid,
    pub name: String,
    pub maintenance: bool,
    /// Web dynos the formation asks for.
    pub web_wanted: u32,
    /// Nodes the cluster marks down: their routes are not used.
    pub down_nodes: Vec<NodeId>,
}

impl Target {
    /// The app `host` (lowercase, without port) names: `<app>.<app domain>`, else the app
    /// with that custom domain.
    pub fn resolve(s: &State, host: &str) -> Option<Target> {
        let domain = s
            .cluster
            .as_ref()
            .map_or("localhost", |c| c.app_domain.as_str());
        let by_name = host
            .strip_suffix(domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .and_then(|name| s.apps.values().find(|a| a.name == name));
        let app = by_name.or_else(|| {
            s.apps
                .values()
                .find(|a| a.domains.iter().any(|d| d.hostname == host))
        })?;
        let web_wanted = app.formation.get("web").map_or(0, |f| f.quantity);
        let down_nodes = s
            .nodes
            .values()
            .filter(|n| n.status == NodeStatus::Down)
            .map(|n| n.id)
            .collect();
        Some(Target {
            app: app.id,
            name: app.name.clone(),
            maintenance: app.maintenance,
            web_wanted,
            down_nodes,
        })
    }

    /// Whether a web dyno of the app that should run has crashed (H10 rather than H14).
    pub fn web_crashed(&self, s: &State) -> bool {
        s.dynos.values().any(|d| {
            d.app == self.app && d.process_type == "web" && d.run && d.state == DynoState::Crashed
        })
    }

    /// Whether a web dyno of the app that should run is starting or up on a node not
    /// marked down: a route for it is on its way (or its node is about to be declared
    /// down and the dyno placed elsewhere), so a request is worth holding.
    pub fn web_expected(&self, s: &State) -> bool {
        s.dynos.values().any(|d| {
            d.app == self.app
                && d.process_type == "web"
                && !d.one_off
                && d.run
                && matches!(d.state, DynoState::Starting | DynoState::Up)
                && !self.down_nodes.contains(&d.node)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;
    use haven_raft::model::{App, Cluster, Domain, Formation};

    use super::*;

    fn app(n: u128, name: &str, domains: &[&str], web: u32) -> App {
        let now = Utc::now();
        App {
            id: Uuid::from_u128(n),
            name: name.into(),
            stack: "heroku-24".into(),
            buildpacks: Vec::new(),
            maintenance: false,
            domains: domains
                .iter()
                .map(|d| Domain {
                    id: Uuid::new_v4(),
                    hostname: (*d).into(),
                    created_at: now,
                })
                .collect(),
            drains: Vec::new(),
            created_at: now,
            updated_at: now,
            released_at: None,
            config: Default::default(),
            releases: Vec::new(),
            formation: [(
                "web".to_string(),
                Formation {
                    id: Uuid::new_v4(),
                    process_type: "web".into(),
                    quantity: web,
                    size: "standard-1x".into(),
                    command: "web".into(),
                    created_at: now,
                    updated_at: now,
                },
            )]
            .into(),
            owner: Uuid::nil(),
            collaborators: Vec::new(),
        }
    }

    fn state(domain: Option<&str>) -> State {
        let mut s = State {
            cluster: domain.map(|d| Cluster {
                id: Uuid::new_v4(),
                name: "c".into(),
                app_domain: d.into(),
                created_at: Utc::now(),
                join_secret_sha256: String::new(),
                ca_fingerprint: String::new(),
            }),
            ..State::default()
        };
        for a in [
            app(1, "shop", &["www.shop.test"], 2),
            app(2, "blog", &["blog.test", "shop.apps.test"], 0),
        ] {
            s.apps.insert(a.id, a);
        }
        s
    }

    fn resolved(s: &State, host: &str) -> Option<String> {
        Target::resolve(s, host).map(|t| t.name)
    }

    #[test]
    fn hosts_name_apps_by_app_domain_then_custom_domain() {
        let s = state(Some("apps.test"));
        for (host, want) in [
            // The app's name wins over another app's custom domain.
            ("shop.apps.test", Some("shop")),
            ("blog.apps.test", Some("blog")),
            ("www.shop.test", Some("shop")),
            ("blog.test", Some("blog")),
            // Only under the cluster's app domain.
            ("shop.localhost", None),
            ("apps.test", None),
            (".apps.test", None),
            ("x.shop.apps.test", None),
            ("nope.apps.test", None),
            ("", None),
        ] {
            assert_eq!(resolved(&s, host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn without_a_cluster_apps_answer_under_localhost() {
        let s = state(None);
        assert_eq!(resolved(&s, "shop.localhost").as_deref(), Some("shop"));
        assert_eq!(resolved(&s, "shop.apps.test").as_deref(), Some("blog"));
    }

    #[test]
    fn targets_carry_what_the_request_needs() {
        let s = state(Some("apps.test"));
        let t = Target::resolve(&s, "shop.apps.test").expect("shop resolves");
        assert_eq!(t.app, Uuid::from_u128(1));
        assert_eq!(t.web_wanted, 2);
        assert!(!t.maintenance);
        assert!(t.down_nodes.is_empty());
        assert!(!t.web_crashed(&s));
        assert!(!t.web_expected(&s));
    }

    #[test]
    fn a_web_dyno_is_expected_while_it_should_run_and_is_starting_or_up_on_a_live_node() {
        use haven_raft::model::{Dyno, Node};
        let mut s = state(Some("apps.test"));
        let web = |node: NodeId, st: DynoState| {
            let mut d = Dyno::placed(
                Uuid::new_v4(),
                Uuid::from_u128(1),
                "web",
                1,
                1,
                "standard-1x",
                node,
                "web".into(),
                Utc::now(),
            );
            d.state = st;
            d
        };
        let expected = |s: &State| {
            Target::resolve(s, "shop.apps.test")
                .unwrap()
                .web_expected(s)
        };
        for (st, want) in [
            (DynoState::Starting, true),
            (DynoState::Up, true),
            (DynoState::Crashed, false),
            (DynoState::Down, false),
        ] {
            let d = web(7, st);
            s.dynos = [(d.id, d)].into();
            assert_eq!(expected(&s), want, "{st:?}");
        }
        // One that is being stopped, a worker, another app's dyno: not expected.
        let mut stopping = web(7, DynoState::Up);
        stopping.run = false;
        let mut worker = web(7, DynoState::Up);
        worker.process_type = "worker".into();
        let mut other = web(7, DynoState::Up);
        other.app = Uuid::from_u128(2);
        s.dynos = [stopping, worker, other]
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        assert!(!expected(&s));
        // Up, but on a node the cluster marked down: its route will not come back.
        let d = web(7, DynoState::Up);
        s.dynos = [(d.id, d)].into();
        let n = Node {
            id: 7,
            name: "n7".into(),
            peer_addr: "10.0.0.7:7001".into(),
            api_url: String::new(),
            router_url: String::new(),
            memory_mb: 1024,
            cpus: 1,
            labels: Default::default(),
            status: NodeStatus::Down,
            draining: false,
            joined_at: Utc::now(),
        };
        s.nodes.insert(7, n);
        assert!(!expected(&s));
    }
}

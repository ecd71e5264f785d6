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
}

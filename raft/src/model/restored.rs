//! A backed-up state made to fit the node it is restored on (`havend restore`, pure).
//!
//! The restored cluster keeps its id, name, app domain, apps, releases, config vars,
//! formations, users, tokens, add-ons (records), domains, drains and certificates. What
//! belonged to the old hosts does not come back: the old nodes are removed (their
//! identities refused, as `nodes:remove` does), their dynos are dropped (the scheduler
//! places the formations on the new node), builds that were running are failed as lost,
//! slugs and Postgres backups keep as holder only the new node, and only when their
//! bytes came with the backup; add-on members are marked down (their servers' data is
//! not in a cluster backup: restore it from a Postgres backup).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{BuildStatus, Node, State, Token, LOST_BUILD};

/// The new node and credentials a restored state is rebased onto.
#[derive(Debug, Clone)]
pub struct Rebase {
    /// The node `havend restore` made.
    pub node: Node,
    /// The new cluster CA's fingerprint (the old CA's key is not in a backup).
    pub ca_fingerprint: String,
    /// sha256 of the new join secret.
    pub join_secret_sha256: String,
    /// A new API token for the oldest admin (its sha256 and id), printed by the restore.
    pub admin_token_sha256: String,
    pub admin_token_id: Uuid,
    pub now: DateTime<Utc>,
    /// sha256s of the blobs (slugs, Postgres backup dumps) the backup carried, which the
    /// new node now holds.
    pub blobs: BTreeSet<String>,
}

/// `state` as it is restored onto `r.node`; fails when it has no cluster or no admin.
pub fn rebase_restored(mut state: State, r: &Rebase) -> Result<State, String> {
    let cluster = state
        .cluster
        .as_mut()
        .ok_or("the backup holds no cluster (was it made of an initialized cluster?)")?;
    cluster.ca_fingerprint = r.ca_fingerprint.clone();
    cluster.join_secret_sha256 = r.join_secret_sha256.clone();
    let admin = state
        .users
        .values()
        .filter(|u| u.admin)
        .min_by_key(|u| (u.created_at, u.id))
        .ok_or("the backup holds no admin user")?
        .clone();
    let old: Vec<_> = state.nodes.keys().copied().collect();
    state.removed_nodes.extend(old);
    state.removed_nodes.remove(&r.node.id);
    state.nodes.clear();
    state.nodes.insert(r.node.id, r.node.clone());
    state.dynos.clear();
    state.unplaced.clear();
    for b in state.builds.values_mut() {
        if b.status == BuildStatus::Pending {
            b.status = BuildStatus::Failed;
            b.failure = Some(format!(
                "{LOST_BUILD}: the cluster was restored from a backup"
            ));
        }
    }
    for slug in state.slugs.values_mut() {
        slug.holders = if r.blobs.contains(&slug.sha256) {
            BTreeSet::from([r.node.id])
        } else {
            BTreeSet::new()
        };
    }
    for b in state.backups.values_mut() {
        b.holders = match &b.sha256 {
            Some(sha) if r.blobs.contains(sha) => vec![r.node.id],
            _ => Vec::new(),
        };
    }
    for a in state.addons.values_mut() {
        for m in &mut a.members {
            m.up = false;
            m.streaming = false;
            m.synced = false;
        }
    }
    state.tokens.insert(
        r.admin_token_sha256.clone(),
        Token {
            id: r.admin_token_id,
            sha256: r.admin_token_sha256.clone(),
            user_email: admin.email.clone(),
            user_id: admin.id,
            description: "admin token made by havend restore".into(),
            created_at: r.now,
            expires_at: None,
        },
    );
    Ok(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Cluster, NodeStatus, Slug, User};

    fn node(id: u64) -> Node {
        Node {
            id,
            name: format!("node-{id}"),
            peer_addr: format!("10.0.0.{id}:7401"),
            api_url: format!("http://10.0.0.{id}:7400"),
            router_url: format!("http://10.0.0.{id}:7480"),
            memory_mb: 1024,
            cpus: 2,
            labels: BTreeMap::new(),
            status: NodeStatus::Up,
            draining: false,
            joined_at: Utc::now(),
        }
    }

    fn slug(sha: &str) -> Slug {
        Slug {
            id: Uuid::new_v4(),
            app: Uuid::new_v4(),
            sha256: sha.into(),
            size: 1,
            process_types: BTreeMap::new(),
            holders: BTreeSet::from([1, 2]),
            commit: None,
            stack: "heroku-24".into(),
            buildpack_provided_description: None,
            created_at: Utc::now(),
        }
    }

    fn backed_up() -> State {
        let mut s = State {
            cluster: Some(Cluster {
                id: Uuid::new_v4(),
                name: "haven".into(),
                app_domain: "example.com".into(),
                created_at: Utc::now(),
                join_secret_sha256: "old-secret".into(),
                ca_fingerprint: "old-ca".into(),
            }),
            ..State::default()
        };
        for id in [1, 2, 3] {
            s.nodes.insert(id, node(id));
        }
        let admin = User {
            id: Uuid::new_v4(),
            email: "admin@haven.local".into(),
            created_at: Utc::now(),
            admin: true,
            password_hash: None,
        };
        s.users.insert(admin.id, admin);
        for sha in ["aa", "bb"] {
            let sl = slug(sha);
            s.slugs.insert(sl.id, sl);
        }
        s
    }

    fn rebase(blobs: &[&str]) -> Rebase {
        Rebase {
            node: node(9),
            ca_fingerprint: "new-ca".into(),
            join_secret_sha256: "new-secret".into(),
            admin_token_sha256: "tok".into(),
            admin_token_id: Uuid::new_v4(),
            now: Utc::now(),
            blobs: blobs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_old_hosts_are_gone_and_the_new_node_holds_what_came_along() {
        let s = backed_up();
        let out = rebase_restored(s.clone(), &rebase(&["aa"])).unwrap();
        assert_eq!(out.nodes.keys().copied().collect::<Vec<_>>(), vec![9]);
        assert_eq!(out.removed_nodes, BTreeSet::from([1, 2, 3]));
        let c = out.cluster.as_ref().unwrap();
        assert_eq!(c.ca_fingerprint, "new-ca");
        assert_eq!(c.join_secret_sha256, "new-secret");
        assert_eq!(c.id, s.cluster.as_ref().unwrap().id);
        for sl in out.slugs.values() {
            let want = if sl.sha256 == "aa" {
                BTreeSet::from([9])
            } else {
                BTreeSet::new()
            };
            assert_eq!(sl.holders, want, "{}", sl.sha256);
        }
        let t = &out.tokens["tok"];
        assert_eq!(t.user_email, "admin@haven.local");
        assert_eq!(out.apps, s.apps);
        assert_eq!(out.users, s.users);
    }

    #[test]
    fn a_state_without_a_cluster_or_an_admin_is_refused() {
        let err = rebase_restored(State::default(), &rebase(&[])).unwrap_err();
        assert!(err.contains("no cluster"), "{err}");
        let mut s = backed_up();
        s.users.clear();
        let err = rebase_restored(s, &rebase(&[])).unwrap_err();
        assert!(err.contains("no admin"), "{err}");
    }
}

//! Add-ons (design §12): an add-on is a server Haven runs for an app (Postgres, Redis)
//! on members placed on nodes; attachments give apps its URL as config vars.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NodeId;

/// Heroku's add-on states (the Heroku CLI also knows `deprovisioning`). A deprovisioned
/// add-on is removed from the state once its members' data is gone.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum AddonState {
    /// Created; its servers are starting.
    Provisioning,
    /// Every member answered.
    Provisioned,
    /// Destroyed: its nodes stop the servers and remove the data.
    Deprovisioning,
}

impl AddonState {
    pub fn as_str(self) -> &'static str {
        match self {
            AddonState::Provisioning => "provisioning",
            AddonState::Provisioned => "provisioned",
            AddonState::Deprovisioning => "deprovisioning",
        }
    }
}

/// One server of an add-on, on one node (members of one add-on never share a node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonMember {
    /// Names its data dir and its process on the node.
    pub id: Uuid,
    pub node: NodeId,
    /// The node's address when the member was placed (the server listens there).
    pub host: String,
    /// Chosen by the placement, unique among the members on the same address.
    pub port: u16,
    /// The node reported that the server answers.
    pub up: bool,
    /// A standby: its node reported it streaming from the primary of the current
    /// generation (cleared when its node goes down or a failover happens).
    pub streaming: bool,
    /// A standby: the primary reported it a synchronous standby (every commit the primary
    /// acknowledged is on its disk) in the current generation. Only a synced standby may be
    /// promoted; cleared when its node goes down (before its primary may stop waiting for
    /// it) and on failover.
    pub synced: bool,
}

/// An add-on: one service plan instance, owned (billed) by one app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addon {
    pub id: Uuid,
    /// `postgresql-curved-12345`: unique in the cluster.
    pub name: String,
    /// A catalog service name, `heroku-postgresql`.
    pub service: String,
    /// The plan's own name, `essential-0`.
    pub plan: String,
    /// The app that owns it.
    pub app: Uuid,
    pub state: AddonState,
    /// The server's password, random, chosen by the proposer. Never logged.
    pub password: String,
    pub members: Vec<AddonMember>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The member that serves writes (the URL points at it); `None`: the first member.
    pub primary: Option<Uuid>,
    /// Fencing number: raised by every failover. A member's server acts on its role only
    /// for the current generation; an old primary rebuilds itself as a standby.
    pub generation: u64,
    /// A provider add-on (an external service over Heroku's add-on provider API; then
    /// `service` names the provider and `members` is empty): the id the provider gave
    /// the resource. `None`: Haven runs the servers.
    pub provider_resource: Option<String>,
    /// A provider add-on's config as the provider returned it (its own keys). Secret: it
    /// reaches only the attached apps' config vars.
    pub provider_config: BTreeMap<String, String>,
}

/// What a member is in its add-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

impl Addon {
    /// An add-on of a registered provider (no members; config from the provider).
    pub fn is_provider(&self) -> bool {
        self.provider_resource.is_some()
    }

    /// The primary member's id (the first member unless a failover chose another).
    pub fn primary_id(&self) -> Option<Uuid> {
        self.primary.or_else(|| self.members.first().map(|m| m.id))
    }

    /// The primary member.
    pub fn primary_member(&self) -> Option<&AddonMember> {
        let id = self.primary_id()?;
        self.members.iter().find(|m| m.id == id)
    }

    /// `member`'s role.
    pub fn role_of(&self, member: Uuid) -> Role {
        if self.primary_id() == Some(member) {
            Role::Primary
        } else {
            Role::Standby
        }
    }

    /// The members other than the primary.
    pub fn standbys(&self) -> impl Iterator<Item = &AddonMember> {
        let p = self.primary_id();
        self.members.iter().filter(move |m| Some(m.id) != p)
    }

    /// HA (more than one member) and every standby synchronous: a failover would lose
    /// nothing.
    pub fn ha_available(&self) -> bool {
        self.members.len() > 1 && self.standbys().all(|m| m.synced)
    }

    /// The Postgres `application_name` a member's standby connects with (the primary's
    /// `synchronous_standby_names` lists it): `m` + the member id without dashes.
    pub fn application_name(member: Uuid) -> String {
        format!("m{}", member.simple())
    }

    /// The database user of a Postgres add-on (derived from the id).
    pub fn db_user(&self) -> String {
        format!("u{}", &self.id.simple().to_string()[..13])
    }

    /// The database name of a Postgres add-on (derived from the id).
    pub fn db_name(&self) -> String {
        format!("d{}", &self.id.simple().to_string()[19..32])
    }

    /// The URL apps get: `postgres://USER:PW@HOST:PORT/DB` or `redis://default:PW@HOST:PORT`, at
    /// the primary member (the only one of single-node plans). `None` without members.
    pub fn url(&self) -> Option<String> {
        let m = self.primary_member()?;
        let host = if m.host.contains(':') {
            format!("[{}]", m.host)
        } else {
            m.host.clone()
        };
        let pw = &self.password;
        let port = m.port;
        Some(
            match haven_catalog::addon_service(&self.service).map(|s| s.engine) {
                Some(haven_catalog::Engine::Redis) => format!("redis://default:{pw}@{host}:{port}"),
                _ => format!(
                    "postgres://{}:{pw}@{host}:{port}/{}",
                    self.db_user(),
                    self.db_name()
                ),
            },
        )
    }
}

/// An app's use of an add-on: sets `config_vars` to the add-on's URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub id: Uuid,
    pub addon: Uuid,
    pub app: Uuid,
    /// `DATABASE`, `HEROKU_POSTGRESQL_JADE`, `REDIS`: unique in the app.
    pub name: String,
    /// The config vars it sets (`DATABASE_URL`, `HEROKU_POSTGRESQL_JADE_URL`).
    pub config_vars: Vec<String>,
    pub created_at: DateTime<Utc>,
}

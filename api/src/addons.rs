//! Wire types of add-ons: services, plans, add-ons and attachments (Heroku's `add-on`,
//! `add-on-service`, `plan` and `add-on-attachment` shapes; add-ons always carry the
//! expanded `addon_service` and `plan` objects). Haven's additions: a plan's
//! `available`, `memory_mb` and `members`; an add-on's `members`; an attachment's
//! `config_vars`.

use serde::{Deserialize, Serialize};

use crate::{Generation, NamedRef};

/// `GET /addon-services/{id-or-name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonService {
    pub id: String,
    pub name: String,
    pub human_name: String,
    pub cli_plugin_name: Option<String>,
    /// `ga`.
    pub state: String,
    pub supports_multiple_installations: bool,
    pub supports_sharing: bool,
    pub supported_generations: Vec<Generation>,
    pub created_at: String,
    pub updated_at: String,
}

/// A price: cents per `unit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Price {
    pub cents: u64,
    pub contract: bool,
    pub unit: String,
}

/// `GET /addon-services/{service}/plans/{plan}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    /// `heroku-postgresql:essential-0`.
    pub name: String,
    pub human_name: String,
    pub description: String,
    pub default: bool,
    pub price: Price,
    /// `public`.
    pub state: String,
    pub visible: bool,
    pub compliance: Option<Vec<String>>,
    pub installable_inside_private_network: bool,
    pub installable_outside_private_network: bool,
    pub space_default: bool,
    pub addon_service: NamedRef,
    pub created_at: String,
    pub updated_at: String,
    /// Haven: `false` for a plan listed but not yet offered (creating one is refused).
    pub available: bool,
    /// Haven: memory each member reserves on its node, MiB.
    pub memory_mb: u64,
    /// Haven: servers per add-on, each on its own node.
    pub members: u32,
}

/// `{id, name, type}` of who pays.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BillingEntity {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One server of an add-on (Haven's addition).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonMember {
    pub id: String,
    /// `{id, name}` of its node.
    pub node: NamedRef,
    pub host: String,
    pub port: u16,
    /// Its server answers.
    pub up: bool,
    /// `primary` or `standby`.
    #[serde(default)]
    pub role: String,
    /// A standby streams from its primary.
    #[serde(default)]
    pub streaming: bool,
    /// A standby has every commit the primary acknowledged (it may be promoted).
    #[serde(default)]
    pub synced: bool,
}

/// `GET /addons/{id-or-name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addon {
    pub id: String,
    pub name: String,
    pub addon_service: AddonService,
    pub plan: Plan,
    pub app: NamedRef,
    pub billing_entity: BillingEntity,
    pub billed_price: Option<Price>,
    /// Names of the config vars its attachments to the owning app set.
    pub config_vars: Vec<String>,
    pub actions: Vec<serde_json::Value>,
    pub provider_id: String,
    /// Heroku's "is being created in the background" text while provisioning, else empty.
    pub provision_message: String,
    /// `provisioning`, `provisioned`, `deprovisioning`.
    pub state: String,
    pub web_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub members: Vec<AddonMember>,
}

/// `POST /apps/{app}/addons`. `plan` is `"svc:plan"` or `{"name": "svc:plan"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonCreate {
    pub plan: PlanRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Provider options (`-- --flag value`); Haven's own services take none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A plan as a client names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PlanRef {
    Name(String),
    Object { name: String },
}

impl PlanRef {
    pub fn name(&self) -> &str {
        match self {
            PlanRef::Name(n) | PlanRef::Object { name: n } => n,
        }
    }
}

/// `{name}` of an attachment in a create body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentName {
    /// Absent (the Heroku CLI sends `{"attachment":{}}` without `--as`): the default name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `{id, name, app}` of the add-on an attachment uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentAddon {
    pub id: String,
    pub name: String,
    pub app: NamedRef,
}

/// `GET /apps/{app}/addon-attachments/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub namespace: Option<String>,
    pub addon: AttachmentAddon,
    pub app: NamedRef,
    pub web_url: Option<String>,
    pub log_input_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Haven: the config vars it sets.
    pub config_vars: Vec<String>,
}

/// `POST /addon-attachments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentCreate {
    /// The add-on's id or name.
    pub addon: String,
    /// The app's id or name.
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// One item of `GET /addons/{addon}/config`: what the add-on gives the apps it is
/// attached to (`URL`, which attachments set as `NAME_URL`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonConfigItem {
    pub name: String,
    pub value: Option<String>,
}

/// A registered third-party add-on provider (`GET /cluster/addon-providers`); its
/// password is never shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonProvider {
    pub id: String,
    pub name: String,
    pub url: String,
    /// The plans' own names, the default first.
    pub plans: Vec<String>,
    pub created_at: String,
}

/// `POST /cluster/addon-providers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonProviderCreate {
    pub name: String,
    pub url: String,
    pub password: String,
    pub plans: Vec<String>,
}

/// `PATCH /apps/{app}/addons/{addon}`: a new plan (`service:plan` or the plan's name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonUpdate {
    pub plan: PlanRef,
}

//! Model → wire conversions, one per resource, in one place.

use chrono::{DateTime, SecondsFormat, Utc};
use haven_api as w;
use haven_raft::model::{self, State};
use uuid::Uuid;

/// Fixed ids for things Haven has one of.
const GENERATION_ID: &str = "7d6e3a0e-8a3c-4b0e-9a57-2f1d1c7e0b01";
const REGION_ID: &str = "4f4e2a8c-1b7d-4e7a-9c4b-6a1e0d3b5c02";

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stable id for a name (stacks, sizes): a v5-like hash so it never changes.
fn name_id(kind: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("haven:{kind}:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b).to_string()
}

/// Heroku's capitalization of a size (`standard-1x` → `Standard-1X`).
pub fn size_display(size: &str) -> String {
    let mut out = String::new();
    for (i, part) in size.split('-').enumerate() {
        if i > 0 {
            out.push('-');
        }
        if i == 0 {
            let mut c = part.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(&part.to_ascii_uppercase());
        }
    }
    out
}

fn admin_ref(state: &State, email: &str) -> w::UserRef {
    let id = state
        .users
        .values()
        .find(|u| u.email == email)
        .map(|u| u.id.to_string())
        .unwrap_or_else(|| name_id("user", email));
    w::UserRef { id, email: email.to_string() }
}

/// The URLs of an app as seen through node `node_id`.
fn urls(state: &State, node_id: u64, name: &str) -> (String, String) {
    let node = state.nodes.get(&node_id);
    let api = node.map(|n| n.api_url.clone()).unwrap_or_default();
    let domain = state.cluster.as_ref().map(|c| c.app_domain.as_str()).unwrap_or("localhost");
    let port = node
        .and_then(|n| n.router_url.rsplit_once(':').map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| "80".into());
    let web = if port == "80" {
        format!("http://{name}.{domain}/")
    } else {
        format!("http://{name}.{domain}:{port}/")
    };
    (format!("{api}/{name}.git"), web)
}

pub fn app(state: &State, node_id: u64, a: &model::App) -> w::App {
    let (git_url, web_url) = urls(state, node_id, &a.name);
    let owner = state
        .users
        .values()
        .next()
        .map(|u| w::UserRef { id: u.id.to_string(), email: u.email.clone() })
        .unwrap_or_else(|| admin_ref(state, "admin@haven.local"));
    let stack = w::NamedRef { id: name_id("stack", &a.stack), name: a.stack.clone() };
    w::App {
        id: a.id.to_string(),
        name: a.name.clone(),
        git_url,
        web_url,
        maintenance: a.maintenance,
        build_stack: stack.clone(),
        stack,
        generation: w::Generation { id: GENERATION_ID.into(), name: "cedar".into() },
        owner,
        region: w::NamedRef { id: REGION_ID.into(), name: "haven".into() },
        organization: None,
        team: None,
        space: None,
        internal_routing: None,
        acm: false,
        buildpack_provided_description: None,
        repo_size: None,
        slug_size: None,
        archived_at: None,
        released_at: a.released_at.map(time),
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
    }
}

pub fn release(state: &State, a: &model::App, r: &model::Release) -> w::Release {
    let current = a.current_release().map(|c| c.id) == Some(r.id);
    w::Release {
        id: r.id.to_string(),
        version: r.version,
        status: r.status.as_str().into(),
        current,
        description: r.description.clone(),
        app: w::AppRef { id: a.id.to_string(), name: a.name.clone() },
        slug: r.slug.map(|s| w::IdRef { id: s.to_string() }),
        user: admin_ref(state, &r.user),
        addon_plan_names: Vec::new(),
        artifacts: Vec::new(),
        output_stream_url: None,
        eligible_for_rollback: r.status == model::ReleaseStatus::Succeeded && !current,
        created_at: time(r.created_at),
        updated_at: time(r.created_at),
    }
}

pub fn formation(a: &model::App, f: &model::Formation) -> w::Formation {
    w::Formation {
        id: f.id.to_string(),
        app: w::AppRef { id: a.id.to_string(), name: a.name.clone() },
        process_type: f.process_type.clone(),
        quantity: f.quantity,
        size: size_display(&f.size),
        dyno_size: w::NamedRef { id: name_id("size", &f.size), name: size_display(&f.size) },
        command: f.command.clone(),
        created_at: time(f.created_at),
        updated_at: time(f.updated_at),
    }
}

pub fn account(user: &model::User) -> w::Account {
    w::Account {
        id: user.id.to_string(),
        email: user.email.clone(),
        name: None,
        allow_tracking: false,
        beta: false,
        verified: true,
        federated: false,
        two_factor_authentication: false,
        last_login: None,
        suspended_at: None,
        delinquent_at: None,
        sms_number: None,
        country_of_residence: None,
        default_organization: None,
        default_team: None,
        identity_provider: None,
        created_at: time(user.created_at),
        updated_at: time(user.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_capitalized_like_heroku() {
        assert_eq!(size_display("standard-1x"), "Standard-1X");
        assert_eq!(size_display("performance-m"), "Performance-M");
        assert_eq!(size_display("eco"), "Eco");
    }

    #[test]
    fn name_ids_are_stable_uuids() {
        let a = name_id("stack", "heroku-24");
        assert_eq!(a, name_id("stack", "heroku-24"));
        assert_ne!(a, name_id("stack", "heroku-22"));
        assert!(a.parse::<Uuid>().is_ok());
    }
}

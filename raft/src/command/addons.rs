//! Add-ons (design §12): create (members placed by the proposer, checked here) with the
//! first attachment, destroy, and the members' reports from their nodes; attaching more
//! apps is in [`super::attachments`].
//!
//! An attachment's config vars are set to the add-on's URL and unset when it goes, each
//! in one release described like Heroku's ("Attach DATABASE
//! (@ref:postgresql-curved-12345)"). Destroying detaches everything and leaves the add-on
//! `Deprovisioning` until its nodes report its members' data removed; then it is gone.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apps::app_mut;
use super::releases::push_release;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{
    normalize_attachment_name, provider_attachment_name, provider_config_prefix,
    provider_config_vars, validate_addon_name, validate_config_key, Addon, AddonState, Attachment,
    ConfigVars, NodeId, NodeStatus, State,
};

/// A new attachment: its id, the app, and the name asked for (`--as`), if any.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentSpec {
    pub id: Uuid,
    pub app: Uuid,
    pub name: Option<String>,
}

/// A member's state as its node reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MemberReport {
    pub member: Uuid,
    /// The server answers.
    pub up: bool,
    /// The add-on generation the server runs its role for; `streaming` and
    /// `sync_standbys` count only when it is the current one.
    pub generation: u64,
    /// A standby: it streams from its primary.
    pub streaming: bool,
    /// A primary: the members it waits for at COMMIT and that are in sync.
    pub sync_standbys: Vec<Uuid>,
}

/// Release ids of a command that makes several releases: one per attachment, derived
/// from the proposer's `seed`, so every replica derives the same.
pub(super) fn derived_id(seed: Uuid, attachment: Uuid) -> Uuid {
    Uuid::from_u128(seed.as_u128() ^ attachment.as_u128().rotate_left(17))
}

fn addon_conflict(name: &str) -> CommandError {
    CommandError::Conflict(format!(
        "The name {name} is already taken by another add-on."
    ))
}

pub(super) fn addon_not_found() -> CommandError {
    CommandError::NotFound("Couldn't find that add-on.".into())
}

/// Creates `addon` (state `Provisioning`, members placed), its first attachment and the
/// release that sets its config vars.
pub(super) fn create(
    state: &mut State,
    addon: &Addon,
    attachment: &AttachmentSpec,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    if addon.is_provider() {
        return create_provider(state, addon, attachment, release_id, actor);
    }
    let (service, plan) = haven_catalog::addon_service(&addon.service)
        .and_then(|s| Some((s, haven_catalog::service_plan(s, &addon.plan)?)))
        .ok_or_else(|| {
            CommandError::NotFound(format!(
                "Couldn't find either the add-on service or the add-on plan of \"{}:{}\".",
                addon.service, addon.plan
            ))
        })?;
    if !plan.available {
        return Err(CommandError::Invalid(format!(
            "{} is not yet available on Haven (it needs a standby on another node); use {}.",
            plan.wire_name(service),
            service
                .plans
                .iter()
                .find(|p| p.default)
                .map_or_else(String::new, |p| p.wire_name(service))
        )));
    }
    validate_addon_name(&addon.name).map_err(CommandError::Invalid)?;
    if state.addons.values().any(|a| a.name == addon.name) {
        return Err(addon_conflict(&addon.name));
    }
    if state.addons.contains_key(&addon.id) || state.attachments.contains_key(&attachment.id) {
        return Err(CommandError::Conflict(
            "add-on or attachment id exists".into(),
        ));
    }
    if addon.app != attachment.app {
        return Err(CommandError::Invalid(
            "the first attachment is the owner's".into(),
        ));
    }
    if addon.password.len() < 16 {
        return Err(CommandError::Invalid(
            "the add-on's password is too short".into(),
        ));
    }
    check_members(state, addon, plan.members)?;
    if !state.apps.contains_key(&addon.app) {
        return Err(super::apps::not_found_app(&addon.app));
    }
    let (name, vars) = super::attachments::naming(state, service, attachment)?;
    let mut new = addon.clone();
    new.state = AddonState::Provisioning;
    new.primary = new.members.first().map(|m| m.id);
    new.generation = 0;
    for m in &mut new.members {
        m.up = false;
        m.streaming = false;
        m.synced = false;
    }
    new.created_at = actor.at;
    new.updated_at = actor.at;
    insert_attached(state, new, attachment, name, vars, release_id, actor)
}

/// Creates a provider add-on: the proposer provisioned it at the provider (its
/// resource id and config are in `addon`); it has no members and is `Provisioned` at once.
fn create_provider(
    state: &mut State,
    addon: &Addon,
    attachment: &AttachmentSpec,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let provider = state.addon_providers.get(&addon.service).ok_or_else(|| {
        CommandError::NotFound(format!(
            "Couldn't find either the add-on service or the add-on plan of \"{}:{}\".",
            addon.service, addon.plan
        ))
    })?;
    if !provider.plans.contains(&addon.plan) {
        return Err(CommandError::NotFound(format!(
            "Couldn't find either the add-on service or the add-on plan of \"{}:{}\".",
            addon.service, addon.plan
        )));
    }
    validate_addon_name(&addon.name).map_err(CommandError::Invalid)?;
    if state.addons.values().any(|a| a.name == addon.name) {
        return Err(addon_conflict(&addon.name));
    }
    if state.addons.contains_key(&addon.id) || state.attachments.contains_key(&attachment.id) {
        return Err(CommandError::Conflict(
            "add-on or attachment id exists".into(),
        ));
    }
    if addon.app != attachment.app {
        return Err(CommandError::Invalid(
            "the first attachment is the owner's".into(),
        ));
    }
    if !addon.members.is_empty() {
        return Err(CommandError::Invalid(
            "a provider's add-on runs no members".into(),
        ));
    }
    check_provider_config(&addon.provider_config)?;
    if !state.apps.contains_key(&addon.app) {
        return Err(super::apps::not_found_app(&addon.app));
    }
    let mut new = addon.clone();
    new.state = AddonState::Provisioned;
    new.primary = None;
    new.generation = 0;
    new.created_at = actor.at;
    new.updated_at = actor.at;
    let (name, vars) = provider_naming(state, &new, attachment)?;
    insert_attached(state, new, attachment, name, vars, release_id, actor)
}

/// A provider's config: keys that are config var names, at most 32 of them.
fn check_provider_config(config: &BTreeMap<String, String>) -> Result<(), CommandError> {
    if config.len() > 32 {
        return Err(CommandError::Invalid(
            "the provider returned more than 32 config vars".into(),
        ));
    }
    for k in config.keys() {
        validate_config_key(k)
            .map_err(|e| CommandError::Invalid(format!("the provider's config: {e}")))?;
    }
    Ok(())
}

/// The name and config vars of a new attachment of provider add-on `a` (see
/// `model::providers` for the rule), refused like [`naming`]'s.
pub(super) fn provider_naming(
    state: &State,
    a: &Addon,
    spec: &AttachmentSpec,
) -> Result<(String, Vec<String>), CommandError> {
    let as_name = spec
        .name
        .as_deref()
        .map(normalize_attachment_name)
        .transpose()
        .map_err(CommandError::Invalid)?;
    let existing = state.app_attachments(spec.app);
    if let Some(n) = &as_name {
        if existing.iter().any(|t| &t.name == n) {
            return Err(CommandError::Conflict(format!(
                "The attachment name {n} is already used by another add-on of this app."
            )));
        }
    }
    let taken: Vec<&str> = existing.iter().map(|t| t.name.as_str()).collect();
    let prefix = state
        .addon_providers
        .get(&a.service)
        .map_or_else(|| provider_config_prefix(&a.service), |p| p.config_prefix());
    let name = provider_attachment_name(
        &prefix,
        &taken,
        as_name.as_deref(),
        spec.id.as_u128() as u64,
    );
    let vars: Vec<String> = provider_config_vars(&prefix, &name, &a.provider_config)
        .into_keys()
        .collect();
    if let Some((t, v)) = existing.iter().find_map(|t| {
        t.config_vars
            .iter()
            .find(|v| vars.contains(v))
            .map(|v| (t, v))
    }) {
        return Err(CommandError::Conflict(format!(
            "The config var {v} is already set by the attachment {}.",
            t.name
        )));
    }
    Ok((name, vars))
}

/// Changes a provider add-on's plan (the provider already did); with `config`, the
/// provider's new config replaces the old and every attachment's vars follow, in one
/// release per attachment ("Update NAME (@ref:ADDON)").
pub(super) fn change_plan(
    state: &mut State,
    addon: Uuid,
    plan: &str,
    config: Option<&BTreeMap<String, String>>,
    release_seed: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state.addons.get(&addon).ok_or_else(addon_not_found)?;
    if !a.is_provider() {
        return Err(CommandError::Invalid(format!(
            "{} cannot change plans on Haven yet; create a new add-on of the plan.",
            a.service
        )));
    }
    if a.state == AddonState::Deprovisioning {
        return Err(CommandError::Conflict(format!(
            "{} is being deprovisioned.",
            a.name
        )));
    }
    let known = state
        .addon_providers
        .get(&a.service)
        .is_some_and(|p| p.plans.iter().any(|x| x == plan));
    if !known {
        return Err(CommandError::NotFound(format!(
            "Couldn't find either the add-on service or the add-on plan of \"{}:{plan}\".",
            a.service
        )));
    }
    if let Some(c) = config {
        check_provider_config(c)?;
    }
    let mut new = a.clone();
    new.plan = plan.to_string();
    new.updated_at = actor.at;
    let mut releases = Vec::new();
    let mut atts = Vec::new();
    if let Some(c) = config.filter(|c| **c != new.provider_config) {
        new.provider_config = c.clone();
        let prefix = state.addon_providers.get(&new.service).map_or_else(
            || provider_config_prefix(&new.service),
            |p| p.config_prefix(),
        );
        let olds: Vec<Attachment> = state
            .addon_attachments(addon)
            .into_iter()
            .cloned()
            .collect();
        for old in olds {
            let values = provider_config_vars(&prefix, &old.name, c);
            let mut t = old.clone();
            // Unset the old vars, set the new ones: one list covers both.
            t.config_vars = old
                .config_vars
                .iter()
                .chain(values.keys())
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect();
            let v = set_vars(
                state,
                &t,
                Some(&values),
                &new.name,
                derived_id(release_seed, t.id),
                actor,
                "Update",
            )?;
            t.config_vars = values.into_keys().collect();
            state.attachments.insert(t.id, t.clone());
            releases.push((t.app, v));
            atts.push(t);
        }
    }
    state.addons.insert(addon, new.clone());
    Ok(CommandOutput::Addon {
        addon: Box::new(new),
        attachments: atts,
        releases,
    })
}

/// The last step of a create: the add-on goes into the state with its first attachment,
/// whose vars are set in one `Attach` release.
fn insert_attached(
    state: &mut State,
    new: Addon,
    attachment: &AttachmentSpec,
    name: String,
    vars: Vec<String>,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let att = Attachment {
        id: attachment.id,
        addon: new.id,
        app: attachment.app,
        name,
        config_vars: vars,
        created_at: actor.at,
    };
    let values = att_values(state, &new, &att);
    let version = set_vars(
        state,
        &att,
        Some(&values),
        &new.name,
        release_id,
        actor,
        "Attach",
    )?;
    state.addons.insert(new.id, new.clone());
    state.attachments.insert(att.id, att.clone());
    Ok(CommandOutput::Addon {
        addon: Box::new(new),
        attachments: vec![att.clone()],
        releases: vec![(att.app, version)],
    })
}

/// Members on distinct, up nodes of the model, on ports no other member of the same
/// address uses, as many as the plan runs.
fn check_members(state: &State, addon: &Addon, want: u32) -> Result<(), CommandError> {
    if addon.members.len() != want as usize {
        return Err(CommandError::Invalid(format!(
            "the plan runs {want} members, not {}",
            addon.members.len()
        )));
    }
    let mut nodes = BTreeSet::new();
    let mut ports: BTreeSet<(&str, u16)> = state
        .addons
        .values()
        .flat_map(|a| a.members.iter().map(|m| (m.host.as_str(), m.port)))
        .collect();
    for m in &addon.members {
        let up = state
            .nodes
            .get(&m.node)
            .is_some_and(|n| n.status == NodeStatus::Up && !n.draining);
        if !up {
            return Err(CommandError::Conflict(format!(
                "node {} is no longer up to run the add-on; try again",
                m.node
            )));
        }
        if !nodes.insert(m.node) {
            return Err(CommandError::Invalid(
                "members of one add-on share a node".into(),
            ));
        }
        if !ports.insert((m.host.as_str(), m.port)) {
            return Err(CommandError::Conflict(format!(
                "port {} on {} was taken meanwhile; try again",
                m.port, m.host
            )));
        }
    }
    Ok(())
}

/// The config vars (with values) attachment `att` of add-on `a` sets: its vars to the
/// add-on's URL, or for a provider add-on each provider key under the attachment's name.
pub(super) fn att_values(state: &State, a: &Addon, att: &Attachment) -> BTreeMap<String, String> {
    if a.is_provider() {
        let prefix = state
            .addon_providers
            .get(&a.service)
            .map_or_else(|| provider_config_prefix(&a.service), |p| p.config_prefix());
        provider_config_vars(&prefix, &att.name, &a.provider_config)
    } else {
        let url = a.url().unwrap_or_default();
        att.config_vars
            .iter()
            .map(|v| (v.clone(), url.clone()))
            .collect()
    }
}

/// Sets (`values` given: var → value) or unsets the attachment's vars in its app, in one
/// release `"{verb} NAME (@ref:ADDON)"`; returns its version.
pub(super) fn set_vars(
    state: &mut State,
    att: &Attachment,
    values: Option<&BTreeMap<String, String>>,
    addon_name: &str,
    release_id: Uuid,
    actor: &Actor,
    verb: &str,
) -> Result<u64, CommandError> {
    let a = app_mut(state, &att.app)?;
    let mut config = a.config.to_map();
    for v in &att.config_vars {
        match values.and_then(|m| m.get(v)) {
            Some(value) => {
                config.insert(v.clone(), value.clone());
            }
            None => {
                config.remove(v);
            }
        }
    }
    let slug = a.current_release().and_then(|r| r.slug);
    let config = ConfigVars::new(config);
    a.config = config.clone();
    Ok(push_release(
        a,
        release_id,
        slug,
        config,
        format!("{verb} {} (@ref:{addon_name})", att.name),
        actor,
    ))
}

/// Sets the vars of every attachment of add-on `a` again (its URL or password changed),
/// one release per attachment described `"{verb} NAME (@ref:ADDON)"`, ids derived from
/// `release_seed`: the command's output.
pub(super) fn reset_all_vars(
    state: &mut State,
    a: Addon,
    release_seed: Uuid,
    actor: &Actor,
    verb: &str,
) -> CommandResult {
    let atts: Vec<Attachment> = state.addon_attachments(a.id).into_iter().cloned().collect();
    let mut releases = Vec::new();
    for t in &atts {
        let values = att_values(state, &a, t);
        let v = set_vars(
            state,
            t,
            Some(&values),
            &a.name,
            derived_id(release_seed, t.id),
            actor,
            verb,
        )?;
        releases.push((t.app, v));
    }
    Ok(CommandOutput::Addon {
        addon: Box::new(a),
        attachments: atts,
        releases,
    })
}

/// Destroys an add-on: detaches every attachment (a release in each app) and marks it
/// `Deprovisioning`. Destroying one already deprovisioning changes nothing.
pub(super) fn destroy(
    state: &mut State,
    addon: Uuid,
    release_seed: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state
        .addons
        .get(&addon)
        .ok_or_else(addon_not_found)?
        .clone();
    if a.state == AddonState::Deprovisioning {
        return Ok(CommandOutput::Addon {
            addon: Box::new(a),
            attachments: Vec::new(),
            releases: Vec::new(),
        });
    }
    let atts: Vec<Attachment> = state
        .addon_attachments(addon)
        .into_iter()
        .cloned()
        .collect();
    let mut releases = Vec::new();
    for t in &atts {
        // Apps of attachments exist (an app's deletion removes its attachments).
        let v = set_vars(
            state,
            t,
            None,
            &a.name,
            derived_id(release_seed, t.id),
            actor,
            "Detach",
        )?;
        releases.push((t.app, v));
        state.attachments.remove(&t.id);
    }
    let a = state.addons.get_mut(&addon).ok_or_else(addon_not_found)?;
    a.state = AddonState::Deprovisioning;
    a.updated_at = actor.at;
    let a = a.clone();
    if a.is_provider() {
        // No member holds data: the provider deprovisioned it before this command.
        state.addons.remove(&addon);
    }
    Ok(CommandOutput::Addon {
        addon: Box::new(a),
        attachments: atts,
        releases,
    })
}

/// A node reports its members: which answer (all members up, and every standby synced:
/// `Provisioned`), which standbys stream and which the primary has in sync (counted only
/// for the current generation), and which of a deprovisioning add-on have their data
/// removed (the last one removes the add-on). Members of other nodes, and `gone` members
/// of add-ons not being deprovisioned, are ignored.
pub(super) fn report(
    state: &mut State,
    node: NodeId,
    reports: &[MemberReport],
    gone: &[Uuid],
    at: DateTime<Utc>,
) -> CommandResult {
    let by_member: BTreeMap<Uuid, &MemberReport> = reports.iter().map(|r| (r.member, r)).collect();
    let mut emptied = Vec::new();
    for a in state.addons.values_mut() {
        let mut changed = false;
        let primary = a.primary_id();
        let generation = a.generation;
        let mut synced_now: Vec<Uuid> = Vec::new();
        for m in a.members.iter_mut().filter(|m| m.node == node) {
            let Some(r) = by_member.get(&m.id) else {
                continue;
            };
            changed |= m.up != r.up;
            m.up = r.up;
            if r.generation != generation {
                continue;
            }
            if Some(m.id) == primary {
                synced_now.extend(r.sync_standbys.iter().copied());
            } else {
                let streaming = r.up && r.streaming;
                changed |= m.streaming != streaming;
                m.streaming = streaming;
            }
        }
        // Only a standby that itself reports streaming and answering enters sync: a
        // primary's view of a frozen standby (connected, last flush long ago) is no proof,
        // nor a primary's report made before the leader took the standby out of sync.
        for m in a
            .members
            .iter_mut()
            .filter(|m| Some(m.id) != primary && synced_now.contains(&m.id) && m.up && m.streaming)
        {
            changed |= !m.synced;
            m.synced = true;
        }
        if a.state == AddonState::Deprovisioning {
            let before = a.members.len();
            a.members
                .retain(|m| !(m.node == node && gone.contains(&m.id)));
            changed |= a.members.len() != before;
            if a.members.is_empty() {
                emptied.push(a.id);
            }
        } else if a.state == AddonState::Provisioning
            && a.members.iter().all(|m| m.up)
            && a.standbys().all(|m| m.synced)
        {
            a.state = AddonState::Provisioned;
            changed = true;
        }
        if changed {
            a.updated_at = at;
        }
    }
    for id in emptied {
        state.addons.remove(&id);
        state.backup_schedules.remove(&id);
    }
    Ok(CommandOutput::Done)
}

/// Part of deleting an app: refused while an add-on it owns is attached to another app
/// (destroy it first); otherwise its attachments go and its add-ons are deprovisioned.
/// Checks before it changes anything.
pub(super) fn on_app_delete(state: &mut State, app: Uuid) -> Result<(), CommandError> {
    let owned: BTreeSet<Uuid> = state
        .addons
        .values()
        .filter(|a| a.app == app)
        .map(|a| a.id)
        .collect();
    if let Some(t) = state
        .attachments
        .values()
        .find(|t| owned.contains(&t.addon) && t.app != app)
    {
        let name = state.addons.get(&t.addon).map_or("", |a| a.name.as_str());
        return Err(CommandError::Conflict(format!(
            "The add-on {name} of this app is attached to another app; destroy it first."
        )));
    }
    state.attachments.retain(|_, t| t.app != app);
    // A provider add-on has no member to report its data gone (the API deprovisions
    // them at the provider before it deletes the app).
    state
        .addons
        .retain(|_, a| !(a.app == app && a.is_provider()));
    for a in state.addons.values_mut().filter(|a| a.app == app) {
        a.state = AddonState::Deprovisioning;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "addons_tests.rs"]
mod tests;

//! Attachments of existing add-ons (design §12): attach (sharing an add-on with another
//! app too), detach, and promote (`pg:promote`: an add-on takes over an attachment name
//! such as `DATABASE` from another). Each makes one release in the app, described like
//! Heroku's ("Attach DATABASE (@ref:postgresql-curved-12345)").

use uuid::Uuid;

use super::addons::{addon_not_found, att_values, provider_naming, set_vars, AttachmentSpec};
use super::apps::app_mut;
use super::releases::push_release;
use super::{Actor, CommandError, CommandOutput, CommandResult};
use crate::model::{
    attachment_naming, normalize_attachment_name, AddonState, Attachment, ConfigVars, State,
};

/// The name and config vars of a new attachment, refused when the app already has an
/// attachment of that name or another attachment sets one of its vars.
pub(super) fn naming(
    state: &State,
    service: &haven_catalog::AddonService,
    spec: &AttachmentSpec,
) -> Result<(String, Vec<String>), CommandError> {
    let as_name = spec
        .name
        .as_deref()
        .map(normalize_attachment_name)
        .transpose()
        .map_err(CommandError::Invalid)?;
    let existing = state.app_attachments(spec.app);
    // Names taken: attachments' names and the prefixes of the vars they set.
    let taken: Vec<&str> = existing
        .iter()
        .flat_map(|t| {
            std::iter::once(t.name.as_str())
                .chain(t.config_vars.iter().filter_map(|v| v.strip_suffix("_URL")))
        })
        .collect();
    if let Some(n) = &as_name {
        if existing.iter().any(|t| &t.name == n) {
            return Err(CommandError::Conflict(format!(
                "The attachment name {n} is already used by another add-on of this app."
            )));
        }
    }
    let (name, vars) = attachment_naming(
        service,
        &taken,
        as_name.as_deref(),
        spec.id.as_u128() as u64,
    );
    if let Some(t) = existing
        .iter()
        .find(|t| t.config_vars.iter().any(|v| vars.contains(v)))
    {
        return Err(CommandError::Conflict(format!(
            "The config var {}_URL is already set by the attachment {}.",
            name, t.name
        )));
    }
    Ok((name, vars))
}

/// Attaches an existing add-on to an app (`addons:attach`, sharing with another app).
pub(super) fn attach(
    state: &mut State,
    addon: Uuid,
    spec: &AttachmentSpec,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state
        .addons
        .get(&addon)
        .ok_or_else(addon_not_found)?
        .clone();
    if a.state == AddonState::Deprovisioning {
        return Err(CommandError::Conflict(format!(
            "{} is being deprovisioned and cannot be attached.",
            a.name
        )));
    }
    if state.attachments.contains_key(&spec.id) {
        return Err(CommandError::Conflict("attachment id exists".into()));
    }
    if !state.apps.contains_key(&spec.app) {
        return Err(super::apps::not_found_app(&spec.app));
    }
    let (name, vars) = if a.is_provider() {
        provider_naming(state, &a, spec)?
    } else {
        let service = haven_catalog::addon_service(&a.service)
            .ok_or_else(|| CommandError::Invalid(format!("unknown service {}", a.service)))?;
        naming(state, service, spec)?
    };
    let att = Attachment {
        id: spec.id,
        addon,
        app: spec.app,
        name,
        config_vars: vars,
        created_at: actor.at,
    };
    let values = att_values(state, &a, &att);
    let version = set_vars(
        state,
        &att,
        Some(&values),
        &a.name,
        release_id,
        actor,
        "Attach",
    )?;
    state.attachments.insert(att.id, att.clone());
    Ok(CommandOutput::Addon {
        addon: Box::new(a),
        attachments: vec![att.clone()],
        releases: vec![(att.app, version)],
    })
}

/// Detaches: unsets the attachment's vars in one release and removes it.
pub(super) fn detach(
    state: &mut State,
    attachment: Uuid,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let att =
        state.attachments.get(&attachment).cloned().ok_or_else(|| {
            CommandError::NotFound("Couldn't find that add-on attachment.".into())
        })?;
    let a = state
        .addons
        .get(&att.addon)
        .ok_or_else(addon_not_found)?
        .clone();
    let version = set_vars(state, &att, None, &a.name, release_id, actor, "Detach")?;
    state.attachments.remove(&attachment);
    Ok(CommandOutput::Addon {
        addon: Box::new(a),
        attachments: vec![att.clone()],
        releases: vec![(att.app, version)],
    })
}

/// Makes `addon` the app's attachment `spec.name` (`pg:promote`: `DATABASE`) in one
/// release "Attach NAME (@ref:ADDON)". The add-on that had the name gives it up: its
/// attachment keeps its other vars under the name of the first (its colour), or takes a
/// fresh colour when it had none, so that it stays reachable. The promoted add-on gets a
/// new attachment setting `NAME_URL` (and a colour var too when it had no attachment to
/// the app and its service gives the primary one). Only Haven's own add-ons; promoting
/// the add-on that has the name already changes nothing.
pub(super) fn promote(
    state: &mut State,
    addon: Uuid,
    spec: &AttachmentSpec,
    release_id: Uuid,
    actor: &Actor,
) -> CommandResult {
    let a = state
        .addons
        .get(&addon)
        .ok_or_else(addon_not_found)?
        .clone();
    let service = haven_catalog::addon_service(&a.service).ok_or_else(|| {
        CommandError::Invalid(format!(
            "{} is a third-party add-on: only Haven's own databases are promoted.",
            a.name
        ))
    })?;
    if a.state == AddonState::Deprovisioning {
        return Err(CommandError::Conflict(format!(
            "{} is being deprovisioned and cannot be promoted.",
            a.name
        )));
    }
    if !state.apps.contains_key(&spec.app) {
        return Err(super::apps::not_found_app(&spec.app));
    }
    let name =
        normalize_attachment_name(spec.name.as_deref().unwrap_or(service.primary_attachment))
            .map_err(CommandError::Invalid)?;
    let var = format!("{name}_URL");
    let existing: Vec<Attachment> = state
        .app_attachments(spec.app)
        .into_iter()
        .cloned()
        .collect();
    if let Some(t) = existing.iter().find(|t| t.name == name && t.addon == addon) {
        return Ok(CommandOutput::Addon {
            addon: Box::new(a),
            attachments: vec![t.clone()],
            releases: Vec::new(),
        });
    }
    if state.attachments.contains_key(&spec.id) {
        return Err(CommandError::Conflict("attachment id exists".into()));
    }
    // Names taken once the old holder gave `name` up: every attachment's name and var
    // prefixes, `name` included.
    let mut taken: Vec<String> = vec![name.clone()];
    for t in &existing {
        taken.push(t.name.clone());
        taken.extend(
            t.config_vars
                .iter()
                .filter_map(|v| v.strip_suffix("_URL"))
                .map(str::to_string),
        );
    }
    let mut changed = Vec::new();
    if let Some(old) = existing.iter().find(|t| t.name == name) {
        let mut old = old.clone();
        old.config_vars.retain(|v| *v != var);
        if let Some(first) = old.config_vars.first() {
            old.name = first.strip_suffix("_URL").unwrap_or(first).to_string();
        } else {
            let old_service = state
                .addons
                .get(&old.addon)
                .and_then(|x| haven_catalog::addon_service(&x.service))
                .unwrap_or(service);
            let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
            let (n, vars) = attachment_naming(old_service, &refs, None, old.id.as_u128() as u64);
            taken.push(n.clone());
            old.name = n;
            old.config_vars = vars;
        }
        changed.push(old);
    } else if existing.iter().any(|t| t.config_vars.contains(&var)) {
        return Err(CommandError::Conflict(format!(
            "The config var {var} is already set by another attachment of this app."
        )));
    }
    let mut vars = vec![var];
    if service.colour_alias_on_primary && !existing.iter().any(|t| t.addon == addon) {
        let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
        vars.extend(attachment_naming(service, &refs, None, spec.id.as_u128() as u64).1);
    }
    let att = Attachment {
        id: spec.id,
        addon,
        app: spec.app,
        name: name.clone(),
        config_vars: vars,
        created_at: actor.at,
    };
    let mut config = state
        .apps
        .get(&spec.app)
        .map(|x| x.config.to_map())
        .unwrap_or_default();
    for old in &changed {
        // The old holder's vars it keeps are set again (a fresh colour is new).
        if let Some(x) = state.addons.get(&old.addon) {
            config.extend(att_values(state, x, old));
        }
    }
    config.extend(att_values(state, &a, &att));
    let app = app_mut(state, &spec.app)?;
    let slug = app.current_release().and_then(|r| r.slug);
    let config = ConfigVars::new(config);
    app.config = config.clone();
    let version = push_release(
        app,
        release_id,
        slug,
        config,
        format!("Attach {name} (@ref:{})", a.name),
        actor,
    );
    for old in &changed {
        state.attachments.insert(old.id, old.clone());
    }
    state.attachments.insert(att.id, att.clone());
    let mut attachments = vec![att];
    attachments.extend(changed);
    Ok(CommandOutput::Addon {
        addon: Box::new(a),
        attachments,
        releases: vec![(spec.app, version)],
    })
}

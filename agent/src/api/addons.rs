//! Add-ons: `GET /addon-services[/{id-or-name}]`, `GET /addon-services/{id}/plans[/{plan}]`,
//! `GET /addons[/{id-or-name}]`, `GET/POST /apps/{app}/addons`, `GET/DELETE
//! /apps/{app}/addons/{id-or-name}`, and the wire shapes of services, plans and add-ons.
//!
//! Creating places the members (`crate::addons::placement`, over the replica after a read
//! barrier), chooses the password and the name, and proposes one `CreateAddon`; the
//! leader's apply checks the placement again, so a stale one is refused and retried here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api::addons as w;
use haven_api::NamedRef;
use haven_raft::catalog::{self, AddonPlan, AddonService};
use haven_raft::command::{AttachmentSpec, Command, CommandError, CommandOutput};
use haven_raft::model::{self, Addon, AddonProvider, AddonState, State as Model};

use crate::addons::provider::{self as provider_api, ProviderError};
use rand::Rng;
use uuid::Uuid;

use super::access::{self, Action};
use super::apps::time;
use super::body::JsonBody;
use super::{read, with_app, ApiContext, ApiError, Caller};

/// The catalog's fixed creation time (services and plans have no history).
const CATALOG_TIME: &str = "2026-01-01T00:00:00Z";

fn service_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that add-on service.")
}

fn plan_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that add-on plan.")
}

pub(super) fn addon_not_found() -> ApiError {
    ApiError::not_found("Couldn't find that add-on.")
}

pub fn service_wire(s: &AddonService) -> w::AddonService {
    w::AddonService {
        id: s.id.to_string(),
        name: s.name.to_string(),
        human_name: s.human_name.to_string(),
        cli_plugin_name: None,
        state: "ga".into(),
        supports_multiple_installations: true,
        supports_sharing: true,
        supported_generations: Vec::new(),
        created_at: CATALOG_TIME.into(),
        updated_at: CATALOG_TIME.into(),
    }
}

fn price(p: &AddonPlan) -> w::Price {
    w::Price {
        cents: p.price_cents,
        contract: false,
        unit: "month".into(),
    }
}

pub fn plan_wire(s: &AddonService, p: &AddonPlan) -> w::Plan {
    w::Plan {
        id: p.id.to_string(),
        name: p.wire_name(s),
        human_name: p.human_name.to_string(),
        description: p.description.to_string(),
        default: p.default,
        price: price(p),
        state: if p.available { "public" } else { "beta" }.into(),
        visible: true,
        compliance: None,
        installable_inside_private_network: false,
        installable_outside_private_network: true,
        space_default: false,
        addon_service: NamedRef {
            id: s.id.to_string(),
            name: s.name.to_string(),
        },
        created_at: CATALOG_TIME.into(),
        updated_at: CATALOG_TIME.into(),
        available: p.available,
        memory_mb: p.memory_mb,
        members: p.members,
    }
}

/// A registered provider as an add-on service.
pub fn provider_service_wire(p: &AddonProvider) -> w::AddonService {
    w::AddonService {
        id: p.id.to_string(),
        name: p.name.clone(),
        human_name: p.name.clone(),
        cli_plugin_name: None,
        state: "ga".into(),
        supports_multiple_installations: true,
        supports_sharing: true,
        supported_generations: Vec::new(),
        created_at: time(p.created_at),
        updated_at: time(p.created_at),
    }
}

/// A provider's plan (`name:plan`); the first plan is the default. Haven runs nothing
/// for it: no memory, no members.
pub fn provider_plan_wire(p: &AddonProvider, plan: &str) -> w::Plan {
    w::Plan {
        id: p.plan_id(plan).unwrap_or(p.id).to_string(),
        name: format!("{}:{plan}", p.name),
        human_name: plan.to_string(),
        description: format!("{plan}, from the add-on provider {}", p.name),
        default: p.plans.first().is_some_and(|x| x == plan),
        price: w::Price {
            cents: 0,
            contract: false,
            unit: "month".into(),
        },
        state: "public".into(),
        visible: true,
        compliance: None,
        installable_inside_private_network: false,
        installable_outside_private_network: true,
        space_default: false,
        addon_service: NamedRef {
            id: p.id.to_string(),
            name: p.name.clone(),
        },
        created_at: time(p.created_at),
        updated_at: time(p.created_at),
        available: true,
        memory_mb: 0,
        members: 0,
    }
}

/// The service and plan of a provider add-on, as wire objects.
fn provider_entry(state: &Model, a: &Addon) -> Option<(w::AddonService, w::Plan, w::Price)> {
    let p = state.addon_providers.get(&a.service)?;
    let plan = provider_plan_wire(p, &a.plan);
    let price = plan.price.clone();
    Some((provider_service_wire(p), plan, price))
}

fn catalog_entry(a: &Addon) -> Option<(&'static AddonService, &'static AddonPlan)> {
    let s = catalog::addon_service(&a.service)?;
    Some((s, catalog::service_plan(s, &a.plan)?))
}

/// An add-on as the API shows it, with its service and plan expanded.
pub fn addon_wire(state: &Model, a: &Addon) -> Option<w::Addon> {
    let (service, plan, billed) = if a.is_provider() {
        provider_entry(state, a)?
    } else {
        let (s, p) = catalog_entry(a)?;
        (service_wire(s), plan_wire(s, p), price(p))
    };
    let app_name = state
        .apps
        .get(&a.app)
        .map_or_else(String::new, |x| x.name.clone());
    let config_vars = state
        .addon_attachments(a.id)
        .iter()
        .filter(|t| t.app == a.app)
        .flat_map(|t| t.config_vars.iter().cloned())
        .collect();
    let members = a
        .members
        .iter()
        .map(|m| w::AddonMember {
            id: m.id.to_string(),
            node: NamedRef {
                id: m.node.to_string(),
                name: state
                    .nodes
                    .get(&m.node)
                    .map_or_else(String::new, |n| n.name.clone()),
            },
            host: m.host.clone(),
            port: m.port,
            up: m.up,
            role: a.role_of(m.id).as_str().into(),
            streaming: m.streaming,
            synced: m.synced,
        })
        .collect();
    let provision_message = if a.state == AddonState::Provisioning {
        format!(
            "{} is being created in the background. The app will restart when complete...",
            a.name
        )
    } else {
        String::new()
    };
    Some(w::Addon {
        id: a.id.to_string(),
        name: a.name.clone(),
        addon_service: service,
        plan,
        app: NamedRef {
            id: a.app.to_string(),
            name: app_name.clone(),
        },
        billing_entity: w::BillingEntity {
            id: a.app.to_string(),
            name: app_name,
            kind: "app".into(),
        },
        billed_price: Some(billed),
        config_vars,
        actions: Vec::new(),
        provider_id: a
            .provider_resource
            .clone()
            .unwrap_or_else(|| a.id.to_string()),
        provision_message,
        state: a.state.as_str().into(),
        web_url: None,
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
        members,
    })
}

/// `GET /addon-services`: the catalog's services, then the registered providers.
pub async fn services(State(ctx): State<ApiContext>) -> Result<Response, ApiError> {
    let mut list: Vec<w::AddonService> = catalog::ADDON_SERVICES.iter().map(service_wire).collect();
    list.extend(
        read(&ctx, |s| {
            s.addon_providers
                .values()
                .map(provider_service_wire)
                .collect::<Vec<_>>()
        })
        .await?,
    );
    Ok(Json(list).into_response())
}

/// A registered provider by name or id.
async fn find_provider(ctx: &ApiContext, key: &str) -> Result<Option<AddonProvider>, ApiError> {
    let key = key.trim().to_string();
    read(ctx, move |s| {
        s.addon_providers
            .values()
            .find(|p| p.name == key || p.id.to_string() == key)
            .cloned()
    })
    .await
}

/// `GET /addon-services/{id-or-name}`.
pub async fn service(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(s) = catalog::addon_service(&key) {
        return Ok(Json(service_wire(s)).into_response());
    }
    let p = find_provider(&ctx, &key)
        .await?
        .ok_or_else(service_not_found)?;
    Ok(Json(provider_service_wire(&p)).into_response())
}

/// `GET /addon-services/{id-or-name}/plans`.
pub async fn plans(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(s) = catalog::addon_service(&key) {
        let plans: Vec<w::Plan> = s.plans.iter().map(|p| plan_wire(s, p)).collect();
        return Ok(Json(plans).into_response());
    }
    let p = find_provider(&ctx, &key)
        .await?
        .ok_or_else(service_not_found)?;
    let plans: Vec<w::Plan> = p.plans.iter().map(|x| provider_plan_wire(&p, x)).collect();
    Ok(Json(plans).into_response())
}

/// `GET /addon-services/{id-or-name}/plans/{id-or-name}`.
pub async fn plan(
    State(ctx): State<ApiContext>,
    Path((key, plan)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if let Some(s) = catalog::addon_service(&key) {
        let p = catalog::service_plan(s, &plan).ok_or_else(plan_not_found)?;
        return Ok(Json(plan_wire(s, p)).into_response());
    }
    let p = find_provider(&ctx, &key)
        .await?
        .ok_or_else(service_not_found)?;
    let own = provider_plan_of(&p, &plan).ok_or_else(plan_not_found)?;
    Ok(Json(provider_plan_wire(&p, &own)).into_response())
}

/// A provider's plan by its name, its wire name (`name:plan`) or id.
fn provider_plan_of(p: &AddonProvider, plan: &str) -> Option<String> {
    let plan = plan.trim();
    let own = match plan.split_once(':') {
        Some((svc, x)) if svc == p.name => x,
        Some(_) => return None,
        None => plan,
    };
    p.plan(own)
        .or_else(|| {
            p.plans
                .iter()
                .find(|x| p.plan_id(x).is_some_and(|id| id.to_string() == plan))
                .map(String::as_str)
        })
        .map(str::to_string)
}

/// Whether `caller` may see add-on `a`: they may view its owning app or an app it is
/// attached to.
pub(super) fn visible(s: &Model, caller: &Caller, a: &Addon) -> bool {
    let may = |app: Uuid| access::allows(s, caller, Action::ViewApp, app);
    may(a.app) || s.addon_attachments(a.id).iter().any(|t| may(t.app))
}

/// `GET /addons`: every add-on the caller may see.
pub async fn list_all(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let list = read(&ctx, |s| {
        let mut v: Vec<w::Addon> = s
            .addons
            .values()
            .filter(|a| visible(s, &caller, a))
            .filter_map(|a| addon_wire(s, a))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /addons/{id-or-name}`.
pub async fn info_any(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let a = read(&ctx, |s| {
        s.find_addon(&key)
            .filter(|a| visible(s, &caller, a))
            .and_then(|a| addon_wire(s, a))
    })
    .await?
    .ok_or_else(addon_not_found)?;
    Ok(Json(a).into_response())
}

/// The add-ons an app owns or has attached, by name.
fn app_addons(s: &Model, app: &model::App) -> Vec<w::Addon> {
    let mut ids: Vec<Uuid> = s
        .addons
        .values()
        .filter(|a| a.app == app.id)
        .map(|a| a.id)
        .collect();
    ids.extend(s.app_attachments(app.id).iter().map(|t| t.addon));
    ids.sort();
    ids.dedup();
    let mut v: Vec<w::Addon> = ids
        .iter()
        .filter_map(|id| s.addons.get(id))
        .filter_map(|a| addon_wire(s, a))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `GET /apps/{app}/addons`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, app_addons).await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/addons/{id-or-name}`: one the app owns or has attached.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, addon)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let a = with_app(&ctx, &caller, Action::ViewApp, &key, |s, app| {
        app_addons(s, app)
            .into_iter()
            .find(|a| a.name == addon || a.id == addon)
    })
    .await?
    .ok_or_else(addon_not_found)?;
    Ok(Json(a).into_response())
}

/// The app an add-on is created for (one lookup), with Heroku's
/// `confirmation_required` when a `confirm` was sent that is not its name.
async fn confirmed_app(
    ctx: &ApiContext,
    caller: &Caller,
    key: &str,
    confirm: Option<&str>,
) -> Result<Uuid, ApiError> {
    let (app, name) = with_app(ctx, caller, Action::ChangeApp, key, |_, a| {
        (a.id, a.name.clone())
    })
    .await?;
    match confirm {
        Some(c) if c != name => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            format!("Confirm with the app's name, {name}."),
        )),
        _ => Ok(app),
    }
}

/// A random password of 32 letters and digits.
pub(super) fn password() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// `POST /apps/{app}/addons {"plan": "svc:plan", "name", "attachment": {"name"}, "confirm"}`.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::AddonCreate>,
) -> Result<Response, ApiError> {
    let spec = body.plan.name().to_string();
    let unknown = || {
        ApiError::not_found(format!(
            "Couldn't find either the add-on service or the add-on plan of \"{}\".",
            spec.trim()
        ))
    };
    let Some((service, plan)) = catalog::addon_plan(&spec) else {
        let (svc, own) = match spec.trim().split_once(':') {
            Some((svc, plan)) => (svc, Some(plan)),
            None => (spec.trim(), None),
        };
        let provider = find_provider(&ctx, svc).await?.ok_or_else(unknown)?;
        let plan = match own {
            Some(x) => provider.plan(x).map(str::to_string),
            None => provider.plans.first().cloned(),
        }
        .ok_or_else(unknown)?;
        return create_provider_addon(ctx, caller, key, provider, plan, body).await;
    };
    if body.config.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::invalid(format!(
            "{} takes no provisioning options.",
            service.name
        )));
    }
    let app = confirmed_app(&ctx, &caller, &key, body.confirm.as_deref()).await?;
    let password = password();
    let mut last = None;
    for _ in 0..4 {
        let members = read(&ctx, |s| crate::addons::placement::place(s, service, plan))
            .await?
            .map_err(ApiError::invalid)?;
        let name = body
            .name
            .clone()
            .unwrap_or_else(|| model::generated_addon_name(service, rand::thread_rng().gen()));
        let addon = Addon {
            id: Uuid::new_v4(),
            name,
            service: service.name.into(),
            plan: plan.name.into(),
            app,
            state: AddonState::Provisioning,
            password: password.clone(),
            members,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            primary: None,
            generation: 0,
            provider_resource: None,
            provider_config: Default::default(),
        };
        let cmd = Command::CreateAddon {
            addon,
            attachment: AttachmentSpec {
                id: Uuid::new_v4(),
                app,
                name: body.attachment.as_ref().and_then(|a| a.name.clone()),
            },
            release_id: Uuid::new_v4(),
            actor: caller.actor(),
        };
        match ctx.raft.write(cmd).await? {
            Ok(out) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(answer(&ctx, &caller, out, "Attach")?),
                )
                    .into_response())
            }
            // A generated name or a placement that went stale meanwhile: again.
            Err(CommandError::Conflict(m))
                if m.contains("try again")
                    || (body.name.is_none() && m.contains("already taken")) =>
            {
                last = Some(CommandError::Conflict(m));
            }
            Err(CommandError::AppNotFound(_)) => return Err(ApiError::app_not_found()),
            Err(e) => return Err(conflict_as_invalid(e)),
        }
    }
    Err(last.map_or_else(
        || ApiError::internal("no attempt made"),
        conflict_as_invalid,
    ))
}

/// Heroku answers a taken name with 422 `invalid_params`.
fn conflict_as_invalid(e: CommandError) -> ApiError {
    match e {
        CommandError::Conflict(m) => ApiError::invalid(m),
        e => e.into(),
    }
}

/// The add-on of an add-on command's output; its releases are logged as API actions
/// ("Attach DATABASE (@ref:...) by ...") in each app, names only, never values.
pub(super) fn answer(
    ctx: &ApiContext,
    caller: &Caller,
    out: CommandOutput,
    verb: &str,
) -> Result<w::Addon, ApiError> {
    let CommandOutput::Addon {
        addon,
        attachments,
        releases,
    } = out
    else {
        return Err(ApiError::internal("the command returned no add-on"));
    };
    for (app, version) in &releases {
        for t in attachments.iter().filter(|t| t.app == *app) {
            ctx.logs.api(
                *app,
                &format!(
                    "{verb} {} (@ref:{}) by {}",
                    t.name, addon.name, caller.email
                ),
            );
        }
        ctx.logs.api(
            *app,
            &format!("Release v{version} created by {}", caller.email),
        );
    }
    let mut wire = ctx
        .raft
        .with_state(|s| addon_wire_or_fallback(s, &addon))
        .ok_or_else(|| ApiError::internal("the add-on's plan is unknown"))?;
    // The local replica may not have applied the command yet: its own attachments count.
    for t in attachments.iter().filter(|t| t.app == addon.app) {
        for v in &t.config_vars {
            let has = wire.config_vars.contains(v);
            if verb == "Attach" && !has {
                wire.config_vars.push(v.clone());
            } else if verb == "Detach" && has {
                wire.config_vars.retain(|x| x != v);
            }
        }
    }
    Ok(wire)
}

/// The wire add-on, from a command's copy (the local replica may lag the leader).
fn addon_wire_or_fallback(s: &Model, a: &Addon) -> Option<w::Addon> {
    addon_wire(s, a).map(|mut wire| {
        if let Some(app) = s.apps.get(&a.app) {
            wire.app.name = app.name.clone();
            wire.billing_entity.name = app.name.clone();
        }
        wire
    })
}

/// `DELETE /apps/{app}/addons/{id-or-name}`: detaches it everywhere (a release in each
/// app) and deprovisions it; its nodes then stop the servers and remove the data.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, addon)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, provider) = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, app| {
        s.find_addon(&addon)
            .filter(|a| a.app == app.id)
            .map(|a| (a.id, provider_of(s, a)))
    })
    .await?
    .ok_or_else(addon_not_found)?;
    if let Some((p, resource)) = provider {
        deprovision(&p, &resource).await?;
    }
    let out = super::write(
        &ctx,
        Command::DestroyAddon {
            addon: id,
            release_seed: Uuid::new_v4(),
            actor: caller.actor(),
        },
    )
    .await?;
    Ok(Json(answer(&ctx, &caller, out, "Detach")?).into_response())
}

/// Destroys every add-on app `app` owns (before the app itself is deleted).
pub(super) async fn destroy_owned(
    ctx: &ApiContext,
    caller: &Caller,
    app: Uuid,
) -> Result<(), ApiError> {
    let owned: Vec<(Uuid, Option<(AddonProvider, String)>)> = read(ctx, |s| {
        s.addons
            .values()
            .filter(|a| a.app == app && a.state != AddonState::Deprovisioning)
            .map(|a| (a.id, provider_of(s, a)))
            .collect()
    })
    .await?;
    for (id, provider) in owned {
        if let Some((p, resource)) = provider {
            deprovision(&p, &resource).await?;
        }
        let out = super::write(
            ctx,
            Command::DestroyAddon {
                addon: id,
                release_seed: Uuid::new_v4(),
                actor: caller.actor(),
            },
        )
        .await?;
        answer(ctx, caller, out, "Detach")?;
    }
    Ok(())
}

/// A provider add-on's provider and resource id (`None` for Haven's own add-ons).
fn provider_of(s: &Model, a: &Addon) -> Option<(AddonProvider, String)> {
    let resource = a.provider_resource.clone()?;
    Some((s.addon_providers.get(&a.service)?.clone(), resource))
}

/// A provider's failure as the API answers it: 422 for its refusal, 503 when it could not
/// be reached (after the retries).
fn provider_error(e: ProviderError, nothing: &str) -> ApiError {
    match e {
        ProviderError::Refused(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            format!("{m} {nothing}"),
        ),
        ProviderError::Unavailable(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            format!("{m} {nothing} Try again later."),
        ),
    }
}

/// Deprovisions at the provider (before the command that removes the add-on).
async fn deprovision(p: &AddonProvider, resource: &str) -> Result<(), ApiError> {
    provider_api::deprovision(p, resource)
        .await
        .map_err(|e| provider_error(e, "The add-on was not destroyed."))
}

/// A Heroku-style generated name for a provider's add-on: `my-mail-curved-12345`.
fn provider_addon_name(p: &AddonProvider) -> String {
    let r: u64 = rand::thread_rng().gen();
    let adj = model::ADJECTIVES[(r % model::ADJECTIVES.len() as u64) as usize];
    format!("{}-{adj}-{:05}", p.name, (r / 64) % 100_000)
}

/// Creating a provider's add-on: the provider provisions it first (this handler is the
/// proposer; retried with back-off), then one `CreateAddon` records its resource id and
/// config and attaches it. If the provider never succeeds nothing is recorded; if the
/// command is refused the resource is deprovisioned again.
async fn create_provider_addon(
    ctx: ApiContext,
    caller: Caller,
    key: String,
    provider: AddonProvider,
    plan: String,
    body: w::AddonCreate,
) -> Result<Response, ApiError> {
    let app = confirmed_app(&ctx, &caller, &key, body.confirm.as_deref()).await?;
    let name = match body.name.clone() {
        Some(n) => n,
        None => {
            let mut n = provider_addon_name(&provider);
            for _ in 0..8 {
                let taken = read(&ctx, |s| s.addons.values().any(|a| a.name == n)).await?;
                if !taken {
                    break;
                }
                n = provider_addon_name(&provider);
            }
            n
        }
    };
    model::validate_addon_name(&name).map_err(ApiError::invalid)?;
    if read(&ctx, |s| s.addons.values().any(|a| a.name == name)).await? {
        return Err(ApiError::invalid(format!(
            "The name {name} is already taken by another add-on."
        )));
    }
    let id = Uuid::new_v4();
    let callback = super::scheme::public_url(&format!(
        "{}/vendor/apps/{}",
        ctx.builder.api_url(),
        provider_api::heroku_id(app)
    ));
    let request = provider_api::Provision {
        heroku_id: provider_api::heroku_id(app),
        plan: plan.clone(),
        region: "haven".into(),
        callback_url: callback,
        options: body.config.clone().unwrap_or_default(),
        uuid: id.to_string(),
        name: name.clone(),
    };
    let got = provider_api::provision(&provider, &request)
        .await
        .map_err(|e| provider_error(e, "No add-on was created."))?;
    let now = chrono::Utc::now();
    let addon = Addon {
        id,
        name,
        service: provider.name.clone(),
        plan,
        app,
        state: AddonState::Provisioned,
        password: String::new(),
        members: Vec::new(),
        created_at: now,
        updated_at: now,
        primary: None,
        generation: 0,
        provider_resource: Some(got.id.clone()),
        provider_config: got.config.unwrap_or_default(),
    };
    let cmd = Command::CreateAddon {
        addon,
        attachment: AttachmentSpec {
            id: Uuid::new_v4(),
            app,
            name: body.attachment.as_ref().and_then(|a| a.name.clone()),
        },
        release_id: Uuid::new_v4(),
        actor: caller.actor(),
    };
    let refused = match ctx.raft.write(cmd).await? {
        Ok(out) => {
            let mut wire = answer(&ctx, &caller, out, "Attach")?;
            if let Some(m) = got.message.filter(|m| !m.is_empty()) {
                wire.provision_message = m.chars().take(500).collect();
            }
            return Ok((StatusCode::CREATED, Json(wire)).into_response());
        }
        Err(CommandError::AppNotFound(_)) => ApiError::app_not_found(),
        Err(e) => conflict_as_invalid(e),
    };
    // Refused: the provider's resource would be orphaned; give it back.
    if let Err(e) = provider_api::deprovision(&provider, &got.id).await {
        tracing::warn!(provider = %provider.name, "could not deprovision a refused add-on: {e:?}");
    }
    Err(refused)
}

/// A Haven add-on's plan change: to an HA plan, a standby placed on a node that runs no
/// member (it copies the primary, then gets in sync); back to one server, the standby
/// goes. The primary, its data and the URL stay.
async fn resize(
    ctx: &ApiContext,
    caller: &Caller,
    a: &Addon,
    spec: &str,
) -> Result<Response, ApiError> {
    let spec = spec.trim();
    let (_, plan) = haven_raft::catalog::addon_plan(spec)
        .filter(|(s, _)| s.name == a.service)
        .or_else(|| {
            let s = haven_raft::catalog::addon_service(&a.service)?;
            haven_raft::catalog::service_plan(s, spec).map(|p| (s, p))
        })
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Couldn't find either the add-on service or the add-on plan of \"{spec}\"."
            ))
        })?;
    let (add, remove) = ctx.raft.with_state(|s| {
        let have = a.members.len();
        let want = plan.members as usize;
        if want > have {
            crate::addons::placement::place_replacement(s, a)
                .map(|m| (Some(m), None))
                .map_err(|e| ApiError::invalid(format!("No node can run the new standby: {e}")))
        } else if want < have {
            let primary = a.primary_id();
            Ok((
                None,
                a.members
                    .iter()
                    .find(|m| Some(m.id) != primary)
                    .map(|m| m.id),
            ))
        } else {
            Ok((None, None))
        }
    })?;
    let out = super::write(
        ctx,
        Command::ResizeAddon {
            addon: a.id,
            plan: plan.name.to_string(),
            add,
            remove,
            at: chrono::Utc::now(),
        },
    )
    .await?;
    Ok(Json(answer(ctx, caller, out, "Update")?).into_response())
}

/// `PATCH /apps/{app}/addons/{id-or-name} {"plan": "service:plan"}`: a provider add-on's
/// plan change (`PUT` at the provider, then `ChangeAddonPlan`; new config the provider
/// returns reaches the attachments in a release). Haven's own add-ons change no plans yet.
pub async fn update(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, addon)): Path<(String, String)>,
    JsonBody(body): JsonBody<w::AddonUpdate>,
) -> Result<Response, ApiError> {
    let found = with_app(&ctx, &caller, Action::ChangeApp, &key, |s, app| {
        s.find_addon(&addon)
            .filter(|a| a.app == app.id)
            .map(|a| (a.clone(), provider_of(s, a)))
    })
    .await?
    .ok_or_else(addon_not_found)?;
    let (a, provider) = found;
    let Some((p, resource)) = provider else {
        return resize(&ctx, &caller, &a, body.plan.name()).await;
    };
    let spec = body.plan.name().to_string();
    let plan = provider_plan_of(&p, &spec).ok_or_else(|| {
        ApiError::not_found(format!(
            "Couldn't find either the add-on service or the add-on plan of \"{}\".",
            spec.trim()
        ))
    })?;
    let config = if plan == a.plan {
        None
    } else {
        provider_api::change_plan(&p, &resource, &plan, &provider_api::heroku_id(a.app))
            .await
            .map_err(|e| provider_error(e, "The plan was not changed."))?
            .config
    };
    let out = super::write(
        &ctx,
        Command::ChangeAddonPlan {
            addon: a.id,
            plan,
            config,
            release_seed: Uuid::new_v4(),
            actor: caller.actor(),
        },
    )
    .await?;
    Ok(Json(answer(&ctx, &caller, out, "Update")?).into_response())
}

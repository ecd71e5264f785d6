//! `addons`, `addons:create`, `addons:destroy`, `addons:info`, `addons:attach`,
//! `addons:detach`, `addons:services`, `addons:plans`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use haven_api::addons as w;
use reqwest::Method;

use super::app_path;
use super::releases::current_version;
use crate::client::{print_json, Answer, Api};
use crate::output::{header, key_values, table};

/// `$5/month`, `free`.
pub fn price(p: &w::Price) -> String {
    if p.cents == 0 {
        return "free".into();
    }
    let dollars = p.cents / 100;
    match p.cents % 100 {
        0 => format!("${dollars}/{}", p.unit),
        c => format!("${dollars}.{c:02}/{}", p.unit),
    }
}

/// The Heroku CLI's words for add-on states.
pub fn state_word(state: &str) -> &str {
    match state {
        "provisioning" => "creating",
        "provisioned" => "created",
        "deprovisioning" => "destroying",
        "deprovisioned" => "destroyed",
        other => other,
    }
}

/// The plan's own name: `heroku-postgresql:essential-0` → `essential-0`.
fn short_plan(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, p)| p)
}

fn progress(text: &str) {
    print!("{text}... ");
    let _ = std::io::stdout().flush();
}

/// `hctl addons [-a APP]`: the app's add-ons (or every add-on) with their attachments.
pub fn list(api: &Api, app: Option<&str>, json: bool) -> Result<()> {
    let (addons_path, attachments_path) = match app {
        Some(a) => (
            format!("{}/addons", app_path(a)),
            format!("{}/addon-attachments", app_path(a)),
        ),
        None => ("/addons".to_string(), "/addon-attachments".to_string()),
    };
    let addons = api.get::<Vec<w::Addon>>(&addons_path)?;
    if json {
        return print_json(&addons);
    }
    let attachments: Vec<w::Attachment> = api.get(&attachments_path)?.value;
    if addons.value.is_empty() {
        match app {
            Some(a) => println!("No add-ons for app {a}."),
            None => println!("No add-ons."),
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for a in &addons.value {
        rows.push(vec![
            format!("{} ({})", a.addon_service.name, a.name),
            short_plan(&a.plan.name).to_string(),
            price(&a.plan.price),
            state_word(&a.state).to_string(),
        ]);
        for t in attachments.iter().filter(|t| t.addon.id == a.id) {
            let name = if Some(t.app.name.as_str()) == app {
                t.name.clone()
            } else {
                format!("{}::{}", t.app.name, t.name)
            };
            rows.push(vec![format!(" └─ as {name}")]);
        }
    }
    println!("{}", table(&["Add-on", "Plan", "Price", "State"], &rows));
    Ok(())
}

/// `SERVICE[:PLAN]` as `addons:create` sends it.
fn plan_arg(spec: &str) -> String {
    spec.trim().to_string()
}

/// `hctl addons:create SERVICE[:PLAN] [--as NAME] [--name N] [--wait]`.
pub fn create(
    api: &Api,
    app: &str,
    spec: &str,
    as_name: Option<&str>,
    name: Option<&str>,
    wait: bool,
    json: bool,
) -> Result<()> {
    let body = w::AddonCreate {
        plan: w::PlanRef::Object {
            name: plan_arg(spec),
        },
        name: name.map(str::to_string),
        attachment: as_name.map(|n| w::AttachmentName {
            name: Some(n.to_string()),
        }),
        confirm: None,
        config: None,
    };
    if !json {
        progress(&format!("Creating {spec} on ⬢ {app}"));
    }
    let mut answer =
        api.call_with::<w::Addon, _>(Method::POST, &format!("{}/addons", app_path(app)), &body)?;
    if !json {
        println!("done");
    }
    if wait && answer.value.state == "provisioning" {
        if !json {
            progress(&format!("Waiting for {}", answer.value.name));
        }
        answer = wait_provisioned(api, app, &answer.value.name, Duration::from_secs(300))?;
        if !json {
            println!("done");
        }
    }
    if json {
        return print_json(&answer);
    }
    let addon = &answer.value;
    if addon.state == "provisioning" {
        if !addon.provision_message.is_empty() {
            println!("{}", addon.provision_message);
        }
        println!(
            "Use hctl addons:info {} to check creation progress",
            addon.name
        );
    }
    println!("Created {} as {}", addon.name, addon.config_vars.join(", "));
    println!("Use hctl addons:info {} for details", addon.name);
    Ok(())
}

/// Polls the add-on until it is provisioned (every 500 ms, up to `limit`).
fn wait_provisioned(api: &Api, app: &str, name: &str, limit: Duration) -> Result<Answer<w::Addon>> {
    let start = Instant::now();
    loop {
        let a = api.get::<w::Addon>(&format!("{}/addons/{name}", app_path(app)))?;
        if a.value.state != "provisioning" {
            return Ok(a);
        }
        if start.elapsed() > limit {
            bail!("{name} is still being created after {limit:?}; check hctl addons:info {name}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `hctl addons:destroy NAME --confirm APP`.
pub fn destroy(api: &Api, name: &str, confirm: Option<&str>) -> Result<()> {
    let addon: w::Addon = api.get(&format!("/addons/{name}"))?.value;
    let app = addon.app.name.clone();
    if confirm != Some(app.as_str()) {
        bail!(
            "this destroys {} and all its data; run again with --confirm {app}",
            addon.name
        );
    }
    progress(&format!("Destroying {} on ⬢ {app}", addon.name));
    api.call::<w::Addon>(
        Method::DELETE,
        &format!("{}/addons/{}", app_path(&app), addon.id),
    )?;
    // Its node stops the server and removes the data; then it is gone.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match api.get::<w::Addon>(&format!("/addons/{}", addon.id)) {
            Err(e) if e.to_string().contains("Couldn't find that add-on") => {
                println!("done");
                return Ok(());
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
    println!("done (still deprovisioning)");
    Ok(())
}

/// `hctl addons:info NAME`.
pub fn info(api: &Api, name: &str, json: bool) -> Result<()> {
    let addon = api.get::<w::Addon>(&format!("/addons/{name}"))?;
    if json {
        return print_json(&addon);
    }
    let a = &addon.value;
    let atts: Vec<w::Attachment> = api
        .get(&format!("/addons/{}/addon-attachments", a.id))?
        .value;
    let attached: Vec<String> = atts
        .iter()
        .map(|t| format!("{}::{}", t.app.name, t.name))
        .collect();
    let members: Vec<String> = a
        .members
        .iter()
        .map(|m| {
            format!(
                "{} {}:{}{}{}",
                m.node.name,
                m.host,
                m.port,
                if m.role.is_empty() || a.members.len() < 2 {
                    String::new()
                } else {
                    format!(" ({})", m.role)
                },
                if m.up { "" } else { " (starting)" }
            )
        })
        .collect();
    println!("{}", header(&a.name));
    println!(
        "{}",
        key_values(&[
            ("Attachments", attached.join(", ")),
            ("Installed at", a.created_at.clone()),
            ("Owning app", a.app.name.clone()),
            ("Plan", a.plan.name.clone()),
            ("Price", price(&a.plan.price)),
            ("State", state_word(&a.state).to_string()),
            ("Servers", members.join(", ")),
            ("Protection", protection(a)),
        ])
    );
    Ok(())
}

/// What survives what, in one line: `addons:info` says it plainly for single-node plans.
fn protection(a: &w::Addon) -> String {
    match a.members.len() {
        0 => "run by its provider, outside the cluster".into(),
        1 => "one server: NOT protected against the loss of its node (its data is on that node only; take backups with pg:backups, or upgrade to an HA plan)".into(),
        _ => "a standby on another node; fails over when the primary's node is lost".into(),
    }
}

/// `hctl addons:attach NAME -a APP [--as NAME]`.
pub fn attach(api: &Api, app: &str, addon: &str, as_name: Option<&str>) -> Result<()> {
    let a: w::Addon = api.get(&format!("/addons/{addon}"))?.value;
    let body = w::AttachmentCreate {
        addon: a.id.clone(),
        app: app.to_string(),
        name: as_name.map(str::to_string),
        confirm: None,
    };
    progress(&format!("Attaching {} to ⬢ {app}", a.name));
    let t: w::Attachment = api
        .call_with(Method::POST, "/addon-attachments", &body)?
        .value;
    println!("done");
    let v = current_version(api, app)?;
    println!(
        "Setting {} config vars and restarting ⬢ {app}... done, v{v}",
        t.name
    );
    Ok(())
}

/// `hctl addons:detach ATTACHMENT -a APP`.
pub fn detach(api: &Api, app: &str, attachment: &str) -> Result<()> {
    let t: w::Attachment = api
        .get(&format!("{}/addon-attachments/{attachment}", app_path(app)))?
        .value;
    progress(&format!(
        "Detaching {} to {} from ⬢ {app}",
        t.name, t.addon.name
    ));
    api.call::<w::Attachment>(Method::DELETE, &format!("/addon-attachments/{}", t.id))?;
    println!("done");
    let v = current_version(api, app)?;
    println!(
        "Unsetting {} config vars and restarting ⬢ {app}... done, v{v}",
        t.name
    );
    Ok(())
}

/// `hctl addons:services`.
pub fn services(api: &Api, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::AddonService>>("/addon-services")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|s| vec![s.name.clone(), s.human_name.clone(), s.state.clone()])
        .collect();
    println!("{}", table(&["Slug", "Name", "State"], &rows));
    println!("\nSee plans with hctl addons:plans SERVICE");
    Ok(())
}

/// `hctl addons:plans SERVICE`.
pub fn plans(api: &Api, service: &str, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::Plan>>(&format!("/addon-services/{service}/plans"))?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|p| {
            vec![
                if p.default { "default" } else { "" }.to_string(),
                p.name.clone(),
                p.human_name.clone(),
                price(&p.price),
                if p.available { "yes" } else { "not yet" }.to_string(),
                p.description.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["", "Slug", "Name", "Price", "Available", "Description"],
            &rows
        )
    );
    Ok(())
}

/// `hctl addons:upgrade ADDON PLAN` (or `SERVICE:PLAN` alone: the app's only add-on of
/// that service).
pub fn upgrade(api: &Api, app: &str, addon: &str, plan: Option<&str>, json: bool) -> Result<()> {
    let (addon, plan) = match plan {
        Some(p) => (addon.to_string(), p.to_string()),
        None => {
            let Some((service, _)) = addon.split_once(':') else {
                bail!("give the add-on and the plan: hctl addons:upgrade ADDON SERVICE:PLAN");
            };
            let list = api.get::<Vec<w::Addon>>(&format!("{}/addons", app_path(app)))?;
            let mine: Vec<&w::Addon> = list
                .value
                .iter()
                .filter(|a| a.addon_service.name == service && a.app.name == app)
                .collect();
            match mine.as_slice() {
                [one] => (one.name.clone(), addon.to_string()),
                [] => bail!("⬢ {app} has no add-on of {service}"),
                _ => bail!("⬢ {app} has several add-ons of {service}: name one"),
            }
        }
    };
    let full = if plan.contains(':') {
        plan.clone()
    } else {
        let a = api.get::<w::Addon>(&format!("{}/addons/{addon}", app_path(app)))?;
        format!("{}:{plan}", a.value.addon_service.name)
    };
    if !json {
        progress(&format!("Changing {addon} on ⬢ {app} to {full}"));
    }
    let body = w::AddonUpdate {
        plan: w::PlanRef::Name(full),
    };
    let answer = api.call_with::<w::Addon, _>(
        Method::PATCH,
        &format!("{}/addons/{addon}", app_path(app)),
        &body,
    )?;
    if json {
        return print_json(&answer);
    }
    println!("done, now {}", answer.value.plan.name);
    Ok(())
}

/// `hctl addons:providers`.
pub fn providers(api: &Api, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::AddonProvider>>("/cluster/addon-providers")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|p| vec![p.name.clone(), p.url.clone(), p.plans.join(", ")])
        .collect();
    println!("{}", table(&["Name", "URL", "Plans"], &rows));
    Ok(())
}

/// `hctl addons:providers:add NAME --url URL --password SECRET --plans a,b`.
pub fn provider_add(
    api: &Api,
    name: &str,
    url: &str,
    password: &str,
    plans: &[String],
) -> Result<()> {
    progress(&format!("Registering the add-on provider {name}"));
    let body = w::AddonProviderCreate {
        name: name.to_string(),
        url: url.to_string(),
        password: password.to_string(),
        plans: plans.to_vec(),
    };
    let p =
        api.call_with::<w::AddonProvider, _>(Method::POST, "/cluster/addon-providers", &body)?;
    println!("done");
    println!(
        "Create its add-ons with hctl addons:create {}:{} -a APP",
        p.value.name,
        p.value.plans.first().map_or("", String::as_str)
    );
    Ok(())
}

/// `hctl addons:providers:remove NAME`.
pub fn provider_remove(api: &Api, name: &str) -> Result<()> {
    progress(&format!("Removing the add-on provider {name}"));
    api.call::<w::AddonProvider>(Method::DELETE, &format!("/cluster/addon-providers/{name}"))?;
    println!("done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_states_read_like_herokus() {
        let p = |cents| w::Price {
            cents,
            contract: false,
            unit: "month".into(),
        };
        assert_eq!(price(&p(500)), "$5/month");
        assert_eq!(price(&p(1550)), "$15.50/month");
        assert_eq!(price(&p(0)), "free");
        assert_eq!(state_word("provisioned"), "created");
        assert_eq!(short_plan("heroku-redis:mini"), "mini");
    }
}

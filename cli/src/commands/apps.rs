//! `apps`, `apps:create`, `apps:info`, `apps:rename`, `apps:destroy` and maintenance mode.

use anyhow::{bail, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, print_json_list, Api};
use crate::output::{header, key_values, table};

/// `hctl apps`: your apps, then the ones you collaborate on (for admins: everyone
/// else's), with their owners, as the Heroku CLI prints them.
pub fn list(api: &Api, json: bool) -> Result<()> {
    let apps = api.get_all::<w::App>("/apps", "name ..; max=1000")?;
    if json {
        return print_json_list(&apps);
    }
    let me: w::Account = api.get("/account")?.value;
    let (mine, others): (Vec<&w::App>, Vec<&w::App>) = apps
        .iter()
        .map(|a| &a.value)
        .partition(|a| a.owner.email == me.email);
    println!("{}", header(&format!("{} Apps", me.email)));
    for a in &mine {
        println!("{}", a.name);
    }
    if !others.is_empty() {
        println!();
        println!("{}", header("Collaborated Apps"));
        let rows: Vec<Vec<String>> = others
            .iter()
            .map(|a| vec![a.name.clone(), a.owner.email.clone()])
            .collect();
        println!("{}", table(&["Name", "Owner"], &rows));
    }
    Ok(())
}

/// `hctl apps:create [NAME] [--stack STACK]`.
pub fn create(api: &Api, name: Option<&str>, stack: Option<&str>, json: bool) -> Result<()> {
    let body = w::AppCreate {
        name: name.map(str::to_string),
        stack: stack.map(str::to_string),
    };
    let app = api.call_with::<w::App, _>(Method::POST, "/apps", &body)?;
    if json {
        return print_json(&app);
    }
    let app = app.value;
    println!(
        "Creating ⬢ {}... done, stack is {}",
        app.name, app.stack.name
    );
    println!("{} | {}", app.web_url, app.git_url);
    Ok(())
}

/// `hctl apps:info`: the app and its formation.
pub fn info(api: &Api, app: &str, json: bool) -> Result<()> {
    let info = api.get::<w::App>(&app_path(app))?;
    if json {
        return print_json(&info);
    }
    let info = info.value;
    let formation: Vec<w::Formation> = api.get(&format!("{}/formation", app_path(app)))?.value;
    let dynos: Vec<String> = formation
        .iter()
        .map(|f| format!("{}: {}", f.process_type, f.quantity))
        .collect();
    println!("{}", header(&info.name));
    println!(
        "{}",
        key_values(&[
            ("Dynos", dynos.join(", ")),
            ("Git URL", info.git_url),
            ("Maintenance", info.maintenance.to_string()),
            ("Owner", info.owner.email),
            ("Region", info.region.name),
            ("Stack", info.stack.name),
            ("Web URL", info.web_url),
        ])
    );
    Ok(())
}

/// `hctl apps:rename NEWNAME`.
pub fn rename(api: &Api, app: &str, newname: &str) -> Result<()> {
    let body = w::AppUpdate {
        name: Some(newname.to_string()),
        maintenance: None,
        build_stack: None,
    };
    let out: w::App = api.call_with(Method::PATCH, &app_path(app), &body)?.value;
    println!("Renaming {app} to {}... done", out.name);
    println!("{} | {}", out.web_url, out.git_url);
    Ok(())
}

/// `hctl apps:destroy --confirm APP`.
pub fn destroy(api: impl FnOnce() -> Result<Api>, app: &str, confirm: Option<&str>) -> Result<()> {
    if confirm != Some(app) {
        bail!("this deletes {app} and all its releases; run again with --confirm {app}");
    }
    api()?.call::<w::App>(Method::DELETE, &app_path(app))?;
    println!("Destroying ⬢ {app}... done");
    Ok(())
}

/// `hctl maintenance`: `on` or `off`.
pub fn maintenance(api: &Api, app: &str) -> Result<()> {
    let info: w::App = api.get(&app_path(app))?.value;
    println!("{}", if info.maintenance { "on" } else { "off" });
    Ok(())
}

/// `hctl maintenance:on` / `maintenance:off`.
pub fn set_maintenance(api: &Api, app: &str, on: bool) -> Result<()> {
    let body = w::AppUpdate {
        name: None,
        maintenance: Some(on),
        build_stack: None,
    };
    api.call_with::<w::App, _>(Method::PATCH, &app_path(app), &body)?;
    println!(
        "{} maintenance mode for ⬢ {app}... done",
        if on { "Enabling" } else { "Disabling" }
    );
    Ok(())
}

//! `releases`, `releases:info`, `rollback`.

use anyhow::{anyhow, Result};
use chrono::Utc;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use super::config::print_config;
use crate::client::{print_json, print_json_list, Api};
use crate::output::{age, header, key_values, table};

fn releases_path(app: &str) -> String {
    format!("{}/releases", app_path(app))
}

/// The newest release's version: one page of one release, not the whole history.
pub fn current_version(api: &Api, app: &str) -> Result<u64> {
    let rels: Vec<w::Release> =
        api.get_page(&releases_path(app), "version ..; max=1, order=desc")?;
    Ok(rels.iter().map(|r| r.version).max().unwrap_or(0))
}

/// `hctl releases`, newest first.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let mut rels =
        api.get_all::<w::Release>(&releases_path(app), "version ..; max=1000, order=desc")?;
    rels.sort_by_key(|r| std::cmp::Reverse(r.value.version));
    if json {
        return print_json_list(&rels);
    }
    let current = rels
        .iter()
        .find(|r| r.value.current)
        .map(|r| r.value.version.to_string())
        .unwrap_or_default();
    println!(
        "{}",
        header(&format!("{app} Releases - Current: v{current}"))
    );
    let now = Utc::now();
    let rows: Vec<Vec<String>> = rels
        .iter()
        .map(|r| {
            let r = &r.value;
            vec![
                format!("v{}", r.version),
                r.description.clone(),
                r.user.email.clone(),
                age(&r.created_at, now),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["Version", "Description", "User", "Created"], &rows)
    );
    Ok(())
}

/// `hctl releases:info vN`: the release and the config vars it runs with.
pub fn info(api: &Api, app: &str, release: &str, json: bool) -> Result<()> {
    let key = release.trim_start_matches('v');
    let r = api.get::<w::Release>(&format!("{}/{key}", releases_path(app)))?;
    if json {
        return print_json(&r);
    }
    let r = r.value;
    let config: w::ConfigVars = api
        .get(&format!("{}/{key}/config-vars", releases_path(app)))?
        .value;
    println!("{}", header(&format!("Release v{}", r.version)));
    println!(
        "{}",
        key_values(&[
            ("Add-ons", String::new()),
            ("By", r.user.email),
            ("Change", r.description),
            ("Status", r.status),
            ("When", r.created_at),
        ])
    );
    println!();
    println!("{}", header(&format!("v{} Config vars", r.version)));
    print_config(&config);
    Ok(())
}

/// `hctl rollback [vN]`: by default to the newest succeeded release before the current.
pub fn rollback(api: &Api, app: &str, release: Option<&str>, json: bool) -> Result<()> {
    let target = match release {
        Some(r) => r.trim_start_matches('v').to_string(),
        None => {
            let rels = api.get_all::<w::Release>(&releases_path(app), "version ..; max=1000")?;
            let current = rels
                .iter()
                .find(|r| r.value.current)
                .map(|r| r.value.version)
                .unwrap_or(0);
            rels.iter()
                .map(|r| &r.value)
                .filter(|r| r.version < current && r.status == "succeeded")
                .map(|r| r.version)
                .max()
                .ok_or_else(|| anyhow!("there is no earlier release to roll back to"))?
                .to_string()
        }
    };
    let body = w::ReleaseCreate {
        release: Some(target.clone()),
        ..w::ReleaseCreate::default()
    };
    let r = api.call_with::<w::Release, _>(Method::POST, &releases_path(app), &body)?;
    if json {
        return print_json(&r);
    }
    println!(
        "Rolling back ⬢ {app} to v{target}... done, v{}",
        r.value.version
    );
    Ok(())
}

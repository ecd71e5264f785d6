//! `buildpacks`, `buildpacks:set`, `buildpacks:add`, `buildpacks:remove`, `buildpacks:clear`.

use anyhow::{anyhow, bail, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::header;

fn installations_path(app: &str) -> String {
    format!("{}/buildpack-installations", app_path(app))
}

/// The app's buildpack URLs, in order.
fn buildpack_list(api: &Api, app: &str) -> Result<Vec<String>> {
    let list: Vec<w::BuildpackInstallation> = api.get(&installations_path(app))?.value;
    Ok(list.into_iter().map(|b| b.buildpack.url).collect())
}

fn put_buildpacks(api: &Api, app: &str, list: &[String]) -> Result<()> {
    let body = w::BuildpackInstallationsUpdate {
        updates: list
            .iter()
            .map(|b| w::BuildpackUpdate {
                buildpack: b.clone(),
            })
            .collect(),
    };
    api.call_with::<Vec<w::BuildpackInstallation>, _>(
        Method::PUT,
        &installations_path(app),
        &body,
    )?;
    Ok(())
}

/// A 1-based `--index` turned into a position, checked against `len` (+1 when adding).
fn index_of(index: Option<usize>, len: usize, adding: bool) -> Result<Option<usize>> {
    match index {
        None => Ok(None),
        Some(0) => bail!("--index starts at 1"),
        Some(i) if i > len + usize::from(adding) => {
            bail!("--index {i} is past the end of the list ({len} buildpacks)")
        }
        Some(i) => Ok(Some(i - 1)),
    }
}

/// `hctl buildpacks`.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let installed = api.get::<Vec<w::BuildpackInstallation>>(&installations_path(app))?;
    if json {
        return print_json(&installed);
    }
    let list: Vec<String> = installed
        .value
        .into_iter()
        .map(|b| b.buildpack.url)
        .collect();
    if list.is_empty() {
        println!("{app} has no buildpack set: the next build detects one.");
        return Ok(());
    }
    println!(
        "{}",
        header(&format!(
            "{app} Buildpack URL{}",
            if list.len() > 1 { "s" } else { "" }
        ))
    );
    if list.len() == 1 {
        println!("{}", list[0]);
    } else {
        for (i, b) in list.iter().enumerate() {
            println!("{}. {b}", i + 1);
        }
    }
    Ok(())
}

/// `hctl buildpacks:set URL [--index N]`.
pub fn set(api: &Api, app: &str, buildpack: &str, index: Option<usize>) -> Result<()> {
    let mut list = buildpack_list(api, app)?;
    match index_of(index, list.len(), true)? {
        Some(i) if i < list.len() => list[i] = buildpack.to_string(),
        Some(_) => list.push(buildpack.to_string()),
        None => list = vec![buildpack.to_string()],
    }
    put_buildpacks(api, app, &list)?;
    println!("Buildpack set. Next release on {app} will use {buildpack}.");
    println!(
        "Run git push haven main or hctl deploy to create a new release using this buildpack."
    );
    Ok(())
}

/// `hctl buildpacks:add URL [--index N]`.
pub fn add(api: &Api, app: &str, buildpack: &str, index: Option<usize>) -> Result<()> {
    let mut list = buildpack_list(api, app)?;
    if list.iter().any(|b| b == buildpack) {
        bail!("{buildpack} is already set on {app}");
    }
    match index_of(index, list.len(), true)? {
        Some(i) => list.insert(i, buildpack.to_string()),
        None => list.push(buildpack.to_string()),
    }
    put_buildpacks(api, app, &list)?;
    println!("Buildpack added. Next release on {app} will use:");
    for (i, b) in list.iter().enumerate() {
        println!("  {}. {b}", i + 1);
    }
    Ok(())
}

/// `hctl buildpacks:remove [URL] [--index N]`.
pub fn remove(api: &Api, app: &str, buildpack: Option<&str>, index: Option<usize>) -> Result<()> {
    let mut list = buildpack_list(api, app)?;
    let pos = match (buildpack, index_of(index, list.len(), false)?) {
        (Some(b), None) => list
            .iter()
            .position(|x| x == b)
            .ok_or_else(|| anyhow!("{b} is not set on {app}"))?,
        (None, Some(i)) => i,
        _ => bail!("give either a buildpack URL or --index"),
    };
    let removed = list.remove(pos);
    put_buildpacks(api, app, &list)?;
    println!("Buildpack removed: {removed}");
    Ok(())
}

/// `hctl buildpacks:clear`: the next build detects buildpacks again.
pub fn clear(api: &Api, app: &str) -> Result<()> {
    put_buildpacks(api, app, &[])?;
    println!("Buildpacks cleared. Next release on {app} will detect buildpacks normally.");
    Ok(())
}

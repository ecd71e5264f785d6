//! `domains`, `domains:add`, `domains:remove`.

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::{header, table};

fn domains_path(app: &str) -> String {
    format!("{}/domains", app_path(app))
}

/// `hctl domains`: the app's default host, then its custom domains.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let all = api.get::<Vec<w::Domain>>(&domains_path(app))?;
    if json {
        return print_json(&all);
    }
    println!("{}", header(&format!("{app} Haven Domain")));
    for d in all.value.iter().filter(|d| d.kind == "heroku") {
        println!("{}", d.hostname);
    }
    let custom: Vec<Vec<String>> = all
        .value
        .iter()
        .filter(|d| d.kind == "custom")
        .map(|d| vec![d.hostname.clone(), d.cname.clone().unwrap_or_default()])
        .collect();
    if !custom.is_empty() {
        println!();
        println!("{}", header(&format!("{app} Custom Domains")));
        println!("{}", table(&["Domain Name", "DNS Target"], &custom));
    }
    Ok(())
}

/// `hctl domains:add HOSTNAME`.
pub fn add(api: &Api, app: &str, hostname: &str) -> Result<()> {
    let body = w::DomainCreate {
        hostname: hostname.to_string(),
    };
    let d: w::Domain = api
        .call_with(Method::POST, &domains_path(app), &body)?
        .value;
    println!("Adding {} to ⬢ {app}... done", d.hostname);
    println!(
        "Point {} at any Haven node (CNAME {} or an A record).",
        d.hostname,
        d.cname.unwrap_or_default()
    );
    Ok(())
}

/// `hctl domains:remove HOSTNAME`.
pub fn remove(api: &Api, app: &str, hostname: &str) -> Result<()> {
    api.call::<w::Domain>(Method::DELETE, &format!("{}/{hostname}", domains_path(app)))?;
    println!("Removing {hostname} from ⬢ {app}... done");
    Ok(())
}

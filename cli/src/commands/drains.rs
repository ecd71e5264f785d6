//! `drains`, `drains:add`, `drains:remove`.

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::{header, table};

fn drains_path(app: &str) -> String {
    format!("{}/log-drains", app_path(app))
}

/// `hctl drains`.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::LogDrain>>(&drains_path(app))?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|d| vec![d.url.clone(), d.token.clone()])
        .collect();
    if rows.is_empty() {
        println!("{app} has no drains.");
    } else {
        println!("{}", header("Drains"));
        println!("{}", table(&["URL", "Token"], &rows));
    }
    Ok(())
}

/// `hctl drains:add URL`.
pub fn add(api: &Api, app: &str, url: &str) -> Result<()> {
    let body = w::LogDrainCreate {
        url: url.to_string(),
    };
    let d: w::LogDrain = api.call_with(Method::POST, &drains_path(app), &body)?.value;
    println!("Successfully added drain {} (token {})", d.url, d.token);
    Ok(())
}

/// `hctl drains:remove URL-OR-ID`.
pub fn remove(api: &Api, app: &str, drain: &str) -> Result<()> {
    // A drain's URL goes into the path: percent-encode all but the unreserved characters.
    let key: String = drain
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let d: w::LogDrain = api
        .call(Method::DELETE, &format!("{}/{key}", drains_path(app)))?
        .value;
    println!("Successfully removed drain {}", d.url);
    Ok(())
}

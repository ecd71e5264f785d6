//! `access`, `access:add`, `access:remove`: who may use an app.

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::{header, table};

fn collaborators_path(app: &str) -> String {
    format!("{}/collaborators", app_path(app))
}

/// `hctl access`: the owner and the collaborators.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::Collaborator>>(&collaborators_path(app))?;
    if json {
        return print_json(&list);
    }
    println!("{}", header(&format!("{app} Access List")));
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|c| {
            vec![
                c.user.email.clone(),
                c.role.clone().unwrap_or_else(|| "collaborator".into()),
            ]
        })
        .collect();
    println!("{}", table(&["Email", "Role"], &rows));
    Ok(())
}

/// `hctl access:add EMAIL`.
pub fn add(api: &Api, app: &str, email: &str) -> Result<()> {
    let body = w::CollaboratorCreate {
        user: email.to_string(),
        silent: None,
    };
    let c: w::Collaborator = api
        .call_with(Method::POST, &collaborators_path(app), &body)?
        .value;
    println!("Adding {} access to the app ⬢ {app}... done", c.user.email);
    Ok(())
}

/// `hctl access:remove EMAIL`.
pub fn remove(api: &Api, app: &str, email: &str) -> Result<()> {
    let c: w::Collaborator = api
        .call(
            Method::DELETE,
            &format!("{}/{email}", collaborators_path(app)),
        )?
        .value;
    println!(
        "Removing {} access from the app ⬢ {app}... done",
        c.user.email
    );
    Ok(())
}

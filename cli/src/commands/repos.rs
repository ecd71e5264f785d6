//! `repo:connect`, `repo:info`, `repo:disconnect`: automatic deploys of a branch of a
//! git repository (Heroku's GitHub integration, for any git host).

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Answer, Api};
use crate::output::{header, key_values};

fn repo_path(app: &str) -> String {
    format!("{}/repo", app_path(app))
}

fn show(app: &str, r: &w::Repo) {
    println!("{}", header(&format!("{app} Connected Repository")));
    let last_build = r.last_build.as_ref().map_or_else(
        || "none yet".to_string(),
        |b| format!("{} ({}, {})", b.id, b.status, b.created_at),
    );
    let mut rows = vec![
        ("Repository", r.url.clone()),
        ("Branch", r.branch.clone()),
        ("Connected by", r.connected_by.clone()),
        ("Connected at", r.connected_at.clone()),
        (
            "Last commit",
            r.last_commit.clone().unwrap_or_else(|| "none yet".into()),
        ),
        ("Last build", last_build),
        ("Webhook URL", r.webhook_url.clone()),
    ];
    if let Some(s) = &r.webhook_secret {
        rows.push(("Webhook secret", s.clone()));
    }
    print!("{}", key_values(&rows));
}

/// `hctl repo:connect URL [--branch main]`.
pub fn connect(api: &Api, app: &str, url: &str, branch: &str, json: bool) -> Result<()> {
    let body = w::RepoConnect {
        url: url.to_string(),
        branch: Some(branch.to_string()),
    };
    eprint!("Connecting ⬢ {app} to {branch} of the repository... ");
    let raw = api
        .call_with::<w::Repo, _>(Method::PUT, &repo_path(app), &body)
        .inspect_err(|_| eprintln!("failed"))?;
    eprintln!("done");
    if json {
        return print_json(&raw);
    }
    show(app, &raw.value);
    println!();
    println!("Every new commit on {branch} is built and released. To deploy at once on a push,");
    println!("add a push webhook at your git host: the URL above, content type application/json,");
    println!(
        "and the secret (GitHub, Gitea and Forgejo sign with it; GitLab sends it as its token)."
    );
    Ok(())
}

/// `hctl repo:info`.
pub fn info(api: &Api, app: &str, json: bool) -> Result<()> {
    let r: Answer<w::Repo> = api.get(&repo_path(app))?;
    if json {
        return print_json(&r);
    }
    show(app, &r.value);
    Ok(())
}

/// `hctl repo:disconnect`.
pub fn disconnect(api: &Api, app: &str) -> Result<()> {
    let r = api.call::<w::Repo>(Method::DELETE, &repo_path(app))?;
    println!(
        "Disconnected ⬢ {app} from {} ({}): automatic deploys stopped",
        r.value.url, r.value.branch
    );
    Ok(())
}

//! `certs`, `certs:add`, `certs:info`, `certs:update`, `certs:remove`: an app's own
//! certificates for its custom domains (SNI endpoints), as in the Heroku CLI.

use anyhow::{bail, Context, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::{header, key_values, table};

fn certs_path(app: &str) -> String {
    format!("{}/sni-endpoints", app_path(app))
}

fn read_pair(cert: &str, key: &str) -> Result<w::SniEndpointCreate> {
    Ok(w::SniEndpointCreate {
        certificate_chain: std::fs::read_to_string(cert)
            .with_context(|| format!("read the certificate file {cert}"))?,
        private_key: std::fs::read_to_string(key)
            .with_context(|| format!("read the key file {key}"))?,
    })
}

fn trusted(e: &w::SniEndpoint) -> &'static str {
    if e.ssl_cert.self_signed {
        "False"
    } else {
        "True"
    }
}

/// `hctl certs`: Name, Common Name(s), Expires, Trusted, Type, Domains.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let all = api.get::<Vec<w::SniEndpoint>>(&certs_path(app))?;
    if json {
        return print_json(&all);
    }
    if all.value.is_empty() {
        println!("⬢ {app} has no SSL certificates.");
        println!("Use hctl certs:add CRT KEY to add one.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .value
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.ssl_cert.cert_domains.join(", "),
                e.ssl_cert.expires_at.clone(),
                trusted(e).into(),
                "SNI".into(),
                e.domains.len().to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "Name",
                "Common Name(s)",
                "Expires",
                "Trusted",
                "Type",
                "Domains"
            ],
            &rows
        )
    );
    Ok(())
}

fn show(e: &w::SniEndpoint) {
    println!(
        "{}",
        key_values(&[
            ("Common Name(s)", e.ssl_cert.cert_domains.join(", ")),
            ("Expires At", e.ssl_cert.expires_at.clone()),
            ("Issuer", e.ssl_cert.issuer.clone()),
            ("Starts At", e.ssl_cert.starts_at.clone()),
            ("Subject", e.ssl_cert.subject.clone()),
            (
                "SSL certificate is self signed",
                e.ssl_cert.self_signed.to_string()
            ),
        ])
    );
}

/// `hctl certs:add CERT KEY`.
pub fn add(api: &Api, app: &str, cert: &str, key: &str, json: bool) -> Result<()> {
    let body = read_pair(cert, key)?;
    let made = api.call_with::<w::SniEndpoint, _>(Method::POST, &certs_path(app), &body)?;
    if json {
        return print_json(&made);
    }
    let e = made.value;
    println!("Adding SSL certificate to ⬢ {app}... done");
    println!("⬢ {app} now has the certificate {}:", e.name);
    show(&e);
    if e.domains.is_empty() {
        println!();
        println!(
            "No custom domain of ⬢ {app} matches it yet; add one with hctl domains:add {}",
            e.ssl_cert.cert_domains.first().cloned().unwrap_or_default()
        );
    }
    Ok(())
}

/// The endpoint `name`, or the app's only one.
fn pick(api: &Api, app: &str, name: Option<&str>) -> Result<String> {
    if let Some(n) = name {
        return Ok(n.to_string());
    }
    let all: Vec<w::SniEndpoint> = api.get(&certs_path(app))?.value;
    match all.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => bail!("⬢ {app} has no SSL certificates"),
        _ => bail!("⬢ {app} has several certificates; pick one with --name"),
    }
}

/// `hctl certs:info [--name NAME]`.
pub fn info(api: &Api, app: &str, name: Option<&str>, json: bool) -> Result<()> {
    let name = pick(api, app, name)?;
    let e = api.get::<w::SniEndpoint>(&format!("{}/{name}", certs_path(app)))?;
    if json {
        return print_json(&e);
    }
    println!("{}", header(&format!("Certificate {name} of ⬢ {app}")));
    show(&e.value);
    Ok(())
}

/// `hctl certs:update CERT KEY [--name NAME]`.
pub fn update(api: &Api, app: &str, cert: &str, key: &str, name: Option<&str>) -> Result<()> {
    let name = pick(api, app, name)?;
    let body = read_pair(cert, key)?;
    let e: w::SniEndpoint = api
        .call_with(Method::PATCH, &format!("{}/{name}", certs_path(app)), &body)?
        .value;
    println!("Updating SSL certificate {name} for ⬢ {app}... done");
    show(&e);
    Ok(())
}

/// `hctl certs:remove [--name NAME]`.
pub fn remove(api: &Api, app: &str, name: Option<&str>) -> Result<()> {
    let name = pick(api, app, name)?;
    api.call::<w::SniEndpoint>(Method::DELETE, &format!("{}/{name}", certs_path(app)))?;
    println!("Removing SSL certificate {name} from ⬢ {app}... done");
    Ok(())
}

//! `builds`, `builds:info`, `builds:output`.

use anyhow::{anyhow, Result};
use chrono::Utc;
use haven_api as w;

use super::app_path;
use crate::client::{print_json, print_json_list, Api};
use crate::output::{age, header, key_values, table};

fn builds_path(app: &str) -> String {
    format!("{}/builds", app_path(app))
}

/// `hctl builds`, newest first.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let mut builds =
        api.get_all::<w::Build>(&builds_path(app), "created_at ..; max=1000, order=desc")?;
    builds.sort_by(|a, b| b.value.created_at.cmp(&a.value.created_at));
    if json {
        return print_json_list(&builds);
    }
    println!("{}", header(&format!("{app} Builds")));
    let now = Utc::now();
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            let b = &b.value;
            vec![
                b.id.clone(),
                b.status.clone(),
                b.source_blob
                    .version
                    .as_deref()
                    .unwrap_or_default()
                    .chars()
                    .take(7)
                    .collect(),
                b.user.email.clone(),
                age(&b.created_at, now),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["Id", "Status", "Version", "User", "Created"], &rows)
    );
    Ok(())
}

/// `hctl builds:info ID`.
pub fn info(api: &Api, app: &str, id: &str, json: bool) -> Result<()> {
    let b = api.get::<w::Build>(&format!("{}/{id}", builds_path(app)))?;
    if json {
        return print_json(&b);
    }
    let b = b.value;
    let id_of = |r: Option<w::IdRef>| r.map(|r| r.id).unwrap_or_default();
    println!("{}", header(&format!("Build {}", b.id)));
    println!(
        "{}",
        key_values(&[
            ("Status", b.status),
            ("Version", b.source_blob.version.unwrap_or_default()),
            ("Checksum", b.source_blob.checksum.unwrap_or_default()),
            ("Release", id_of(b.release)),
            ("Slug", id_of(b.slug)),
            ("Stack", b.stack),
            ("By", b.user.email),
            ("Created", b.created_at),
            ("Output", b.output_stream_url),
        ])
    );
    Ok(())
}

/// `hctl builds:output [ID]`: the build's output, following it while it runs.
pub fn output(api: &Api, app: &str, id: Option<&str>) -> Result<()> {
    let id = match id {
        Some(id) => id.to_string(),
        None => {
            let newest: Vec<w::Build> =
                api.get_page(&builds_path(app), "created_at ..; max=1, order=desc")?;
            newest
                .into_iter()
                .next()
                .map(|b| b.id)
                .ok_or_else(|| anyhow!("{app} has no builds yet"))?
        }
    };
    let b: w::Build = api.get(&format!("{}/{id}", builds_path(app)))?.value;
    api.stream_lines(&b.output_stream_url, |l| println!("{l}"))
}

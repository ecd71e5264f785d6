//! `pg:backups`, `pg:backups:capture`, `pg:backups:info`, `pg:backups:download`,
//! `pg:backups:restore`, `pg:backups:delete`: Postgres backups, as in the Heroku CLI.

use anyhow::{bail, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Api};
use crate::output::{header, key_values, table};

fn path(app: &str) -> String {
    format!("{}/pg-backups", app_path(app))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}KB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

fn status(b: &w::PgBackup) -> String {
    match (b.status.as_str(), &b.finished_at) {
        ("Completed", Some(at)) => format!("Completed {at}"),
        ("Failed", Some(at)) => format!("Failed {at}"),
        (s, _) => s.to_string(),
    }
}

/// `hctl pg:backups`: newest first, as Heroku lists them.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let all = api.get::<Vec<w::PgBackup>>(&path(app))?;
    if json {
        return print_json(&all);
    }
    println!("{}", header("Backups"));
    if all.value.is_empty() {
        println!("No backups. Capture one with hctl pg:backups:capture");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .value
        .iter()
        .rev()
        .map(|b| {
            vec![
                b.name.clone(),
                b.created_at.clone(),
                status(b),
                human(b.size),
                b.addon.name.clone(),
                if b.scheduled { "Scheduled" } else { "Manual" }.to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["ID", "Created at", "Status", "Size", "Database", "Type"],
            &rows
        )
    );
    Ok(())
}

/// `hctl pg:backups:capture [DATABASE]`.
pub fn capture(api: &Api, app: &str, database: Option<&str>, json: bool) -> Result<()> {
    let body = w::PgBackupTarget {
        database: database.map(str::to_string),
    };
    let db = database.unwrap_or("DATABASE");
    eprintln!("Starting backup of {db}... (this waits until the dump is on 3 nodes)");
    let b = api.call_long::<w::PgBackup, _>(Method::POST, &path(app), &body)?;
    if json {
        return print_json(&b);
    }
    let b = b.value;
    println!(
        "Backing up {} to {}... done ({}, {} copies)",
        b.addon.name,
        b.name,
        human(b.size),
        b.copies
    );
    println!("Use hctl pg:backups:info {} -a {app} to see it.", b.name);
    Ok(())
}

/// The backup `id`, or the app's newest.
fn pick(api: &Api, app: &str, id: Option<&str>) -> Result<String> {
    if let Some(id) = id {
        return Ok(id.to_string());
    }
    let all: Vec<w::PgBackup> = api.get(&path(app))?.value;
    match all.iter().rev().find(|b| b.succeeded) {
        Some(b) => Ok(b.name.clone()),
        None => bail!("⬢ {app} has no completed backups; capture one with hctl pg:backups:capture"),
    }
}

/// `hctl pg:backups:info [ID]`.
pub fn info(api: &Api, app: &str, id: Option<&str>, json: bool) -> Result<()> {
    let id = pick(api, app, id)?;
    let b = api.get::<w::PgBackup>(&format!("{}/{id}", path(app)))?;
    if json {
        return print_json(&b);
    }
    let b = b.value;
    println!("{}", header(&format!("Backup {}", b.name)));
    let mut rows = vec![
        ("Database", b.addon.name.clone()),
        ("Started at", b.created_at.clone()),
        ("Finished at", b.finished_at.clone().unwrap_or_default()),
        ("Status", b.status.clone()),
        (
            "Type",
            if b.scheduled { "Scheduled" } else { "Manual" }.to_string(),
        ),
        ("Backup Size", human(b.size)),
        ("Copies", b.copies.to_string()),
        ("Checksum", b.checksum.clone().unwrap_or_default()),
    ];
    if let Some(e) = &b.error {
        rows.push(("Error", e.clone()));
    }
    println!("{}", key_values(&rows));
    Ok(())
}

/// `hctl pg:backups:download [ID] [-o FILE]` (default `latest.dump`, as Heroku).
pub fn download(api: &Api, app: &str, id: Option<&str>, output: Option<&str>) -> Result<()> {
    let id = pick(api, app, id)?;
    let dest = std::path::PathBuf::from(output.unwrap_or("latest.dump"));
    let n = api.download(&format!("{}/{id}/blob", path(app)), &dest)?;
    println!(
        "Downloading {id} to {}... done ({})",
        dest.display(),
        human(n)
    );
    Ok(())
}

/// `hctl pg:backups:restore [ID] [DATABASE] --confirm APP`.
pub fn restore(
    api: &Api,
    app: &str,
    id: Option<&str>,
    database: Option<&str>,
    confirm: Option<&str>,
) -> Result<()> {
    let db = database.unwrap_or("DATABASE");
    if confirm != Some(app) {
        bail!("this replaces the data in {db} of ⬢ {app}; to proceed, pass --confirm {app}");
    }
    let id = pick(api, app, id)?;
    let body = w::PgBackupTarget {
        database: database.map(str::to_string),
    };
    api.call_long::<w::PgBackup, _>(
        Method::POST,
        &format!("{}/{id}/actions/restore", path(app)),
        &body,
    )?;
    println!("Restoring {id} to {db} of ⬢ {app}... done");
    Ok(())
}

/// `hctl pg:backups:delete ID --confirm APP`.
pub fn delete(api: &Api, app: &str, id: &str, confirm: Option<&str>) -> Result<()> {
    if confirm != Some(app) {
        bail!("to delete backup {id} of ⬢ {app}, pass --confirm {app}");
    }
    api.call::<w::PgBackup>(Method::DELETE, &format!("{}/{id}", path(app)))?;
    println!("Deleting backup {id} of ⬢ {app}... done");
    Ok(())
}

/// `hctl pg:backups:schedule [DATABASE] --at '02:00 UTC'`.
pub fn schedule(api: &Api, app: &str, database: Option<&str>, at: &str) -> Result<()> {
    let body = w::PgBackupScheduleCreate {
        database: database.map(str::to_string),
        at: at.to_string(),
    };
    let s: w::PgBackupSchedule = api
        .call_with(
            Method::POST,
            &format!("{}/pg-backup-schedules", app_path(app)),
            &body,
        )?
        .value;
    println!(
        "Scheduling automatic daily backups of {} at {}... done (the last {} are kept)",
        s.addon.name, s.at, s.retain
    );
    Ok(())
}

/// `hctl pg:backups:schedules`.
pub fn schedules(api: &Api, app: &str, json: bool) -> Result<()> {
    let all =
        api.get::<Vec<w::PgBackupSchedule>>(&format!("{}/pg-backup-schedules", app_path(app)))?;
    if json {
        return print_json(&all);
    }
    if all.value.is_empty() {
        println!("No backup schedules found on ⬢ {app}");
        println!("Use hctl pg:backups:schedule to set one up");
        return Ok(());
    }
    println!("{}", header("Backup Schedules"));
    for s in &all.value {
        println!(
            "{}: daily at {} (the last {} kept)",
            s.addon.name, s.at, s.retain
        );
    }
    Ok(())
}

/// `hctl pg:backups:unschedule [DATABASE]`.
pub fn unschedule(api: &Api, app: &str, database: Option<&str>) -> Result<()> {
    let db = database.unwrap_or("DATABASE");
    let s: w::PgBackupSchedule = api
        .call(
            Method::DELETE,
            &format!("{}/pg-backup-schedules/{db}", app_path(app)),
        )?
        .value;
    println!("Stopping automatic backups of {}... done", s.addon.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_herokus() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(2048), "2.0KB");
        assert_eq!(human(5 << 20), "5.0MB");
    }
}

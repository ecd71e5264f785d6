//! `ps`, `ps:scale`, `ps:type`, `ps:restart`, `ps:stop`, `ps:wait`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, Answer, Api};
use crate::output::{age, header, table};

/// One `ps:scale` argument: `web=2`, `web=2:standard-2x`, `web=standard-2x`, `web+1`, `web-1`.
pub fn parse_scale(arg: &str) -> Result<w::FormationUpdate> {
    let bad = || anyhow!("{arg:?} is not TYPE=QUANTITY[:SIZE], TYPE=SIZE, TYPE+N or TYPE-N");
    let Some(pos) = arg.find(['=', '+', '-']).filter(|p| *p > 0) else {
        return Err(bad());
    };
    let (ptype, rest) = arg.split_at(pos);
    let mut update = w::FormationUpdate {
        process_type: Some(ptype.to_string()),
        ..w::FormationUpdate::default()
    };
    if let Some(spec) = rest.strip_prefix('=') {
        let (q, size) = match spec.split_once(':') {
            Some((q, s)) => (Some(q), Some(s)),
            None if spec
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-') =>
            {
                (Some(spec), None)
            }
            None => (None, Some(spec)),
        };
        if let Some(q) = q {
            if q.is_empty() {
                return Err(bad());
            }
            update.quantity = Some(w::Quantity::Text(q.to_string()));
        }
        if let Some(size) = size {
            if size.is_empty() {
                return Err(bad());
            }
            update.size = Some(size.to_string());
        }
    } else {
        // `web+1` / `web-1`
        if rest.len() < 2 || !rest[1..].chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        update.quantity = Some(w::Quantity::Text(rest.to_string()));
    }
    Ok(update)
}

/// `PATCH /apps/{app}/formation`: the changed process types as they are now.
fn patch_formation(
    api: &Api,
    app: &str,
    updates: Vec<w::FormationUpdate>,
) -> Result<Answer<Vec<w::Formation>>> {
    api.call_with(
        Method::PATCH,
        &format!("{}/formation", app_path(app)),
        &w::FormationBatchUpdate { updates },
    )
}

/// `hctl ps:scale web=2 ...`.
pub fn scale(api: &Api, app: &str, changes: &[String], json: bool) -> Result<()> {
    let updates = changes
        .iter()
        .map(|c| parse_scale(c))
        .collect::<Result<Vec<_>>>()?;
    let out = patch_formation(api, app, updates)?;
    if json {
        return print_json(&out);
    }
    let now: Vec<String> = out
        .value
        .iter()
        .map(|f| format!("{}={}:{}", f.process_type, f.quantity, f.size))
        .collect();
    println!("Scaling dynos... done, now running {}", now.join(", "));
    Ok(())
}

/// `hctl ps:type web=standard-2x ...`.
pub fn set_type(api: &Api, app: &str, changes: &[String]) -> Result<()> {
    let updates = changes
        .iter()
        .map(|c| match c.split_once('=') {
            Some((t, size)) if !t.is_empty() && !size.is_empty() => Ok(w::FormationUpdate {
                process_type: Some(t.to_string()),
                quantity: None,
                size: Some(size.to_string()),
            }),
            _ => bail!("{c:?} is not TYPE=SIZE (e.g. web=standard-2x)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let out = patch_formation(api, app, updates)?.value;
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|f| {
            vec![
                f.process_type.clone(),
                f.size.clone(),
                f.quantity.to_string(),
            ]
        })
        .collect();
    println!("{}", table(&["Type", "Size", "Qty"], &rows));
    Ok(())
}

/// `hctl ps`.
pub fn list(api: &Api, app: &str, json: bool) -> Result<()> {
    let dynos = api.get::<Vec<w::Dyno>>(&format!("{}/dynos", app_path(app)))?;
    if json {
        return print_json(&dynos);
    }
    let unplaced: Vec<w::UnplacedDyno> =
        api.get(&format!("{}/unplaced-dynos", app_path(app)))?.value;
    print_ps(&dynos.value, &unplaced);
    Ok(())
}

/// `hctl ps` output: one block per process type, then what could not be placed.
fn print_ps(list: &[w::Dyno], unplaced: &[w::UnplacedDyno]) {
    let now = Utc::now();
    let mut types: Vec<&str> = list.iter().map(|d| d.process_type.as_str()).collect();
    types.sort();
    types.dedup();
    if list.is_empty() && unplaced.is_empty() {
        println!("No dynos on this app");
        return;
    }
    for t in types {
        let of_type: Vec<&w::Dyno> = list.iter().filter(|d| d.process_type == t).collect();
        let command = of_type
            .first()
            .map(|d| d.command.as_str())
            .unwrap_or_default();
        let size = of_type.first().map(|d| d.size.as_str()).unwrap_or_default();
        println!(
            "{}",
            header(&format!("{t} ({size}): {command} ({})", of_type.len()))
        );
        let rows: Vec<Vec<String>> = of_type
            .iter()
            .map(|d| {
                let state = match d.exit_code {
                    Some(code) => format!("{} (exit {code})", d.state),
                    None => d.state.clone(),
                };
                vec![
                    d.name.clone(),
                    state,
                    age(&d.state_changed_at, now),
                    d.node.as_ref().map(|n| n.name.clone()).unwrap_or_default(),
                    format!("v{}", d.release.version),
                    d.restarts.to_string(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["Dyno", "State", "Since", "Node", "Release", "Restarts"],
                &rows
            )
        );
        println!();
    }
    if !unplaced.is_empty() {
        println!("{}", header("Not placed"));
        for u in unplaced {
            println!("{}: {}", u.name, u.reason);
        }
    }
}

/// `hctl ps:restart [web.1 | web]`: all dynos, one, or one type.
pub fn restart(api: &Api, app: &str, target: Option<&str>) -> Result<()> {
    let path = match target {
        None => format!("{}/dynos", app_path(app)),
        Some(t) if t.contains('.') => format!("{}/dynos/{t}", app_path(app)),
        Some(t) => format!("{}/formations/{t}/dynos", app_path(app)),
    };
    api.call::<w::Accepted>(Method::DELETE, &path)?;
    let what = target.unwrap_or("all dynos");
    println!("Restarting {what} on ⬢ {app}... done");
    Ok(())
}

/// `hctl ps:stop web.1 | web`.
pub fn stop(api: &Api, app: &str, target: &str) -> Result<()> {
    let path = if target.contains('.') {
        format!("{}/dynos/{target}/actions/stop", app_path(app))
    } else {
        format!("{}/formations/{target}/actions/stop", app_path(app))
    };
    api.call::<w::Accepted>(Method::POST, &path)?;
    println!("Stopping {target} on ⬢ {app}... done");
    Ok(())
}

/// `hctl ps:wait`: polls until every formation dyno (of `ptype`) runs the current release
/// and is up, with the quantity the formation asks for.
pub fn wait(api: &Api, app: &str, ptype: Option<&str>, timeout: u64) -> Result<()> {
    let base = app_path(app);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let releases: Vec<w::Release> = api.get_page(
            &format!("{base}/releases"),
            "version ..; max=50, order=desc",
        )?;
        let current = releases
            .iter()
            .find(|r| r.current)
            .map(|r| r.version)
            .unwrap_or(0);
        let formation: Vec<w::Formation> = api.get(&format!("{base}/formation"))?.value;
        let want: u64 = formation
            .iter()
            .filter(|f| ptype.is_none_or(|t| f.process_type == t))
            .map(|f| u64::from(f.quantity))
            .sum();
        let dynos: Vec<w::Dyno> = api.get(&format!("{base}/dynos"))?.value;
        let list: Vec<&w::Dyno> = dynos
            .iter()
            .filter(|d| ptype.is_none_or(|t| d.process_type == t))
            .filter(|d| d.process_type != "run" && d.process_type != "release")
            .collect();
        let ready = list
            .iter()
            .filter(|d| d.state == "up" && d.release.version == current)
            .count() as u64;
        let others = list.len() as u64 - ready;
        let line = format!("Waiting for every dyno to be running v{current}... {ready} / {want}");
        if line != last {
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        if ready == want && others == 0 {
            if tty {
                eprintln!(", done");
            } else {
                eprintln!("done");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            if tty {
                eprintln!();
            }
            bail!("gave up after {timeout}s: {ready} of {want} dynos run v{current}; see hctl ps");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scale_arguments() {
        let cases = [
            ("web=2", json!({"type":"web","quantity":"2"})),
            (
                "web=2:standard-2x",
                json!({"type":"web","quantity":"2","size":"standard-2x"}),
            ),
            (
                "worker=Standard-1X",
                json!({"type":"worker","size":"Standard-1X"}),
            ),
            ("web+1", json!({"type":"web","quantity":"+1"})),
            ("web-2", json!({"type":"web","quantity":"-2"})),
            ("web=+3", json!({"type":"web","quantity":"+3"})),
        ];
        for (arg, want) in cases {
            let got = serde_json::to_value(parse_scale(arg).unwrap()).unwrap();
            assert_eq!(got, want, "{arg}");
        }
        for bad in ["web", "=2", "web=", "web+", "web+x", "web=2:"] {
            assert!(parse_scale(bad).is_err(), "{bad}");
        }
    }
}

//! `nodes`, `nodes:drain`, `nodes:undrain`, `nodes:remove`, `cluster:status`,
//! `cluster:events`, `cluster:backup`.

use anyhow::Result;
use haven_api as w;
use reqwest::Method;

use crate::client::{print_json, Api};
use crate::output::{header, key_values, table};

/// `hctl nodes`.
pub fn nodes(api: &Api, json: bool) -> Result<()> {
    let nodes = api.get::<Vec<w::ClusterNode>>("/cluster/nodes")?;
    if json {
        return print_json(&nodes);
    }
    let rows: Vec<Vec<String>> = nodes
        .value
        .iter()
        .map(|n| {
            vec![
                format!("{}{}", n.name, if n.leader { " *" } else { "" }),
                n.id.clone(),
                n.status.clone(),
                n.role.clone(),
                format!("{} / {} MiB", n.used_memory_mb, n.memory_mb),
                n.dynos.to_string(),
                n.cpus.to_string(),
                n.api_url.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "Name",
                "ID",
                "Status",
                "Role",
                "Memory used",
                "Dynos",
                "CPUs",
                "API"
            ],
            &rows
        )
    );
    println!("(* leader)");
    Ok(())
}

/// `hctl nodes:drain NODE` / `nodes:undrain NODE`.
pub fn set_draining(api: &Api, node: &str, drain: bool) -> Result<()> {
    let body = w::ClusterNodeUpdate {
        draining: Some(drain),
    };
    let out: w::ClusterNode = api
        .call_with(Method::PATCH, &format!("/cluster/nodes/{node}"), &body)?
        .value;
    if drain {
        println!(
            "Draining {}: its {} dynos move to other nodes and no new ones start there.",
            out.name, out.dynos
        );
    } else {
        println!("{} takes dynos again.", out.name);
    }
    Ok(())
}

/// `hctl cluster:status`: the Raft status of the node that answers.
pub fn status(api: &Api, json: bool) -> Result<()> {
    let st = api.get::<w::ClusterStatus>("/cluster/status")?;
    if json {
        return print_json(&st);
    }
    let st = st.value;
    let or_blank = |v: Option<String>| v.unwrap_or_default();
    println!("{}", header(&format!("Cluster {}", st.cluster_name)));
    println!(
        "{}",
        key_values(&[
            ("Cluster ID", st.cluster_id),
            ("App domain", st.app_domain),
            ("This node", format!("{} ({})", st.node_name, st.node_id)),
            (
                "Leader",
                format!("{} ({})", or_blank(st.leader_name), or_blank(st.leader))
            ),
            ("Term", st.term.to_string()),
            ("Voters", st.voters.join(", ")),
            ("Learners", st.learners.join(", ")),
            (
                "Applied index",
                or_blank(st.applied_index.map(|i| i.to_string()))
            ),
        ])
    );
    // What the voter autopilot did lately (events are kept in memory by each node).
    if let Ok(events) = api.get::<Vec<w::PlatformEvent>>("/cluster/events") {
        let mine: Vec<&w::PlatformEvent> = events
            .value
            .iter()
            .filter(|e| e.kind == "autopilot")
            .take(5)
            .collect();
        if !mine.is_empty() {
            println!();
            println!("{}", header("Autopilot"));
            for e in mine {
                println!("{}  {}", e.at, e.message);
            }
        }
    }
    Ok(())
}

/// `hctl cluster:events`: what the platform did lately, newest first.
pub fn events(api: &Api, json: bool) -> Result<()> {
    let events = api.get::<Vec<w::PlatformEvent>>("/cluster/events")?;
    if json {
        return print_json(&events);
    }
    let rows: Vec<Vec<String>> = events
        .value
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.node.clone(),
                e.kind.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No platform events since the nodes started.");
    } else {
        println!("{}", table(&["When", "Node", "Kind", "Event"], &rows));
    }
    Ok(())
}

/// `hctl nodes:remove NODE`: waits while its dynos move.
pub fn remove(api: &Api, node: &str) -> Result<()> {
    eprint!("Removing {node}: draining its dynos, then taking it out of the cluster... ");
    let r = api
        .call_long::<w::ClusterNode, _>(
            Method::DELETE,
            &format!("/cluster/nodes/{node}"),
            &serde_json::json!({}),
        )
        .inspect_err(|_| eprintln!("failed"))?;
    eprintln!("done");
    println!(
        "Removed {} ({}): its certificate is refused from now on; to use the host again, wipe its data dir and join it as a new node",
        r.value.name, r.value.id
    );
    Ok(())
}

/// `hctl cluster:backup FILE [--slugs]`: downloads the backup, then reads its manifest.
pub fn backup(api: &Api, file: &std::path::Path, slugs: bool, json: bool) -> Result<()> {
    eprint!(
        "Backing up the cluster state{}... ",
        if slugs { " with slugs and backups" } else { "" }
    );
    let size = api
        .download(&format!("/cluster/backup?slugs={slugs}"), file)
        .inspect_err(|_| eprintln!("failed"))?;
    eprintln!("done, {}", human_size(size));
    let manifest = read_manifest(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(());
    }
    let n = |k: &str| manifest[k].as_u64().unwrap_or(0).to_string();
    let blobs = manifest["blobs"].as_array().map_or(0, |b| b.len());
    let missing = manifest["missing"].as_array().map_or(0, |b| b.len());
    println!(
        "{}",
        header(&format!(
            "Backup of {} in {}",
            manifest["cluster_name"].as_str().unwrap_or("?"),
            file.display()
        ))
    );
    println!(
        "{}",
        key_values(&[
            (
                "Cluster",
                manifest["cluster_id"].as_str().unwrap_or("").to_string()
            ),
            (
                "Taken on",
                manifest["node"].as_str().unwrap_or("").to_string()
            ),
            (
                "Created",
                manifest["created_at"].as_str().unwrap_or("").to_string()
            ),
            ("Apps", n("apps")),
            ("Releases", n("releases")),
            ("Blobs", blobs.to_string()),
            ("Missing blobs", missing.to_string()),
            ("Format", n("format")),
        ])
    );
    println!(
        "Restore on a new host: havend restore --from {} --data-dir DIR",
        file.display()
    );
    Ok(())
}

/// The `manifest.json` at the start of a backup file.
fn read_manifest(file: &std::path::Path) -> Result<serde_json::Value> {
    use anyhow::Context;
    let f = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut entry = tar.entries()?.next().context("the backup is empty")??;
    if entry.path()?.to_string_lossy() != "manifest.json" {
        anyhow::bail!(
            "{} does not begin with a manifest: not a Haven backup",
            file.display()
        );
    }
    Ok(serde_json::from_reader(&mut entry)?)
}

fn human_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

//! `stacks`, `stacks:import` and `stack:set`: the stacks apps build and run on, the images
//! a cluster has for them, and an app's stack.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use crate::client::{print_json, print_json_list, Api};
use crate::output::{header, table};

fn mib(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// `hctl stacks`: the stacks, the default marked with `*` (as the Heroku CLI does), with
/// their images and how many nodes hold them.
pub fn list(api: &Api, app: Option<&str>, json: bool) -> Result<()> {
    let stacks = api.get_all::<w::Stack>("/stacks", "name ..; max=100")?;
    if json {
        return print_json_list(&stacks);
    }
    let current = match app {
        Some(a) => Some(api.get::<w::App>(&app_path(a))?.value.build_stack.name),
        None => None,
    };
    let nodes = api
        .get::<Vec<serde_json::Value>>("/cluster/nodes")
        .map(|n| n.value.len())
        .ok();
    match app {
        Some(a) => println!("{}", header(&format!("⬢ {a} Available Stacks"))),
        None => println!("{}", header("Available Stacks")),
    }
    let rows: Vec<Vec<String>> = stacks
        .iter()
        .map(|s| {
            let s = &s.value;
            let marked = match &current {
                Some(c) => c == &s.name,
                None => s.default,
            };
            let image = |kind: &str| {
                s.images
                    .iter()
                    .find(|i| i.kind == kind)
                    .map_or("host stack".to_string(), |i| {
                        let held = match nodes {
                            Some(n) => format!("{}/{n} nodes", i.nodes.len()),
                            None => format!("{} nodes", i.nodes.len()),
                        };
                        format!(
                            "{} {} ({held})",
                            &i.sha256[..12.min(i.sha256.len())],
                            mib(i.bytes)
                        )
                    })
            };
            let os = s
                .images
                .iter()
                .find(|i| i.kind == "run")
                .map_or(String::new(), |i| i.os.clone());
            vec![
                format!("{} {}", if marked { "*" } else { " " }, s.name),
                image("run"),
                image("build"),
                os,
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["Stack", "Run image", "Build image", "OS"], &rows)
    );
    Ok(())
}

/// A reader that prints how much of `total` it has read, on one line of stderr.
struct Progress<R> {
    inner: R,
    read: u64,
    total: u64,
    shown: u64,
    what: String,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let pct = (self.read * 100).checked_div(self.total).unwrap_or(100);
        if pct != self.shown || n == 0 {
            self.shown = pct;
            eprint!("\r{} {pct:>3}% of {}", self.what, mib(self.total));
        }
        Ok(n)
    }
}

/// `hctl stacks:import STACK --run FILE --build FILE`: uploads images made by
/// `havend stack:build` to the node, which checks, unpacks and records them; every node
/// then fetches them.
pub fn import(api: &Api, stack: &str, images: &[(&str, &Path)], json: bool) -> Result<()> {
    if images.is_empty() {
        bail!("give the images to import: --run FILE and/or --build FILE (havend stack:build makes them)");
    }
    let mut last = None;
    for (kind, file) in images {
        let f = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
        let total = f.metadata()?.len();
        let what = format!("Uploading the {stack} {kind} image {}...", file.display());
        let body = Progress {
            inner: f,
            read: 0,
            total,
            shown: 101,
            what: what.clone(),
        };
        let answer: crate::client::Answer<w::Stack> =
            api.put_reader(&format!("/stacks/{stack}/images/{kind}"), body, total)?;
        eprintln!("\r{what} done, checked and unpacked                ");
        last = Some(answer);
    }
    let Some(answer) = last else {
        return Ok(());
    };
    if json {
        return print_json(&answer);
    }
    for i in &answer.value.images {
        println!(
            "{} {} image: sha256:{} ({}, {} unpacked), {}",
            answer.value.name,
            i.kind,
            i.sha256,
            mib(i.bytes),
            mib(i.unpacked_bytes),
            i.os
        );
    }
    println!(
        "Every node fetches and unpacks the images now (hctl stacks shows how many hold them)."
    );
    Ok(())
}

/// `hctl stack:set STACK -a APP`: the stack the app's next build uses.
pub fn set(api: &Api, app: &str, stack: &str, json: bool) -> Result<()> {
    let body = w::AppUpdate {
        build_stack: Some(stack.to_string()),
        ..Default::default()
    };
    let answer = api.call_with::<w::App, _>(Method::PATCH, &app_path(app), &body)?;
    if json {
        return print_json(&answer);
    }
    let a = answer.value;
    println!("Setting stack to {stack}... done");
    if a.stack.name != a.build_stack.name {
        println!(
            "You will need to redeploy ⬢ {} for the change to take effect.",
            a.name
        );
        println!(
            "Run git push haven main to trigger a new build on ⬢ {}.",
            a.name
        );
    }
    Ok(())
}

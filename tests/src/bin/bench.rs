//! Runs every benchmark of the project and writes one table: `bench-results.md` and
//! `bench-results.json`.
//!
//! ```sh
//! scripts/install-bench-deps
//! cargo build --release --workspace --bins
//! cargo run --release -p haven-tests --bin bench [-- --quick] [--only writes,router] [--out DIR]
//! ```

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Instant;

use haven_tests::bench::{self, table, Opts, Row, SECTIONS};
use serde_json::json;

const USAGE: &str = "usage: bench [--quick] [--only SECTION[,SECTION…]] [--out DIR]
Runs every benchmark and writes DIR/bench-results.md and DIR/bench-results.json (DIR: .).
Sections: writes, deploy, dyno-start, scheduler, failover, router, logs, rss, chaos.";

struct Args {
    quick: bool,
    only: Vec<String>,
    out: PathBuf,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        only: Vec::new(),
        out: PathBuf::from("."),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--only" => {
                let v = args.next().ok_or("--only needs a section")?;
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    if !SECTIONS.contains(&s) {
                        return Err(format!("no section {s:?}"));
                    }
                    a.only.push(s.to_string());
                }
            }
            "--out" => a.out = args.next().ok_or("--out needs a directory")?.into(),
            // `cargo bench`-style flags given by habit.
            "--bench" => {}
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu": cpu, "kernel": kernel})
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let opts = Opts { quick: args.quick };
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let started = Instant::now();
    let sections: Vec<&str> = SECTIONS
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    eprintln!(
        "bench: {build} build{}, sections: {}",
        if args.quick { ", quick" } else { "" },
        sections.join(", ")
    );
    let mut rows: Vec<Row> = Vec::new();
    for s in &sections {
        let t = Instant::now();
        eprintln!("[{:>6.1}s] {s}", started.elapsed().as_secs_f64());
        let mut progress = |line: &str| {
            eprintln!("[{:>6.1}s]   {line}", started.elapsed().as_secs_f64());
        };
        // A helper that panics (a cluster that does not start) costs its section only.
        let got = std::panic::catch_unwind(AssertUnwindSafe(|| {
            bench::run_section(s, &opts, &mut progress)
        }))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            vec![Row::missing(s, s, "", format!("could not run: {msg}"))]
        });
        for r in &got {
            eprintln!(
                "[{:>6.1}s]   = {}: {} {} {}",
                started.elapsed().as_secs_f64(),
                r.name,
                r.figure.map_or("—".into(), table::number),
                r.unit,
                match r.met() {
                    Some(true) => "(target met)",
                    Some(false) => "(target MISSED)",
                    None => "",
                }
            );
        }
        eprintln!(
            "[{:>6.1}s] {s} took {:.1}s",
            started.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        rows.extend(got);
    }
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let meta = json!({
        "date": date,
        "build": build,
        "quick": args.quick,
        "sections": sections,
        "machine": machine(),
        "took_s": started.elapsed().as_secs_f64(),
    });
    let md = format!(
        "Measured {date}, {build} build{}, {} CPUs ({}).\n\n{}",
        if args.quick { ", --quick" } else { "" },
        meta["machine"]["cpus"],
        meta["machine"]["cpu"].as_str().unwrap_or(""),
        table::markdown(&rows)
    );
    let doc = table::document(&rows, meta);
    println!("{md}");
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("bench: create {}: {e}", args.out.display());
        std::process::exit(1);
    }
    let md_path = args.out.join("bench-results.md");
    let json_path = args.out.join("bench-results.json");
    let written = std::fs::write(&md_path, &md).and_then(|()| {
        let mut f = std::fs::File::create(&json_path)?;
        f.write_all(
            serde_json::to_string_pretty(&doc)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        f.write_all(b"\n")
    });
    match written {
        Ok(()) => eprintln!(
            "bench: wrote {} and {} ({} targets met, {} missed)",
            md_path.display(),
            json_path.display(),
            doc["met"],
            doc["missed"]
        ),
        Err(e) => {
            eprintln!("bench: write the results: {e}");
            std::process::exit(1);
        }
    }
}

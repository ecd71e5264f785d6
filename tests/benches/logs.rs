//! Log ingest (lines/s one node takes from one dyno) and tail latency (dyno write → tail
//! client via another node).
//!
//! A thin wrapper over the `logs` section(s) of `haven_tests::bench`; the `bench`
//! binary runs every section into one table. Run:
//! `cargo build --release --workspace --bins && cargo bench -p haven-tests --bench logs`
//! (`scripts/install-bench-deps` installs the peers). Prints the rows as a Markdown
//! table and one JSON line.

use haven_tests::bench::{run_section, table, Opts};

fn main() {
    // `cargo bench` passes --bench; --quick shortens the runs.
    let opts = Opts {
        quick: std::env::args().any(|a| a == "--quick"),
    };
    let rows = run_section("logs", &opts, &mut |line| eprintln!("{line}"));
    println!("{}", table::markdown(&rows));
    println!(
        "{}",
        table::document(&rows, serde_json::json!({"bench": "logs"}))
    );
}

//! Router throughput and latency beside nginx and direct connections, then failover
//! (SIGKILL of a node → its web dynos up elsewhere) with the requests that fail meanwhile.
//!
//! A thin wrapper over the `router,failover` section(s) of `haven_tests::bench`; the `bench`
//! binary runs every section into one table. Run:
//! `cargo build --release --workspace --bins && cargo bench -p haven-tests --bench router`
//! (`scripts/install-bench-deps` installs the peers). Prints the rows as a Markdown
//! table and one JSON line.

use haven_tests::bench::{run_section, table, Opts};

fn main() {
    // `cargo bench` passes --bench; --quick shortens the runs.
    let opts = Opts {
        quick: std::env::args().any(|a| a == "--quick"),
    };
    let mut rows = Vec::new();
    for section in ["router", "failover"] {
        rows.extend(run_section(section, &opts, &mut |line| eprintln!("{line}")));
    }
    println!("{}", table::markdown(&rows));
    println!(
        "{}",
        table::document(&rows, serde_json::json!({"bench": "router"}))
    );
}

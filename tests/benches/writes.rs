//! Committed config-var writes per second on a 3-node cluster (1 and 32 clients, to the
//! leader and through a follower) beside a 3-member etcd cluster measured by the same
//! client. `BENCH_HAVEND_CONFIG` may hold TOML given to every node (e.g. a `[raft]` table)
//! to compare settings.
//!
//! A thin wrapper over the `writes` section(s) of `haven_tests::bench`; the `bench`
//! binary runs every section into one table. Run:
//! `cargo build --release --workspace --bins && cargo bench -p haven-tests --bench writes`
//! (`scripts/install-bench-deps` installs the peers). Prints the rows as a Markdown
//! table and one JSON line.

use haven_tests::bench::{run_section, table, Opts};

fn main() {
    // `cargo bench` passes --bench; --quick shortens the runs.
    let opts = Opts {
        quick: std::env::args().any(|a| a == "--quick"),
    };
    let rows = run_section("writes", &opts, &mut |line| eprintln!("{line}"));
    println!("{}", table::markdown(&rows));
    println!(
        "{}",
        table::document(&rows, serde_json::json!({"bench": "writes"}))
    );
}

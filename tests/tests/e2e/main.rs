//! End-to-end tests over real clusters of `havend` processes (one test binary).
//!
//! Run `cargo build --bins && cargo test -p haven-tests`. As root each node is a separate
//! network namespace on a bridge; otherwise (or with `HAVEN_E2E_MODE=loopback`) nodes share
//! 127.0.0.1 and the partition tests print a skip note.

// A failed step should end the test with its message; unwrap is the idiom here.
#![allow(clippy::unwrap_used)]

mod access;
mod addon_providers;
mod addons;
mod addons_ha;
mod adopt;
mod api;
mod autopilot;
mod backups;
mod builds;
mod chaos;
mod cluster;
mod dashboard;
mod durability;
mod dynos;
mod hctl;
mod heroku_cli;
mod invariants;
mod leave;
mod limits;
mod logs;
mod network;
mod node_removal;
mod official_buildpacks;
mod package;
mod pg_admin;
mod redis_ha;
mod repos;
mod restore;
mod retention;
mod router;
mod router_faults;
mod runtime;
mod slug_upkeep;
mod stacks;
mod tls;
mod upgrade;

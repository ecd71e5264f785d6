//! End-to-end tests over real clusters of `havend` processes (one test binary).

mod api;
mod cluster;
mod hctl;

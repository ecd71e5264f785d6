//! `haven-init`: the init of a container dyno, a binary of its own.
//!
//! The agent's runtime (`agent/src/runtime/`) prepares a dyno — its dir, cgroup, mount
//! plan — and writes an [`InitSpec`]; this crate executes it: it joins the cgroups,
//! unshares the namespaces (and plumbs the dyno's network, [`net`]), builds the root,
//! `pivot_root`s and runs the command as the dyno user with `no_new_privs` ([`run`]).
//!
//! It is exec'd once per dyno start, so it is kept small: nothing but `nix`, `libc`,
//! `serde`/`serde_json` and `anyhow` (no C++, no async runtime), which makes its exec,
//! dynamic loading and relocation cost a fraction of `havend`'s. The agent links this
//! library too: for the spec types, the netlink client (its bridge), and as the fallback
//! `havend dyno-init` where no `haven-init` binary sits next to `havend`.

mod init;
pub mod net;
pub mod netlink;
mod spec;

pub use init::{probe, run, standby, Status, SETUP_FAILED};
pub use net::probe_net;
pub use spec::{parse_mountinfo, unescape_mount, DynoNet, InitSpec, MountEntry, MountStep};

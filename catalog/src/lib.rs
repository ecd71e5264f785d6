//! haven-catalog: what the platform offers, as plain data.
//!
//! - [`DYNO_SIZES`]: every dyno size with the memory it reserves, its process limit, its
//!   CPU share, its disk quota and the name Heroku shows; [`dyno_size`] looks one up.
//! - [`STACKS`]: the stack names an app may carry; [`DEFAULT_STACK`] is a new app's.
//! - [`ADDON_SERVICES`]: the add-on services Haven runs (Postgres, Redis) and their plans
//!   (memory per member, members per add-on); [`addon_plan`] finds one (module `addons`).
//!
//! The model validates sizes against this table, the scheduler counts memory from it and
//! the agent sets cgroup limits and writes logs from it, so a size added here is offered
//! everywhere at once.
//!
//! **Architecture invariant:** this crate depends on no other crate (no haven crate, no
//! I/O): any crate, pure or not, may use it.

mod addons;

pub use addons::{
    addon_plan, addon_service, service_plan, AddonPlan, AddonService, Engine, ADDON_SERVICES,
};

/// A dyno size: what a dyno of this size may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynoSize {
    /// The name the model stores and the API accepts: lowercase, `standard-1x`.
    pub name: &'static str,
    /// How Heroku writes it in API answers and logs: `Standard-1X`.
    pub display_name: &'static str,
    /// Memory a dyno reserves (the scheduler's unit) and may use (its cgroup quota), MiB.
    pub memory_mb: u64,
    /// Most processes and threads a dyno may run at once (Heroku's limits by size).
    pub pids_limit: u64,
    /// The dyno's CPU share relative to other dynos of its node when the CPUs are
    /// contended, in cgroup v1 `cpu.shares` units (1024 = one ordinary process; on cgroup
    /// v2 it becomes `cpu.weight` = shares × 100 / 1024). Idle CPU is never withheld:
    /// shares only split contended time, roughly as Heroku's compute multipliers do
    /// (standard-1x 1×, standard-2x 2×, performance-m 12×, performance-l 50×).
    pub cpu_shares: u64,
    /// Most bytes, MiB, a dyno may write to its ephemeral filesystem (`/app`'s changes
    /// over the slug plus `/tmp`); beyond it the dyno is killed (`Error R15 (Disk quota
    /// exceeded)`).
    pub disk_mb: u64,
}

/// Every dyno size, smallest first.
pub const DYNO_SIZES: &[DynoSize] = &[
    DynoSize {
        name: "eco",
        display_name: "Eco",
        memory_mb: 512,
        pids_limit: 256,
        cpu_shares: 1024,
        disk_mb: 512,
    },
    DynoSize {
        name: "basic",
        display_name: "Basic",
        memory_mb: 512,
        pids_limit: 256,
        cpu_shares: 1024,
        disk_mb: 512,
    },
    DynoSize {
        name: "standard-1x",
        display_name: "Standard-1X",
        memory_mb: 512,
        pids_limit: 256,
        cpu_shares: 1024,
        disk_mb: 1024,
    },
    DynoSize {
        name: "standard-2x",
        display_name: "Standard-2X",
        memory_mb: 1024,
        pids_limit: 512,
        cpu_shares: 2048,
        disk_mb: 2048,
    },
    DynoSize {
        name: "performance-m",
        display_name: "Performance-M",
        memory_mb: 2560,
        pids_limit: 16384,
        cpu_shares: 12288,
        disk_mb: 8192,
    },
    DynoSize {
        name: "performance-l",
        display_name: "Performance-L",
        memory_mb: 14336,
        pids_limit: 16384,
        cpu_shares: 51200,
        disk_mb: 16384,
    },
];

/// The size of a new formation or one-off dyno when none is asked for.
pub const DEFAULT_DYNO_SIZE: &str = "standard-1x";

/// The size named `name`, ignoring case and surrounding spaces (`" Standard-2X"` finds
/// `standard-2x`); `None` for a size Haven does not offer.
pub fn dyno_size(name: &str) -> Option<&'static DynoSize> {
    let name = name.trim();
    DYNO_SIZES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The stack names an app may carry, newest first. Haven builds every app with the host's
/// toolchains; the stack name is what the API reports, for Heroku clients.
pub const STACKS: &[&str] = &["heroku-24", "heroku-22"];

/// The stack of an app created without one.
pub const DEFAULT_STACK: &str = "heroku-24";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_found_ignoring_case_and_spaces() {
        let cases = [
            ("eco", Some((512, 256))),
            ("basic", Some((512, 256))),
            ("standard-1x", Some((512, 256))),
            ("Standard-2X", Some((1024, 512))),
            (" performance-m ", Some((2560, 16384))),
            ("PERFORMANCE-L", Some((14336, 16384))),
            ("huge", None),
            ("", None),
            ("standard 1x", None),
        ];
        for (name, want) in cases {
            let got = dyno_size(name).map(|s| (s.memory_mb, s.pids_limit));
            assert_eq!(got, want, "{name:?}");
        }
    }

    #[test]
    fn names_are_lowercase_and_display_names_read_back() {
        for s in DYNO_SIZES {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert_eq!(dyno_size(s.display_name), Some(s), "{}", s.display_name);
        }
    }

    #[test]
    fn bigger_sizes_get_more_cpu_and_disk_within_the_kernels_ranges() {
        for w in DYNO_SIZES.windows(2) {
            assert!(w[0].cpu_shares <= w[1].cpu_shares, "{}", w[1].name);
            assert!(w[0].disk_mb <= w[1].disk_mb, "{}", w[1].name);
        }
        for s in DYNO_SIZES {
            // cpu.shares takes 2..=262144; cpu.weight (shares * 100 / 1024) 1..=10000.
            assert!((2..=262_144).contains(&s.cpu_shares), "{}", s.name);
            assert!(
                (1..=10_000).contains(&(s.cpu_shares * 100 / 1024)),
                "{}",
                s.name
            );
            assert!(s.disk_mb > 0, "{}", s.name);
        }
        let share = |n| dyno_size(n).map(|s| s.cpu_shares);
        assert_eq!(share("standard-1x"), Some(1024));
        assert_eq!(share("performance-l"), Some(50 * 1024));
    }

    #[test]
    fn defaults_are_offered() {
        assert!(dyno_size(DEFAULT_DYNO_SIZE).is_some());
        assert!(STACKS.contains(&DEFAULT_STACK));
    }
}

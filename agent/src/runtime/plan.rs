//! The pure half of the container runtime: spec validation, the per-dyno directory layout,
//! the mount plan that the init (`haven-init`) executes and the shell wrapper. The spec
//! file's types ([`InitSpec`], [`MountStep`]) live in the init's crate. Nothing here
//! touches the system, so all of it is unit-tested.

use std::path::{Component, Path, PathBuf};

pub use haven_init::{parse_mountinfo, InitSpec, MountStep};

use super::{Bind, DynoSpec};

/// The uid every dyno process runs as. No host user has it; inside the container
/// `/etc/passwd` names it `dyno` (home `/app`). Slugs extracted with this owner are fully
/// writable by the dyno; root-owned, world-readable slug files are readable only.
pub const DYNO_UID: u32 = 64000;
/// The gid of every dyno process (`dyno` in the container's `/etc/group`).
pub const DYNO_GID: u32 = 64000;

/// Host directories that make up the container's root: bound read-only, or re-created as
/// the same symlink where the host has one (merged-/usr systems).
pub const HOST_STACK: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];

/// Host device nodes bound into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What a host stack entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir,
    Symlink(PathBuf),
}

/// The per-dyno directory `STATE_DIR/ID` and what lives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynoDirs {
    pub root: PathBuf,
}

impl DynoDirs {
    pub fn new(state_dir: &Path, id: &str) -> DynoDirs {
        DynoDirs {
            root: state_dir.join(id),
        }
    }
    /// Mount point of the container's root tmpfs (only ever mounted inside the dyno's
    /// private mount namespace).
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
    /// Overlay upper dir of `/app` (owned by the dyno uid), or the whole `/app` without a slug.
    pub fn upper(&self) -> PathBuf {
        self.root.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    /// The container's `/tmp` (mode 1777), bound in: on the node's disk beside the upper
    /// dir, so the dyno's writable space is these two dirs ([`DynoDirs::writable`]),
    /// counted against its disk quota, and not the node's memory.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Everything the dyno can write to: `/app`'s upper dir and `/tmp`.
    pub fn writable(&self) -> [PathBuf; 2] {
        [self.upper(), self.tmp()]
    }
    /// Process mode: the writable copy of the slug, the dyno's cwd and `HOME`.
    pub fn app_copy(&self) -> PathBuf {
        self.root.join("app")
    }
    pub fn spec_file(&self) -> PathBuf {
        self.root.join("spec.json")
    }
    /// A file for [`PlanInput::etc_files`] (`passwd`, `group`, `hosts`).
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// `target` (absolute, inside the container) as a path under `root`; `..`, `.` and the
/// container root itself are refused.
pub fn inside(root: &Path, target: &Path) -> Result<PathBuf, String> {
    if !target.is_absolute() {
        return Err(format!("{} is not an absolute path", target.display()));
    }
    let mut out = root.to_path_buf();
    let mut depth = 0;
    for c in target.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            _ => return Err(format!("{} must not contain . or ..", target.display())),
        }
    }
    if depth == 0 {
        return Err("a bind cannot replace the container root".into());
    }
    Ok(out)
}

pub fn valid_name(s: &str, what: &str, max: usize) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= max
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1 to {max} characters of A-Z a-z 0-9 . - _, not starting with ."
        ))
    }
}

/// Overlay mount options separate paths with `,` and `:`; refuse paths that hold them.
fn overlay_safe(p: &Path, what: &str) -> Result<(), String> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\']) || !p.is_absolute() {
        return Err(format!(
            "{what} {} must be absolute and free of , : \\",
            p.display()
        ));
    }
    Ok(())
}

/// Checks a spec before anything is created.
pub fn validate(spec: &DynoSpec, state_dir: &Path) -> Result<(), String> {
    valid_name(&spec.id, "dyno id", 64)?;
    valid_name(&spec.hostname, "hostname", 64)?;
    if spec.command.trim().is_empty() || spec.command.contains('\0') {
        return Err("the command must be non-empty and free of NUL bytes".into());
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(format!(
                "invalid environment variable {k:?}: names need no = and no NUL bytes"
            ));
        }
    }
    let dirs = DynoDirs::new(state_dir, &spec.id);
    if let Some(slug) = &spec.slug_dir {
        overlay_safe(slug, "slug dir")?;
        overlay_safe(&dirs.root, "state dir")?;
        if slug.starts_with(&dirs.root) || dirs.root.starts_with(slug) {
            return Err(format!(
                "slug dir {} overlaps the dyno's own dir {}",
                slug.display(),
                dirs.root.display()
            ));
        }
    }
    for b in &spec.binds {
        if !b.host.is_absolute() {
            return Err(format!("bind source {} is not absolute", b.host.display()));
        }
        inside(Path::new("/"), &b.target)?;
    }
    Ok(())
}

/// The arguments of the dyno's `bash` (after `argv[0]`): one script that sources
/// `.profile.d/*.sh` from `app_dir` (a shell word: `/app`, or `"$HOME"` in Process mode)
/// and then runs COMMAND on the next line, in the same shell, as Heroku does. Bash execs
/// the last simple command of a `-c` script, so a simple command (`node server.js`,
/// `FOO=1 bin/web`) becomes the dyno's main process and receives the dyno's signals
/// itself; a compound one (`a && b`, `trap ...; ...`) runs under it. One shell, not a
/// second `bash -c`: a dyno starts a few milliseconds sooner.
pub fn shell_args(app_dir: &str, command: &str) -> Vec<String> {
    vec![
        "-c".into(),
        format!(
            "for f in {app_dir}/.profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done; unset f\n{command}"
        ),
    ]
}

/// The environment of a Process-mode dyno: the spec's, with `HOME` pointing at the
/// dyno's writable copy of the slug (its stand-in for `/app`).
pub fn process_env(env: &[(String, String)], home: &Path) -> Vec<(String, String)> {
    let home = home.to_string_lossy().into_owned();
    let mut out: Vec<(String, String)> = env.iter().filter(|(k, _)| k != "HOME").cloned().collect();
    out.push(("HOME".into(), home));
    out
}

/// `/etc/passwd` (or `/etc/group`) for the container: the host's, plus the dyno user or
/// group unless the host already has that id.
pub fn with_dyno_entry(host: &str, group: bool) -> String {
    let id = if group { DYNO_GID } else { DYNO_UID };
    let taken = host.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.first() == Some(&"dyno") || f.get(2) == Some(&id.to_string().as_str())
    });
    let mut out = host.to_string();
    if taken {
        return out;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if group {
        out.push_str(&format!("dyno:x:{DYNO_GID}:\n"));
    } else {
        out.push_str(&format!(
            "dyno:x:{DYNO_UID}:{DYNO_GID}:Haven dyno:/app:/bin/bash\n"
        ));
    }
    out
}

/// `/etc/hosts` for the container: the host's, plus the dyno's hostname on 127.0.0.1, so
/// resolving it (Python's `getfqdn`, Java's `InetAddress.getLocalHost`) needs no DNS.
pub fn hosts_with(host: &str, hostname: &str) -> String {
    let mut out = if host.trim().is_empty() {
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_string()
    } else {
        host.to_string()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("127.0.0.1\t{hostname}\n"));
    out
}

/// What [`mount_plan`] needs to know.
pub struct PlanInput<'a> {
    pub dirs: &'a DynoDirs,
    pub slug_dir: Option<&'a Path>,
    /// Where the stack entries come from: `/`, or an unpacked stack image.
    pub root: &'a Path,
    pub binds: &'a [Bind],
    /// The stack entries that exist under `root`, in [`HOST_STACK`] order.
    pub host_stack: &'a [(String, HostEntry)],
    /// Files written in the dyno dir and bound read-only over `/etc/NAME` (`passwd`,
    /// `group`, `hosts`), when the host has a real `/etc`.
    pub etc_files: &'a [&'a str],
}

/// The mount plan of a container dyno: root tmpfs, host stack, identity files, `/app`,
/// `/tmp`, `/dev`, `/proc`, then the extra binds (shallowest target first, so a bind
/// inside another bind's target lands on top of it).
pub fn mount_plan(input: &PlanInput<'_>) -> Result<Vec<MountStep>, String> {
    let root = input.dirs.rootfs();
    let at = |p: &str| root.join(p);
    let mut steps = vec![MountStep::Tmpfs {
        target: root.clone(),
        options: "mode=0755,size=4m".into(),
        dev: false,
    }];
    for (name, entry) in input.host_stack {
        steps.push(match entry {
            HostEntry::Dir => MountStep::Bind {
                source: input.root.join(name),
                target: at(name),
                readonly: true,
            },
            HostEntry::Symlink(link) => MountStep::Symlink {
                link: link.clone(),
                path: at(name),
            },
        });
    }
    let has_etc = input
        .host_stack
        .iter()
        .any(|(n, e)| n == "etc" && *e == HostEntry::Dir);
    if has_etc {
        for name in input.etc_files {
            steps.push(MountStep::Bind {
                source: input.dirs.root.join(name),
                target: at("etc").join(name),
                readonly: true,
            });
        }
    }
    steps.push(match input.slug_dir {
        Some(slug) => MountStep::Overlay {
            lower: slug.to_path_buf(),
            upper: input.dirs.upper(),
            work: input.dirs.work(),
            target: at("app"),
        },
        None => MountStep::Bind {
            source: input.dirs.upper(),
            target: at("app"),
            readonly: false,
        },
    });
    steps.push(MountStep::Bind {
        source: input.dirs.tmp(),
        target: at("tmp"),
        readonly: false,
    });
    steps.push(MountStep::Tmpfs {
        target: at("dev"),
        options: "mode=0755,size=64k".into(),
        dev: true,
    });
    for d in DEVICES {
        steps.push(MountStep::Bind {
            source: Path::new("/dev").join(d),
            target: at("dev").join(d),
            readonly: false,
        });
    }
    for (name, link) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        steps.push(MountStep::Symlink {
            link: link.into(),
            path: at("dev").join(name),
        });
    }
    steps.push(MountStep::Tmpfs {
        target: at("dev/shm"),
        options: "mode=1777".into(),
        dev: false,
    });
    steps.push(MountStep::Devpts {
        target: at("dev/pts"),
    });
    steps.push(MountStep::Proc { target: at("proc") });
    let mut binds: Vec<&Bind> = input.binds.iter().collect();
    binds.sort_by_key(|b| b.target.components().count());
    for b in binds {
        steps.push(MountStep::Bind {
            source: b.host.clone(),
            target: inside(&root, &b.target)?,
            readonly: !b.writable,
        });
    }
    Ok(steps)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> DynoSpec {
        DynoSpec {
            id: "0b6c-1".into(),
            hostname: "web.1".into(),
            slug_dir: Some("/var/lib/haven/slugs/abc".into()),
            root: None,
            binds: vec![],
            command: "node server.js".into(),
            env: vec![("PORT".into(), "5000".into())],
            memory_limit_bytes: 512 << 20,
            pids_limit: 256,
            cpu_shares: 1024,
            stdin: false,
            outlives_agent: false,
            note: String::new(),
            net: None,
        }
    }

    #[test]
    fn runtime_validate_accepts_a_normal_spec_and_refuses_bad_ones() {
        let state = Path::new("/var/lib/haven/dynos");
        assert_eq!(validate(&spec(), state), Ok(()));
        type Case = (&'static str, Box<dyn Fn(&mut DynoSpec)>);
        let cases: Vec<Case> = vec![
            ("id with slash", Box::new(|s| s.id = "../x".into())),
            ("empty id", Box::new(|s| s.id = String::new())),
            ("dot id", Box::new(|s| s.id = ".".into())),
            ("hostname space", Box::new(|s| s.hostname = "web 1".into())),
            ("empty command", Box::new(|s| s.command = "  ".into())),
            (
                "env key with =",
                Box::new(|s| s.env.push(("A=B".into(), "c".into()))),
            ),
            (
                "env value NUL",
                Box::new(|s| s.env.push(("A".into(), "c\0".into()))),
            ),
            (
                "slug with comma",
                Box::new(|s| s.slug_dir = Some("/slugs/a,b".into())),
            ),
            (
                "slug relative",
                Box::new(|s| s.slug_dir = Some("slugs/a".into())),
            ),
            (
                "slug inside the dyno dir",
                Box::new(|s| s.slug_dir = Some("/var/lib/haven/dynos/0b6c-1/upper".into())),
            ),
            (
                "bind to root",
                Box::new(|s| {
                    s.binds.push(Bind {
                        host: "/x".into(),
                        target: "/".into(),
                        writable: false,
                    })
                }),
            ),
            (
                "bind with ..",
                Box::new(|s| {
                    s.binds.push(Bind {
                        host: "/x".into(),
                        target: "/app/../etc".into(),
                        writable: false,
                    })
                }),
            ),
        ];
        for (what, f) in cases {
            let mut s = spec();
            f(&mut s);
            assert!(validate(&s, state).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn runtime_inside_maps_container_paths_under_the_root() {
        let r = Path::new("/s/d/rootfs");
        assert_eq!(
            inside(r, Path::new("/tmp/build")).unwrap(),
            PathBuf::from("/s/d/rootfs/tmp/build")
        );
        assert!(inside(r, Path::new("tmp")).is_err());
        assert!(inside(r, Path::new("/a/../../etc")).is_err());
        assert!(inside(r, Path::new("/")).is_err());
    }

    #[test]
    fn runtime_mount_plan_orders_root_stack_app_tmp_dev_proc_then_binds() {
        let dirs = DynoDirs::new(Path::new("/state"), "d1");
        let stack = vec![
            ("usr".to_string(), HostEntry::Dir),
            ("bin".to_string(), HostEntry::Symlink("usr/bin".into())),
            ("etc".to_string(), HostEntry::Dir),
        ];
        let binds = vec![
            Bind {
                host: "/h/cache".into(),
                target: "/tmp/build/cache".into(),
                writable: true,
            },
            Bind {
                host: "/h/build".into(),
                target: "/tmp/build".into(),
                writable: false,
            },
        ];
        let plan = mount_plan(&PlanInput {
            dirs: &dirs,
            slug_dir: Some(Path::new("/slugs/abc")),
            root: Path::new("/"),
            binds: &binds,
            host_stack: &stack,
            etc_files: &["passwd", "group", "hosts"],
        })
        .unwrap();
        let r = PathBuf::from("/state/d1/rootfs");
        assert_eq!(
            plan[0],
            MountStep::Tmpfs {
                target: r.clone(),
                options: "mode=0755,size=4m".into(),
                dev: false
            }
        );
        assert_eq!(
            plan[1],
            MountStep::Bind {
                source: "/usr".into(),
                target: r.join("usr"),
                readonly: true
            }
        );
        assert_eq!(
            plan[2],
            MountStep::Symlink {
                link: "usr/bin".into(),
                path: r.join("bin")
            }
        );
        assert_eq!(
            plan[4],
            MountStep::Bind {
                source: "/state/d1/passwd".into(),
                target: r.join("etc/passwd"),
                readonly: true
            }
        );
        let app = plan
            .iter()
            .position(|s| matches!(s, MountStep::Overlay { .. }))
            .unwrap();
        assert_eq!(
            plan[app],
            MountStep::Overlay {
                lower: "/slugs/abc".into(),
                upper: "/state/d1/upper".into(),
                work: "/state/d1/work".into(),
                target: r.join("app")
            }
        );
        let pos = |pred: &dyn Fn(&MountStep) -> bool| plan.iter().position(pred).unwrap();
        let tmp = pos(&|s| {
            matches!(s, MountStep::Bind { source, target, readonly: false }
                if *target == r.join("tmp") && source == Path::new("/state/d1/tmp"))
        });
        let dev = pos(
            &|s| matches!(s, MountStep::Tmpfs { target, dev: true, .. } if *target == r.join("dev")),
        );
        let null = pos(
            &|s| matches!(s, MountStep::Bind { source, .. } if source == Path::new("/dev/null")),
        );
        let proc_ = pos(&|s| matches!(s, MountStep::Proc { .. }));
        let build = pos(
            &|s| matches!(s, MountStep::Bind { source, .. } if source == Path::new("/h/build")),
        );
        let cache = pos(
            &|s| matches!(s, MountStep::Bind { source, .. } if source == Path::new("/h/cache")),
        );
        assert!(app < tmp && tmp < dev && dev < null && null < proc_ && proc_ < build);
        assert!(build < cache, "the outer bind must come first");
        assert_eq!(
            plan[build],
            MountStep::Bind {
                source: "/h/build".into(),
                target: r.join("tmp/build"),
                readonly: true
            }
        );
        assert!(matches!(
            &plan[cache],
            MountStep::Bind {
                readonly: false,
                ..
            }
        ));
        assert!(plan.contains(&MountStep::Symlink {
            link: "/proc/self/fd".into(),
            path: r.join("dev/fd")
        }));
    }

    #[test]
    fn runtime_mount_plan_without_slug_binds_an_empty_writable_app() {
        let dirs = DynoDirs::new(Path::new("/state"), "d2");
        let plan = mount_plan(&PlanInput {
            dirs: &dirs,
            slug_dir: None,
            root: Path::new("/"),
            binds: &[],
            host_stack: &[],
            etc_files: &["passwd"],
        })
        .unwrap();
        assert!(!plan.iter().any(|s| matches!(s, MountStep::Overlay { .. })));
        assert!(plan.contains(&MountStep::Bind {
            source: "/state/d2/upper".into(),
            target: "/state/d2/rootfs/app".into(),
            readonly: false
        }));
        // No host /etc: no passwd bind either.
        assert!(!plan
            .iter()
            .any(|s| matches!(s, MountStep::Bind { source, .. } if source.ends_with("passwd"))));
    }

    #[test]
    fn runtime_shell_args_source_profile_d_then_exec_the_command() {
        assert_eq!(
            shell_args("/app", "node server.js && x"),
            vec![
                "-c",
                "for f in /app/.profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done; unset f\nnode server.js && x",
            ]
        );
    }

    /// Bash (5.2, Debian's) execs the command line of the script when it is a simple
    /// command: the dyno's main process is the app's, not a shell.
    #[test]
    fn runtime_shell_args_make_a_simple_command_the_main_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".profile.d")).unwrap();
        std::fs::write(
            dir.path().join(".profile.d/a.sh"),
            "export FROM_PROFILE=yes\n",
        )
        .unwrap();
        let app = dir.path().to_str().unwrap();
        let run = |command: &str| {
            let out = std::process::Command::new("bash")
                .args(shell_args(app, command))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(run("echo $FROM_PROFILE"), "yes\n");
        // The parent of the inner bash is this test, not the dyno's shell.
        assert_ne!(run("bash -c 'cat /proc/$PPID/comm'"), "bash\n");
        assert_eq!(run("bash -c 'cat /proc/$PPID/comm' && true"), "bash\n");
    }

    #[test]
    fn runtime_process_env_points_home_at_the_copy() {
        let env = vec![
            ("HOME".to_string(), "/app".to_string()),
            ("PORT".to_string(), "5000".to_string()),
        ];
        let out = process_env(&env, Path::new("/s/d/app"));
        assert_eq!(
            out,
            vec![
                ("PORT".to_string(), "5000".to_string()),
                ("HOME".to_string(), "/s/d/app".to_string())
            ]
        );
    }

    #[test]
    fn runtime_hosts_file_resolves_the_dyno_hostname() {
        assert_eq!(
            hosts_with("127.0.0.1 localhost", "web.1"),
            "127.0.0.1 localhost\n127.0.0.1\tweb.1\n"
        );
        assert_eq!(
            hosts_with("", "run.1"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\trun.1\n"
        );
    }

    #[test]
    fn runtime_identity_files_add_the_dyno_user_once() {
        let host = "root:x:0:0:root:/root:/bin/bash\n";
        let p = with_dyno_entry(host, false);
        assert_eq!(
            p,
            "root:x:0:0:root:/root:/bin/bash\ndyno:x:64000:64000:Haven dyno:/app:/bin/bash\n"
        );
        assert_eq!(with_dyno_entry(&p, false), p);
        assert_eq!(
            with_dyno_entry("root:x:0:", true),
            "root:x:0:\ndyno:x:64000:\n"
        );
        let taken = "other:x:64000:64000::/:/bin/sh\n";
        assert_eq!(with_dyno_entry(taken, false), taken);
    }
}

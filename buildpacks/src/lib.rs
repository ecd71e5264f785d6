//! Haven's builder: the classic (Heroku) buildpack API, the built-in buildpacks and
//! slugs.
//!
//! [`run`] compiles an extracted source tree in place, the way Heroku's slug compiler
//! does: it drops what `.slugignore` names, picks buildpacks (the built-ins by
//! `bin/detect` in [`builtin_order`], or the ones the app set: git URLs, `file://` URLs,
//! absolute paths, built-in names), runs `bin/detect`, `bin/compile BUILD_DIR CACHE_DIR
//! ENV_DIR` and, for the last one, `bin/release`, sources each buildpack's `export` file
//! for the later ones, and reads the process types from the Procfile or the release YAML.
//! Output lines go to a callback as they are written, in Heroku's `-----> ` style.
//!
//! Scripts run with a clean environment: `PATH` (the standard system directories),
//! `HOME` (a directory under `work_dir`), `STACK`, `LANG=C.UTF-8`, and what earlier
//! buildpacks exported. Config vars are only in `ENV_DIR`, one file per var, removed
//! when the build ends. Every script runs in its own process group; leftovers are
//! killed when a script exits, and the compile deadline kills the whole group.
//!
//! [`slug`] packs the built directory into a zstd tarball and extracts one safely.
//!
//! Everything here is blocking std code; call it from a blocking thread.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod builtin;
mod process;
mod procfile;
pub mod slug;
mod slugignore;

use process::Ended;
pub use procfile::{parse_procfile, parse_release_yaml};

/// PATH given to every buildpack script.
pub const SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Heroku's compile limit.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(25 * 60);
/// Limit for each `bin/detect` and `bin/release`.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit for cloning one git buildpack.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// One build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The extracted source; compiled in place; becomes `/app` in the slug.
    pub build_dir: PathBuf,
    /// Persists between builds of the app (created when missing).
    pub cache_dir: PathBuf,
    /// Scratch space for `ENV_DIR`, `HOME` and fetched or copied buildpacks (created when
    /// missing; what the build puts there is replaced at the next build).
    pub work_dir: PathBuf,
    /// Config vars; written to `ENV_DIR` only.
    pub env: BTreeMap<String, String>,
    /// Buildpacks to run in order: git URLs (`https://`, `http://`, `git://`, `ssh://`,
    /// `git@host:path`, `file://`) with an optional `#ref` (branch, tag or commit),
    /// absolute paths, or built-in names (`python`, `heroku/python`, `haven/python`).
    /// Empty: detect among the built-ins.
    pub buildpacks: Vec<String>,
    /// Where [`install_builtins`] wrote the built-in buildpacks.
    pub builtin_dir: PathBuf,
    /// `STACK` for the scripts, e.g. `haven-1`.
    pub stack: String,
    /// Limit for all compiles together.
    pub compile_timeout: Duration,
}

impl BuildRequest {
    /// A request with no config vars, detected buildpacks, stack `haven-1` and the
    /// 25-minute compile limit.
    pub fn new(
        build_dir: impl Into<PathBuf>,
        cache_dir: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
        builtin_dir: impl Into<PathBuf>,
    ) -> Self {
        BuildRequest {
            build_dir: build_dir.into(),
            cache_dir: cache_dir.into(),
            work_dir: work_dir.into(),
            env: BTreeMap::new(),
            buildpacks: Vec::new(),
            builtin_dir: builtin_dir.into(),
            stack: "haven-1".to_string(),
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// From the Procfile, else the last buildpack's `default_process_types`.
    pub process_types: BTreeMap<String, String>,
    /// The buildpacks used, in order: built-in names (`python`) or the given strings.
    pub buildpacks: Vec<String>,
    /// What each buildpack's `bin/detect` printed (e.g. `Python`), in order.
    pub frameworks: Vec<String>,
}

/// Why a build failed. Each message is meant for the person who pushed; [`run`] has
/// also written it to the output as ` !     ` lines.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    NoBuildpack(String),
    #[error("The buildpack {buildpack} does not apply to this app (its bin/detect exited with {}).", code_text(*code))]
    Detect {
        buildpack: String,
        code: Option<i32>,
    },
    #[error("The buildpack {buildpack} failed to compile the app (bin/compile exited with {}).", code_text(*code))]
    Compile {
        buildpack: String,
        code: Option<i32>,
    },
    #[error("The buildpack {buildpack} gave an unusable bin/release: {message}")]
    Release { buildpack: String, message: String },
    #[error("{0}")]
    Procfile(String),
    #[error("The build timed out: compiling took longer than {}.", duration_text(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Fetch(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn code_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("status {c}"),
        None => "a signal".to_string(),
    }
}

fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && (s / 60) * 60 == s {
        let m = s / 60;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{} seconds", d.as_secs_f64())
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// Writes the embedded built-in buildpacks to `dir/NAME/...` (scripts mode 0755).
/// Idempotent: existing files are replaced.
pub fn install_builtins(dir: &Path) -> io::Result<()> {
    builtin::install(dir)
}

/// The built-in buildpacks in detection order.
pub fn builtin_order() -> &'static [&'static str] {
    builtin::ORDER
}

/// Removes what `build_dir/.slugignore` names; returns the removed paths relative to
/// `build_dir` (a removed directory once). The format is gitignore-like: `#` comments,
/// blank lines, globs (`*`, `?`, `**`, `[...]`), a trailing `/` for directories only, a
/// pattern containing `/` (a leading one included) anchored at the root, one without
/// matching a name at any depth; `!` negations are ignored, as on Heroku. Symlinks are
/// removed, never followed. No `.slugignore`: nothing happens.
pub fn apply_slugignore(build_dir: &Path) -> io::Result<Vec<PathBuf>> {
    slugignore::apply(build_dir)
}

/// A buildpack ready to run: its directory (a private copy or clone) and its name.
struct Buildpack {
    name: String,
    dir: PathBuf,
}

struct Ctx<'a> {
    req: &'a BuildRequest,
    home: PathBuf,
    env_dir: PathBuf,
    /// Environment of the scripts: the base plus what `export` files set.
    env: BTreeMap<String, String>,
    framework: Option<String>,
}

impl Ctx<'_> {
    fn script(&self, bp: &Buildpack, script: &str, args: &[&OsStr]) -> std::process::Command {
        process::script_command(
            &bp.dir.join("bin").join(script),
            args,
            &self.env,
            &self.req.build_dir,
        )
    }

    /// Runs `bin/detect`: `Ok(Ok(framework))` when it applies, `Ok(Err(exit code))`
    /// when not.
    fn detect(
        &self,
        bp: &Buildpack,
        out: &mut dyn FnMut(&str),
    ) -> Result<Result<String, Option<i32>>, BuildError> {
        let cmd = self.script(bp, "detect", &[self.req.build_dir.as_os_str()]);
        let (ended, stdout) = process::run(cmd, Instant::now() + SCRIPT_TIMEOUT, true, out)
            .map_err(io_err(format!("running {}/bin/detect", bp.name)))?;
        match ended {
            Ended::TimedOut => Err(BuildError::Fetch(format!(
                "The buildpack {}'s bin/detect did not finish within {}.",
                bp.name,
                duration_text(SCRIPT_TIMEOUT)
            ))),
            Ended::Exited(st) if st.success() => {
                let text = String::from_utf8_lossy(&stdout);
                let fw = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or(&bp.name)
                    .to_string();
                Ok(Ok(fw))
            }
            Ended::Exited(st) => Ok(Err(st.code())),
        }
    }
}

/// Copies a buildpack directory (modes and symlinks kept).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let ft = fs::symlink_metadata(&src)?.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
        }
    }
    let mode = fs::metadata(from)?.permissions().mode();
    fs::set_permissions(to, fs::Permissions::from_mode(mode | 0o700))?;
    Ok(())
}

/// `https://user:token@host/x` → `https://***@host/x`, for output.
fn redact(spec: &str) -> String {
    if let Some((scheme, rest)) = spec.split_once("://") {
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    spec.to_string()
}

fn is_git_url(s: &str) -> bool {
    ["https://", "http://", "git://", "ssh://", "file://", "git@"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn short_name(spec: &str) -> String {
    let base = spec
        .split('#')
        .next()
        .unwrap_or(spec)
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("buildpack")
        .trim_end_matches(".git");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        "buildpack".to_string()
    } else {
        clean
    }
}

/// Runs a command quietly; returns whether it succeeded and its last output lines.
fn run_quiet(cmd: std::process::Command, timeout: Duration) -> io::Result<(bool, String)> {
    let mut lines: Vec<String> = Vec::new();
    let mut keep = |l: &str| {
        lines.push(l.to_string());
        if lines.len() > 20 {
            lines.remove(0);
        }
    };
    let (ended, _) = process::run(cmd, Instant::now() + timeout, false, &mut keep)?;
    let ok = matches!(ended, Ended::Exited(st) if st.success());
    if matches!(ended, Ended::TimedOut) {
        lines.push(format!("timed out after {}", duration_text(timeout)));
    }
    Ok((ok, lines.join("\n")))
}

fn git_command(ctx: &Ctx, args: &[&OsStr]) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.args(args)
        .env_clear()
        .env("PATH", SCRIPT_PATH)
        .env("HOME", &ctx.home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/true")
        .env("LANG", "C.UTF-8")
        .current_dir(&ctx.req.work_dir)
        .stdin(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Makes a private copy (or clone) of the buildpack `spec` under `work_dir/buildpacks`.
fn resolve(ctx: &Ctx, index: usize, spec: &str) -> Result<Buildpack, BuildError> {
    let dir = ctx
        .req
        .work_dir
        .join("buildpacks")
        .join(format!("{index}-{}", short_name(spec)));
    let builtin_name = spec
        .strip_prefix("heroku/")
        .or_else(|| spec.strip_prefix("haven/"))
        .unwrap_or(spec);
    if is_git_url(spec) {
        let (url, git_ref) = match spec.split_once('#') {
            Some((u, r)) if !r.is_empty() => (u, Some(r)),
            Some((u, _)) => (u, None),
            None => (spec, None),
        };
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("clone"),
            OsStr::new("--quiet"),
            OsStr::new("--depth"),
            OsStr::new("1"),
        ];
        if let Some(r) = git_ref {
            args.push(OsStr::new("--branch"));
            args.push(OsStr::new(r));
        }
        args.extend([OsStr::new("--"), OsStr::new(url), dir.as_os_str()]);
        let (ok, log) = run_quiet(git_command(ctx, &args), FETCH_TIMEOUT)
            .map_err(io_err("running git (is git installed?)"))?;
        if !ok {
            let _ = fs::remove_dir_all(&dir);
            // A commit id cannot be cloned with --branch: clone fully and check it out.
            let is_commit = git_ref.is_some_and(|r| {
                r.len() >= 7 && r.len() <= 40 && r.chars().all(|c| c.is_ascii_hexdigit())
            });
            let mut fixed = false;
            let mut log2 = String::new();
            if let (true, Some(r)) = (is_commit, git_ref) {
                let (ok1, l1) = run_quiet(
                    git_command(
                        ctx,
                        &[
                            OsStr::new("clone"),
                            OsStr::new("--quiet"),
                            OsStr::new("--"),
                            OsStr::new(url),
                            dir.as_os_str(),
                        ],
                    ),
                    FETCH_TIMEOUT,
                )
                .map_err(io_err("running git"))?;
                log2 = l1;
                if ok1 {
                    let (ok2, l2) = run_quiet(
                        git_command(
                            ctx,
                            &[
                                OsStr::new("-C"),
                                dir.as_os_str(),
                                OsStr::new("checkout"),
                                OsStr::new("--quiet"),
                                OsStr::new("--detach"),
                                OsStr::new(r),
                            ],
                        ),
                        FETCH_TIMEOUT,
                    )
                    .map_err(io_err("running git"))?;
                    fixed = ok2;
                    log2 = l2;
                }
            }
            if !fixed {
                let why = if log2.is_empty() { &log } else { &log2 };
                return Err(BuildError::Fetch(format!(
                    "Could not fetch the buildpack {}: {}",
                    redact(spec),
                    last_line(why)
                )));
            }
        }
    } else if Path::new(spec).is_absolute() {
        if !Path::new(spec).is_dir() {
            return Err(BuildError::Fetch(format!(
                "The buildpack {spec} is not a directory on this host."
            )));
        }
        copy_tree(Path::new(spec), &dir)
            .map_err(io_err(format!("copying the buildpack {spec}")))?;
    } else if builtin::ORDER.contains(&builtin_name) {
        let src = ctx.req.builtin_dir.join(builtin_name);
        copy_tree(&src, &dir).map_err(io_err(format!(
            "copying the built-in buildpack {builtin_name} from {}",
            src.display()
        )))?;
    } else {
        return Err(BuildError::Fetch(format!(
            "Unknown buildpack {spec:?}: give a git URL (optionally with #ref), an absolute path, or a built-in ({}).",
            builtin::ORDER
                .iter()
                .map(|n| format!("heroku/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for script in ["detect", "compile"] {
        if !dir.join("bin").join(script).is_file() {
            return Err(BuildError::Fetch(format!(
                "The buildpack {} has no bin/{script}; it is not a classic buildpack.",
                redact(spec)
            )));
        }
    }
    Ok(Buildpack {
        name: spec.to_string(),
        dir,
    })
}

fn valid_env_file_name(k: &str) -> bool {
    !k.is_empty() && k != "." && k != ".." && !k.contains('/') && !k.contains('\0')
}

fn write_env_dir(dir: &Path, env: &BTreeMap<String, String>) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for (k, v) in env {
        if !valid_env_file_name(k) {
            continue;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(k))?;
        f.write_all(v.as_bytes())?;
    }
    Ok(())
}

/// The environment every script starts from (before `export` files add to it).
fn base_env(home: &Path, stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".to_string(), SCRIPT_PATH.to_string()),
        ("HOME".to_string(), home.display().to_string()),
        ("STACK".to_string(), stack.to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ])
}

/// Variables bash sets by itself, never carried from an `export` file.
const BASH_OWN: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];

/// Sources `export` in bash with the current environment and returns the environment
/// it leaves.
fn source_export(
    ctx: &Ctx,
    export: &Path,
    deadline: Instant,
    out: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(". \"$1\" >/dev/null 2>&1 </dev/null; exec env -0")
        .arg("bash")
        .arg(export)
        .env_clear()
        .envs(&ctx.env)
        .current_dir(&ctx.req.build_dir)
        .stdin(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let (ended, stdout) = process::run(cmd, deadline, true, out)
        .map_err(io_err(format!("sourcing {}", export.display())))?;
    match ended {
        Ended::TimedOut => return Err(BuildError::Timeout(ctx.req.compile_timeout)),
        Ended::Exited(st) if !st.success() => {
            return Err(BuildError::Fetch(format!(
                "Sourcing the buildpack's export file failed ({}).",
                code_text(st.code())
            )))
        }
        Ended::Exited(_) => {}
    }
    let mut env = BTreeMap::new();
    for item in stdout.split(|&b| b == 0) {
        let s = String::from_utf8_lossy(item);
        if let Some((k, v)) = s.split_once('=') {
            if !k.is_empty() && !BASH_OWN.contains(&k) {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(env)
}

fn say_types(kind: &str, types: &BTreeMap<String, String>) -> String {
    let names = if types.is_empty() {
        "(none)".to_string()
    } else {
        types.keys().cloned().collect::<Vec<_>>().join(", ")
    };
    format!("       {kind} -> {names}")
}

/// Builds the app in `req.build_dir` in place. Every output line (without its newline)
/// goes to `out` as it is written. On failure the error's message and
/// ` !     Push rejected, failed to compile <Framework> app.` have been written too.
pub fn run(req: &BuildRequest, out: &mut dyn FnMut(&str)) -> Result<BuildOutcome, BuildError> {
    let mut ctx = Ctx {
        req,
        home: req.work_dir.join("home"),
        env_dir: req.work_dir.join("env"),
        env: BTreeMap::new(),
        framework: None,
    };
    let result = run_inner(&mut ctx, out);
    let _ = fs::remove_dir_all(&ctx.env_dir);
    if let Err(e) = &result {
        if !matches!(e, BuildError::Compile { .. }) {
            for line in e.to_string().lines() {
                out(&format!(" !     {line}"));
            }
        }
        match &ctx.framework {
            Some(fw) => out(&format!(
                " !     Push rejected, failed to compile {fw} app."
            )),
            None => out(" !     Push rejected, failed to compile app."),
        }
    }
    result
}

const NO_BUILDPACK: &str = "No default language could be detected for this app.\n\
    HINT: Haven detects apps by requirements.txt, pyproject.toml, package.json, go.mod, Gemfile, pom.xml, index.html or a Procfile.\n\
    Set a buildpack with `hctl buildpacks:set URL` (a git URL, or heroku/python, heroku/nodejs, ...).";

/// The first built-in (in [`builtin_order`]) whose `bin/detect` accepts the build dir:
/// `(name, framework)`.
fn detect_builtins(
    ctx: &Ctx,
    out: &mut dyn FnMut(&str),
) -> Result<Option<(String, String)>, BuildError> {
    for name in builtin::ORDER {
        let dir = ctx.req.builtin_dir.join(name);
        if !dir.join("bin/detect").is_file() {
            return Err(BuildError::Io {
                context: format!(
                    "the built-in buildpack {name} is not installed in {}",
                    ctx.req.builtin_dir.display()
                ),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        let bp = Buildpack {
            name: name.to_string(),
            dir,
        };
        if let Ok(fw) = ctx.detect(&bp, out)? {
            return Ok(Some((name.to_string(), fw)));
        }
    }
    Ok(None)
}

/// Which built-in buildpack [`run`] would pick for `build_dir` (`(name, framework)`,
/// e.g. `("python", "Python")`), running only the `bin/detect` scripts. `None`: no
/// built-in applies.
pub fn detect_builtin(
    builtin_dir: &Path,
    build_dir: &Path,
    stack: &str,
) -> Result<Option<(String, String)>, BuildError> {
    let mut req = BuildRequest::new(build_dir, "", std::env::temp_dir(), builtin_dir);
    req.stack = stack.to_string();
    let ctx = Ctx {
        req: &req,
        home: std::env::temp_dir(),
        env_dir: PathBuf::new(),
        env: base_env(&std::env::temp_dir(), stack),
        framework: None,
    };
    detect_builtins(&ctx, &mut |_| {})
}

fn run_inner(ctx: &mut Ctx, out: &mut dyn FnMut(&str)) -> Result<BuildOutcome, BuildError> {
    let req = ctx.req;
    if !req.build_dir.is_dir() {
        return Err(BuildError::Io {
            context: format!("the build directory {}", req.build_dir.display()),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    for d in [&req.cache_dir, &req.work_dir, &ctx.home] {
        fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    let bp_root = req.work_dir.join("buildpacks");
    if bp_root.exists() {
        fs::remove_dir_all(&bp_root).map_err(io_err(format!("clearing {}", bp_root.display())))?;
    }
    fs::create_dir_all(&bp_root).map_err(io_err(format!("creating {}", bp_root.display())))?;
    write_env_dir(&ctx.env_dir, &req.env).map_err(io_err("writing ENV_DIR"))?;
    ctx.env = base_env(&ctx.home, &req.stack);

    let removed = apply_slugignore(&req.build_dir).map_err(io_err("applying .slugignore"))?;
    if !removed.is_empty() {
        out(&format!(
            "-----> Deleting {} file{} matching .slugignore patterns.",
            removed.len(),
            if removed.len() == 1 { "" } else { "s" }
        ));
    }
    out(&format!("-----> Building on the {} stack", req.stack));

    // With no buildpacks set, the first built-in whose detect passes.
    let mut detected: Option<(String, String)> = None;
    if req.buildpacks.is_empty() {
        detected = detect_builtins(ctx, out)?;
        if detected.is_none() {
            return Err(BuildError::NoBuildpack(NO_BUILDPACK.to_string()));
        }
    }
    let specs: Vec<String> = match &detected {
        Some((name, _)) => vec![name.clone()],
        None => req.buildpacks.clone(),
    };

    let mut outcome = BuildOutcome {
        process_types: BTreeMap::new(),
        buildpacks: Vec::new(),
        frameworks: Vec::new(),
    };
    let mut compile_deadline: Option<Instant> = None;
    let mut last: Option<Buildpack> = None;
    for (i, spec) in specs.iter().enumerate() {
        let bp = match &detected {
            Some((name, _)) => {
                let mut bp = resolve(ctx, i, name)?;
                bp.name = name.clone();
                bp
            }
            None => {
                out(&format!("-----> Using buildpack: {}", redact(spec)));
                resolve(ctx, i, spec)?
            }
        };
        let fw = match &detected {
            Some((_, fw)) => fw.clone(),
            None => match ctx.detect(&bp, out)? {
                Ok(fw) => fw,
                Err(code) => {
                    return Err(BuildError::Detect {
                        buildpack: redact(spec),
                        code,
                    })
                }
            },
        };
        out(&format!("-----> {fw} app detected"));
        ctx.framework = Some(fw.clone());
        outcome.frameworks.push(fw);
        outcome.buildpacks.push(bp.name.clone());

        let deadline =
            *compile_deadline.get_or_insert_with(|| Instant::now() + req.compile_timeout);
        let cmd = ctx.script(
            &bp,
            "compile",
            &[
                req.build_dir.as_os_str(),
                req.cache_dir.as_os_str(),
                ctx.env_dir.as_os_str(),
            ],
        );
        let (ended, _) = process::run(cmd, deadline, false, out)
            .map_err(io_err(format!("running {}/bin/compile", bp.name)))?;
        match ended {
            Ended::TimedOut => return Err(BuildError::Timeout(req.compile_timeout)),
            Ended::Exited(st) if !st.success() => {
                return Err(BuildError::Compile {
                    buildpack: redact(&bp.name),
                    code: st.code(),
                })
            }
            Ended::Exited(_) => {}
        }
        let export = bp.dir.join("export");
        if export.is_file() {
            ctx.env = source_export(ctx, &export, deadline, out)?;
        }
        last = Some(bp);
    }

    let mut defaults = BTreeMap::new();
    if let Some(bp) = &last {
        if bp.dir.join("bin/release").is_file() {
            let cmd = ctx.script(bp, "release", &[req.build_dir.as_os_str()]);
            let (ended, stdout) = process::run(cmd, Instant::now() + SCRIPT_TIMEOUT, true, out)
                .map_err(io_err(format!("running {}/bin/release", bp.name)))?;
            match ended {
                Ended::TimedOut => {
                    return Err(BuildError::Release {
                        buildpack: bp.name.clone(),
                        message: format!(
                            "it did not finish within {}",
                            duration_text(SCRIPT_TIMEOUT)
                        ),
                    })
                }
                Ended::Exited(st) if !st.success() => {
                    return Err(BuildError::Release {
                        buildpack: bp.name.clone(),
                        message: format!("it exited with {}", code_text(st.code())),
                    })
                }
                Ended::Exited(_) => {}
            }
            defaults = parse_release_yaml(&String::from_utf8_lossy(&stdout)).map_err(|m| {
                BuildError::Release {
                    buildpack: bp.name.clone(),
                    message: m,
                }
            })?;
        }
    }

    out("-----> Discovering process types");
    let procfile_path = req.build_dir.join("Procfile");
    let procfile = match fs::read_to_string(&procfile_path) {
        Ok(text) => Some(parse_procfile(&text).map_err(BuildError::Procfile)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading the Procfile")(e)),
    };
    if let Some(p) = &procfile {
        out(&say_types("Procfile declares types", p));
    }
    if !defaults.is_empty() {
        out(&say_types("Default types for buildpack", &defaults));
    }
    if procfile.is_none() && defaults.is_empty() {
        out(&say_types("Procfile declares types", &defaults));
    }
    outcome.process_types = procfile.unwrap_or(defaults);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(
            redact("https://user:tok@github.com/a/b.git#v1"),
            "https://***@github.com/a/b.git#v1"
        );
        assert_eq!(
            redact("https://github.com/a/b@x"),
            "https://github.com/a/b@x"
        );
        assert_eq!(redact("/srv/bp"), "/srv/bp");
        assert_eq!(
            short_name("https://github.com/heroku/heroku-buildpack-go.git#v1"),
            "heroku-buildpack-go"
        );
        assert_eq!(short_name("git@github.com:me/bp.git"), "bp");
    }
}

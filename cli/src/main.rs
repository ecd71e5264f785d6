//! `hctl`: Haven's command-line client, modeled on the Heroku CLI.

mod client;
mod deploy;
mod output;
mod run;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use client::{Api, Login};
use output::{age, header, key_values, table};

#[derive(Parser)]
#[command(name = "hctl", version, about = "Manage apps on a Haven cluster")]
struct Cli {
    /// API URL of any node (overrides HAVEN_API and the saved login).
    #[arg(long, global = true)]
    api: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct AppArg {
    /// The app (or set HAVEN_APP).
    #[arg(short = 'a', long = "app", env = "HAVEN_APP")]
    app: Option<String>,
}

impl AppArg {
    fn name(&self) -> Result<&str> {
        self.app
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| anyhow!("no app specified; use -a APP or set HAVEN_APP"))
    }
}

#[derive(Args, Clone, Copy)]
struct JsonArg {
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Save the API URL and token (~/.config/hctl/config.toml, mode 0600).
    Login {
        /// The token (read from the terminal or stdin when absent).
        #[arg(long)]
        token: Option<String>,
    },
    /// Forget the saved login.
    Logout,
    /// Show who the token belongs to.
    Whoami,
    /// List apps.
    Apps(JsonArg),
    /// Create an app.
    #[command(name = "apps:create")]
    AppsCreate {
        name: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show an app.
    #[command(name = "apps:info")]
    AppsInfo {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Rename an app.
    #[command(name = "apps:rename")]
    AppsRename {
        newname: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Delete an app and everything it has.
    #[command(name = "apps:destroy")]
    AppsDestroy {
        #[command(flatten)]
        app: AppArg,
        /// The app's name again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Show config vars.
    Config {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
        /// Print KEY=value lines.
        #[arg(long)]
        shell: bool,
    },
    /// Print one config var's value.
    #[command(name = "config:get")]
    ConfigGet {
        key: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Set config vars (KEY=value ...); makes a new release.
    #[command(name = "config:set")]
    ConfigSet {
        #[arg(required = true)]
        pairs: Vec<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Unset config vars (KEY ...); makes a new release.
    #[command(name = "config:unset")]
    ConfigUnset {
        #[arg(required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List releases, newest first.
    Releases {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one release.
    #[command(name = "releases:info")]
    ReleasesInfo {
        release: String,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Roll back to a release (default: the one before the current).
    Rollback {
        release: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Scale process types: web=2 worker=1:standard-2x web+1.
    #[command(name = "ps:scale")]
    PsScale {
        #[arg(required = true)]
        changes: Vec<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List the app's dynos: name, state, since, node, release, command.
    Ps {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Set dyno sizes: web=standard-2x worker=performance-m.
    #[command(name = "ps:type")]
    PsType {
        #[arg(required = true)]
        changes: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Restart dynos: all, one (web.1) or one type (web).
    #[command(name = "ps:restart")]
    PsRestart {
        target: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Stop a dyno (web.1) or every dyno of a type (web); formation dynos start again.
    #[command(name = "ps:stop")]
    PsStop {
        target: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Wait until every dyno runs the current release and is up.
    #[command(name = "ps:wait")]
    PsWait {
        /// Only dynos of this type.
        #[arg(long = "type")]
        process_type: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[command(flatten)]
        app: AppArg,
    },
    /// Run a command in a one-off dyno attached to this terminal; exits with its code.
    Run {
        /// Environment for the dyno: KEY=value (repeatable).
        #[arg(short, long)]
        env: Vec<String>,
        /// Dyno size.
        #[arg(short, long)]
        size: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Show the app's logs from every node (dynos, router, platform, API), merged by time.
    Logs {
        /// Lines of history to show (max 1500).
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        num: usize,
        /// Keep streaming new lines.
        #[arg(short = 't', long)]
        tail: bool,
        /// Only this dyno (web.1).
        #[arg(short = 'd', long)]
        dyno: Option<String>,
        /// Only this process type (web, router).
        #[arg(short = 'p', long = "process-type")]
        process_type: Option<String>,
        /// Only this source: app or heroku.
        #[arg(short = 's', long)]
        source: Option<String>,
        /// Never color the output.
        #[arg(long)]
        no_color: bool,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show maintenance mode.
    Maintenance {
        #[command(flatten)]
        app: AppArg,
    },
    /// Turn maintenance mode on.
    #[command(name = "maintenance:on")]
    MaintenanceOn {
        #[command(flatten)]
        app: AppArg,
    },
    /// Turn maintenance mode off.
    #[command(name = "maintenance:off")]
    MaintenanceOff {
        #[command(flatten)]
        app: AppArg,
    },
    /// Build and release a directory (default: the current one), streaming the build.
    Deploy {
        dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List builds, newest first.
    Builds {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one build.
    #[command(name = "builds:info")]
    BuildsInfo {
        id: String,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Print a build's output (following it while it runs).
    #[command(name = "builds:output")]
    BuildsOutput {
        /// The build id (default: the newest build).
        id: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's buildpacks.
    Buildpacks {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Set the app's buildpack (at --index, default 1), replacing what is there.
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        buildpack: String,
        #[arg(short, long)]
        index: Option<usize>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Add a buildpack (at --index, default last).
    #[command(name = "buildpacks:add")]
    BuildpacksAdd {
        buildpack: String,
        #[arg(short, long)]
        index: Option<usize>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove a buildpack (by URL or --index).
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove {
        buildpack: Option<String>,
        #[arg(short, long)]
        index: Option<usize>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove every buildpack: the next build detects them again.
    #[command(name = "buildpacks:clear")]
    BuildpacksClear {
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's domains.
    Domains {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add a custom domain: the router answers for it too.
    #[command(name = "domains:add")]
    DomainsAdd {
        hostname: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove a custom domain.
    #[command(name = "domains:remove")]
    DomainsRemove {
        hostname: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's log drains.
    Drains {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add a log drain: syslog://HOST:PORT, http://… or https://….
    #[command(name = "drains:add")]
    DrainsAdd {
        url: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove a log drain (by URL or id).
    #[command(name = "drains:remove")]
    DrainsRemove {
        drain: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the cluster's nodes.
    Nodes(JsonArg),
    /// Move a node's dynos away and keep new ones off it.
    #[command(name = "nodes:drain")]
    NodesDrain { node: String },
    /// Let a drained node take dynos again.
    #[command(name = "nodes:undrain")]
    NodesUndrain { node: String },
    /// Show the Raft status of the node you talk to.
    #[command(name = "cluster:status")]
    ClusterStatus(JsonArg),
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Splits `KEY=value` (the value may hold `=`).
pub fn parse_pair(arg: &str) -> Result<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{arg:?} is not KEY=value; write config:set KEY=value"),
    }
}

/// One `ps:scale` argument: `web=2`, `web=2:standard-2x`, `web=standard-2x`, `web+1`, `web-1`.
pub fn parse_scale(arg: &str) -> Result<Value> {
    let bad = || anyhow!("{arg:?} is not TYPE=QUANTITY[:SIZE], TYPE=SIZE, TYPE+N or TYPE-N");
    if let Some(pos) = arg.find(['=', '+', '-']).filter(|p| *p > 0) {
        let (ptype, rest) = arg.split_at(pos);
        if ptype.is_empty() {
            return Err(bad());
        }
        let mut update = serde_json::Map::new();
        update.insert("type".into(), json!(ptype));
        if let Some(spec) = rest.strip_prefix('=') {
            let (q, size) = match spec.split_once(':') {
                Some((q, s)) => (Some(q), Some(s)),
                None if spec
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-') =>
                {
                    (Some(spec), None)
                }
                None => (None, Some(spec)),
            };
            if let Some(q) = q {
                if q.is_empty() {
                    return Err(bad());
                }
                update.insert("quantity".into(), json!(q));
            }
            if let Some(size) = size {
                if size.is_empty() {
                    return Err(bad());
                }
                update.insert("size".into(), json!(size));
            }
        } else {
            // `web+1` / `web-1`
            if rest.len() < 2 || !rest[1..].chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            update.insert("quantity".into(), json!(rest));
        }
        return Ok(Value::Object(update));
    }
    Err(bad())
}

fn read_token_interactively() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("API token: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let t = line.trim().to_string();
    if t.is_empty() {
        bail!("no token given; pass --token or type the token printed by havend init");
    }
    Ok(t)
}

fn app_path(app: &AppArg) -> Result<String> {
    Ok(format!("/apps/{}", app.name()?))
}

/// The newest release's version: one page of one release, not the whole history.
fn current_version(api: &Api, app: &AppArg) -> Result<u64> {
    let rels = api.get_page(
        &format!("{}/releases", app_path(app)?),
        "version ..; max=1, order=desc",
    )?;
    Ok(rels
        .iter()
        .filter_map(|r| r["version"].as_u64())
        .max()
        .unwrap_or(0))
}

fn print_config(config: &Value) {
    let map = config.as_object().cloned().unwrap_or_default();
    let rows: Vec<(&str, String)> = map.iter().map(|(k, v)| (k.as_str(), s(v))).collect();
    if !rows.is_empty() {
        println!("{}", key_values(&rows));
    }
}

/// Colors a log line by its source on a terminal: `app[...]` lines by process (as the
/// Heroku CLI does), `heroku[...]` lines in magenta.
fn colorize(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let Some((time, rest)) = line.split_once(' ') else {
        return line.to_string();
    };
    let Some((tag, msg)) = rest.split_once(": ") else {
        return line.to_string();
    };
    let code = if tag.starts_with("heroku[") {
        35
    } else {
        // A stable color per process name.
        let palette = [32, 33, 34, 36, 92, 93, 94, 96];
        let h = tag
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        palette[h % palette.len()]
    };
    format!("\x1b[2m{time}\x1b[0m \x1b[{code}m{tag}:\x1b[0m {msg}")
}

/// `hctl ps` output: one block per process type, then what could not be placed.
fn print_ps(dynos: &Value, unplaced: &Value) {
    let list: Vec<&Value> = dynos.as_array().into_iter().flatten().collect();
    let now = Utc::now();
    let mut types: Vec<String> = list.iter().map(|d| s(&d["type"])).collect();
    types.dedup();
    types.sort();
    types.dedup();
    if list.is_empty() && unplaced.as_array().is_none_or(|u| u.is_empty()) {
        println!("No dynos on this app");
        return;
    }
    for t in types {
        let of_type: Vec<&&Value> = list.iter().filter(|d| s(&d["type"]) == t).collect();
        let command = of_type
            .first()
            .map(|d| s(&d["command"]))
            .unwrap_or_default();
        let size = of_type.first().map(|d| s(&d["size"])).unwrap_or_default();
        println!(
            "{}",
            header(&format!("{t} ({size}): {command} ({})", of_type.len()))
        );
        let rows: Vec<Vec<String>> = of_type
            .iter()
            .map(|d| {
                let mut state = s(&d["state"]);
                if let Some(code) = d["exit_code"].as_i64() {
                    state = format!("{state} (exit {code})");
                }
                vec![
                    s(&d["name"]),
                    state,
                    age(&s(&d["state_changed_at"]), now),
                    s(&d["node"]["name"]),
                    format!("v{}", s(&d["release"]["version"])),
                    s(&d["restarts"]),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["Dyno", "State", "Since", "Node", "Release", "Restarts"],
                &rows
            )
        );
        println!();
    }
    let unplaced: Vec<&Value> = unplaced.as_array().into_iter().flatten().collect();
    if !unplaced.is_empty() {
        println!("{}", header("Not placed"));
        for u in unplaced {
            println!("{}: {}", s(&u["name"]), s(&u["reason"]));
        }
    }
}

/// `hctl ps:wait`: polls until every formation dyno (of `ptype`) runs the current release
/// and is up, with the quantity the formation asks for.
fn ps_wait(api: &Api, app: &AppArg, ptype: Option<&str>, timeout: u64) -> Result<()> {
    let base = app_path(app)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let releases = api.get_page(
            &format!("{base}/releases"),
            "version ..; max=50, order=desc",
        )?;
        let current = releases
            .iter()
            .find(|r| r["current"] == json!(true))
            .and_then(|r| r["version"].as_u64())
            .unwrap_or(0);
        let formation = api.get(&format!("{base}/formation"))?;
        let want: u64 = formation
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| ptype.is_none_or(|t| s(&f["type"]) == t))
            .filter_map(|f| f["quantity"].as_u64())
            .sum();
        let dynos = api.get(&format!("{base}/dynos"))?;
        let list: Vec<&Value> = dynos
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| ptype.is_none_or(|t| s(&d["type"]) == t))
            .filter(|d| {
                let t = s(&d["type"]);
                t != "run" && t != "release"
            })
            .collect();
        let ready = list
            .iter()
            .filter(|d| {
                d["state"] == json!("up") && d["release"]["version"].as_u64() == Some(current)
            })
            .count() as u64;
        let others = list.len() as u64 - ready;
        let line = format!("Waiting for every dyno to be running v{current}... {ready} / {want}");
        if line != last {
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        if ready == want && others == 0 {
            if tty {
                eprintln!(", done");
            } else {
                eprintln!("done");
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            if tty {
                eprintln!();
            }
            bail!("gave up after {timeout}s: {ready} of {want} dynos run v{current}; see hctl ps");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The app's buildpack URLs, in order.
fn buildpack_list(api: &Api, app: &AppArg) -> Result<Vec<String>> {
    let list = api.get(&format!("{}/buildpack-installations", app_path(app)?))?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["buildpack"]["url"].as_str().map(str::to_string))
        .collect())
}

fn put_buildpacks(api: &Api, app: &AppArg, list: &[String]) -> Result<()> {
    let updates: Vec<Value> = list.iter().map(|b| json!({ "buildpack": b })).collect();
    api.call(
        Method::PUT,
        &format!("{}/buildpack-installations", app_path(app)?),
        Some(&json!({ "updates": updates })),
    )?;
    Ok(())
}

fn print_buildpacks(app: &str, list: &[String]) {
    if list.is_empty() {
        println!("{app} has no buildpack set: the next build detects one.");
        return;
    }
    println!(
        "{}",
        header(&format!(
            "{app} Buildpack URL{}",
            if list.len() > 1 { "s" } else { "" }
        ))
    );
    if list.len() == 1 {
        println!("{}", list[0]);
    } else {
        for (i, b) in list.iter().enumerate() {
            println!("{}. {b}", i + 1);
        }
    }
}

/// A 1-based `--index` turned into a position, checked against `len` (+1 when adding).
fn index_of(index: Option<usize>, len: usize, adding: bool) -> Result<Option<usize>> {
    match index {
        None => Ok(None),
        Some(0) => bail!("--index starts at 1"),
        Some(i) if i > len + usize::from(adding) => {
            bail!("--index {i} is past the end of the list ({len} buildpacks)")
        }
        Some(i) => Ok(Some(i - 1)),
    }
}

fn run(cli: Cli) -> Result<()> {
    let api = || Api::from_env(cli.api.as_deref());
    match &cli.cmd {
        Cmd::Login { token } => {
            let url = cli
                .api
                .clone()
                .or_else(|| std::env::var("HAVEN_API").ok())
                .ok_or_else(|| anyhow!("pass --api http://NODE:7400 (the API of any node)"))?;
            let token = match token {
                Some(t) => t.clone(),
                None => read_token_interactively()?,
            };
            let client = Api::new(&url, &token)?;
            let account = client.get("/account")?;
            let path = Login {
                api: Some(client.url.clone()),
                token: Some(token),
            }
            .save()?;
            println!(
                "Logged in as {} at {} (saved in {})",
                s(&account["email"]),
                client.url,
                path.display()
            );
        }
        Cmd::Logout => {
            let path = client::config_path()?;
            match std::fs::remove_file(&path) {
                Ok(()) => println!("Logged out (removed {})", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in"),
                Err(e) => return Err(e).context(format!("remove {}", path.display())),
            }
        }
        Cmd::Whoami => println!("{}", s(&api()?.get("/account")?["email"])),
        Cmd::Apps(j) => {
            let apps = api()?.get_all("/apps", "name ..; max=1000")?;
            if j.json {
                return print_json(&Value::Array(apps));
            }
            println!("{}", header("Apps"));
            for a in &apps {
                println!("{}", s(&a["name"]));
            }
        }
        Cmd::AppsCreate { name, json: j } => {
            let body = match name {
                Some(n) => json!({ "name": n }),
                None => json!({}),
            };
            let app = api()?.call(Method::POST, "/apps", Some(&body))?;
            if j.json {
                return print_json(&app);
            }
            println!("Creating ⬢ {}... done", s(&app["name"]));
            println!("{} | {}", s(&app["web_url"]), s(&app["git_url"]));
        }
        Cmd::AppsInfo { app, json: j } => {
            let api = api()?;
            let info = api.get(&app_path(app)?)?;
            if j.json {
                return print_json(&info);
            }
            let formation = api.get(&format!("{}/formation", app_path(app)?))?;
            let dynos: Vec<String> = formation
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("{}: {}", s(&f["type"]), s(&f["quantity"])))
                .collect();
            println!("{}", header(&s(&info["name"])));
            println!(
                "{}",
                key_values(&[
                    ("Dynos", dynos.join(", ")),
                    ("Git URL", s(&info["git_url"])),
                    ("Maintenance", s(&info["maintenance"])),
                    ("Owner", s(&info["owner"]["email"])),
                    ("Region", s(&info["region"]["name"])),
                    ("Stack", s(&info["stack"]["name"])),
                    ("Web URL", s(&info["web_url"])),
                ])
            );
        }
        Cmd::AppsRename { newname, app } => {
            let out = api()?.call(
                Method::PATCH,
                &app_path(app)?,
                Some(&json!({ "name": newname })),
            )?;
            println!("Renaming {} to {}... done", app.name()?, s(&out["name"]));
            println!("{} | {}", s(&out["web_url"]), s(&out["git_url"]));
        }
        Cmd::AppsDestroy { app, confirm } => {
            let name = app.name()?;
            if confirm.as_deref() != Some(name) {
                bail!("this deletes {name} and all its releases; run again with --confirm {name}");
            }
            api()?.call(Method::DELETE, &app_path(app)?, None)?;
            println!("Destroying ⬢ {name}... done");
        }
        Cmd::Config {
            app,
            json: j,
            shell,
        } => {
            let config = api()?.get(&format!("{}/config-vars", app_path(app)?))?;
            if j.json {
                return print_json(&config);
            }
            if *shell {
                for (k, v) in config.as_object().into_iter().flatten() {
                    println!("{k}={}", s(v));
                }
                return Ok(());
            }
            println!("{}", header(&format!("{} Config Vars", app.name()?)));
            print_config(&config);
        }
        Cmd::ConfigGet { key, app } => {
            let config = api()?.get(&format!("{}/config-vars", app_path(app)?))?;
            // Like the Heroku CLI: an unset var prints an empty line.
            println!("{}", config.get(key).map(s).unwrap_or_default());
        }
        Cmd::ConfigSet {
            pairs,
            app,
            json: j,
        } => {
            let pairs = pairs
                .iter()
                .map(|p| parse_pair(p))
                .collect::<Result<Vec<_>>>()?;
            let body: serde_json::Map<String, Value> =
                pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let api = api()?;
            let config = api.call(
                Method::PATCH,
                &format!("{}/config-vars", app_path(app)?),
                Some(&Value::Object(body)),
            )?;
            if j.json {
                return print_json(&config);
            }
            let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
            let v = current_version(&api, app)?;
            println!(
                "Setting {} and restarting ⬢ {}... done, v{v}",
                keys.join(", "),
                app.name()?
            );
            let set: BTreeMap<String, Value> =
                pairs.into_iter().map(|(k, v)| (k, json!(v))).collect();
            print_config(&serde_json::to_value(set)?);
        }
        Cmd::ConfigUnset { keys, app, json: j } => {
            let body: serde_json::Map<String, Value> =
                keys.iter().map(|k| (k.clone(), Value::Null)).collect();
            let api = api()?;
            let config = api.call(
                Method::PATCH,
                &format!("{}/config-vars", app_path(app)?),
                Some(&Value::Object(body)),
            )?;
            if j.json {
                return print_json(&config);
            }
            let v = current_version(&api, app)?;
            println!(
                "Unsetting {} and restarting ⬢ {}... done, v{v}",
                keys.join(", "),
                app.name()?
            );
        }
        Cmd::Releases { app, json: j } => {
            let mut rels = api()?.get_all(
                &format!("{}/releases", app_path(app)?),
                "version ..; max=1000, order=desc",
            )?;
            rels.sort_by_key(|r| std::cmp::Reverse(r["version"].as_u64().unwrap_or(0)));
            if j.json {
                return print_json(&Value::Array(rels));
            }
            println!(
                "{}",
                header(&format!(
                    "{} Releases - Current: v{}",
                    app.name()?,
                    rels.iter()
                        .find(|r| r["current"] == json!(true))
                        .map(|r| s(&r["version"]))
                        .unwrap_or_default()
                ))
            );
            let now = Utc::now();
            let rows: Vec<Vec<String>> = rels
                .iter()
                .map(|r| {
                    vec![
                        format!("v{}", s(&r["version"])),
                        s(&r["description"]),
                        s(&r["user"]["email"]),
                        age(&s(&r["created_at"]), now),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["Version", "Description", "User", "Created"], &rows)
            );
        }
        Cmd::ReleasesInfo {
            release,
            app,
            json: j,
        } => {
            let key = release.trim_start_matches('v');
            let api = api()?;
            let r = api.get(&format!("{}/releases/{key}", app_path(app)?))?;
            if j.json {
                return print_json(&r);
            }
            let config = api.get(&format!("{}/releases/{key}/config-vars", app_path(app)?))?;
            println!("{}", header(&format!("Release v{}", s(&r["version"]))));
            println!(
                "{}",
                key_values(&[
                    ("Add-ons", String::new()),
                    ("By", s(&r["user"]["email"])),
                    ("Change", s(&r["description"])),
                    ("Status", s(&r["status"])),
                    ("When", s(&r["created_at"])),
                ])
            );
            println!();
            println!("{}", header(&format!("v{} Config vars", s(&r["version"]))));
            print_config(&config);
        }
        Cmd::Rollback {
            release,
            app,
            json: j,
        } => {
            let api = api()?;
            let target = match release {
                Some(r) => r.trim_start_matches('v').to_string(),
                None => {
                    let rels = api.get_all(
                        &format!("{}/releases", app_path(app)?),
                        "version ..; max=1000",
                    )?;
                    let current = rels
                        .iter()
                        .find(|r| r["current"] == json!(true))
                        .and_then(|r| r["version"].as_u64())
                        .unwrap_or(0);
                    rels.iter()
                        .filter_map(|r| {
                            r["version"]
                                .as_u64()
                                .filter(|v| *v < current && r["status"] == json!("succeeded"))
                        })
                        .max()
                        .ok_or_else(|| anyhow!("there is no earlier release to roll back to"))?
                        .to_string()
                }
            };
            let r = api.call(
                Method::POST,
                &format!("{}/releases", app_path(app)?),
                Some(&json!({ "release": target })),
            )?;
            if j.json {
                return print_json(&r);
            }
            println!(
                "Rolling back ⬢ {} to v{target}... done, v{}",
                app.name()?,
                s(&r["version"])
            );
        }
        Cmd::PsScale {
            changes,
            app,
            json: j,
        } => {
            let updates = changes
                .iter()
                .map(|c| parse_scale(c))
                .collect::<Result<Vec<_>>>()?;
            let out = api()?.call(
                Method::PATCH,
                &format!("{}/formation", app_path(app)?),
                Some(&json!({ "updates": updates })),
            )?;
            if j.json {
                return print_json(&out);
            }
            let now: Vec<String> = out
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("{}={}:{}", s(&f["type"]), s(&f["quantity"]), s(&f["size"])))
                .collect();
            println!("Scaling dynos... done, now running {}", now.join(", "));
        }
        Cmd::Ps { app, json: j } => {
            let api = api()?;
            let dynos = api.get(&format!("{}/dynos", app_path(app)?))?;
            if j.json {
                return print_json(&dynos);
            }
            let unplaced = api.get(&format!("{}/unplaced-dynos", app_path(app)?))?;
            print_ps(&dynos, &unplaced);
        }
        Cmd::PsType { changes, app } => {
            let updates = changes
                .iter()
                .map(|c| match c.split_once('=') {
                    Some((t, size)) if !t.is_empty() && !size.is_empty() => {
                        Ok(json!({ "type": t, "size": size }))
                    }
                    _ => bail!("{c:?} is not TYPE=SIZE (e.g. web=standard-2x)"),
                })
                .collect::<Result<Vec<_>>>()?;
            let out = api()?.call(
                Method::PATCH,
                &format!("{}/formation", app_path(app)?),
                Some(&json!({ "updates": updates })),
            )?;
            let rows: Vec<Vec<String>> = out
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| vec![s(&f["type"]), s(&f["size"]), s(&f["quantity"])])
                .collect();
            println!("{}", table(&["Type", "Size", "Qty"], &rows));
        }
        Cmd::PsRestart { target, app } => {
            let api = api()?;
            let path = match target.as_deref() {
                None => format!("{}/dynos", app_path(app)?),
                Some(t) if t.contains('.') => format!("{}/dynos/{t}", app_path(app)?),
                Some(t) => format!("{}/formations/{t}/dynos", app_path(app)?),
            };
            api.call(Method::DELETE, &path, None)?;
            let what = target.clone().unwrap_or_else(|| "all dynos".into());
            println!("Restarting {what} on ⬢ {}... done", app.name()?);
        }
        Cmd::PsStop { target, app } => {
            let path = if target.contains('.') {
                format!("{}/dynos/{target}/actions/stop", app_path(app)?)
            } else {
                format!("{}/formations/{target}/actions/stop", app_path(app)?)
            };
            api()?.call(Method::POST, &path, None)?;
            println!("Stopping {target} on ⬢ {}... done", app.name()?);
        }
        Cmd::PsWait {
            process_type,
            timeout,
            app,
        } => {
            ps_wait(&api()?, app, process_type.as_deref(), *timeout)?;
        }
        Cmd::Run {
            env,
            size,
            app,
            command,
        } => {
            let env = env
                .iter()
                .map(|p| parse_pair(p))
                .collect::<Result<Vec<_>>>()?;
            let code = run::run(
                &api()?,
                app.name()?,
                &command.join(" "),
                &env,
                size.as_deref(),
            )?;
            std::process::exit(code);
        }
        Cmd::Logs {
            num,
            tail,
            dyno,
            process_type,
            source,
            no_color,
            app,
        } => {
            let api = api()?;
            let mut body = json!({ "lines": num, "tail": tail });
            if let Some(d) = dyno {
                body["dyno"] = json!(d);
            }
            if let Some(t) = process_type {
                body["type"] = json!(t);
            }
            if let Some(s) = source {
                body["source"] = json!(s);
            }
            let session = api.call(
                Method::POST,
                &format!("{}/log-sessions", app_path(app)?),
                Some(&body),
            )?;
            let url = session["logplex_url"]
                .as_str()
                .ok_or_else(|| anyhow!("the server gave no logplex_url"))?;
            let color = !no_color && std::io::stdout().is_terminal();
            api.stream_lines(url, |line| {
                if let Some(text) = line.strip_prefix("data: ") {
                    println!("{}", colorize(text, color));
                }
            })?;
        }
        Cmd::Maintenance { app } => {
            let info = api()?.get(&app_path(app)?)?;
            println!(
                "{}",
                if info["maintenance"] == json!(true) {
                    "on"
                } else {
                    "off"
                }
            );
        }
        Cmd::MaintenanceOn { app } | Cmd::MaintenanceOff { app } => {
            let on = matches!(cli.cmd, Cmd::MaintenanceOn { .. });
            api()?.call(
                Method::PATCH,
                &app_path(app)?,
                Some(&json!({ "maintenance": on })),
            )?;
            println!(
                "{} maintenance mode for ⬢ {}... done",
                if on { "Enabling" } else { "Disabling" },
                app.name()?
            );
        }
        Cmd::Deploy { dir, app, json: j } => {
            let dir = dir.clone().unwrap_or_else(|| std::path::PathBuf::from("."));
            if !deploy::deploy(&api()?, app.name()?, &dir, j.json)? {
                bail!("the build failed; see its output above (hctl builds:output)");
            }
        }
        Cmd::Builds { app, json: j } => {
            let mut builds = api()?.get_all(
                &format!("{}/builds", app_path(app)?),
                "created_at ..; max=1000, order=desc",
            )?;
            builds.sort_by(|a, b| s(&b["created_at"]).cmp(&s(&a["created_at"])));
            if j.json {
                return print_json(&Value::Array(builds));
            }
            println!("{}", header(&format!("{} Builds", app.name()?)));
            let now = Utc::now();
            let rows: Vec<Vec<String>> = builds
                .iter()
                .map(|b| {
                    vec![
                        s(&b["id"]),
                        s(&b["status"]),
                        s(&b["source_blob"]["version"]).chars().take(7).collect(),
                        s(&b["user"]["email"]),
                        age(&s(&b["created_at"]), now),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["Id", "Status", "Version", "User", "Created"], &rows)
            );
        }
        Cmd::BuildsInfo { id, app, json: j } => {
            let b = api()?.get(&format!("{}/builds/{id}", app_path(app)?))?;
            if j.json {
                return print_json(&b);
            }
            println!("{}", header(&format!("Build {}", s(&b["id"]))));
            println!(
                "{}",
                key_values(&[
                    ("Status", s(&b["status"])),
                    ("Version", s(&b["source_blob"]["version"])),
                    ("Checksum", s(&b["source_blob"]["checksum"])),
                    ("Release", s(&b["release"]["id"])),
                    ("Slug", s(&b["slug"]["id"])),
                    ("Stack", s(&b["stack"])),
                    ("By", s(&b["user"]["email"])),
                    ("Created", s(&b["created_at"])),
                    ("Output", s(&b["output_stream_url"])),
                ])
            );
        }
        Cmd::BuildsOutput { id, app } => {
            let api = api()?;
            let id = match id {
                Some(id) => id.clone(),
                None => {
                    let newest = api.get_page(
                        &format!("{}/builds", app_path(app)?),
                        "created_at ..; max=1, order=desc",
                    )?;
                    newest.first().map(|b| s(&b["id"])).ok_or_else(|| {
                        anyhow!(
                            "{} has no builds yet",
                            app.app.as_deref().unwrap_or_default()
                        )
                    })?
                }
            };
            let b = api.get(&format!("{}/builds/{id}", app_path(app)?))?;
            let url = b["output_stream_url"]
                .as_str()
                .ok_or_else(|| anyhow!("build {id} has no output stream"))?;
            api.stream_lines(url, |l| println!("{l}"))?;
        }
        Cmd::Buildpacks { app, json: j } => {
            let api = api()?;
            if j.json {
                return print_json(
                    &api.get(&format!("{}/buildpack-installations", app_path(app)?))?,
                );
            }
            print_buildpacks(app.name()?, &buildpack_list(&api, app)?);
        }
        Cmd::BuildpacksSet {
            buildpack,
            index,
            app,
        } => {
            let api = api()?;
            let mut list = buildpack_list(&api, app)?;
            match index_of(*index, list.len(), true)? {
                Some(i) if i < list.len() => list[i] = buildpack.clone(),
                Some(_) => list.push(buildpack.clone()),
                None => list = vec![buildpack.clone()],
            }
            put_buildpacks(&api, app, &list)?;
            println!(
                "Buildpack set. Next release on {} will use {buildpack}.",
                app.name()?
            );
            println!("Run git push haven main or hctl deploy to create a new release using this buildpack.");
        }
        Cmd::BuildpacksAdd {
            buildpack,
            index,
            app,
        } => {
            let api = api()?;
            let mut list = buildpack_list(&api, app)?;
            if list.contains(buildpack) {
                bail!("{buildpack} is already set on {}", app.name()?);
            }
            match index_of(*index, list.len(), true)? {
                Some(i) => list.insert(i, buildpack.clone()),
                None => list.push(buildpack.clone()),
            }
            put_buildpacks(&api, app, &list)?;
            println!("Buildpack added. Next release on {} will use:", app.name()?);
            for (i, b) in list.iter().enumerate() {
                println!("  {}. {b}", i + 1);
            }
        }
        Cmd::BuildpacksRemove {
            buildpack,
            index,
            app,
        } => {
            let api = api()?;
            let mut list = buildpack_list(&api, app)?;
            let pos = match (buildpack, index_of(*index, list.len(), false)?) {
                (Some(b), None) => list.iter().position(|x| x == b).ok_or_else(|| {
                    anyhow!(
                        "{b} is not set on {}",
                        app.app.as_deref().unwrap_or_default()
                    )
                })?,
                (None, Some(i)) => i,
                _ => bail!("give either a buildpack URL or --index"),
            };
            let removed = list.remove(pos);
            put_buildpacks(&api, app, &list)?;
            println!("Buildpack removed: {removed}");
        }
        Cmd::BuildpacksClear { app } => {
            let api = api()?;
            put_buildpacks(&api, app, &[])?;
            println!(
                "Buildpacks cleared. Next release on {} will detect buildpacks normally.",
                app.name()?
            );
        }
        Cmd::Domains { app, json: j } => {
            let list = api()?.get(&format!("{}/domains", app_path(app)?))?;
            if j.json {
                return print_json(&list);
            }
            let all: Vec<&Value> = list.as_array().into_iter().flatten().collect();
            println!("{}", header(&format!("{} Haven Domain", app.name()?)));
            for d in all.iter().filter(|d| d["kind"] == json!("heroku")) {
                println!("{}", s(&d["hostname"]));
            }
            let custom: Vec<Vec<String>> = all
                .iter()
                .filter(|d| d["kind"] == json!("custom"))
                .map(|d| vec![s(&d["hostname"]), s(&d["cname"])])
                .collect();
            if !custom.is_empty() {
                println!();
                println!("{}", header(&format!("{} Custom Domains", app.name()?)));
                println!("{}", table(&["Domain Name", "DNS Target"], &custom));
            }
        }
        Cmd::DomainsAdd { hostname, app } => {
            let d = api()?.call(
                Method::POST,
                &format!("{}/domains", app_path(app)?),
                Some(&json!({ "hostname": hostname })),
            )?;
            println!("Adding {} to ⬢ {}... done", s(&d["hostname"]), app.name()?);
            println!(
                "Point {} at any Haven node (CNAME {} or an A record).",
                s(&d["hostname"]),
                s(&d["cname"])
            );
        }
        Cmd::DomainsRemove { hostname, app } => {
            api()?.call(
                Method::DELETE,
                &format!("{}/domains/{hostname}", app_path(app)?),
                None,
            )?;
            println!("Removing {hostname} from ⬢ {}... done", app.name()?);
        }
        Cmd::Drains { app, json: j } => {
            let list = api()?.get(&format!("{}/log-drains", app_path(app)?))?;
            if j.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| vec![s(&d["url"]), s(&d["token"])])
                .collect();
            if rows.is_empty() {
                println!("{} has no drains.", app.name()?);
            } else {
                println!("{}", header("Drains"));
                println!("{}", table(&["URL", "Token"], &rows));
            }
        }
        Cmd::DrainsAdd { url, app } => {
            let d = api()?.call(
                Method::POST,
                &format!("{}/log-drains", app_path(app)?),
                Some(&json!({ "url": url })),
            )?;
            println!(
                "Successfully added drain {} (token {})",
                s(&d["url"]),
                s(&d["token"])
            );
        }
        Cmd::DrainsRemove { drain, app } => {
            let key: String = drain
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let d = api()?.call(
                Method::DELETE,
                &format!("{}/log-drains/{key}", app_path(app)?),
                None,
            )?;
            println!("Successfully removed drain {}", s(&d["url"]));
        }
        Cmd::Nodes(j) => {
            let nodes = api()?.get("/cluster/nodes")?;
            if j.json {
                return print_json(&nodes);
            }
            let rows: Vec<Vec<String>> = nodes
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    vec![
                        format!(
                            "{}{}",
                            s(&n["name"]),
                            if n["leader"] == json!(true) { " *" } else { "" }
                        ),
                        s(&n["id"]),
                        s(&n["status"]),
                        s(&n["role"]),
                        format!("{} / {} MiB", s(&n["used_memory_mb"]), s(&n["memory_mb"])),
                        s(&n["dynos"]),
                        s(&n["cpus"]),
                        s(&n["api_url"]),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "Name",
                        "ID",
                        "Status",
                        "Role",
                        "Memory used",
                        "Dynos",
                        "CPUs",
                        "API"
                    ],
                    &rows
                )
            );
            println!("(* leader)");
        }
        Cmd::NodesDrain { node } | Cmd::NodesUndrain { node } => {
            let drain = matches!(cli.cmd, Cmd::NodesDrain { .. });
            let out = api()?.call(
                Method::PATCH,
                &format!("/cluster/nodes/{node}"),
                Some(&json!({ "draining": drain })),
            )?;
            if drain {
                println!(
                    "Draining {}: its {} dynos move to other nodes and no new ones start there.",
                    s(&out["name"]),
                    s(&out["dynos"])
                );
            } else {
                println!("{} takes dynos again.", s(&out["name"]));
            }
        }
        Cmd::ClusterStatus(j) => {
            let st = api()?.get("/cluster/status")?;
            if j.json {
                return print_json(&st);
            }
            let list = |k: &str| {
                st[k]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            };
            println!("{}", header(&format!("Cluster {}", s(&st["cluster_name"]))));
            println!(
                "{}",
                key_values(&[
                    ("Cluster ID", s(&st["cluster_id"])),
                    ("App domain", s(&st["app_domain"])),
                    (
                        "This node",
                        format!("{} ({})", s(&st["node_name"]), s(&st["node_id"]))
                    ),
                    (
                        "Leader",
                        format!("{} ({})", s(&st["leader_name"]), s(&st["leader"]))
                    ),
                    ("Term", s(&st["term"])),
                    ("Voters", list("voters")),
                    ("Learners", list("learners")),
                    ("Applied index", s(&st["applied_index"])),
                ])
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("A=1").unwrap(), ("A".into(), "1".into()));
        assert_eq!(
            parse_pair("URL=postgres://u:p@h/db?x=y").unwrap().1,
            "postgres://u:p@h/db?x=y"
        );
        assert_eq!(parse_pair("EMPTY=").unwrap().1, "");
        assert!(parse_pair("NOEQUALS").is_err());
        assert!(parse_pair("=v").is_err());
    }

    #[test]
    fn scale_arguments() {
        let cases = [
            ("web=2", json!({"type":"web","quantity":"2"})),
            (
                "web=2:standard-2x",
                json!({"type":"web","quantity":"2","size":"standard-2x"}),
            ),
            (
                "worker=Standard-1X",
                json!({"type":"worker","size":"Standard-1X"}),
            ),
            ("web+1", json!({"type":"web","quantity":"+1"})),
            ("web-2", json!({"type":"web","quantity":"-2"})),
            ("web=+3", json!({"type":"web","quantity":"+3"})),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_scale(arg).unwrap(), want, "{arg}");
        }
        for bad in ["web", "=2", "web=", "web+", "web+x", "web=2:"] {
            assert!(parse_scale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_is_saved_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Tests in this binary that touch XDG_CONFIG_HOME run only here.
        std::env::set_var("XDG_CONFIG_HOME", dir.path());
        let login = Login {
            api: Some("http://n:7400".into()),
            token: Some("t".into()),
        };
        let path = login.save().unwrap();
        assert_eq!(Login::load().unwrap(), login);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
}

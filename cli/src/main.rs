//! `hctl`: Haven's command-line client, modeled on the Heroku CLI.
//!
//! `main` only parses the command line and dispatches to [`commands`], one module per
//! resource.

mod addon_args;
mod cert_args;
mod client;
mod commands;
mod deploy;
mod output;
mod run;
mod stack_args;

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Parser, Subcommand};

use client::Api;
use commands::config::parse_pair;
use commands::{
    access, apps, auth, buildpacks, builds, cluster, config, domains, drains, logs, ps, releases,
    repos, upgrade,
};

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
    /// Log in with a token, or with email and password (which get a new token); save the
    /// API URL and token (~/.config/hctl/config.toml, mode 0600).
    Login {
        /// The token.
        #[arg(long, conflicts_with = "email")]
        token: Option<String>,
        /// Log in with this email; the password is read from the terminal or stdin.
        #[arg(long)]
        email: Option<String>,
        /// Trust the cluster CA with this sha256 fingerprint (printed by havend init) for
        /// an https:// API; it is saved with the login.
        #[arg(long)]
        ca_fingerprint: Option<String>,
    },
    /// Forget the saved login.
    Logout,
    /// Show who the token belongs to.
    Whoami,
    /// Print the API token hctl uses.
    #[command(name = "auth:token")]
    AuthToken,
    /// Set your password (read from the terminal or stdin), for hctl login --email.
    #[command(name = "passwords:set")]
    PasswordsSet,
    /// List your API tokens (OAuth authorizations).
    Authorizations(JsonArg),
    /// Make a new API token; it is printed once.
    #[command(name = "authorizations:create")]
    AuthorizationsCreate {
        /// What the token is for.
        #[arg(short = 'd', long)]
        description: Option<String>,
        /// Seconds until it expires (default: until revoked).
        #[arg(short = 'e', long = "expires-in")]
        expires_in: Option<i64>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one of your API tokens (without its secret).
    #[command(name = "authorizations:info")]
    AuthorizationsInfo {
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Revoke one of your API tokens: every node refuses it from then on.
    #[command(name = "authorizations:revoke")]
    AuthorizationsRevoke { id: String },
    /// List the cluster's users (admins).
    Users(JsonArg),
    /// Make a user (admins); prints their first token, or with --password a generated
    /// password, once.
    #[command(name = "users:create")]
    UsersCreate {
        email: String,
        /// Make them an admin (cluster operations, every app).
        #[arg(long)]
        admin: bool,
        /// Give them a generated password instead of a token.
        #[arg(long)]
        password: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Remove a user and revoke their tokens (admins).
    #[command(name = "users:remove")]
    UsersRemove {
        email: String,
        /// The email again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// List who has access to an app.
    Access {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Give a user access to an app (as a collaborator).
    #[command(name = "access:add")]
    AccessAdd {
        email: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Take a collaborator's access to an app away.
    #[command(name = "access:remove")]
    AccessRemove {
        email: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List apps.
    Apps(JsonArg),
    /// Create an app.
    #[command(name = "apps:create")]
    AppsCreate {
        name: Option<String>,
        /// The app's stack (heroku-24, the default, or heroku-22).
        #[arg(long, short = 's')]
        stack: Option<String>,
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
    /// Deploy every new commit of a branch of a git repository (https://, ssh://, git://,
    /// or file:// on the nodes), like Heroku's GitHub integration.
    #[command(name = "repo:connect")]
    RepoConnect {
        /// The repository URL (credentials in it are kept, never shown).
        url: String,
        /// The branch to follow.
        #[arg(short = 'b', long, default_value = "main")]
        branch: String,
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show the app's connected repository and its last automatic deploy.
    #[command(name = "repo:info")]
    RepoInfo {
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        app: AppArg,
    },
    /// Stop automatic deploys from the connected repository.
    #[command(name = "repo:disconnect")]
    RepoDisconnect {
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
    /// Remove a node for good: drain it (its dynos move), take it out of Raft, and
    /// refuse its identity from then on; a wiped host joins again as a new node.
    #[command(name = "nodes:remove")]
    NodesRemove { node: String },
    /// Rolling upgrade, one node at a time: check the cluster can spare the node, run
    /// --exec (it restarts havend on the new binary: SIGUSR2, install, start; dynos keep
    /// running), wait until the node is back, caught up and up; then the next node.
    #[command(name = "nodes:upgrade")]
    NodesUpgrade {
        /// Nodes (names or ids), upgraded in this order.
        nodes: Vec<String>,
        /// Every node, followers first and the leader last.
        #[arg(long, conflicts_with = "nodes")]
        all: bool,
        /// Shell command that restarts one node's havend on the new binary; it gets
        /// HAVEN_NODE, HAVEN_NODE_ID, HAVEN_NODE_HOST and HAVEN_NODE_API. Without it, hctl
        /// waits for you to restart each node.
        #[arg(long)]
        exec: Option<String>,
        /// Seconds each node may take to come back and catch up.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show the Raft status of the node you talk to.
    #[command(name = "cluster:status")]
    ClusterStatus(JsonArg),
    /// Recent platform events of every up node, newest first (admins).
    #[command(name = "cluster:events")]
    ClusterEvents(JsonArg),
    /// Save a consistent copy of the cluster state (apps, releases, config vars,
    /// formations, users, add-on records) to FILE, for `havend restore` (admins).
    #[command(name = "cluster:backup")]
    ClusterBackup {
        file: std::path::PathBuf,
        /// Also carry the slugs and Postgres backup dumps (a restored cluster can then
        /// run its apps without a redeploy).
        #[arg(long)]
        slugs: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    #[command(flatten)]
    Addon(addon_args::AddonCmd),
    #[command(flatten)]
    Stack(stack_args::StackCmd),
    #[command(flatten)]
    Cert(cert_args::CertCmd),
}

fn run(cli: Cli) -> Result<()> {
    let api = || Api::from_env(cli.api.as_deref());
    match &cli.cmd {
        Cmd::Login {
            token,
            email,
            ca_fingerprint,
        } => auth::login(
            cli.api.as_deref(),
            token.as_deref(),
            email.as_deref(),
            ca_fingerprint.as_deref(),
        ),
        Cmd::Logout => auth::logout(),
        Cmd::Whoami => auth::whoami(&api()?),
        Cmd::AuthToken => auth::token(&api()?),
        Cmd::PasswordsSet => auth::set_password(&api()?),
        Cmd::Authorizations(j) => auth::authorizations(&api()?, j.json),
        Cmd::AuthorizationsCreate {
            description,
            expires_in,
            json: j,
        } => auth::create_authorization(&api()?, description.as_deref(), *expires_in, j.json),
        Cmd::AuthorizationsInfo { id, json: j } => auth::authorization_info(&api()?, id, j.json),
        Cmd::AuthorizationsRevoke { id } => auth::revoke_authorization(&api()?, id),
        Cmd::Users(j) => auth::users(&api()?, j.json),
        Cmd::UsersCreate {
            email,
            admin,
            password,
            json: j,
        } => auth::create_user(&api()?, email, *admin, *password, j.json),
        Cmd::UsersRemove { email, confirm } => {
            auth::remove_user(&api()?, email, confirm.as_deref())
        }
        Cmd::Access { app, json: j } => access::list(&api()?, app.name()?, j.json),
        Cmd::AccessAdd { email, app } => access::add(&api()?, app.name()?, email),
        Cmd::AccessRemove { email, app } => access::remove(&api()?, app.name()?, email),
        Cmd::Apps(j) => apps::list(&api()?, j.json),
        Cmd::AppsCreate {
            name,
            stack,
            json: j,
        } => apps::create(&api()?, name.as_deref(), stack.as_deref(), j.json),
        Cmd::AppsInfo { app, json: j } => apps::info(&api()?, app.name()?, j.json),
        Cmd::AppsRename { newname, app } => apps::rename(&api()?, app.name()?, newname),
        Cmd::AppsDestroy { app, confirm } => apps::destroy(api, app.name()?, confirm.as_deref()),
        Cmd::Config {
            app,
            json: j,
            shell,
        } => config::show(&api()?, app.name()?, j.json, *shell),
        Cmd::ConfigGet { key, app } => config::get(&api()?, app.name()?, key),
        Cmd::ConfigSet {
            pairs,
            app,
            json: j,
        } => config::set(&api()?, app.name()?, pairs, j.json),
        Cmd::ConfigUnset { keys, app, json: j } => {
            config::unset(&api()?, app.name()?, keys, j.json)
        }
        Cmd::Releases { app, json: j } => releases::list(&api()?, app.name()?, j.json),
        Cmd::ReleasesInfo {
            release,
            app,
            json: j,
        } => releases::info(&api()?, app.name()?, release, j.json),
        Cmd::Rollback {
            release,
            app,
            json: j,
        } => releases::rollback(&api()?, app.name()?, release.as_deref(), j.json),
        Cmd::PsScale {
            changes,
            app,
            json: j,
        } => ps::scale(&api()?, app.name()?, changes, j.json),
        Cmd::Ps { app, json: j } => ps::list(&api()?, app.name()?, j.json),
        Cmd::PsType { changes, app } => ps::set_type(&api()?, app.name()?, changes),
        Cmd::PsRestart { target, app } => ps::restart(&api()?, app.name()?, target.as_deref()),
        Cmd::PsStop { target, app } => ps::stop(&api()?, app.name()?, target),
        Cmd::PsWait {
            process_type,
            timeout,
            app,
        } => ps::wait(&api()?, app.name()?, process_type.as_deref(), *timeout),
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
            let req = logs::LogsRequest {
                num: *num,
                tail: *tail,
                dyno: dyno.clone(),
                process_type: process_type.clone(),
                source: source.clone(),
                no_color: *no_color,
            };
            logs::logs(&api()?, app.name()?, req)
        }
        Cmd::RepoConnect {
            url,
            branch,
            json: j,
            app,
        } => repos::connect(&api()?, app.name()?, url, branch, j.json),
        Cmd::RepoInfo { json: j, app } => repos::info(&api()?, app.name()?, j.json),
        Cmd::RepoDisconnect { app } => repos::disconnect(&api()?, app.name()?),
        Cmd::Maintenance { app } => apps::maintenance(&api()?, app.name()?),
        Cmd::MaintenanceOn { app } => apps::set_maintenance(&api()?, app.name()?, true),
        Cmd::MaintenanceOff { app } => apps::set_maintenance(&api()?, app.name()?, false),
        Cmd::Deploy { dir, app, json: j } => {
            let dir = dir.clone().unwrap_or_else(|| std::path::PathBuf::from("."));
            if !deploy::deploy(&api()?, app.name()?, &dir, j.json)? {
                bail!("the build failed; see its output above (hctl builds:output)");
            }
            Ok(())
        }
        Cmd::Builds { app, json: j } => builds::list(&api()?, app.name()?, j.json),
        Cmd::BuildsInfo { id, app, json: j } => builds::info(&api()?, app.name()?, id, j.json),
        Cmd::BuildsOutput { id, app } => builds::output(&api()?, app.name()?, id.as_deref()),
        Cmd::Buildpacks { app, json: j } => buildpacks::list(&api()?, app.name()?, j.json),
        Cmd::BuildpacksSet {
            buildpack,
            index,
            app,
        } => buildpacks::set(&api()?, app.name()?, buildpack, *index),
        Cmd::BuildpacksAdd {
            buildpack,
            index,
            app,
        } => buildpacks::add(&api()?, app.name()?, buildpack, *index),
        Cmd::BuildpacksRemove {
            buildpack,
            index,
            app,
        } => buildpacks::remove(&api()?, app.name()?, buildpack.as_deref(), *index),
        Cmd::BuildpacksClear { app } => buildpacks::clear(&api()?, app.name()?),
        Cmd::Domains { app, json: j } => domains::list(&api()?, app.name()?, j.json),
        Cmd::DomainsAdd { hostname, app } => domains::add(&api()?, app.name()?, hostname),
        Cmd::DomainsRemove { hostname, app } => domains::remove(&api()?, app.name()?, hostname),
        Cmd::Drains { app, json: j } => drains::list(&api()?, app.name()?, j.json),
        Cmd::DrainsAdd { url, app } => drains::add(&api()?, app.name()?, url),
        Cmd::DrainsRemove { drain, app } => drains::remove(&api()?, app.name()?, drain),
        Cmd::Nodes(j) => cluster::nodes(&api()?, j.json),
        Cmd::NodesDrain { node } => cluster::set_draining(&api()?, node, true),
        Cmd::NodesUndrain { node } => cluster::set_draining(&api()?, node, false),
        Cmd::NodesRemove { node } => cluster::remove(&api()?, node),
        Cmd::NodesUpgrade {
            nodes,
            all,
            exec,
            timeout,
        } => upgrade::run(
            &api()?,
            &upgrade::Request {
                nodes,
                all: *all,
                exec: exec.as_deref(),
                timeout: std::time::Duration::from_secs(*timeout),
            },
        ),
        Cmd::ClusterStatus(j) => cluster::status(&api()?, j.json),
        Cmd::ClusterEvents(j) => cluster::events(&api()?, j.json),
        Cmd::ClusterBackup { file, slugs, json } => {
            cluster::backup(&api()?, file, *slugs, json.json)
        }
        Cmd::Addon(c) => c.run(api),
        Cmd::Stack(c) => c.run(api),
        Cmd::Cert(c) => c.run(api),
    }
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

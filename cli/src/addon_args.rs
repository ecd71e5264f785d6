//! The add-on commands' arguments (`addons*`, `pg:*` with `pg:backups*`, `redis:*`), flattened into `hctl`'s
//! command list by `main`, and their dispatch to [`crate::commands::addons`] and
//! [`crate::commands::datastores`].

use anyhow::Result;
use clap::Subcommand;

use crate::client::Api;
use crate::commands::{addons, datastores, pg_backups};
use crate::{AppArg, JsonArg};

#[derive(Subcommand)]
pub enum AddonCmd {
    /// List add-ons (of an app, or of the whole cluster) with their attachments.
    Addons {
        /// The app (or set HAVEN_APP); every add-on when absent.
        #[arg(short = 'a', long = "app", env = "HAVEN_APP")]
        app: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Create an add-on: SERVICE[:PLAN] (heroku-postgresql, heroku-redis:mini).
    #[command(name = "addons:create")]
    AddonsCreate {
        service: String,
        /// The attachment name (sets NAME_URL).
        #[arg(long = "as")]
        as_name: Option<String>,
        /// The add-on's name (default: generated, postgresql-curved-12345).
        #[arg(long)]
        name: Option<String>,
        /// Wait until it is provisioned.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Destroy an add-on and its data.
    #[command(name = "addons:destroy")]
    AddonsDestroy {
        name: String,
        /// The owning app's name, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Show an add-on.
    #[command(name = "addons:info")]
    AddonsInfo {
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Attach an existing add-on to an app (sharing it).
    #[command(name = "addons:attach")]
    AddonsAttach {
        name: String,
        /// The attachment name (sets NAME_URL).
        #[arg(long = "as")]
        as_name: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Detach an attachment (its config vars are unset).
    #[command(name = "addons:detach")]
    AddonsDetach {
        attachment: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the add-on services.
    #[command(name = "addons:services")]
    AddonsServices(JsonArg),
    /// List a service's plans.
    #[command(name = "addons:plans")]
    AddonsPlans {
        service: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Change a provider add-on's plan: ADDON PLAN, or SERVICE:PLAN alone for the app's only
    /// add-on of that service.
    #[command(name = "addons:upgrade")]
    AddonsUpgrade {
        addon: String,
        plan: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List the registered third-party add-on providers (admins).
    #[command(name = "addons:providers")]
    AddonsProviders(JsonArg),
    /// Register a third-party add-on provider that speaks Heroku's add-on provider API
    /// (admins).
    #[command(name = "addons:providers:add")]
    AddonsProvidersAdd {
        name: String,
        /// Its base URL (Haven calls URL/heroku/resources).
        #[arg(long)]
        url: String,
        /// The shared secret (HTTP Basic auth NAME:PASSWORD); or set HAVEN_PROVIDER_PASSWORD.
        #[arg(long, env = "HAVEN_PROVIDER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Its plans, comma-separated; the first is the default.
        #[arg(long, value_delimiter = ',')]
        plans: Vec<String>,
    },
    /// Remove a provider (once none of its add-ons is left) (admins).
    #[command(name = "addons:providers:remove")]
    AddonsProvidersRemove { name: String },
    /// Show a Postgres database (default DATABASE_URL).
    #[command(name = "pg:info")]
    PgInfo {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Open psql on a Postgres database (default DATABASE_URL).
    #[command(name = "pg:psql")]
    PgPsql {
        database: Option<String>,
        /// Run this SQL and exit.
        #[arg(short = 'c', long)]
        command: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Make a Postgres database the app's DATABASE_URL (the old one keeps its colour var).
    #[command(name = "pg:promote")]
    PgPromote {
        /// The database: an add-on name, attachment or colour var (HEROKU_POSTGRESQL_JADE).
        database: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Give a Postgres database a new password (default DATABASE); apps attached restart.
    #[command(name = "pg:credentials:rotate")]
    PgCredentialsRotate {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// The app's name, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Show a Redis database (default REDIS_URL).
    #[command(name = "redis:info")]
    RedisInfo {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Open redis-cli on a Redis database (default REDIS_URL); ARGS after -- run once.
    #[command(name = "redis:cli")]
    RedisCli {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List the app's Postgres backups.
    #[command(name = "pg:backups")]
    PgBackups {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Back up a Postgres database now (default DATABASE); waits until the dump is on 3 nodes.
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show a backup (default the newest completed).
    #[command(name = "pg:backups:info")]
    PgBackupsInfo {
        id: Option<String>,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Download a backup's dump (pg_restore reads it).
    #[command(name = "pg:backups:download")]
    PgBackupsDownload {
        id: Option<String>,
        /// Where to write it (default latest.dump).
        #[arg(short = 'o', long)]
        output: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Restore a backup into a database (default the newest into DATABASE).
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore {
        id: Option<String>,
        database: Option<String>,
        /// The app's name, to confirm.
        #[arg(long)]
        confirm: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Back up a database every day at a UTC time (the last 7 scheduled backups are kept).
    #[command(name = "pg:backups:schedule")]
    PgBackupsSchedule {
        database: Option<String>,
        /// Time of day in UTC, such as '02:00 UTC'.
        #[arg(long)]
        at: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's backup schedules.
    #[command(name = "pg:backups:schedules")]
    PgBackupsSchedules {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop a database's daily backups.
    #[command(name = "pg:backups:unschedule")]
    PgBackupsUnschedule {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Delete a backup.
    #[command(name = "pg:backups:delete")]
    PgBackupsDelete {
        id: String,
        /// The app's name, to confirm.
        #[arg(long)]
        confirm: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
}

impl AddonCmd {
    /// Runs the command against the API `api` gives.
    pub fn run(&self, api: impl Fn() -> Result<Api>) -> Result<()> {
        match self {
            AddonCmd::Addons { app, json: j } => {
                addons::list(&api()?, app.as_deref().filter(|a| !a.is_empty()), j.json)
            }
            AddonCmd::AddonsCreate {
                service,
                as_name,
                name,
                wait,
                app,
                json: j,
            } => addons::create(
                &api()?,
                app.name()?,
                service,
                as_name.as_deref(),
                name.as_deref(),
                *wait,
                j.json,
            ),
            AddonCmd::AddonsDestroy { name, confirm } => {
                addons::destroy(&api()?, name, confirm.as_deref())
            }
            AddonCmd::AddonsInfo { name, json: j } => addons::info(&api()?, name, j.json),
            AddonCmd::AddonsAttach { name, as_name, app } => {
                addons::attach(&api()?, app.name()?, name, as_name.as_deref())
            }
            AddonCmd::AddonsDetach { attachment, app } => {
                addons::detach(&api()?, app.name()?, attachment)
            }
            AddonCmd::AddonsServices(j) => addons::services(&api()?, j.json),
            AddonCmd::AddonsPlans { service, json: j } => addons::plans(&api()?, service, j.json),
            AddonCmd::AddonsUpgrade {
                addon,
                plan,
                app,
                json: j,
            } => addons::upgrade(&api()?, app.name()?, addon, plan.as_deref(), j.json),
            AddonCmd::AddonsProviders(j) => addons::providers(&api()?, j.json),
            AddonCmd::AddonsProvidersAdd {
                name,
                url,
                password,
                plans,
            } => addons::provider_add(&api()?, name, url, password, plans),
            AddonCmd::AddonsProvidersRemove { name } => addons::provider_remove(&api()?, name),
            AddonCmd::PgInfo { database, app } => {
                datastores::pg_info(&api()?, app.name()?, database.as_deref())
            }
            AddonCmd::PgPsql {
                database,
                command,
                app,
            } => datastores::pg_psql(
                &api()?,
                app.name()?,
                database.as_deref(),
                command.as_deref(),
            ),
            AddonCmd::PgPromote { database, app } => {
                datastores::pg_promote(&api()?, app.name()?, database)
            }
            AddonCmd::PgCredentialsRotate {
                database,
                app,
                confirm,
            } => datastores::pg_credentials_rotate(
                &api()?,
                app.name()?,
                database.as_deref(),
                confirm.as_deref(),
            ),
            AddonCmd::RedisInfo { database, app } => {
                datastores::redis_info(&api()?, app.name()?, database.as_deref())
            }
            AddonCmd::RedisCli {
                database,
                app,
                args,
            } => datastores::redis_cli_run(&api()?, app.name()?, database.as_deref(), args),
            AddonCmd::PgBackups { app, json: j } => pg_backups::list(&api()?, app.name()?, j.json),
            AddonCmd::PgBackupsCapture {
                database,
                app,
                json: j,
            } => pg_backups::capture(&api()?, app.name()?, database.as_deref(), j.json),
            AddonCmd::PgBackupsInfo { id, app, json: j } => {
                pg_backups::info(&api()?, app.name()?, id.as_deref(), j.json)
            }
            AddonCmd::PgBackupsDownload { id, output, app } => {
                pg_backups::download(&api()?, app.name()?, id.as_deref(), output.as_deref())
            }
            AddonCmd::PgBackupsRestore {
                id,
                database,
                confirm,
                app,
            } => pg_backups::restore(
                &api()?,
                app.name()?,
                id.as_deref(),
                database.as_deref(),
                confirm.as_deref(),
            ),
            AddonCmd::PgBackupsSchedule { database, at, app } => {
                pg_backups::schedule(&api()?, app.name()?, database.as_deref(), at)
            }
            AddonCmd::PgBackupsSchedules { app, json: j } => {
                pg_backups::schedules(&api()?, app.name()?, j.json)
            }
            AddonCmd::PgBackupsUnschedule { database, app } => {
                pg_backups::unschedule(&api()?, app.name()?, database.as_deref())
            }
            AddonCmd::PgBackupsDelete { id, confirm, app } => {
                pg_backups::delete(&api()?, app.name()?, id, confirm.as_deref())
            }
        }
    }
}

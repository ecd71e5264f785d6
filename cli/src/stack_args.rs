//! The stack commands' arguments (`stacks`, `stacks:import`, `stack:set`), flattened into
//! `hctl`'s command list by `main`, and their dispatch to [`crate::commands::stacks`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::client::Api;
use crate::commands::stacks;
use crate::{AppArg, JsonArg};

#[derive(Subcommand)]
pub enum StackCmd {
    /// List the stacks, with the images the cluster has for them (`*`: the default, or
    /// the app's).
    Stacks {
        /// Mark this app's stack (or set HAVEN_APP).
        #[arg(short = 'a', long = "app", env = "HAVEN_APP")]
        app: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Import a stack's images made by `havend stack:build` (admins): every node then
    /// fetches and unpacks them, and builds and dynos on that stack use them as their root.
    #[command(name = "stacks:import")]
    StacksImport {
        /// heroku-24 or heroku-22.
        stack: String,
        /// The run image (STACK-run.tar.zst): the root of dynos.
        #[arg(long)]
        run: Option<PathBuf>,
        /// The build image (STACK-build.tar.zst): the root of builds.
        #[arg(long)]
        build: Option<PathBuf>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Set the stack of an app's next build (heroku-24, heroku-22).
    #[command(name = "stack:set")]
    StackSet {
        stack: String,
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        json: JsonArg,
    },
}

impl StackCmd {
    pub fn run(&self, api: impl Fn() -> Result<Api>) -> Result<()> {
        match self {
            StackCmd::Stacks { app, json } => stacks::list(&api()?, app.as_deref(), json.json),
            StackCmd::StacksImport {
                stack,
                run,
                build,
                json,
            } => {
                let mut images = Vec::new();
                if let Some(r) = run {
                    images.push(("run", r.as_path()));
                }
                if let Some(b) = build {
                    images.push(("build", b.as_path()));
                }
                stacks::import(&api()?, stack, &images, json.json)
            }
            StackCmd::StackSet { stack, app, json } => {
                stacks::set(&api()?, app.name()?, stack, json.json)
            }
        }
    }
}

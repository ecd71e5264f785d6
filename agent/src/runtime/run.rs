//! `havend dyno-run`: one dyno through [`Runtime`], attached to this terminal. For
//! operators and the end-to-end tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::{Bind, DynoSpec, Mode, Runtime};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Container if the host allows it, else Process (with a warning).
    Auto,
    /// Fail unless container mode is available.
    Container,
    /// Plain process.
    Process,
}

#[derive(Args, Debug)]
pub struct DynoRunArgs {
    /// Extracted slug: the read-only lower layer of /app (default: an empty /app).
    #[arg(long)]
    slug: Option<PathBuf>,
    /// Environment variable for the dyno (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Memory quota in MiB; the hard limit is twice this.
    #[arg(long, default_value_t = 512)]
    memory_mb: u64,
    /// Process/thread limit.
    #[arg(long, default_value_t = 256)]
    pids: u64,
    /// CPU share (cgroup v1 `cpu.shares` units; 0: the kernel's default).
    #[arg(long, default_value_t = 0)]
    cpu_shares: u64,
    /// Host name, also `DYNO`.
    #[arg(long, default_value = "run.1")]
    hostname: String,
    /// Dyno id (default: a fresh uuid).
    #[arg(long)]
    id: Option<String>,
    /// Where per-dyno dirs go (default: a temp dir, removed afterwards).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Bind a host path into the container (repeatable; read-only unless `:rw`).
    #[arg(long = "bind", value_name = "HOST:TARGET[:rw]")]
    binds: Vec<String>,
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,
    /// Seconds between SIGTERM (on SIGTERM or ^C to this process) and SIGKILL (R12).
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// The command (a shell command line, as in a Procfile).
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// `HOME=/app`, a standard `PATH` and `DYNO`, then the `KEY=VALUE` pairs (later wins).
pub fn dyno_env(pairs: &[String], hostname: &str) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), "/app".into()),
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("DYNO".into(), hostname.into()),
    ];
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--env {p:?} is not KEY=VALUE");
        };
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    Ok(env)
}

pub fn parse_bind(s: &str) -> Result<Bind> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, target, writable) = match parts.as_slice() {
        [h, t] => (h, t, false),
        [h, t, "rw"] => (h, t, true),
        [h, t, "ro"] => (h, t, false),
        _ => bail!("--bind {s:?} is not HOST:TARGET[:rw|:ro]"),
    };
    Ok(Bind {
        host: PathBuf::from(host),
        target: PathBuf::from(target),
        writable,
    })
}

/// Runs the dyno and returns the exit code for this process: the command's, or 128 +
/// the signal that ended it.
pub fn dyno_run(args: DynoRunArgs) -> Result<i32> {
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (state_dir, temporary) = match &args.state_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("havend-dyno-run-{}", std::process::id())),
            true,
        ),
    };
    let exe = std::env::current_exe().context("find the havend binary")?;
    let rt = match args.mode {
        ModeArg::Process => Runtime::process_only(state_dir.clone()),
        ModeArg::Auto => Runtime::new(state_dir.clone(), exe),
        ModeArg::Container => {
            let rt = Runtime::new(state_dir.clone(), exe);
            if rt.mode() != Mode::Container {
                bail!(
                    "container mode is unavailable: {}",
                    rt.unavailable_reason().unwrap_or("unknown")
                );
            }
            rt
        }
    };
    let spec = DynoSpec {
        id,
        hostname: args.hostname.clone(),
        slug_dir: args.slug.clone(),
        root: None,
        binds: args
            .binds
            .iter()
            .map(|b| parse_bind(b))
            .collect::<Result<_>>()?,
        command: args.command.join(" "),
        env: dyno_env(&args.env, &args.hostname)?,
        // As the supervisor does: the hard limit is twice the quota.
        memory_limit_bytes: (args.memory_mb << 20).saturating_mul(2),
        pids_limit: args.pids,
        cpu_shares: args.cpu_shares,
        stdin: true,
        outlives_agent: false,
        note: String::new(),
        net: None,
    };
    let tokio_rt = tokio::runtime::Runtime::new()?;
    let stop = Duration::from_secs(args.stop_timeout);
    let result = tokio_rt.block_on(attached(&rt, &spec, stop));
    // The stdin copier may sit in a blocking read: don't wait for it.
    tokio_rt.shutdown_background();
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let exit = result?;
    if exit.oom_killed {
        eprintln!("havend dyno-run: the dyno ran out of memory (R15) and was killed");
    }
    Ok(match (exit.code, exit.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    })
}

async fn attached(rt: &Runtime, spec: &DynoSpec, stop: Duration) -> Result<super::ExitInfo> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut dyno = rt.spawn(spec).context("start the dyno")?;
    if let Some(mut w) = dyno.take_stdin() {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut w).await;
        });
    }
    let mut copies = Vec::new();
    if let Some(mut r) = dyno.take_stdout() {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut r, &mut tokio::io::stdout()).await;
        }));
    }
    if let Some(mut r) = dyno.take_stderr() {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut r, &mut tokio::io::stderr()).await;
        }));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let handle = dyno.handle();
    let mut kill_at: Option<tokio::time::Instant> = None;
    let exit = loop {
        let kill_timer = async move {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let stopping = tokio::select! {
            e = dyno.wait() => break e,
            _ = term.recv() => true,
            _ = int.recv() => true,
            _ = kill_timer => {
                handle.kill();
                kill_at = None;
                false
            }
        };
        if stopping {
            handle.terminate();
            kill_at.get_or_insert(tokio::time::Instant::now() + stop);
        }
    };
    for c in copies {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    dyno.cleanup();
    Ok(exit)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtime_dyno_run_env_defaults_then_overrides() {
        let env = dyno_env(&["FOO=bar=baz".into(), "HOME=/x".into()], "web.1").unwrap();
        assert_eq!(
            env,
            vec![
                ("HOME".to_string(), "/x".to_string()),
                (
                    "PATH".to_string(),
                    "/usr/local/bin:/usr/bin:/bin".to_string()
                ),
                ("DYNO".to_string(), "web.1".to_string()),
                ("FOO".to_string(), "bar=baz".to_string()),
            ]
        );
        assert!(dyno_env(&["NOEQUALS".into()], "x").is_err());
    }

    #[test]
    fn runtime_dyno_run_parses_binds() {
        assert_eq!(
            parse_bind("/h:/out:rw").unwrap(),
            Bind {
                host: "/h".into(),
                target: "/out".into(),
                writable: true
            }
        );
        assert!(!parse_bind("/h:/in").unwrap().writable);
        assert!(!parse_bind("/h:/in:ro").unwrap().writable);
        assert!(parse_bind("/h").is_err());
        assert!(parse_bind("/h:/in:rx").is_err());
    }
}

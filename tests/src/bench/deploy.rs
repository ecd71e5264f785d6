//! `git push` of the Python example to a 3-node cluster: the time until the push returns
//! with its release made, and until the router answers 200 from the new release. The
//! first push (a cold build) is timed apart; the later pushes each change the app's
//! greeting, and their median is the figure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::apps::{copy_files, create_app, git};
use super::{median, Opts, Progress, Row, Target};

const APP: &str = "deploy";
/// How long a new release may take to answer through the router after its push.
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);

/// One push: seconds to the release, and to the first 200 from it.
#[derive(Debug, Clone, Copy)]
pub struct Push {
    pub release_s: f64,
    pub serving_s: f64,
}

fn releases(env: &crate::Env) -> usize {
    env.get_json(0, &format!("/apps/{APP}/releases"))
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Commits the app with greeting `marker` and pushes it; waits for the router to answer
/// with it.
fn push(env: &crate::Env, repo: &std::path::Path, marker: &str) -> Result<Push> {
    let app = std::fs::read_to_string(repo.join("app.py"))?;
    let start = app
        .find("os.environ.get(\"GREETING\", \"")
        .context("app.py has no GREETING default")?
        + "os.environ.get(\"GREETING\", \"".len();
    let end = start + app[start..].find('"').context("unterminated greeting")?;
    std::fs::write(
        repo.join("app.py"),
        format!("{}{marker}{}", &app[..start], &app[end..]),
    )?;
    git(repo, &["commit", "-q", "-a", "-m", marker])?;
    let hostport = env.api(0).trim_start_matches("http://").to_string();
    let url = format!("http://git:{}@{hostport}/{APP}.git", env.token());
    let before = releases(env);
    let t0 = Instant::now();
    // The remote URL holds the token: keep it out of the error.
    git(repo, &["push", "-q", &url, "HEAD:refs/heads/main"])
        .map_err(|e| anyhow::anyhow!("{}", format!("{e:#}").replace(env.token(), "<token>")))?;
    let release_s = t0.elapsed().as_secs_f64();
    if releases(env) <= before {
        bail!("the push returned without a new release");
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let router = env.router(0).to_string();
    let serving = haven_testcluster::wait_until(SERVE_TIMEOUT, || {
        client
            .get(format!("{router}/"))
            .header("Host", format!("{APP}.localhost"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.text().ok())
            .is_some_and(|b| b.starts_with(marker))
    });
    if !serving {
        bail!("the router did not answer from the new release within {SERVE_TIMEOUT:?}");
    }
    Ok(Push {
        release_s,
        serving_s: t0.elapsed().as_secs_f64(),
    })
}

/// The cold push, then `runs` pushes of a changed app.
pub fn measure(runs: usize, progress: Progress<'_>) -> Result<(Push, Vec<Push>)> {
    progress("deploy: starting a 3-node cluster");
    let env = super::cluster(3, None);
    create_app(&env, APP)?;
    let repo = tempfile::tempdir()?;
    copy_files(&crate::repo_path("examples/python-hello"), repo.path())?;
    git(repo.path(), &["init", "-q"])?;
    git(repo.path(), &["add", "-A"])?;
    git(repo.path(), &["commit", "-q", "-m", "first"])?;
    let cold = push(&env, repo.path(), "Cold")?;
    progress(&format!(
        "deploy: first push: release after {:.2} s, serving after {:.2} s",
        cold.release_s, cold.serving_s
    ));
    let mut warm = Vec::new();
    for i in 0..runs {
        let p = push(&env, repo.path(), &format!("Push{i}"))?;
        progress(&format!(
            "deploy: push {} of {runs}: release after {:.2} s, serving after {:.2} s",
            i + 1,
            p.release_s,
            p.serving_s
        ));
        warm.push(p);
    }
    Ok((cold, warm))
}

pub fn section(opts: &Opts, progress: Progress<'_>) -> Result<Vec<Row>> {
    let (cold, warm) = measure(opts.pick(5, 2), progress)?;
    let n = warm.len();
    let mut rel: Vec<f64> = warm.iter().map(|p| p.release_s).collect();
    let mut srv: Vec<f64> = warm.iter().map(|p| p.serving_s).collect();
    Ok(vec![
        Row::new(
            "deploy",
            "git push → release (median)",
            median(&mut rel),
            "s",
        )
        .target(Target::at_most(5.0))
        .note(format!(
            "python-hello, {n} pushes of a changed app.py; the first push: {:.2} s",
            cold.release_s
        )),
        Row::new(
            "deploy",
            "git push → serving the new release through the router (median)",
            median(&mut srv),
            "s",
        )
        .target(Target::at_most(8.0))
        .note(format!(
            "first 200 with the new greeting; the first push: {:.2} s",
            cold.serving_s
        )),
    ])
}

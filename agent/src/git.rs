//! `git push` over smart HTTP (design §6): `/{app}.git/info/refs?service=git-receive-pack`
//! and `/{app}.git/git-receive-pack` on every node's API port, served by git's own
//! `git receive-pack --stateless-rpc` over a bare repository per app on this node.
//!
//! The build happens in the repository's `pre-receive` hook, which is `havend git-hook`:
//! it archives the pushed commit, uploads it as a build source through this node's API,
//! starts a build, and copies the build's output to its stdout, which git relays to the
//! pusher as `remote:` lines as they come. A failed build makes the hook exit non-zero, so
//! git rejects the push and the branch is not updated. Git authenticates with HTTP Basic,
//! the API token as password (any username), as on Heroku; the push is the API's
//! `ChangeApp` action, asked of the same authorization rule ([`crate::api::access`]): an
//! app the caller may not change is answered as one that does not exist.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use haven_raft::model;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::api::access::{self, Action, Caller};
use crate::api::{authenticate as api_authenticate, token_from_authorization, ApiContext};

/// The git routes. They sit beside the JSON API, with their own auth answer (git needs
/// `WWW-Authenticate` to send credentials) and plain-text errors that git prints.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/{repo}/info/refs", get(info_refs))
        .route("/{repo}/git-receive-pack", post(receive_pack))
        .route("/{repo}/git-upload-pack", post(upload_pack))
        .with_state(ctx)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "Haven: authentication required; use any username and your API token (hctl auth:token) as the password",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Haven\""),
    );
    r
}

/// The caller and their token, if it is a valid token of the cluster's (no passwords:
/// git sends the token).
async fn authenticate(ctx: &ApiContext, headers: &HeaderMap) -> Option<(Caller, String)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_authorization)?;
    let caller = api_authenticate(ctx, headers, false).await.ok()?;
    Some((caller, token))
}

/// The app a `NAME.git` path names, after the read barrier, if `caller` may push to it.
async fn find_app(ctx: &ApiContext, caller: &Caller, repo: &str) -> Result<model::App, Response> {
    let Some(name) = repo.strip_suffix(".git") else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "Haven: git remotes look like http://NODE:7400/APP.git",
        ));
    };
    if ctx.raft.read_barrier().await.is_err() {
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Haven: the cluster has no leader right now; push again in a moment",
        ));
    }
    ctx.raft
        .with_state(|s| {
            let app = s.find_app(name);
            access::authorize(caller, Action::ChangeApp, app)
                .ok()
                .and(app)
                .map(|a| a.summary())
        })
        .ok_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                format!("Haven: app {name} not found; create it with hctl apps:create {name}"),
            )
        })
}

/// Creates the app's bare repository and (re)writes its pre-receive hook.
fn ensure_repo(ctx: &ApiContext, app: &model::App) -> std::io::Result<PathBuf> {
    let dir = ctx
        .builder
        .data()
        .repos_dir()
        .join(format!("{}.git", app.id));
    if !dir.join("HEAD").exists() {
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("git")
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(&dir)
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "git init --bare {} failed",
                dir.display()
            )));
        }
    }
    let exe = std::env::current_exe()?;
    let hook = format!(
        "#!/bin/sh\nexec '{}' git-hook\n",
        exe.display().to_string().replace('\'', "'\\''")
    );
    let path = dir.join("hooks").join("pre-receive");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(hook.as_str()) {
        std::fs::create_dir_all(dir.join("hooks"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &hook)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(dir)
}

/// The app a `NAME.git` path names and its repository on this node, or the answer git
/// should get.
async fn open_repo(
    ctx: &ApiContext,
    caller: &Caller,
    repo: &str,
) -> Result<(model::App, PathBuf), Response> {
    let app = find_app(ctx, caller, repo).await?;
    match ensure_repo(ctx, &app) {
        Ok(dir) => Ok((app, dir)),
        Err(e) => {
            warn!(app = %app.name, error = %e, "git repository unavailable");
            Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Haven: the repository is unavailable",
            ))
        }
    }
}

#[derive(Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

/// `GET /{app}.git/info/refs?service=git-receive-pack`: the ref advertisement.
async fn info_refs(
    State(ctx): State<ApiContext>,
    UrlPath(repo): UrlPath<String>,
    Query(q): Query<ServiceQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((caller, _token)) = authenticate(&ctx, &headers).await else {
        return unauthorized();
    };
    match q.service.as_deref() {
        Some("git-receive-pack") => {}
        Some("git-upload-pack") => return upload_refused(),
        _ => {
            return text(
                StatusCode::FORBIDDEN,
                "Haven: only smart HTTP git pushes are served (git 1.6.6 or newer)",
            )
        }
    }
    let (_app, dir) = match open_repo(&ctx, &caller, &repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let out = tokio::process::Command::new("git")
        .args(["receive-pack", "--stateless-rpc", "--advertise-refs"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            warn!(stderr = %String::from_utf8_lossy(&o.stderr), "git receive-pack --advertise-refs failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Haven: git failed");
        }
        Err(e) => {
            warn!(error = %e, "cannot run git");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Haven: git is not installed on this node",
            );
        }
    };
    let mut body = pkt_line("# service=git-receive-pack\n");
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&out);
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-advertisement",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn pkt_line(s: &str) -> Vec<u8> {
    let mut v = format!("{:04x}", s.len() + 4).into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

fn upload_refused() -> Response {
    text(
        StatusCode::FORBIDDEN,
        "Haven: fetching and cloning from Haven is not supported; push your own repository with git push",
    )
}

async fn upload_pack() -> Response {
    upload_refused()
}

/// `POST /{app}.git/git-receive-pack`: runs `git receive-pack --stateless-rpc`, the
/// request body in, the response streamed out (the hook's build output rides in it).
async fn receive_pack(
    State(ctx): State<ApiContext>,
    UrlPath(repo): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((caller, token)) = authenticate(&ctx, &headers).await else {
        return unauthorized();
    };
    let (app, dir) = match open_repo(&ctx, &caller, &repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let child = tokio::process::Command::new("git")
        .args(["receive-pack", "--stateless-rpc"])
        .arg(&dir)
        .env("HAVEN_HOOK_API", ctx.builder.api_url())
        .env("HAVEN_HOOK_CA_PEM", &ctx.ca_pem)
        .env("HAVEN_HOOK_TOKEN", &token)
        .env("HAVEN_HOOK_APP", &app.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot run git receive-pack");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Haven: git is not installed on this node",
            );
        }
    };
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Haven: git pipes unavailable",
        );
    };
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            let bytes = match decoder.as_mut() {
                Some(d) => {
                    if d.write_all(&chunk).is_err() {
                        break;
                    }
                    std::mem::take(d.get_mut())
                }
                None => chunk.to_vec(),
            };
            if stdin.write_all(&bytes).await.is_err() {
                break;
            }
        }
        if let Some(d) = decoder {
            if let Ok(rest) = d.finish() {
                let _ = stdin.write_all(&rest).await;
            }
        }
        drop(stdin);
    });
    let app_name = app.name.clone();
    tokio::spawn(async move {
        let mut err = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut err).await;
        match child.wait().await {
            Ok(s) if s.success() => debug!(app = %app_name, "git push received"),
            Ok(s) => {
                debug!(app = %app_name, status = %s, stderr = %String::from_utf8_lossy(&err), "git push rejected")
            }
            Err(e) => warn!(error = %e, "git receive-pack lost"),
        }
    });
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-result",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(stdout)),
    )
        .into_response()
}

// ---- the pre-receive hook: `havend git-hook` -----------------------------------------

const ZERO: &str = "0000000000000000000000000000000000000000";

/// What the hook decided about the pushed refs.
#[derive(Debug, PartialEq, Eq)]
pub enum PushPlan {
    /// Build this commit.
    Deploy { commit: String, branch: String },
    /// Refuse the push with this message.
    Refuse(String),
}

/// Judges the refs a push updates (`OLD NEW REF` lines on the hook's stdin).
pub fn plan_push(lines: &str) -> PushPlan {
    let mut deploy = None;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, refname] = parts[..] else {
            return PushPlan::Refuse(format!("unexpected ref update {line:?}"));
        };
        let branch = refname.strip_prefix("refs/heads/").unwrap_or(refname);
        if branch != "main" && branch != "master" {
            return PushPlan::Refuse(format!(
                "Pushed to non-deploy branch {branch}; push main or master instead (git push haven {branch}:main)"
            ));
        }
        if new.chars().all(|c| c == '0') || new == ZERO {
            return PushPlan::Refuse(format!(
                "Deleting the deploy branch {branch} is not allowed"
            ));
        }
        if deploy.is_some() {
            return PushPlan::Refuse(
                "Push only one of main and master: both deploy the same app".into(),
            );
        }
        deploy = Some(PushPlan::Deploy {
            commit: new.to_string(),
            branch: branch.to_string(),
        });
    }
    deploy.unwrap_or_else(|| PushPlan::Refuse("Nothing to deploy: push main or master".into()))
}

/// Entry of `havend git-hook`; returns the process exit code (0 accepts the push).
pub fn run_hook() -> i32 {
    let mut input = String::new();
    if std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).is_err() {
        say(" !     Could not read the pushed refs");
        return 1;
    }
    match plan_push(&input) {
        PushPlan::Refuse(msg) => {
            say(&format!(" !     {msg}"));
            1
        }
        PushPlan::Deploy { commit, .. } => match deploy(&commit) {
            Ok(true) => {
                say("Verifying deploy... done.");
                0
            }
            Ok(false) => {
                say(" !     Push rejected to this app.");
                1
            }
            Err(e) => {
                say(&format!(" !     {e}"));
                say(" !     Push rejected to this app.");
                1
            }
        },
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set: this hook runs only under havend"))
}

/// The JSON error message of a failed API answer.
fn api_error(resp: reqwest::blocking::Response) -> String {
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    serde_json::from_str::<haven_api::ErrorBody>(&body)
        .map(|e| e.message)
        .unwrap_or_else(|_| format!("HTTP {status}: {}", body.trim()))
}

/// Uploads `commit` as a source, builds it and relays the output. `Ok(true)` when the
/// build succeeded.
fn deploy(commit: &str) -> Result<bool, String> {
    let api = env("HAVEN_HOOK_API")?;
    let token = env("HAVEN_HOOK_TOKEN")?;
    let app = env("HAVEN_HOOK_APP")?;
    let mut client = reqwest::blocking::Client::builder().timeout(None);
    if let Ok(pem) = std::env::var("HAVEN_HOOK_CA_PEM") {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        client = client.add_root_certificate(ca);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}");
    let call = |method: reqwest::Method, url: &str| {
        client
            .request(method, url)
            .header(header::AUTHORIZATION, &auth)
            .header(header::ACCEPT, haven_api::ACCEPT)
    };
    let source: haven_api::Source = {
        let resp = call(reqwest::Method::POST, &format!("{api}/sources"))
            .send()
            .map_err(|e| format!("cannot reach this node's API: {e}"))?;
        if !resp.status().is_success() {
            return Err(api_error(resp));
        }
        resp.json().map_err(|e| e.to_string())?
    };
    say("Compressing source files... done.");
    let mut archive = std::process::Command::new("git")
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let stdout = archive.stdout.take().ok_or("git archive has no stdout")?;
    let put = call(reqwest::Method::PUT, &source.source_blob.put_url)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(reqwest::blocking::Body::new(stdout))
        .send()
        .map_err(|e| format!("source upload failed: {e}"))?;
    let archived = archive.wait_with_output().map_err(|e| e.to_string())?;
    if !archived.status.success() {
        return Err(format!(
            "git archive {commit} failed: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        ));
    }
    if !put.status().is_success() {
        return Err(api_error(put));
    }
    let body = haven_api::BuildCreate {
        source_blob: haven_api::SourceBlob {
            url: source.source_blob.get_url.clone(),
            checksum: None,
            version: Some(commit.to_string()),
            version_description: None,
        },
        buildpacks: None,
    };
    let resp = call(reqwest::Method::POST, &format!("{api}/apps/{app}/builds"))
        .json(&body)
        .send()
        .map_err(|e| format!("cannot start the build: {e}"))?;
    if !resp.status().is_success() {
        return Err(api_error(resp));
    }
    let build: haven_api::Build = resp.json().map_err(|e| e.to_string())?;
    say("Building source:");
    say("");
    follow_output(&call(reqwest::Method::GET, &build.output_stream_url))?;
    let deadline = Instant::now() + Duration::from_secs(3 * 3600);
    let url = format!("{api}/apps/{app}/builds/{}", build.id);
    loop {
        let resp = call(reqwest::Method::GET, &url)
            .send()
            .map_err(|e| format!("cannot read the build's status: {e}"))?;
        if !resp.status().is_success() {
            return Err(api_error(resp));
        }
        let b: haven_api::Build = resp.json().map_err(|e| e.to_string())?;
        match b.status.as_str() {
            "succeeded" => return Ok(true),
            "failed" => return Ok(false),
            _ if Instant::now() > deadline => return Err("the build did not end".into()),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Copies a build's output stream to stdout line by line as it arrives.
fn follow_output(req: &reqwest::blocking::RequestBuilder) -> Result<(), String> {
    let req = req.try_clone().ok_or("cannot repeat the output request")?;
    let resp = req
        .send()
        .map_err(|e| format!("cannot follow the build output: {e}"))?;
    if !resp.status().is_success() {
        return Err(api_error(resp));
    }
    let reader = std::io::BufReader::new(resp);
    for line in reader.lines() {
        match line {
            Ok(l) => say(&l),
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_judged_by_branch() {
        let c = "a".repeat(40);
        let cases: Vec<(String, Result<&str, &str>)> = vec![
            (format!("{ZERO} {c} refs/heads/main\n"), Ok("main")),
            (format!("{c} {c} refs/heads/master\n"), Ok("master")),
            (
                format!("{ZERO} {c} refs/heads/dev\n"),
                Err("non-deploy branch dev"),
            ),
            (
                format!("{ZERO} {c} refs/tags/v1\n"),
                Err("non-deploy branch refs/tags/v1"),
            ),
            (format!("{c} {ZERO} refs/heads/main\n"), Err("Deleting")),
            (
                format!("{ZERO} {c} refs/heads/main\n{ZERO} {c} refs/heads/master\n"),
                Err("only one"),
            ),
            (
                format!("{ZERO} {c} refs/heads/main\n{ZERO} {c} refs/heads/x\n"),
                Err("non-deploy"),
            ),
            (String::new(), Err("Nothing to deploy")),
            ("garbage\n".into(), Err("unexpected")),
        ];
        for (input, want) in cases {
            match (plan_push(&input), want) {
                (PushPlan::Deploy { commit, branch }, Ok(b)) => {
                    assert_eq!((commit.as_str(), branch.as_str()), (c.as_str(), b));
                }
                (PushPlan::Refuse(msg), Err(part)) => {
                    assert!(msg.contains(part), "{input:?}: {msg}")
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn pkt_lines_carry_their_length() {
        assert_eq!(
            pkt_line("# service=git-receive-pack\n"),
            b"001f# service=git-receive-pack\n"
        );
    }
}

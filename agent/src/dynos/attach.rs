//! Attached one-offs (`hctl run`): the dyno's stdin and output travel over channels to
//! whoever attached (the API bridges them to a WebSocket), so the dyno manager knows
//! nothing about HTTP. The caller going away (its input channel closing) ends the dyno,
//! as on Heroku.

use std::time::Duration;

use haven_raft::command::{Command, DynoTarget};
use haven_raft::model::DynoState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::launch::{disk_quota_bytes, launch_of, spec_of};
use super::supervisor::{disk_over_quota, disk_quota_line};
use super::DynoManager;

/// From the caller to an attached dyno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachInput {
    /// Bytes for the dyno's stdin.
    Stdin(Vec<u8>),
    /// The caller's stdin is closed.
    StdinEof,
}

/// From an attached dyno to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The dyno's exit code. The last message.
    Exit(i32),
}

impl DynoManager {
    /// Runs attached one-off `id` with its stdin from `input` and its output to `output`,
    /// until it exits (its exit code is the last output) or the caller goes away (`input`
    /// closes or `output` is dropped), which stops it.
    pub async fn attach(
        &self,
        id: Uuid,
        mut input: mpsc::Receiver<AttachInput>,
        output: mpsc::Sender<AttachOutput>,
    ) {
        let fail = |msg: String| AttachOutput::Stderr(format!("{msg}\n").into_bytes());
        let first = self.inner.attached.lock().is_ok_and(|mut a| a.insert(id));
        if !first {
            let _ = output
                .send(fail("this dyno is already attached".into()))
                .await;
            return;
        }
        let launch = match self.inner.raft.with_state(|s| launch_of(s, id)) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ = output.send(fail(e)).await;
                return;
            }
        };
        let lease = match self
            .inner
            .cache
            .acquire(&launch.slug_sha, &launch.holders, Some(&launch.stack))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                let _ = output.send(fail(e)).await;
                return;
            }
        };
        let net = match self
            .inner
            .network
            .attach(&id.to_string(), Some(launch.app))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                let _ = output
                    .send(fail(format!("cannot start the dyno: {e}")))
                    .await;
                return;
            }
        };
        let spec = spec_of(id, &launch, &lease, None, true, String::new(), net);
        let logs = self.inner.logs.clone();
        logs.platform(
            launch.app,
            &launch.name,
            &format!("Starting process with command `{}`", launch.command),
        );
        let mut proc = match self.inner.runtime.spawn(&spec) {
            Ok(p) => p,
            Err(e) => {
                self.inner.network.release(&id.to_string());
                let _ = output
                    .send(fail(format!("cannot start the dyno: {e}")))
                    .await;
                return;
            }
        };
        self.set_status(id, |st| st.state = DynoState::Up);
        logs.platform(
            launch.app,
            &launch.name,
            "State changed from starting to up",
        );
        let (tx, mut rx) = mpsc::channel::<AttachOutput>(64);
        let readers: [(
            fn(Vec<u8>) -> AttachOutput,
            Option<Box<dyn AsyncRead + Unpin + Send>>,
        ); 2] = [
            (
                AttachOutput::Stdout,
                proc.take_stdout()
                    .map(|r| Box::new(r) as Box<dyn AsyncRead + Unpin + Send>),
            ),
            (
                AttachOutput::Stderr,
                proc.take_stderr()
                    .map(|r| Box::new(r) as Box<dyn AsyncRead + Unpin + Send>),
            ),
        ];
        for (wrap, reader) in readers {
            let Some(mut reader) = reader else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(wrap(buf[..n].to_vec())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut stdin = proc.take_stdin();
        let mut output_open = true;
        let mut stop_check = tokio::time::interval(Duration::from_millis(500));
        let disk_quota = disk_quota_bytes(&launch.size);
        let mut disk_killed = false;
        let code = loop {
            tokio::select! {
                out = rx.recv(), if output_open => match out {
                    Some(o) => {
                        if output.send(o).await.is_err() {
                            proc.kill();
                        }
                    }
                    None => output_open = false,
                },
                msg = input.recv() => match msg {
                    Some(AttachInput::Stdin(b)) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&b).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Some(AttachInput::StdinEof) => stdin = None,
                    // The caller went away: the dyno ends with it, as on Heroku.
                    None => {
                        proc.terminate();
                        let info = match tokio::time::timeout(Duration::from_secs(10), proc.wait()).await {
                            Ok(i) => i,
                            Err(_) => { proc.kill(); proc.wait().await }
                        };
                        break info.code.unwrap_or(137);
                    }
                },
                info = proc.wait(), if !output_open => {
                    break info.code.unwrap_or_else(|| 128 + info.signal.unwrap_or(9));
                }
                _ = stop_check.tick() => {
                    let stop = self.inner.raft.with_state(|s| s.dynos.get(&id).is_none_or(|d| !d.run));
                    if stop {
                        proc.terminate();
                    }
                    if disk_killed {
                        continue;
                    }
                    if let Some(used) = disk_over_quota(&proc, disk_quota).await {
                        disk_killed = true;
                        let line = disk_quota_line(used, disk_quota);
                        logs.platform(launch.app, &launch.name, &line);
                        logs.platform(launch.app, &launch.name, "Stopping process with SIGKILL");
                        let _ = output.send(fail(line)).await;
                        proc.kill();
                    }
                }
            }
        };
        let _ = output.send(AttachOutput::Exit(code)).await;
        proc.cleanup();
        self.inner.network.release(&id.to_string());
        drop(lease);
        logs.platform(
            launch.app,
            &launch.name,
            &format!("Process exited with status {code}"),
        );
        logs.platform(
            launch.app,
            &launch.name,
            "State changed from up to complete",
        );
        self.set_status(id, |st| {
            st.state = DynoState::Down;
            st.exit_code = Some(code);
        });
        let _ = self
            .inner
            .raft
            .write(Command::StopDynos {
                app: launch.app,
                target: DynoTarget::Dyno(id.to_string()),
            })
            .await;
    }
}

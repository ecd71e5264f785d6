//! Running buildpack scripts: a new process group, output streamed line by line, a
//! deadline after which the whole group is killed.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How a script ended.
pub(crate) enum Ended {
    Exited(ExitStatus),
    TimedOut,
}

/// Longest line passed on; longer ones are cut into pieces.
const MAX_LINE: usize = 64 * 1024;
/// Most stdout bytes kept by a capturing run (detect, release).
const MAX_CAPTURE: usize = 1024 * 1024;
/// After the script exits, how long to wait for the rest of its output.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: plain syscall; a negative pid names the process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// A command for a buildpack script: run directly when executable, else with bash;
/// a clean environment (exactly `env`), stdin from /dev/null, `cwd`, own process group.
pub(crate) fn script_command(
    program: &Path,
    args: &[&std::ffi::OsStr],
    env: &std::collections::BTreeMap<String, String>,
    cwd: &Path,
) -> Command {
    let executable = std::fs::metadata(program)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    let mut cmd = if executable {
        Command::new(program)
    } else {
        let mut c = Command::new("bash");
        c.arg(program);
        c
    };
    cmd.args(args)
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

fn reader_thread(mut r: File, tx: mpsc::Sender<String>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        let send = |l: &mut Vec<u8>| {
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            let s = String::from_utf8_lossy(l).into_owned();
            l.clear();
            tx.send(s).is_ok()
        };
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    if !send(&mut line) {
                        return;
                    }
                } else {
                    line.push(b);
                    if line.len() >= MAX_LINE && !send(&mut line) {
                        return;
                    }
                }
            }
        }
        if !line.is_empty() {
            send(&mut line);
        }
    })
}

/// Runs `cmd` until it exits or `deadline` passes. Output lines go to `out` as they come:
/// stdout and stderr merged, or only stderr when `capture_stdout` (stdout is then
/// returned, up to 1 MiB). When the script exits, what is left of its process group is
/// killed; at the deadline the whole group is killed and `Ended::TimedOut` returned.
pub(crate) fn run(
    mut cmd: Command,
    deadline: Instant,
    capture_stdout: bool,
    out: &mut dyn FnMut(&str),
) -> io::Result<(Ended, Vec<u8>)> {
    let (lines_r, lines_w) = pipe()?;
    let mut cap = None;
    if capture_stdout {
        let (cap_r, cap_w) = pipe()?;
        cmd.stdout(Stdio::from(cap_w));
        cap = Some(cap_r);
    } else {
        cmd.stdout(Stdio::from(lines_w.try_clone()?));
    }
    cmd.stderr(Stdio::from(lines_w));
    let spawned = cmd.spawn();
    // The Command holds the parent's copies of the write ends: drop it so EOF can come.
    drop(cmd);
    let mut child = spawned?;
    let pgid = child.id();

    let (tx, rx) = mpsc::channel();
    let reader = reader_thread(lines_r, tx);
    let capturer = cap.map(|mut r| {
        let (ctx, crx) = mpsc::channel();
        thread::spawn(move || {
            let mut v = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if v.len() < MAX_CAPTURE {
                            v.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = ctx.send(v);
        });
        crx
    });

    let mut status: Option<(ExitStatus, Instant)> = None;
    let mut eof = false;
    let ended = loop {
        let now = Instant::now();
        if status.is_none() && now >= deadline {
            kill_group(pgid);
            let _ = child.wait();
            // Pass on what was already written, briefly.
            let until = Instant::now() + Duration::from_millis(500);
            while let Ok(l) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                out(&l);
            }
            break Ended::TimedOut;
        }
        if let Some((st, at)) = status {
            if eof || now >= at + DRAIN_GRACE {
                break Ended::Exited(st);
            }
        }
        if eof {
            thread::sleep(Duration::from_millis(20));
        } else {
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok(l) => {
                    out(&l);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
            }
        }
        if status.is_none() {
            if let Some(st) = child.try_wait()? {
                // Leftover background processes of the script die with it.
                kill_group(pgid);
                status = Some((st, Instant::now()));
            }
        }
    };
    // The reader ends at EOF; a process that left the group could hold the pipe open,
    // so neither thread is waited for longer than the grace period.
    drop(reader);
    let captured = match capturer {
        Some(crx) => crx.recv_timeout(DRAIN_GRACE).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok((ended, captured))
}

//! The output of a dyno that outlives its agent: stdout and stderr go to one append-only
//! file in the per-dyno dir (`output.log`) instead of pipes to the agent, so a dyno never
//! blocks on, or dies of (SIGPIPE), an agent that is gone; the agent follows the file.
//!
//! The follower keeps its read offset in `output.offset` (a fixed-width number rewritten
//! in place), so the next agent resumes where the last one stopped, and punches the read
//! part of the file into a hole: the disk holds only what no agent has read yet. It
//! wakes on inotify's modify events (a line reaches the log as soon as it is written),
//! and looks again at least every `MAX_POLL` for the dyno's exit; where inotify is not
//! available it polls with back-off.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use super::DynoHandle;

pub const LOG_FILE: &str = "output.log";
const OFFSET_FILE: &str = "output.offset";
/// A line longer than this is cut (Heroku cuts log lines at 10 KB).
const MAX_LINE: usize = 10 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Read data is freed from disk in steps of this size.
const PUNCH_STEP: u64 = 1024 * 1024;
const MIN_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);

/// Creates the empty output file and read offset of a new dyno; returns the descriptor
/// its stdout and stderr write to (append mode).
pub fn create(dir: &Path) -> io::Result<File> {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(LOG_FILE))?;
    write_offset(&open_offset(dir)?, 0)?;
    Ok(out)
}

fn open_offset(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(OFFSET_FILE))
}

fn write_offset(f: &File, offset: u64) -> io::Result<()> {
    f.write_all_at(format!("{offset:020}\n").as_bytes(), 0)
}

fn read_offset(f: &File) -> Option<u64> {
    let mut buf = [0u8; 21];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Follows a dyno's output file, line by line, until the dyno has exited and every line
/// is read.
#[derive(Debug)]
pub struct OutputTail {
    file: File,
    offset_file: File,
    offset: u64,
    punched: u64,
    pending: Vec<u8>,
    handle: DynoHandle,
    poll: Duration,
    done: bool,
    path: PathBuf,
    /// Modify events of the output file, once set up (in the runtime, at the first wait).
    watch: Option<AsyncFd<Watch>>,
    /// Setting up the watch failed: poll instead.
    unwatched: bool,
}

/// An inotify instance, for [`AsyncFd`].
#[derive(Debug)]
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

fn watch(path: &Path) -> Option<AsyncFd<Watch>> {
    tokio::runtime::Handle::try_current().ok()?;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    inotify.add_watch(path, AddWatchFlags::IN_MODIFY).ok()?;
    // SAFETY: the descriptor is the inotify instance's own, which `Watch` owns and never
    // closes or replaces while the `AsyncFd` holds it.
    unsafe { AsyncFd::register(Watch(inotify)) }.ok()
}

impl OutputTail {
    pub(super) fn open(dir: &Path, handle: DynoHandle) -> io::Result<OutputTail> {
        let path = dir.join(LOG_FILE);
        // Writable too: punching a hole needs it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let offset_file = open_offset(dir)?;
        let len = file.metadata()?.len();
        // A missing offset (an older dyno dir): start at the end rather than repeat lines.
        let offset = read_offset(&offset_file).unwrap_or(len).min(len);
        Ok(OutputTail {
            file,
            offset_file,
            offset,
            punched: 0,
            pending: Vec::new(),
            handle,
            poll: MIN_POLL,
            done: false,
            path,
            watch: None,
            unwatched: false,
        })
    }

    /// The next complete lines; `None` once the dyno has exited and all is read. A last
    /// line without a newline comes out at the end.
    pub async fn next_lines(&mut self) -> Option<Vec<String>> {
        if self.done {
            return None;
        }
        loop {
            // Looked at before reading: once the dyno is gone, one more read gets it all.
            let exited = self.handle.has_exited();
            let lines = self.read_available();
            if !lines.is_empty() {
                self.poll = MIN_POLL;
                return Some(lines);
            }
            if exited {
                self.done = true;
                if self.pending.is_empty() {
                    return None;
                }
                let last = std::mem::take(&mut self.pending);
                return Some(vec![line_of(&last)]);
            }
            if self.watch.is_none() && !self.unwatched {
                self.watch = watch(&self.path);
                self.unwatched = self.watch.is_none();
                // Written before the watch began: read again before waiting.
                continue;
            }
            self.wait().await;
        }
    }

    /// Until the file may have grown, or `MAX_POLL` (the dyno may have exited).
    async fn wait(&mut self) {
        let Some(watch) = &self.watch else {
            tokio::time::sleep(self.poll).await;
            self.poll = (self.poll * 2).min(MAX_POLL);
            return;
        };
        if let Ok(Ok(mut ready)) = tokio::time::timeout(MAX_POLL, watch.readable()).await {
            // Only the events' arrival matters: drain them.
            while ready.get_inner().0.read_events().is_ok() {}
            ready.clear_ready();
        }
    }

    /// Reads what is in the file past the offset (a few chunks at most) into lines.
    fn read_available(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        if self.file.metadata().is_ok_and(|m| m.len() < self.offset) {
            // The dyno truncated its own stdout: start over.
            self.offset = 0;
            self.punched = 0;
        }
        for _ in 0..16 {
            let n = match self.file.read_at(&mut buf, self.offset) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.offset += n as u64;
            for &b in &buf[..n] {
                if b == b'\n' {
                    lines.push(line_of(&self.pending));
                    self.pending.clear();
                } else if self.pending.len() < MAX_LINE {
                    self.pending.push(b);
                } else {
                    lines.push(line_of(&self.pending));
                    self.pending.clear();
                    self.pending.push(b);
                }
            }
        }
        if !lines.is_empty() {
            // The pending partial line is read again by the next agent, so the saved
            // offset stops before it.
            let saved = self.offset - self.pending.len() as u64;
            let _ = write_offset(&self.offset_file, saved);
            let free_to = saved - saved % PUNCH_STEP;
            if free_to > self.punched {
                use nix::fcntl::{fallocate, FallocateFlags};
                let _ = fallocate(
                    self.file.as_raw_fd(),
                    FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    0,
                    free_to as i64,
                );
                self.punched = free_to;
            }
        }
        lines
    }
}

fn line_of(bytes: &[u8]) -> String {
    let b = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(b).into_owned()
}

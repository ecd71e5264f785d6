//! Stack images on this node (issue 15): every image the state names is fetched once
//! from a holder into the slug store (checked by its sha256), recorded as held
//! (`AddStackImageHolders`), and unpacked once into `stacks/<sha>/`: the read-only root
//! that builds (the build image) and dynos (the run image) of that stack get instead of
//! the host's `/usr`, `/etc`, ... A background loop does this for every image as soon as
//! it is imported, so a dyno rarely waits; one that starts first fetches it itself.
//!
//! `[dynos] stack = "host"` keeps the host-stack fallback: builds and dynos use the
//! host's own root, as before stack images, whatever is imported. In the default mode
//! (`image`) a stack without an imported image also falls back to the host's root, and
//! says so in build output.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use haven_raft::command::Command;
use haven_raft::model::{stack_image_key, NodeId, StackImage, StackImageKind};
use haven_raft::HavenRaft;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::peer::QuicConnector;
use crate::slugs::{valid_sha256, SlugStore};

/// Where builds' and dynos' root comes from (`[dynos] stack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StackMode {
    /// The app's stack image when one is imported, else the host's root.
    #[default]
    Image,
    /// Always the host's root (the fallback of hosts without stack images).
    Host,
}

/// An unpacked stack image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRoot {
    pub dir: PathBuf,
    pub sha256: String,
    /// The image's OS (`PRETTY_NAME`).
    pub os: String,
}

struct Inner {
    dir: PathBuf,
    store: SlugStore,
    peers: QuicConnector,
    raft: HavenRaft,
    me: NodeId,
    mode: StackMode,
    /// Serializes fetch+unpack.
    busy: tokio::sync::Mutex<()>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct StackRoots {
    inner: Arc<Inner>,
}

impl StackRoots {
    pub fn open(
        dir: &Path,
        store: SlugStore,
        peers: QuicConnector,
        raft: HavenRaft,
        me: NodeId,
        mode: StackMode,
    ) -> std::io::Result<StackRoots> {
        std::fs::create_dir_all(dir)?;
        Ok(StackRoots {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                store,
                peers,
                raft,
                me,
                mode,
                busy: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn mode(&self) -> StackMode {
        self.inner.mode
    }

    /// The dir image `sha` is (or would be) unpacked into.
    pub fn dir_of(&self, sha: &str) -> PathBuf {
        self.inner.dir.join(sha)
    }

    /// The image of `kind` the state names for `stack`, if any.
    pub fn image(&self, stack: &str, kind: StackImageKind) -> Option<StackImage> {
        let key = stack_image_key(stack, kind);
        self.inner
            .raft
            .with_state(|s| s.stack_images.get(&key).cloned())
    }

    /// The root that a build (`Build`) or a dyno (`Run`) of `stack` gets: `None` for the
    /// host's root (host mode, or no image imported for the stack). Fetches and unpacks
    /// the image first if this node has not yet.
    pub async fn root(
        &self,
        stack: &str,
        kind: StackImageKind,
    ) -> Result<Option<StackRoot>, String> {
        if self.inner.mode == StackMode::Host {
            return Ok(None);
        }
        let Some(image) = self.image(stack, kind) else {
            return Ok(None);
        };
        let dir = self.ensure(&image).await?;
        Ok(Some(StackRoot {
            dir,
            sha256: image.sha256,
            os: image.os,
        }))
    }

    /// Makes image `image` unpacked here: fetched from a holder if the store lacks it
    /// (this node is then recorded as a holder), then unpacked once.
    pub async fn ensure(&self, image: &StackImage) -> Result<PathBuf, String> {
        let sha = &image.sha256;
        if !valid_sha256(sha) {
            return Err(format!("bad stack image name {sha:?}"));
        }
        let dir = self.dir_of(sha);
        if dir.is_dir() {
            return Ok(dir);
        }
        let _guard = self.inner.busy.lock().await;
        if dir.is_dir() {
            return Ok(dir);
        }
        if !self.inner.store.has(sha) {
            self.fetch(image).await?;
        }
        let file = self
            .inner
            .store
            .path(sha)
            .ok_or_else(|| format!("bad stack image name {sha:?}"))?;
        let started = std::time::Instant::now();
        let dest = dir.clone();
        let info = tokio::task::spawn_blocking(move || super::unpack::unpack(&file, &dest))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("unpack stack image {}: {e}", short(sha)))?;
        info!(
            stack = %image.stack,
            kind = image.kind.as_str(),
            sha = %short(sha),
            files = info.files,
            bytes = info.bytes,
            ms = started.elapsed().as_millis() as u64,
            "unpacked a stack image"
        );
        Ok(dir)
    }

    async fn fetch(&self, image: &StackImage) -> Result<(), String> {
        let sha = &image.sha256;
        let holders: Vec<(NodeId, String)> = self.inner.raft.with_state(|s| {
            image
                .holders
                .iter()
                .filter(|h| **h != self.inner.me)
                .filter_map(|h| s.nodes.get(h).map(|n| (n.id, n.peer_addr.clone())))
                .collect()
        });
        let started = std::time::Instant::now();
        let from = self
            .inner
            .store
            .fetch_from_any(&self.inner.peers, &holders, sha, true)
            .await?;
        info!(
            sha = %short(sha),
            from,
            bytes = image.bytes,
            ms = started.elapsed().as_millis() as u64,
            "fetched a stack image"
        );
        let _ = self
            .inner
            .raft
            .write(Command::AddStackImageHolders {
                sha256: sha.clone(),
                nodes: vec![self.inner.me],
            })
            .await;
        Ok(())
    }

    /// Every node: fetches and unpacks each image the state names soon after it is
    /// imported (checked every `every`), so that builds and dynos find it ready.
    pub async fn keep_up(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if self.inner.mode == StackMode::Image {
                let images: Vec<StackImage> = self
                    .inner
                    .raft
                    .with_state(|s| s.stack_images.values().cloned().collect());
                for image in images {
                    if self.dir_of(&image.sha256).is_dir() {
                        continue;
                    }
                    if let Err(e) = self.ensure(&image).await {
                        warn!(stack = %image.stack, kind = image.kind.as_str(), error = %e,
                            "could not make a stack image ready; trying again");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The first 12 hex digits, for logs.
pub fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// `PRETTY_NAME` of an unpacked root's `etc/os-release` (or `usr/lib/os-release`).
pub fn os_release(root: &Path) -> Option<String> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        let Ok(text) = std::fs::read_to_string(root.join(p)) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("PRETTY_NAME=") {
                return Some(v.trim_matches('"').to_string());
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn os_release_reads_pretty_name_from_etc_or_usr_lib() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(os_release(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(
            dir.path().join("usr/lib/os-release"),
            "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n",
        )
        .unwrap();
        assert_eq!(
            os_release(dir.path()).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
    }
}

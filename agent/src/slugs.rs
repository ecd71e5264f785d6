//! The slug store: compressed slugs (and other blobs: Postgres backups) this node holds,
//! named by their sha256, and their transfer between nodes over the peer QUIC connections.
//!
//! Wire protocol on a bi-stream whose kind byte is [`StreamKind::SlugPut`]:
//! `sha256 (64 hex bytes) | size (u64 BE) | bytes` → `status (1 byte: 0 ok) | message`.
//! [`StreamKind::SlugGet`]: `sha256 (64 hex bytes)` → `status (0 ok, 1 missing) | size (u64
//! BE) | bytes`. A receiver hashes what it reads and keeps the file only when the hash
//! matches the name; files appear by rename after an fsync, so a holder never serves a
//! partial slug.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use haven_raft::model::{NodeId, NodeStatus};

use crate::peer::{QuicConnector, StreamKind};

/// Attempts per peer when a blob is copied out.
const PUSH_TRIES: usize = 3;

/// Whether `sha` looks like a sha256 in lowercase hex (and so is safe as a file name).
pub fn valid_sha256(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The slugs one node holds.
#[derive(Clone)]
pub struct SlugStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_size: u64,
}

impl SlugStore {
    /// Opens (creating) the store in `dir`; slugs over `max_size` bytes are refused.
    pub fn open(dir: &Path, max_size: u64) -> std::io::Result<SlugStore> {
        std::fs::create_dir_all(dir)?;
        Ok(SlugStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                max_size,
            }),
        })
    }

    /// Where the slug named `sha` lives (whether or not it is there).
    pub fn path(&self, sha: &str) -> Option<PathBuf> {
        valid_sha256(sha).then(|| self.inner.dir.join(format!("{sha}.tar.zst")))
    }

    pub fn has(&self, sha: &str) -> bool {
        self.path(sha).is_some_and(|p| p.is_file())
    }

    /// The blobs held here, with their last modification time.
    pub fn list(&self) -> Vec<(String, std::time::SystemTime)> {
        let Ok(dir) = std::fs::read_dir(&self.inner.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let sha = name.strip_suffix(".tar.zst")?.to_string();
                let modified = e.metadata().ok()?.modified().ok()?;
                valid_sha256(&sha).then_some((sha, modified))
            })
            .collect()
    }

    /// Removes blob `sha` from this node.
    pub fn remove(&self, sha: &str) -> std::io::Result<()> {
        match self.path(sha) {
            Some(p) => std::fs::remove_file(p),
            None => Ok(()),
        }
    }

    /// Adds a slug from a local file (a build's output), moving it in.
    pub fn add_file(&self, sha: &str, file: &Path) -> std::io::Result<PathBuf> {
        let dest = self
            .path(sha)
            .ok_or_else(|| std::io::Error::other(format!("bad slug name {sha:?}")))?;
        std::fs::File::open(file)?.sync_all()?;
        if std::fs::rename(file, &dest).is_err() {
            std::fs::copy(file, &dest)?;
            std::fs::remove_file(file)?;
        }
        Ok(dest)
    }

    /// Reads `size` bytes of slug `sha` from `reader` into the store; checks the hash.
    pub async fn receive(
        &self,
        sha: &str,
        size: u64,
        reader: &mut (impl AsyncRead + Unpin),
    ) -> Result<(), String> {
        self.receive_limited(sha, size, reader, self.inner.max_size)
            .await
    }

    /// Like [`SlugStore::receive`] with a limit of `max` bytes.
    async fn receive_limited(
        &self,
        sha: &str,
        size: u64,
        reader: &mut (impl AsyncRead + Unpin),
        max: u64,
    ) -> Result<(), String> {
        let dest = self
            .path(sha)
            .ok_or_else(|| format!("bad slug name {sha:?}"))?;
        if size > max {
            return Err(format!(
                "slug of {size} bytes is over this node's limit of {max} bytes"
            ));
        }
        if dest.is_file() {
            // Already held: drain the bytes so the sender finishes cleanly.
            tokio::io::copy(&mut reader.take(size), &mut tokio::io::sink())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let tmp = self
            .inner
            .dir
            .join(format!(".{sha}.{}.part", uuid::Uuid::new_v4()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| format!("create {}: {e}", tmp.display()))?;
            let mut hasher = Sha256::new();
            let mut left = size;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = reader
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| format!("read slug: {e}"))?;
                if n == 0 {
                    return Err(format!("slug stream ended {left} bytes early"));
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("write slug: {e}"))?;
                left -= n as u64;
            }
            let got = hex::encode(hasher.finalize());
            if got != sha {
                return Err(format!("slug bytes hash to {got}, not {sha}"));
            }
            file.sync_all().await.map_err(|e| e.to_string())?;
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Answers a [`StreamKind::SlugPut`] stream.
    pub async fn serve_put(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let result = async {
            let (sha, size) = read_header(&mut recv).await?;
            self.receive(&sha, size, &mut recv).await?;
            debug!(%sha, size, "stored a slug from a peer");
            Ok::<_, String>(())
        }
        .await;
        let reply = match &result {
            Ok(()) => vec![0u8],
            Err(e) => {
                warn!(error = %e, "refused a slug from a peer");
                let mut v = vec![1u8];
                v.extend_from_slice(e.as_bytes());
                v
            }
        };
        let _ = send.write_all(&reply).await;
        let _ = send.finish();
        let _ = send.stopped().await;
    }

    /// Answers a [`StreamKind::SlugGet`] stream.
    pub async fn serve_get(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let mut sha = [0u8; 64];
        if recv.read_exact(&mut sha).await.is_err() {
            return;
        }
        let sha = String::from_utf8_lossy(&sha).into_owned();
        let file = match self.path(&sha) {
            Some(p) => tokio::fs::File::open(p).await.ok(),
            None => None,
        };
        let Some(mut file) = file else {
            let _ = send.write_all(&[1]).await;
            let _ = send.finish();
            return;
        };
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let mut head = vec![0u8];
        head.extend_from_slice(&size.to_be_bytes());
        if send.write_all(&head).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy(&mut file, &mut send).await {
            debug!(%sha, error = %e, "slug send interrupted");
            return;
        }
        let _ = send.finish();
        let _ = send.stopped().await;
    }

    /// Sends slug `sha` to the peer at `addr`, which stores it.
    pub async fn push_to(
        &self,
        peers: &QuicConnector,
        addr: &str,
        sha: &str,
    ) -> Result<(), String> {
        let path = self.path(sha).ok_or("bad slug name")?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let size = file.metadata().await.map_err(|e| e.to_string())?.len();
        let (mut send, mut recv) = peers.open(addr, StreamKind::SlugPut).await?;
        let mut head = sha.as_bytes().to_vec();
        head.extend_from_slice(&size.to_be_bytes());
        write_all(&mut send, &head).await?;
        tokio::io::copy(&mut file, &mut send)
            .await
            .map_err(|e| format!("send slug to {addr}: {e}"))?;
        send.finish().map_err(|e| e.to_string())?;
        let reply = recv
            .read_to_end(64 * 1024)
            .await
            .map_err(|e| format!("slug reply from {addr}: {e}"))?;
        match reply.first() {
            Some(0) => Ok(()),
            _ => Err(format!(
                "{addr} refused the slug: {}",
                String::from_utf8_lossy(reply.get(1..).unwrap_or_default())
            )),
        }
    }

    /// Copies blob `sha` (held here) to other up nodes until `copies` nodes (this one
    /// included, at most the nodes up) hold it; each peer gets [`PUSH_TRIES`] attempts,
    /// all at once. Returns the holders; fails when too few took it.
    pub async fn replicate(
        &self,
        raft: &haven_raft::HavenRaft,
        me: NodeId,
        peers: &QuicConnector,
        sha: &str,
        copies: usize,
    ) -> Result<Vec<NodeId>, String> {
        let others: Vec<(NodeId, String, String)> = raft.with_state(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != me && n.status != NodeStatus::Down)
                .map(|n| (n.id, n.name.clone(), n.peer_addr.clone()))
                .collect()
        });
        let want = copies.min(others.len() + 1);
        let mut holders = vec![me];
        let sends = others.iter().map(|(id, name, addr)| async move {
            // A failure may come from a connection the peer's restart left behind: try
            // again on a fresh one.
            let mut r = Err(String::new());
            for _ in 0..PUSH_TRIES {
                r = tokio::time::timeout(
                    std::time::Duration::from_secs(600),
                    self.push_to(peers, addr, sha),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                if r.is_ok() {
                    break;
                }
                peers.forget(addr);
            }
            (*id, name.clone(), r)
        });
        for (id, name, r) in futures::future::join_all(sends).await {
            match r {
                Ok(()) => holders.push(id),
                Err(e) => warn!(node = %name, error = %e, "could not copy a blob"),
            }
        }
        if holders.len() < want {
            return Err(format!(
                "reached only {} of the {want} nodes it must be on",
                holders.len()
            ));
        }
        Ok(holders)
    }

    /// A fresh name in the store's dir for a file being written (`add_file` it after).
    pub fn temp_path(&self) -> PathBuf {
        self.inner
            .dir
            .join(format!(".upload.{}.part", uuid::Uuid::new_v4()))
    }

    /// Fetches slug `sha` from the peer at `addr` into this store.
    pub async fn fetch_from(
        &self,
        peers: &QuicConnector,
        addr: &str,
        sha: &str,
    ) -> Result<(), String> {
        self.fetch_limited(peers, addr, sha, self.inner.max_size)
            .await
    }

    /// Fetches blob `sha` — a slug, or a stack image (`image`: up to [`MAX_IMAGE_BYTES`])
    /// — from the first of `holders` (node, peer address) that sends it: that node, or
    /// why none did.
    pub async fn fetch_from_any(
        &self,
        peers: &QuicConnector,
        holders: &[(NodeId, String)],
        sha: &str,
        image: bool,
    ) -> Result<NodeId, String> {
        let (what, max) = if image {
            ("stack image", MAX_IMAGE_BYTES)
        } else {
            ("slug", self.inner.max_size)
        };
        let mut errors = Vec::new();
        for (id, addr) in holders {
            match self.fetch_limited(peers, addr, sha, max).await {
                Ok(()) => return Ok(*id),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(format!(
            "no holder could send {what} {sha} ({})",
            if errors.is_empty() {
                "no holders known".to_string()
            } else {
                errors.join("; ")
            }
        ))
    }

    async fn fetch_limited(
        &self,
        peers: &QuicConnector,
        addr: &str,
        sha: &str,
        max: u64,
    ) -> Result<(), String> {
        if self.has(sha) {
            return Ok(());
        }
        let (mut send, mut recv) = peers.open(addr, StreamKind::SlugGet).await?;
        write_all(&mut send, sha.as_bytes()).await?;
        let _ = send.finish();
        let mut status = [0u8; 1];
        recv.read_exact(&mut status)
            .await
            .map_err(|e| format!("slug from {addr}: {e}"))?;
        if status[0] != 0 {
            return Err(format!("{addr} does not hold slug {sha}"));
        }
        let mut size = [0u8; 8];
        recv.read_exact(&mut size)
            .await
            .map_err(|e| format!("slug from {addr}: {e}"))?;
        self.receive_limited(sha, u64::from_be_bytes(size), &mut recv, max)
            .await
    }
}

async fn write_all(send: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), String> {
    send.write_all(bytes).await.map_err(|e| e.to_string())
}

async fn read_header(recv: &mut quinn::RecvStream) -> Result<(String, u64), String> {
    let mut sha = [0u8; 64];
    recv.read_exact(&mut sha)
        .await
        .map_err(|e| format!("slug header: {e}"))?;
    let mut size = [0u8; 8];
    recv.read_exact(&mut size)
        .await
        .map_err(|e| format!("slug header: {e}"))?;
    let sha = String::from_utf8_lossy(&sha).into_owned();
    if !valid_sha256(&sha) {
        return Err("bad slug name".into());
    }
    Ok((sha, u64::from_be_bytes(size)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receive_keeps_only_bytes_that_match_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlugStore::open(dir.path(), 1024).unwrap();
        let bytes = b"slug bytes".to_vec();
        let sha = hex::encode(Sha256::digest(&bytes));
        store
            .receive(&sha, bytes.len() as u64, &mut &bytes[..])
            .await
            .unwrap();
        assert!(store.has(&sha));
        assert_eq!(std::fs::read(store.path(&sha).unwrap()).unwrap(), bytes);

        let wrong = "0".repeat(64);
        let err = store
            .receive(&wrong, bytes.len() as u64, &mut &bytes[..])
            .await
            .unwrap_err();
        assert!(err.contains("hash to"), "{err}");
        assert!(!store.has(&wrong));
        // No partial files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);

        let short = store
            .receive(&"1".repeat(64), 100, &mut &bytes[..])
            .await
            .unwrap_err();
        assert!(short.contains("early"), "{short}");
        let big = store
            .receive(&"2".repeat(64), 4096, &mut &bytes[..])
            .await
            .unwrap_err();
        assert!(big.contains("limit"), "{big}");
        assert!(store.path("../../etc/passwd").is_none());
        assert!(store.path(&"A".repeat(64)).is_none());
    }
}

/// The most bytes a stack image may have (uploaded or fetched).
pub const MAX_IMAGE_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// sha256 (hex) of a file's bytes, read in chunks.
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

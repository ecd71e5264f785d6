//! Cluster backups (issue 18, item 4): `hctl cluster:backup FILE` and `havend restore`.
//!
//! A backup is a gzipped tar that `tar tzf` lists:
//! - `manifest.json` ([`Manifest`]): what the file is (`kind`, `format`), the Haven
//!   version that wrote it, the cluster, counts, and the blobs it carries;
//! - `state.json`: the replicated model as of one applied entry (JSON, so a newer Haven
//!   can read an older file field by field);
//! - `releases.jsonl`: every older release the model keeps on disk, one
//!   `{"app": ID, "release": {...}}` per line;
//! - `blobs/SHA256`: with `--slugs`, the compressed slugs and Postgres backup dumps.
//!
//! It holds secrets (config var values, password and token hashes): `hctl` writes it
//! with mode 0600. A file whose `format` is newer than [`FORMAT`] is refused with a
//! message naming both versions.
//!
//! Restoring unpacks it into a new data dir ([`unpack`]): the state, rebased onto the new
//! node (`haven_raft::model::rebase_restored`), and the releases wait in `restore/` for the
//! node's first run (`crate::node`'s `restore_if_new`), which commits them through Raft;
//! the blobs go straight into the node's slug store.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use haven_raft::model::{Release, State};
use haven_raft::HavenRaft;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::slugs::{valid_sha256, SlugStore};

/// What `manifest.json`'s `kind` says.
pub const KIND: &str = "haven-cluster-backup";
/// The format this Haven writes, and the newest it reads.
pub const FORMAT: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub kind: String,
    pub format: u32,
    pub haven_version: String,
    pub created_at: DateTime<Utc>,
    pub cluster_id: String,
    pub cluster_name: String,
    /// The node whose replica was copied.
    pub node: String,
    pub apps: usize,
    pub releases: usize,
    pub blobs: Vec<Blob>,
    /// Blobs the state names that the backup lacks (no live holder sent them).
    #[serde(default)]
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Blob {
    pub sha256: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct ReleaseLine {
    app: Uuid,
    release: Release,
}

/// Refuses a manifest this Haven cannot read.
pub fn check_manifest(m: &Manifest) -> Result<()> {
    if m.kind != KIND {
        bail!("not a Haven cluster backup (its kind is {:?})", m.kind);
    }
    if m.format > FORMAT {
        bail!(
            "this backup has format {} (written by Haven {}); this havend ({}) reads format {} at most: restore it with a newer havend",
            m.format,
            m.haven_version,
            env!("CARGO_PKG_VERSION"),
            FORMAT
        );
    }
    Ok(())
}

/// The blobs a state names: its slugs' and finished Postgres backups'.
pub fn blobs_named(s: &State) -> BTreeSet<String> {
    s.slugs
        .values()
        .map(|sl| sl.sha256.clone())
        .chain(s.backups.values().filter_map(|b| b.sha256.clone()))
        .collect()
}

/// Writes a backup of this node's replica to `out` (call after a read barrier); with
/// `blobs`, the blobs the state names that the store holds go in too (`missing`: those
/// known to be lacking).
pub fn write(
    raft: &HavenRaft,
    node: &str,
    blobs: Option<&SlugStore>,
    missing: Vec<String>,
    out: impl Write,
) -> Result<Manifest> {
    let mut lines = BufWriter::new(tempfile::tempfile().context("create a scratch file")?);
    let mut releases = 0usize;
    let state = raft.export(|app, release| {
        serde_json::to_writer(&mut lines, &ReleaseLine { app, release })?;
        lines.write_all(b"\n")?;
        releases += 1;
        Ok(())
    })?;
    let mut lines = lines.into_inner().context("write the releases")?;
    let state_json = serde_json::to_vec(&state)?;
    let cluster = state
        .cluster
        .as_ref()
        .context("this node has no cluster state yet")?;
    let mut carried = Vec::new();
    if let Some(store) = blobs {
        for sha in blobs_named(&state) {
            if let Some(path) = store.path(&sha).filter(|p| p.is_file()) {
                carried.push((sha, path));
            }
        }
    }
    let mut manifest = Manifest {
        kind: KIND.into(),
        format: FORMAT,
        haven_version: env!("CARGO_PKG_VERSION").into(),
        created_at: Utc::now(),
        cluster_id: cluster.id.to_string(),
        cluster_name: cluster.name.clone(),
        node: node.into(),
        apps: state.apps.len(),
        releases: releases + state.apps.values().map(|a| a.releases.len()).sum::<usize>(),
        blobs: Vec::new(),
        missing,
    };
    let mut files = Vec::new();
    for (sha, path) in carried {
        // A blob removed meanwhile (its app deleted) is left out.
        if let Ok(f) = File::open(&path) {
            let size = f.metadata()?.len();
            manifest.blobs.push(Blob {
                sha256: sha.clone(),
                size,
            });
            files.push((sha, f, size));
        }
    }
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let put = |tar: &mut tar::Builder<_>, name: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(manifest.created_at.timestamp().max(0) as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
            .with_context(|| format!("write {name} into the backup"))
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;
    put(
        &mut tar,
        "manifest.json",
        manifest_json.len() as u64,
        &mut &manifest_json[..],
    )?;
    put(
        &mut tar,
        "state.json",
        state_json.len() as u64,
        &mut &state_json[..],
    )?;
    let len = lines.stream_position()?;
    lines.rewind()?;
    put(&mut tar, "releases.jsonl", len, &mut lines)?;
    for (sha, mut f, size) in files {
        put(
            &mut tar,
            &format!("blobs/{sha}"),
            size,
            &mut (&mut f).take(size),
        )?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(manifest)
}

/// What [`unpack`] leaves in a new data dir for the node's first run.
pub struct Unpacked {
    pub manifest: Manifest,
    pub state: State,
    /// sha256s of the blobs now in the slug store (each checked against its name).
    pub blobs: BTreeSet<String>,
}

/// Unpacks the backup at `from`: checks the manifest first, puts the blobs into
/// `store` (refusing one whose bytes do not match its name) and the releases into
/// `restore_dir`; returns the state as backed up.
pub fn unpack(from: &Path, restore_dir: &Path, store: &SlugStore) -> Result<Unpacked> {
    let file = File::open(from).with_context(|| format!("open {}", from.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut manifest = None;
    let mut state = None;
    let releases = restore_dir.join("releases.jsonl");
    let mut have_releases = false;
    let mut blobs = BTreeSet::new();
    let not_backup = |e: std::io::Error| {
        anyhow::anyhow!(
            "{} is not a Haven cluster backup (a gzipped tar): {e}",
            from.display()
        )
    };
    for entry in tar.entries().map_err(not_backup)? {
        let mut entry = entry.map_err(not_backup)?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if manifest.is_none() && name != "manifest.json" {
            bail!(
                "{} does not begin with a manifest.json: it is not a Haven cluster backup",
                from.display()
            );
        }
        match name.as_str() {
            "manifest.json" => {
                let m: Manifest = serde_json::from_reader(&mut entry)
                    .context("read the backup's manifest.json")?;
                check_manifest(&m)?;
                manifest = Some(m);
            }
            "state.json" => {
                state = Some(
                    serde_json::from_reader(BufReader::new(&mut entry))
                        .context("read the backup's state.json")?,
                );
            }
            "releases.jsonl" => {
                let mut out = File::create(&releases)?;
                std::io::copy(&mut entry, &mut out)?;
                out.sync_all()?;
                have_releases = true;
            }
            other => {
                let Some(sha) = other.strip_prefix("blobs/").filter(|s| valid_sha256(s)) else {
                    bail!("the backup holds an unknown entry {other:?}");
                };
                let tmp = restore_dir.join(format!("{sha}.part"));
                let mut out = File::create(&tmp)?;
                std::io::copy(&mut entry, &mut out)?;
                drop(out);
                let got = sha256_of(&tmp)?;
                if got != sha {
                    bail!("blob {sha} in the backup is damaged (its sha256 is {got})");
                }
                store.add_file(sha, &tmp)?;
                blobs.insert(sha.to_string());
            }
        }
    }
    let manifest = manifest.context("the backup has no manifest.json")?;
    let state = state.context("the backup has no state.json")?;
    if !have_releases {
        File::create(&releases)?;
    }
    Ok(Unpacked {
        manifest,
        state,
        blobs,
    })
}

fn sha256_of(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The releases of `releases.jsonl` in chunks of at most `max` releases of one app each
/// (the lines of an app are together, oldest first, as [`write`] puts them).
pub struct ReleaseChunks {
    lines: std::io::Lines<BufReader<File>>,
    line_no: usize,
    max: usize,
    next: Option<ReleaseLine>,
}

impl ReleaseChunks {
    pub fn open(path: &Path, max: usize) -> Result<ReleaseChunks> {
        let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
        Ok(ReleaseChunks {
            lines: BufReader::new(f).lines(),
            line_no: 0,
            max: max.max(1),
            next: None,
        })
    }

    fn line(&mut self) -> Result<Option<ReleaseLine>> {
        if let Some(l) = self.next.take() {
            return Ok(Some(l));
        }
        for line in self.lines.by_ref() {
            self.line_no += 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line)
                .map(Some)
                .with_context(|| format!("releases.jsonl line {}", self.line_no));
        }
        Ok(None)
    }
}

impl Iterator for ReleaseChunks {
    type Item = Result<(Uuid, Vec<Release>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.line() {
            Ok(Some(l)) => l,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let app = first.app;
        let mut chunk = vec![first.release];
        while chunk.len() < self.max {
            match self.line() {
                Ok(Some(l)) if l.app == app => chunk.push(l.release),
                Ok(Some(l)) => {
                    self.next = Some(l);
                    break;
                }
                Ok(None) => break,
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok((app, chunk)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest(format: u32) -> Manifest {
        Manifest {
            kind: KIND.into(),
            format,
            haven_version: "9.9.9".into(),
            created_at: Utc::now(),
            cluster_id: "c".into(),
            cluster_name: "haven".into(),
            node: "node-0".into(),
            apps: 0,
            releases: 0,
            blobs: Vec::new(),
            missing: Vec::new(),
        }
    }

    #[test]
    fn a_newer_format_is_refused_with_both_versions() {
        check_manifest(&manifest(FORMAT)).unwrap();
        let err = check_manifest(&manifest(FORMAT + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("format {}", FORMAT + 1)), "{err}");
        assert!(err.contains("9.9.9"), "{err}");
        assert!(err.contains("newer havend"), "{err}");
        let mut other = manifest(1);
        other.kind = "something".into();
        assert!(check_manifest(&other)
            .unwrap_err()
            .to_string()
            .contains("not a Haven"));
    }

    #[test]
    fn a_file_that_is_not_a_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SlugStore::open(&dir.path().join("slugs"), 1 << 20).unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        let err = unpack(&junk, dir.path(), &store).err().unwrap().to_string();
        assert!(err.contains("not a Haven cluster backup"), "{err}");
        // A tar without a manifest first.
        let tarred = dir.path().join("t.tgz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&tarred).unwrap(),
            flate2::Compression::fast(),
        );
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_cksum();
        t.append_data(&mut h, "state.json", &b"{}"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
        let err = unpack(&tarred, dir.path(), &store)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }

    #[test]
    fn releases_come_in_chunks_of_one_app() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.jsonl");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let release = |v: u64| Release {
            id: Uuid::new_v4(),
            version: v,
            slug: None,
            config: Default::default(),
            description: format!("v{v}"),
            status: haven_raft::model::ReleaseStatus::Succeeded,
            created_at: Utc::now(),
            user: "admin@haven.local".into(),
        };
        let mut f = File::create(&path).unwrap();
        for (app, v) in [(a, 1), (a, 2), (a, 3), (b, 1)] {
            serde_json::to_writer(
                &mut f,
                &ReleaseLine {
                    app,
                    release: release(v),
                },
            )
            .unwrap();
            f.write_all(b"\n").unwrap();
        }
        let got: Vec<_> = ReleaseChunks::open(&path, 2)
            .unwrap()
            .map(|c| {
                let (app, rs) = c.unwrap();
                (app, rs.iter().map(|r| r.version).collect::<Vec<_>>())
            })
            .collect();
        assert_eq!(got, vec![(a, vec![1, 2]), (a, vec![3]), (b, vec![1])]);
    }
}

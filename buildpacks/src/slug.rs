//! Slugs: zstd-compressed tarballs of a built app directory (the future `/app`).
//!
//! [`pack`] stores the directory's contents with relative names, modes, mtimes and
//! symlinks (hard links become copies; sockets, FIFOs and devices are skipped) and refuses
//! symlinks that resolve outside the directory, so every slug it makes can be extracted.
//! [`extract`] trusts nothing in the file: it refuses absolute names, `..`, special
//! files, writing through symlinks, symlinks and hard links that resolve outside the
//! destination, and duplicate entries, and it builds the tree in a temporary sibling
//! that is renamed into place only when everything checked out.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// What [`pack`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlugInfo {
    /// Lowercase hex sha256 of the compressed file.
    pub sha256: String,
    /// Size of the compressed file in bytes.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SlugError {
    /// The compressed slug is over the limit; no file is left behind.
    #[error("compressed slug is {}, over the {} limit", human_size(*size), human_size(*limit))]
    TooLarge { size: u64, limit: u64 },
    /// An entry that would escape the app directory or is not a plain file, directory or
    /// symlink.
    #[error("unsafe slug entry {path}: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("cannot extract the slug into {}: it already exists and is not an empty directory", dest.display())]
    DestExists { dest: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SlugError {
    let context = context.into();
    move |source| SlugError::Io { context, source }
}

fn unsafe_entry(path: &Path, reason: impl Into<String>) -> SlugError {
    SlugError::Unsafe {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// `1073741824` → `1 GB`, `1288490188` → `1.2 GB` (binary units).
pub fn human_size(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];
    for (unit, scale) in UNITS {
        if n >= scale {
            let v = n as f64 / scale as f64;
            let one = format!("{v:.1}");
            return match one.strip_suffix(".0") {
                Some(whole) => format!("{whole} {unit}"),
                None => format!("{one} {unit}"),
            };
        }
    }
    format!("{n} bytes")
}

/// Hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut r = BufReader::new(File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Counts and hashes what goes to the file; past the limit it stops writing but keeps
/// counting, so the error can say how big the slug would have been.
struct LimitedWriter {
    file: File,
    count: u64,
    limit: u64,
    hash: Sha256,
}

impl Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count += buf.len() as u64;
        if self.count <= self.limit {
            self.file.write_all(buf)?;
            self.hash.update(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Resolves `target` (a symlink's target) from the directory `start` (components relative
/// to `root`), following symlinks already present under `root`. `None` when it leaves
/// `root`, is absolute, or loops.
fn resolve_inside(
    root: &Path,
    start: &[OsString],
    target: &Path,
    hops: &mut u32,
) -> Option<Vec<OsString>> {
    let mut stack = start.to_vec();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                stack.pop()?;
            }
            Component::Normal(n) => {
                stack.push(n.to_owned());
                let p = root.join(stack.iter().collect::<PathBuf>());
                if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    *hops += 1;
                    if *hops > 40 {
                        return None;
                    }
                    let t = fs::read_link(&p).ok()?;
                    stack.pop();
                    stack = resolve_inside(root, &stack, &t, hops)?;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(stack)
}

/// Whether the symlink at `rel` (relative to `root`) pointing at `target` stays inside.
fn symlink_stays_inside(root: &Path, rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let parent: Vec<OsString> = rel
        .parent()
        .map(|p| p.iter().map(|c| c.to_owned()).collect())
        .unwrap_or_default();
    resolve_inside(root, &parent, target, &mut 0).is_some()
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SlugError> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(format!("reading {}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err(format!("reading {}", dir.display())))?;
    names.sort();
    for p in names {
        let meta = fs::symlink_metadata(&p).map_err(io_err(format!("reading {}", p.display())))?;
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&p).map_err(io_err(format!("reading {}", p.display())))?;
            if !symlink_stays_inside(root, &rel, &target) {
                return Err(unsafe_entry(
                    &rel,
                    format!(
                        "symlink to {} points outside the app; make it relative to a path inside the app or remove it",
                        target.display()
                    ),
                ));
            }
            out.push(rel);
        } else if ft.is_dir() {
            out.push(rel);
            collect(root, &p, out)?;
        } else if ft.is_file() {
            out.push(rel);
        }
        // Sockets, FIFOs and device nodes are left out.
    }
    Ok(())
}

/// Packs the contents of `app_dir` into `out_file` (which should not be inside
/// `app_dir`): a zstd-compressed tar with names relative to `app_dir`. Refuses with
/// [`SlugError::TooLarge`] (and removes `out_file`) when the compressed size is over
/// `max_size`, and with [`SlugError::Unsafe`] on a symlink resolving outside `app_dir`.
pub fn pack(app_dir: &Path, out_file: &Path, max_size: u64) -> Result<SlugInfo, SlugError> {
    let mut paths = Vec::new();
    collect(app_dir, app_dir, &mut paths)?;
    let file =
        File::create(out_file).map_err(io_err(format!("creating {}", out_file.display())))?;
    let result = (|| -> Result<LimitedWriter, SlugError> {
        let w = LimitedWriter {
            file,
            count: 0,
            limit: max_size,
            hash: Sha256::new(),
        };
        let enc = zstd::Encoder::new(w, 3).map_err(io_err("starting zstd"))?;
        let mut tar = tar::Builder::new(enc);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        for rel in &paths {
            let full = app_dir.join(rel);
            tar.append_path_with_name(&full, rel)
                .map_err(io_err(format!("adding {} to the slug", rel.display())))?;
        }
        let enc = tar.into_inner().map_err(io_err("finishing the slug tar"))?;
        let mut w = enc.finish().map_err(io_err("finishing zstd"))?;
        w.flush().map_err(io_err("writing the slug"))?;
        Ok(w)
    })();
    let w = match result {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(out_file);
            return Err(e);
        }
    };
    if w.count > max_size {
        let size = w.count;
        drop(w);
        let _ = fs::remove_file(out_file);
        return Err(SlugError::TooLarge {
            size,
            limit: max_size,
        });
    }
    w.file
        .sync_all()
        .map_err(io_err(format!("syncing {}", out_file.display())))?;
    Ok(SlugInfo {
        sha256: hex::encode(w.hash.finalize()),
        size: w.count,
    })
}

/// Checks that every ancestor of `rel` under `root` is a real directory (never a
/// symlink), creating the missing ones.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), SlugError> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(unsafe_entry(
                    rel,
                    "a parent is a symlink or a file (writing through symlinks is refused)",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_err(format!("creating {}", cur.display())))?;
            }
            Err(e) => return Err(io_err(format!("reading {}", cur.display()))(e)),
        }
    }
    Ok(())
}

/// A relative name made only of normal components (`.` dropped); refuses `..` and
/// absolute names.
fn clean_name(raw: &Path) -> Result<PathBuf, SlugError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(raw, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(raw, "absolute path"))
            }
        }
    }
    Ok(out)
}

/// Extracts `slug_file` into `dest` (created; it must not exist or be an empty
/// directory). All or nothing: the tree is built in a temporary sibling of `dest` and
/// renamed into place only when every entry checked out.
pub fn extract(slug_file: &Path, dest: &Path) -> Result<(), SlugError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let dest_is_empty_dir = match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => fs::read_dir(dest)
            .map_err(io_err(format!("reading {}", dest.display())))?
            .next()
            .is_none(),
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(io_err(format!("reading {}", dest.display()))(e)),
    };
    if !dest_is_empty_dir {
        return Err(SlugError::DestExists {
            dest: dest.to_path_buf(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix(".slug-extract-")
        .tempdir_in(&parent)
        .map_err(io_err(format!(
            "creating a temporary directory in {}",
            parent.display()
        )))?;
    let root = tmp.path().to_path_buf();
    let file = File::open(slug_file).map_err(io_err(format!("opening {}", slug_file.display())))?;
    let dec = zstd::Decoder::new(file).map_err(io_err("reading the slug (zstd)"))?;
    let mut archive = tar::Archive::new(dec);
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(io_err("reading the slug (tar)"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading the slug (tar)"))?;
        let raw = entry
            .path()
            .map_err(io_err("reading an entry name"))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let rel = clean_name(&raw)?;
        if rel.as_os_str().is_empty() {
            // The archive root itself (`./`).
            continue;
        }
        ensure_parents(&root, &rel)?;
        let full = root.join(&rel);
        let existing = fs::symlink_metadata(&full).ok();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        match kind {
            tar::EntryType::Directory => {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => return Err(unsafe_entry(&rel, "duplicate entry")),
                    None => fs::create_dir(&full)
                        .map_err(io_err(format!("creating {}", rel.display())))?,
                }
                dirs.push((full, mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if existing.is_some() {
                    return Err(unsafe_entry(&rel, "duplicate entry"));
                }
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&full)
                    .map_err(io_err(format!("creating {}", rel.display())))?;
                io::copy(&mut entry, &mut f)
                    .map_err(io_err(format!("writing {}", rel.display())))?;
                if let Ok(mtime) = entry.header().mtime() {
                    let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
                }
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(format!("setting the mode of {}", rel.display())))?;
            }
            tar::EntryType::Symlink => {
                if existing.is_some() {
                    return Err(unsafe_entry(&rel, "duplicate entry"));
                }
                let target = entry
                    .link_name()
                    .map_err(io_err("reading a symlink target"))?
                    .ok_or_else(|| unsafe_entry(&rel, "symlink without a target"))?
                    .into_owned();
                if !symlink_stays_inside(&root, &rel, &target) {
                    return Err(unsafe_entry(
                        &rel,
                        format!("symlink to {} points outside the slug", target.display()),
                    ));
                }
                std::os::unix::fs::symlink(&target, &full)
                    .map_err(io_err(format!("creating the symlink {}", rel.display())))?;
                links.push((rel, target));
            }
            tar::EntryType::Link => {
                if existing.is_some() {
                    return Err(unsafe_entry(&rel, "duplicate entry"));
                }
                let target_raw = entry
                    .link_name()
                    .map_err(io_err("reading a hard link target"))?
                    .ok_or_else(|| unsafe_entry(&rel, "hard link without a target"))?
                    .into_owned();
                let target = clean_name(&target_raw).map_err(|_| {
                    unsafe_entry(
                        &rel,
                        format!("hard link to {} points outside the slug", target_raw.display()),
                    )
                })?;
                let mut cur = root.clone();
                for c in target.parent().into_iter().flat_map(|p| p.components()) {
                    cur.push(c);
                    if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
                        return Err(unsafe_entry(
                            &rel,
                            "hard link target goes through a symlink or a missing directory",
                        ));
                    }
                }
                let src = root.join(&target);
                if !fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                    return Err(unsafe_entry(
                        &rel,
                        format!(
                            "hard link target {} is not a file extracted earlier",
                            target.display()
                        ),
                    ));
                }
                fs::hard_link(&src, &full)
                    .map_err(io_err(format!("creating the hard link {}", rel.display())))?;
            }
            other => {
                return Err(unsafe_entry(
                    &rel,
                    format!("unsupported entry type {other:?} (device nodes, FIFOs and the like are refused)"),
                ))
            }
        }
    }
    // Symlinks were checked against the tree as it was when each was made; later links
    // can change how a chain resolves, so check them all again on the final tree.
    for (rel, target) in &links {
        if !symlink_stays_inside(&root, rel, target) {
            return Err(unsafe_entry(
                rel,
                format!("symlink to {} resolves outside the slug", target.display()),
            ));
        }
    }
    for (dir, mode) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .map_err(io_err(format!("setting the mode of {}", dir.display())))?;
    }
    if fs::symlink_metadata(dest).is_ok() {
        fs::remove_dir(dest).map_err(io_err(format!("replacing {}", dest.display())))?;
    }
    let kept = tmp.keep();
    if let Err(e) = fs::rename(&kept, dest) {
        let _ = fs::remove_dir_all(&kept);
        return Err(io_err(format!("moving the slug into {}", dest.display()))(
            e,
        ));
    }
    Ok(())
}

//! File-tree helpers for dyno and build dirs: private dirs, ownership, removal.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `chown -R` without following symlinks: hands a tree (an extracted slug, a build's
/// dirs) to the dyno user.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Creates `dir` with mode 0700 (all of its parents too if `parents`).
pub(super) fn create_private_dir(dir: &Path, parents: bool) -> io::Result<()> {
    if parents {
        std::fs::create_dir_all(dir)?;
    } else {
        std::fs::create_dir(dir)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Removes a per-dyno dir, making read-only dirs writable where that stops it (slug
/// copies of a non-root Process-mode agent).
pub(super) fn remove_tree(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    fn make_writable(d: &Path) {
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    make_writable(&e.path());
                }
            }
        }
    }
    make_writable(dir);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a dyno dir");
    }
}

/// Bytes allocated on disk by the tree at `path` (`st_blocks` × 512, so sparse files
/// count what they take, not their length), symlinks not followed, hard links counted
/// once. A missing tree is 0. The dyno owns the tree and may change it while it is
/// walked; the answer is then only as exact as the moment allows, never a reason to
/// follow anything out of the tree.
pub(super) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    total += meta.blocks() * 512;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            // DirEntry::metadata is fstatat(…, AT_SYMLINK_NOFOLLOW): no symlink followed.
            let Ok(m) = e.metadata() else { continue };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtime_allocated_bytes_counts_blocks_not_lengths_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let empty = allocated_bytes(d);
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/data"), vec![7u8; 1 << 20]).unwrap();
        std::fs::hard_link(d.join("sub/data"), d.join("again")).unwrap();
        std::os::unix::fs::symlink("/usr", d.join("usr")).unwrap();
        // A sparse file of 1 GiB takes (almost) nothing.
        let f = std::fs::File::create(d.join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        let used = allocated_bytes(d) - empty;
        assert!((1 << 20..(1 << 20) + (256 << 10)).contains(&used), "{used}");
        assert_eq!(allocated_bytes(&d.join("missing")), 0);
    }
}

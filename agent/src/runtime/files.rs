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

//! Unpacking a stack image (`NAME-run.tar.zst`, `NAME-build.tar.zst`) into a root
//! directory, atomically: into `DEST.part`, renamed to `DEST` once complete.
//!
//! An image is trusted to be a root filesystem, not to be harmless: an entry whose path
//! (or hard link target) leaves the root is refused, and the whole unpack with it;
//! device nodes and fifos are skipped (dynos get their `/dev` from the runtime); setuid
//! and setgid bits are stripped (dynos run unprivileged with `no_new_privs`, so they
//! could not take effect anyway). Run as root, ownership is preserved; otherwise files
//! belong to the caller. Extended attributes (file capabilities) are not unpacked.
//! Directory mtimes are not kept (they change as their entries land).

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// What [`unpack`] put in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackInfo {
    /// Entries created: regular files, directories, symlinks and hard links.
    pub entries: u64,
    /// Regular files among them (hard links not counted).
    pub files: u64,
    /// Bytes of regular file contents.
    pub bytes: u64,
    /// Device nodes and fifos left out.
    pub skipped: u64,
}

/// The temporary directory an unpack into `dest` works in: `dest` with `.part` appended.
pub fn part_dir(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Unpacks the zstd-compressed tar `image` into `dest`, which must not exist yet
/// (`AlreadyExists` otherwise; its parent must exist). Works in [`part_dir`]`(dest)`,
/// removing a leftover one from an interrupted unpack first, and renames it to `dest`
/// only when every entry is in place and synced; on any error the temporary directory
/// is removed and `dest` is not created. An entry whose path or hard link target is
/// absolute or contains `..` fails the unpack (`InvalidData`).
pub fn unpack(image: &Path, dest: &Path) -> io::Result<UnpackInfo> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", dest.display()),
        ));
    }
    let part = part_dir(dest);
    remove_leftover(&part)?;
    fs::create_dir(&part)?;
    let result = unpack_into(image, &part).and_then(|info| {
        sync_dir(&part)?;
        fs::rename(&part, dest)?;
        Ok(info)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&part);
    }
    result
}

fn remove_leftover(part: &Path) -> io::Result<()> {
    match fs::symlink_metadata(part) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(part),
        Ok(_) => fs::remove_file(part),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn unpack_into(image: &Path, root: &Path) -> io::Result<UnpackInfo> {
    let file = fs::File::open(image)?;
    let decoder = zstd::Decoder::new(io::BufReader::new(file))?;
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(crate::runtime::is_root());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    // Cleared from every mode: setuid and setgid (the sticky bit of /tmp stays).
    archive.set_mask(0o6000);
    let mut info = UnpackInfo::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let path = entry.path()?.into_owned();
        let relative = contained(&path)?;
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            info.skipped += 1;
            continue;
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        if kind.is_hard_link() {
            match entry.link_name()? {
                Some(target) => {
                    contained(&target)?;
                }
                None => return Err(invalid(&path, "a hard link without a target")),
            }
        }
        if relative.as_os_str().is_empty() {
            // The root itself (`./`): its mode and owner come from the archive too.
            if kind.is_dir() {
                entry.unpack(root)?;
            }
            continue;
        }
        if !entry.unpack_in(root)? {
            return Err(invalid(&path, "not unpacked inside the root"));
        }
        info.entries += 1;
        if kind.is_file() || kind.is_contiguous() {
            info.files += 1;
            info.bytes += entry.size();
        }
    }
    Ok(info)
}

/// `path` as a relative path of normal components, or `InvalidData` if it is absolute
/// or has a `..` component.
fn contained(path: &Path) -> io::Result<PathBuf> {
    let mut relative = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid(path, "a `..` component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(path, "an absolute path"))
            }
        }
    }
    Ok(relative)
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("stack image entry {} refused: {what}", path.display()),
    )
}

/// Flushes the file system holding `dir` (the unpacked files, before the rename).
fn sync_dir(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = fs::File::open(dir)?;
    // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    /// Writes `path` into the header's name field as is (`set_path` refuses `..`).
    fn raw_name(h: &mut tar::Header, path: &str) {
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
    }

    enum Item<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn image(dir: &Path, items: &[Item]) -> PathBuf {
        let path = dir.join("image.tar.zst");
        let file = fs::File::create(&path).expect("create image");
        let encoder = zstd::Encoder::new(file, 3).expect("encoder");
        let mut builder = tar::Builder::new(encoder);
        for item in items {
            match *item {
                Item::Dir(name, mode) => {
                    let mut h = header(tar::EntryType::Directory, mode, 0);
                    raw_name(&mut h, name);
                    builder.append(&h, io::empty()).expect("dir");
                }
                Item::File(name, mode, data) => {
                    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
                    raw_name(&mut h, name);
                    builder.append(&h, data).expect("file");
                }
                Item::Symlink(name, target) | Item::HardLink(name, target) => {
                    let kind = match item {
                        Item::Symlink(..) => tar::EntryType::Symlink,
                        _ => tar::EntryType::Link,
                    };
                    let mut h = header(kind, 0o777, 0);
                    h.set_link_name(target).expect("link name");
                    raw_name(&mut h, name);
                    builder.append(&h, io::empty()).expect("link");
                }
                Item::Fifo(name) => {
                    let mut h = header(tar::EntryType::Fifo, 0o644, 0);
                    raw_name(&mut h, name);
                    builder.append(&h, io::empty()).expect("fifo");
                }
            }
        }
        builder
            .into_inner()
            .expect("tar")
            .finish()
            .expect("zstd finish");
        path
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn files_dirs_and_links_land_with_their_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = image(
            tmp.path(),
            &[
                Item::Dir("./", 0o755),
                Item::Dir("./usr/", 0o755),
                Item::Dir("./usr/bin/", 0o755),
                Item::Dir("./tmp/", 0o1777),
                Item::Dir("./app/", 0o700),
                Item::File("./usr/bin/tool", 0o755, b"#!/bin/sh\necho hi\n"),
                Item::File("./usr/bin/data", 0o640, b"12345"),
                Item::Symlink("./bin", "usr/bin"),
                Item::Symlink("./usr/bin/abs", "/etc/passwd"),
                Item::HardLink("./usr/bin/tool2", "./usr/bin/tool"),
                Item::Fifo("./usr/bin/fifo"),
            ],
        );
        let dest = tmp.path().join("root");
        let info = unpack(&img, &dest).expect("unpack");
        assert_eq!(
            info,
            UnpackInfo {
                entries: 9,
                files: 2,
                bytes: 18 + 5,
                skipped: 1
            }
        );
        assert_eq!(mode(&dest.join("usr/bin/tool")), 0o755);
        assert_eq!(mode(&dest.join("usr/bin/data")), 0o640);
        assert_eq!(mode(&dest.join("tmp")), 0o1777);
        assert_eq!(mode(&dest.join("app")), 0o700);
        assert_eq!(
            fs::read_link(dest.join("bin")).expect("bin"),
            Path::new("usr/bin")
        );
        // An absolute symlink is kept as it is: it means the image's /etc, not the host's.
        assert_eq!(
            fs::read_link(dest.join("usr/bin/abs")).expect("abs"),
            Path::new("/etc/passwd")
        );
        let a = fs::metadata(dest.join("usr/bin/tool")).expect("tool");
        let b = fs::metadata(dest.join("usr/bin/tool2")).expect("tool2");
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        assert_eq!(
            fs::read(dest.join("bin/tool")).expect("through the symlink"),
            b"#!/bin/sh\necho hi\n"
        );
        assert!(!dest.join("usr/bin/fifo").exists());
        assert!(!part_dir(&dest).exists());
        // An unpacked root is not unpacked over.
        let again = unpack(&img, &dest).expect_err("dest exists");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn escapes_are_refused_and_nothing_is_left() {
        let cases: [&[Item]; 4] = [
            &[Item::Dir("./", 0o755), Item::File("../evil", 0o644, b"x")],
            &[
                Item::Dir("./etc/", 0o755),
                Item::File("./etc/../../evil", 0o644, b"x"),
            ],
            &[Item::File("/evil", 0o644, b"x")],
            &[Item::HardLink("./passwd", "../../../etc/passwd")],
        ];
        for items in cases {
            let tmp = tempfile::tempdir().expect("tempdir");
            let img = image(tmp.path(), items);
            let dest = tmp.path().join("sub").join("root");
            fs::create_dir(tmp.path().join("sub")).expect("sub");
            let err = unpack(&img, &dest).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(!dest.exists());
            assert!(!part_dir(&dest).exists());
            assert!(!tmp.path().join("evil").exists());
            assert!(!tmp.path().join("sub/evil").exists());
        }
    }

    #[test]
    fn a_symlinked_parent_does_not_lead_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).expect("outside");
        let img = image(
            tmp.path(),
            &[
                Item::Symlink("./etc", outside.to_str().expect("utf-8")),
                Item::File("./etc/passwd", 0o644, b"x"),
            ],
        );
        let dest = tmp.path().join("root");
        unpack(&img, &dest).expect_err("refused");
        assert!(!outside.join("passwd").exists());
        assert!(!dest.exists());
        assert!(!part_dir(&dest).exists());
    }

    #[test]
    fn setuid_and_setgid_are_stripped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = image(
            tmp.path(),
            &[
                Item::Dir("./usr/", 0o755),
                Item::Dir("./usr/share/", 0o2775),
                Item::File("./usr/su", 0o4755, b"su"),
                Item::File("./usr/wall", 0o2755, b"wall"),
            ],
        );
        let dest = tmp.path().join("root");
        unpack(&img, &dest).expect("unpack");
        assert_eq!(mode(&dest.join("usr/su")), 0o755);
        assert_eq!(mode(&dest.join("usr/wall")), 0o755);
        assert_eq!(mode(&dest.join("usr/share")), 0o775);
    }

    #[test]
    fn an_interrupted_unpack_is_cleaned_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = image(
            tmp.path(),
            &[Item::Dir("./", 0o755), Item::File("./new", 0o644, b"new")],
        );
        let dest = tmp.path().join("root");
        let part = part_dir(&dest);
        assert_eq!(part, tmp.path().join("root.part"));
        fs::create_dir_all(part.join("half/way")).expect("leftover");
        fs::write(part.join("half/way/file"), b"old").expect("leftover file");
        unpack(&img, &dest).expect("unpack");
        assert!(!part.exists());
        assert!(!dest.join("half").exists());
        assert_eq!(fs::read(dest.join("new")).expect("new"), b"new");
    }

    #[test]
    fn a_corrupt_image_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = tmp.path().join("bad.tar.zst");
        fs::write(&img, b"not zstd at all").expect("write");
        let dest = tmp.path().join("root");
        unpack(&img, &dest).expect_err("corrupt");
        assert!(!dest.exists());
        assert!(!part_dir(&dest).exists());
    }

    /// The images `scripts/build-stack` makes (target/stacks/, or HAVEN_STACKS_DIR):
    /// unpacked, they hold what apps and buildpacks use, and the host's havend runs in
    /// the build image (the build sandbox runs it there). Needs root and the images:
    /// `cargo nextest run -p haven-agent --run-ignored only real_stack_images`.
    #[test]
    #[ignore = "needs root and target/stacks/heroku-24-{run,build}.tar.zst"]
    fn real_stack_images_unpack_and_run_havend() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::var_os("HAVEN_STACKS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/stacks"));
        let tmp = tempfile::tempdir_in(repo.join("target")).expect("tempdir");
        let has = |root: &Path, path: &str| {
            let found = if let Some(name) = path.strip_prefix("usr/lib/*/") {
                fs::read_dir(root.join("usr/lib"))
                    .expect("usr/lib")
                    .any(|d| d.map(|d| d.path().join(name).exists()).unwrap_or(false))
            } else {
                root.join(path).exists()
            };
            assert!(found, "{} lacks /{path}", root.display());
        };
        let run = tmp.path().join("run");
        let info = unpack(&dir.join("heroku-24-run.tar.zst"), &run).expect("run image");
        eprintln!("run image: {info:?}");
        for path in [
            "usr/bin/python3",
            "usr/bin/node",
            "usr/bin/curl",
            "usr/bin/git",
            "bin/bash",
            "usr/lib/*/libpq.so.5",
            "etc/os-release",
            "app",
        ] {
            has(&run, path);
        }
        assert_eq!(mode(&run.join("tmp")), 0o1777);
        let build = tmp.path().join("build");
        let info = unpack(&dir.join("heroku-24-build.tar.zst"), &build).expect("build image");
        eprintln!("build image: {info:?}");
        for path in [
            "usr/bin/gcc",
            "usr/bin/make",
            "usr/bin/pg_config",
            "usr/bin/npm",
            "usr/lib/*/libstdc++.so.6",
        ] {
            has(&build, path);
        }
        let havend = repo.join("target/debug/havend");
        fs::copy(&havend, build.join("havend")).expect("copy havend");
        let out = std::process::Command::new("chroot")
            .arg(&build)
            .args(["/havend", "--version"])
            .output()
            .expect("chroot");
        assert!(
            out.status.success(),
            "havend in the build image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "in the build image: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}

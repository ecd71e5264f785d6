//! Slug packing and safe extraction.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use haven_buildpacks::slug::{self, SlugError};

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, data).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o7777
}

#[test]
fn pack_and_extract_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let app = tmp.path().join("app");
    write(&app.join("bin/run"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&app.join("config/secret.key"), b"k", 0o600);
    write(&app.join("lib/deep/mod.py"), b"x = 1\n", 0o644);
    fs::create_dir_all(app.join("empty")).expect("mkdir");
    fs::set_permissions(app.join("config"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("lib/deep/mod.py", app.join("link.py")).expect("symlink");
    std::os::unix::fs::symlink("../bin", app.join("lib/bin-link")).expect("symlink");
    write(&app.join(".profile.d/x.sh"), b"export A=1\n", 0o644);

    let out = tmp.path().join("slug.tar.zst");
    let info = slug::pack(&app, &out, 1 << 30).expect("pack");
    assert_eq!(info.size, fs::metadata(&out).expect("meta").len());
    assert_eq!(info.sha256, slug::sha256_file(&out).expect("hash"));
    assert_eq!(info.sha256.len(), 64);

    let dest = tmp.path().join("cache/abc");
    slug::extract(&out, &dest).expect("extract");
    assert_eq!(
        fs::read(dest.join("bin/run")).expect("read"),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode(&dest.join("bin/run")), 0o755);
    assert_eq!(mode(&dest.join("config/secret.key")), 0o600);
    assert_eq!(mode(&dest.join("config")), 0o750);
    assert_eq!(mode(&dest.join("lib/deep/mod.py")), 0o644);
    assert!(dest.join("empty").is_dir());
    assert_eq!(
        fs::read_link(dest.join("link.py")).expect("link"),
        Path::new("lib/deep/mod.py")
    );
    assert_eq!(
        fs::read_to_string(dest.join("link.py")).expect("via link"),
        "x = 1\n"
    );
    assert!(dest.join("lib/bin-link/run").is_file());
    assert!(dest.join(".profile.d/x.sh").is_file());
    // mtimes are kept.
    let a = fs::metadata(app.join("lib/deep/mod.py"))
        .expect("m")
        .modified()
        .expect("t");
    let b = fs::metadata(dest.join("lib/deep/mod.py"))
        .expect("m")
        .modified()
        .expect("t");
    assert_eq!(
        a.duration_since(std::time::UNIX_EPOCH)
            .expect("e")
            .as_secs(),
        b.duration_since(std::time::UNIX_EPOCH)
            .expect("e")
            .as_secs()
    );
    // No temporary directory is left next to it.
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("cache"))
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("abc")]);
    // A non-empty destination is refused.
    let err = slug::extract(&out, &dest).expect_err("dest exists");
    assert!(matches!(err, SlugError::DestExists { .. }), "{err}");
    // An empty one is fine.
    let empty = tmp.path().join("emptydest");
    fs::create_dir(&empty).expect("mkdir");
    slug::extract(&out, &empty).expect("extract into an empty dir");
    assert!(empty.join("bin/run").is_file());
}

#[test]
fn pack_refuses_symlinks_leaving_the_app() {
    let tmp = tempfile::tempdir().expect("tmp");
    let app = tmp.path().join("app");
    fs::create_dir_all(&app).expect("mkdir");
    std::os::unix::fs::symlink("/etc", app.join("etc")).expect("symlink");
    let out = tmp.path().join("s.tar.zst");
    let err = slug::pack(&app, &out, 1 << 30).expect_err("refused");
    assert!(matches!(err, SlugError::Unsafe { .. }), "{err}");
    assert!(err.to_string().contains("points outside the app"), "{err}");
    assert!(!out.exists());
}

#[test]
fn pack_refuses_slugs_over_the_limit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let app = tmp.path().join("app");
    // Incompressible bytes (xorshift).
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let data: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write(&app.join("blob.bin"), &data, 0o644);
    let out = tmp.path().join("s.tar.zst");
    let err = slug::pack(&app, &out, 64 * 1024).expect_err("too large");
    match &err {
        SlugError::TooLarge { size, limit } => {
            assert!(*size > 250 * 1024, "{size}");
            assert_eq!(*limit, 64 * 1024);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("compressed slug is 25"), "{msg}");
    assert!(msg.ends_with(" KB, over the 64 KB limit"), "{msg}");
    assert!(!out.exists());
    assert_eq!(slug::human_size(1_288_490_189), "1.2 GB");
    assert_eq!(slug::human_size(1 << 30), "1 GB");
    slug::pack(&app, &out, 1 << 20).expect("fits under 1 MB");
}

/// One raw tar entry, names written byte for byte (the tar crate's setters refuse `..`).
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn raw(name: &'static str, kind: tar::EntryType, link: &'static str) -> Raw<'static> {
    Raw {
        name,
        kind,
        link,
        data: b"",
    }
}

fn file(name: &'static str) -> Raw<'static> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data: b"pwned\n",
    }
}

fn craft(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().expect("gnu");
            g.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            g.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, e.data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    zstd::encode_all(&tar[..], 3).expect("zstd")
}

fn assert_refused(entries: &[Raw], why: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let slug_file = tmp.path().join("evil.tar.zst");
    fs::write(&slug_file, craft(entries)).expect("write");
    let parent = tmp.path().join("slugs");
    let dest = parent.join("evil");
    let err = slug::extract(&slug_file, &dest).expect_err(why);
    assert!(matches!(err, SlugError::Unsafe { .. }), "{why}: {err}");
    assert!(!dest.exists(), "{why}: a partial destination was left");
    let left: Vec<_> = fs::read_dir(&parent).expect("ls").collect();
    assert!(left.is_empty(), "{why}: temporary files left: {left:?}");
    assert!(!tmp.path().join("x").exists(), "{why}: wrote outside");
    assert!(!parent.join("x").exists(), "{why}: wrote outside");
}

#[test]
fn extract_refuses_entries_escaping_the_destination() {
    use tar::EntryType::*;
    let ok = file("app.py");
    assert_refused(&[file("../x")], "parent dir");
    assert_refused(&[file("a/../../x")], "nested parent dir");
    assert_refused(&[file("/tmp/haven-slug-abs-test")], "absolute path");
    assert!(!Path::new("/tmp/haven-slug-abs-test").exists());
    assert_refused(
        &[raw("etc", Symlink, "/etc"), file("etc/haven-slug-test")],
        "symlink to /etc, then a file through it",
    );
    assert!(!Path::new("/etc/haven-slug-test").exists());
    assert_refused(&[raw("up", Symlink, "../..")], "relative symlink leaving");
    assert_refused(
        &[
            raw("d", Directory, ""),
            raw("d/l", Symlink, "."),
            raw("d/l/../../x", Symlink, "y"),
        ],
        "dot-dot through a symlink",
    );
    // A chain that only escapes once a later link exists.
    assert_refused(
        &[
            raw("d", Directory, ""),
            raw("c", Symlink, "d/b/.."),
            raw("d/b", Symlink, ".."),
        ],
        "symlink chain",
    );
    // Writing through a symlink that stays inside is refused too.
    assert_refused(
        &[raw("d", Directory, ""), raw("l", Symlink, "d"), file("l/x")],
        "file through an inner symlink",
    );
    assert_refused(&[ok, raw("h", Link, "../outside")], "hard link leaving");
    assert_refused(
        &[raw("h", Link, "/etc/passwd")],
        "hard link to an absolute path",
    );
    assert_refused(&[raw("null", Char, "")], "character device");
    assert_refused(&[raw("sda", Block, "")], "block device");
    assert_refused(&[raw("fifo", Fifo, "")], "fifo");
    assert_refused(&[file("dup"), file("dup")], "duplicate entry");
}

#[test]
fn extract_accepts_inner_hard_links() {
    use tar::EntryType::*;
    let tmp = tempfile::tempdir().expect("tmp");
    let slug_file = tmp.path().join("ok.tar.zst");
    fs::write(
        &slug_file,
        craft(&[
            raw("./", Directory, ""),
            raw("./d", Directory, ""),
            file("./d/f"),
            raw("./h", Link, "d/f"),
            raw("./l", Symlink, "d/f"),
        ]),
    )
    .expect("write");
    let dest = tmp.path().join("out");
    slug::extract(&slug_file, &dest).expect("extract");
    assert_eq!(fs::read(dest.join("h")).expect("h"), b"pwned\n");
    assert_eq!(fs::read(dest.join("l")).expect("l"), b"pwned\n");
}

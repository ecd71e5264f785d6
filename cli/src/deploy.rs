//! `hctl deploy [DIR]`: packs a directory into a gzipped tarball (leaving out `.git` and
//! what `.slugignore` names), uploads it as a build source, starts a build and streams its
//! output, like a `git push` does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use haven_api as w;
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::client::{print_json, Api};

/// One `.slugignore` rule (a small subset of `.gitignore`: `*`, `?`, a trailing `/` for
/// directories only, a leading `/` anchoring at the root; a pattern without `/` matches a
/// name at any depth).
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: String,
    anchored: bool,
    dir_only: bool,
}

pub fn parse_rules(text: &str) -> Vec<Rule> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let dir_only = l.ends_with('/');
            let l = l.trim_end_matches('/');
            let anchored = l.starts_with('/') || l.contains('/');
            Rule {
                pattern: l.trim_start_matches('/').to_string(),
                anchored,
                dir_only,
            }
        })
        .filter(|r| !r.pattern.is_empty())
        .collect()
}

/// Glob match of one path (or name) against a pattern: `*` and `?` do not cross `/`.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match (pat.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pat[1..], text) || (!text.is_empty() && text[0] != b'/' && glob(pat, &text[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pat[1..], &text[1..]),
        (Some(p), Some(c)) if p == c => glob(&pat[1..], &text[1..]),
        _ => false,
    }
}

/// Whether `rel` (a path relative to the root, `/`-separated) is ignored.
pub fn ignored(rules: &[Rule], rel: &str, is_dir: bool) -> bool {
    rules.iter().any(|r| {
        if r.dir_only && !is_dir {
            return false;
        }
        if r.anchored {
            glob(r.pattern.as_bytes(), rel.as_bytes())
        } else {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            glob(r.pattern.as_bytes(), name.as_bytes())
        }
    })
}

/// Packs `dir` into a gzipped tar in a temp file; returns the file and its sha256.
pub fn pack(dir: &Path) -> Result<(tempfile::NamedTempFile, String, usize)> {
    let rules = match std::fs::read_to_string(dir.join(".slugignore")) {
        Ok(t) => parse_rules(&t),
        Err(_) => Vec::new(),
    };
    let out = tempfile::NamedTempFile::new().context("create a temp file")?;
    let gz = flate2::write::GzEncoder::new(out.reopen()?, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut count = 0;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .with_context(|| format!("read {}", full.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let rel_path = rel.join(&name);
            let rel_str = rel_path.to_string_lossy().replace('\\', "/");
            let ft = e.file_type()?;
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            if ignored(&rules, &rel_str, ft.is_dir()) {
                continue;
            }
            if ft.is_dir() {
                tar.append_dir(&rel_path, e.path())?;
                stack.push(rel_path);
            } else if ft.is_file() || ft.is_symlink() {
                tar.append_path_with_name(e.path(), &rel_path)
                    .with_context(|| format!("pack {}", e.path().display()))?;
                count += 1;
            }
        }
    }
    tar.into_inner()?.finish()?;
    let bytes = std::fs::read(out.path())?;
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((out, sha, count))
}

/// Uploads `dir` and builds it; prints the build output as it comes. Returns whether the
/// build succeeded.
pub fn deploy(api: &Api, app: &str, dir: &Path, json_out: bool) -> Result<bool> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (file, sha, count) = pack(dir)?;
    if count == 0 {
        bail!("{} has no files to deploy", dir.display());
    }
    let size = file.as_file().metadata()?.len();
    if !json_out {
        eprintln!(
            "Packing {} ({count} files, {:.1} KB)... done",
            dir.display(),
            size as f64 / 1024.0
        );
    }
    let source: w::Source = api.call(Method::POST, "/sources")?.value;
    api.put_file(&source.source_blob.put_url, file.reopen()?)?;
    let body = w::BuildCreate {
        source_blob: w::SourceBlob {
            url: source.source_blob.get_url,
            checksum: Some(format!("SHA256:{sha}")),
            ..w::SourceBlob::default()
        },
        buildpacks: None,
    };
    let build: w::Build = api
        .call_with(Method::POST, &format!("/apps/{app}/builds"), &body)?
        .value;
    api.stream_lines(&build.output_stream_url, |line| {
        if json_out {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    })?;
    // The output ends after the build node has committed the result (it retries through
    // leader changes for a minute), so the status settles at once unless the cluster
    // has lost its quorum.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        let b = api.get::<w::Build>(&format!("/apps/{app}/builds/{}", build.id))?;
        if b.value.status != "pending" {
            break b;
        }
        if Instant::now() > deadline {
            bail!(
                "build {} ended but its result is not recorded yet (is the cluster up?); see hctl builds:info {} -a {app}",
                build.id,
                build.id
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if json_out {
        print_json(&last)?;
    }
    Ok(last.value.status == "succeeded")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slugignore_rules() {
        let rules = parse_rules("# comment\n*.psd\n/docs\nlogs/\ntest/fixtures\n\n");
        let cases = [
            ("a.psd", false, true),
            ("art/b.psd", false, true),
            ("docs", true, true),
            ("src/docs", true, false),
            ("logs", true, true),
            ("logs", false, false),
            ("test/fixtures", true, true),
            ("app.py", false, false),
        ];
        for (path, dir, want) in cases {
            assert_eq!(ignored(&rules, path, dir), want, "{path}");
        }
    }

    #[test]
    fn pack_leaves_out_git_and_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir_all(root.join("big")).unwrap();
        std::fs::write(root.join("big/blob.bin"), "x").unwrap();
        std::fs::write(root.join(".slugignore"), "big/\n").unwrap();
        std::fs::write(root.join("app.py"), "print(1)").unwrap();
        let (file, sha, count) = pack(root).unwrap();
        assert_eq!(count, 2, ".slugignore and app.py");
        assert_eq!(sha.len(), 64);
        let gz = flate2::read::GzDecoder::new(file.reopen().unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".slugignore", "app.py"]);
    }
}

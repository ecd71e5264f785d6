//! `.slugignore`: paths dropped from the source before compiling.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

struct Rule {
    pattern: String,
    anchored: bool,
    dir_only: bool,
}

fn parse(text: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        // Negation is not supported by Heroku's slug compiler either: such lines are ignored.
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut p = line;
        let dir_only = p.ends_with('/');
        p = p.trim_end_matches('/');
        let anchored = p.contains('/');
        p = p.trim_start_matches('/');
        if p.is_empty() {
            continue;
        }
        rules.push(Rule {
            pattern: p.to_string(),
            anchored,
            dir_only,
        });
    }
    rules
}

/// Glob match: `*` and `?` stay within a path component, `**` crosses `/` (and `**/`
/// may match nothing), `[abc]`, `[a-z]`, `[!x]` classes, `\` escapes.
pub(crate) fn glob_match(p: &[u8], t: &[u8]) -> bool {
    if p.is_empty() {
        return t.is_empty();
    }
    match p[0] {
        b'*' if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            if let Some(after) = rest.strip_prefix(b"/") {
                // `**/x`: x at this level or any deeper one.
                if glob_match(after, t) {
                    return true;
                }
                (0..t.len()).any(|i| t[i] == b'/' && glob_match(after, &t[i + 1..]))
            } else {
                (0..=t.len()).any(|i| glob_match(rest, &t[i..]))
            }
        }
        b'*' => {
            let rest = &p[1..];
            let mut i = 0;
            loop {
                if glob_match(rest, &t[i..]) {
                    return true;
                }
                if i == t.len() || t[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        b'?' => !t.is_empty() && t[0] != b'/' && glob_match(&p[1..], &t[1..]),
        b'[' => {
            let Some((&c, trest)) = t.split_first() else {
                return false;
            };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'!') | Some(b'^'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != b']' || first) {
                first = false;
                let lo = p[i];
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
                    let hi = p[i + 2];
                    matched |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= p.len() {
                // No closing bracket: a literal `[`.
                return c == b'[' && glob_match(&p[1..], trest);
            }
            matched != negate && c != b'/' && glob_match(&p[i + 1..], trest)
        }
        b'\\' if p.len() > 1 => !t.is_empty() && t[0] == p[1] && glob_match(&p[2..], &t[1..]),
        c => !t.is_empty() && t[0] == c && glob_match(&p[1..], &t[1..]),
    }
}

fn matches(rules: &[Rule], rel: &str, is_dir: bool) -> bool {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    rules.iter().any(|r| {
        if r.dir_only && !is_dir {
            return false;
        }
        let target = if r.anchored { rel } else { base };
        glob_match(r.pattern.as_bytes(), target.as_bytes())
    })
}

fn walk(root: &Path, dir: &Path, rules: &[Rule], removed: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let meta = fs::symlink_metadata(&path)?;
        let is_dir = meta.is_dir();
        if matches(rules, &rel.to_string_lossy(), is_dir) {
            if is_dir {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            removed.push(rel);
        } else if is_dir {
            walk(root, &path, rules, removed)?;
        }
    }
    Ok(())
}

/// Removes what `build_dir/.slugignore` names and returns the removed paths (relative to
/// `build_dir`, a removed directory listed once). The format is gitignore-like: `#`
/// comments, blank lines, globs (`*`, `?`, `**`, `[...]`), a trailing `/` for directories
/// only, and a pattern with a `/` (a leading one included) anchored at the root; one
/// without matches a name at any depth. `!` negations are ignored. Symlinks are removed,
/// never followed. No `.slugignore`: nothing happens.
pub fn apply(build_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let file = build_dir.join(".slugignore");
    let text = match fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let rules = parse(&text);
    let mut removed = Vec::new();
    if !rules.is_empty() {
        walk(build_dir, build_dir, &rules, &mut removed)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("*.psd", "a.psd"));
        assert!(!m("*.psd", "dir/a.psd"));
        assert!(m("docs/*.md", "docs/x.md"));
        assert!(!m("docs/*.md", "docs/sub/x.md"));
        assert!(m("docs/**/*.md", "docs/sub/deep/x.md"));
        assert!(m("docs/**/*.md", "docs/x.md"));
        assert!(m("**/tmp", "tmp"));
        assert!(m("**/tmp", "a/b/tmp"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("\\*x", "*x"));
        assert!(!m("\\*x", "ax"));
        assert!(m("spec", "spec"));
        assert!(!m("spec", "specs"));
    }
}

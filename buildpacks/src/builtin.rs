//! The built-in classic buildpacks, embedded in the binary and written out by
//! [`install_builtins`](crate::install_builtins).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Detection order of the built-in buildpacks (directory names under `builtin_dir`).
pub const ORDER: &[&str] = &[
    "python", "nodejs", "go", "ruby", "java", "static", "procfile",
];

macro_rules! bp {
    ($name:literal) => {
        [
            (
                concat!($name, "/bin/detect"),
                include_str!(concat!("../builtin/", $name, "/bin/detect")),
            ),
            (
                concat!($name, "/bin/compile"),
                include_str!(concat!("../builtin/", $name, "/bin/compile")),
            ),
            (
                concat!($name, "/bin/release"),
                include_str!(concat!("../builtin/", $name, "/bin/release")),
            ),
        ]
    };
}

/// Every embedded file: (path relative to `builtin_dir`, contents).
fn files() -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    v.extend(bp!("python"));
    v.extend(bp!("nodejs"));
    v.extend(bp!("go"));
    v.extend(bp!("ruby"));
    v.extend(bp!("java"));
    v.extend(bp!("static"));
    v.extend(bp!("procfile"));
    v.push((
        "static/lib/serve.py",
        include_str!("../builtin/static/lib/serve.py"),
    ));
    v
}

/// Writes the built-in buildpacks under `dir` (`dir/NAME/bin/{detect,compile,release}`,
/// mode 0755 on `bin/*`). Overwrites what is there, each file replaced atomically, so it
/// is safe to call at every start.
pub fn install(dir: &Path) -> io::Result<()> {
    for (rel, text) in files() {
        let path = dir.join(rel);
        let parent = path
            .parent()
            .ok_or_else(|| io::Error::other("embedded path without parent"))?;
        fs::create_dir_all(parent)?;
        let exec = rel.contains("/bin/");
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
            std::process::id()
        ));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.set_permissions(fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
        }
        fs::rename(&tmp, &path)?;
    }
    Ok(())
}

//! TEMPORARY stub (replaced by the real runner).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub struct BuildRequest {
    pub build_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub work_dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
    pub builtin_dir: PathBuf,
    pub stack: String,
    pub compile_timeout: Duration,
}
pub struct BuildOutcome {
    pub process_types: BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
    pub frameworks: Vec<String>,
}
#[derive(Debug)]
pub struct BuildError(pub String);
impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn run(req: &BuildRequest, out: &mut dyn FnMut(&str)) -> Result<BuildOutcome, BuildError> {
    for bp in &req.buildpacks {
        let st = std::process::Command::new(format!("{bp}/bin/compile"))
            .arg(&req.build_dir)
            .arg(&req.cache_dir)
            .arg(&req.work_dir)
            .output()
            .map_err(|e| BuildError(e.to_string()))?;
        for l in String::from_utf8_lossy(&st.stdout).lines() {
            out(l);
        }
        if !st.status.success() {
            return Err(BuildError("compile failed".into()));
        }
    }
    out("-----> Python app detected");
    let text = std::fs::read_to_string(req.build_dir.join("Procfile"))
        .map_err(|e| BuildError(e.to_string()))?;
    let process_types: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    out("-----> Discovering process types");
    out(&format!(
        "       Procfile declares types -> {}",
        process_types.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    Ok(BuildOutcome {
        process_types,
        buildpacks: vec![],
        frameworks: vec!["Python".into()],
    })
}
pub fn install_builtins(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}
pub mod slug {
    use std::path::Path;
    pub struct SlugInfo {
        pub sha256: String,
        pub size: u64,
    }
    #[derive(Debug)]
    pub struct SlugError(pub String);
    impl std::fmt::Display for SlugError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    pub fn pack(a: &Path, o: &Path, _m: u64) -> Result<SlugInfo, SlugError> {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C '{}' -cf - . | zstd -q -o '{}'",
                a.display(),
                o.display()
            ))
            .status()
            .map_err(|e| SlugError(e.to_string()))?;
        if !st.success() {
            return Err(SlugError("pack".into()));
        }
        let out = std::process::Command::new("sha256sum")
            .arg(o)
            .output()
            .map_err(|e| SlugError(e.to_string()))?;
        let sha = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(SlugInfo {
            sha256: sha,
            size: std::fs::metadata(o).map(|m| m.len()).unwrap_or(0),
        })
    }
    pub fn extract(a: &Path, o: &Path) -> Result<(), SlugError> {
        std::fs::create_dir_all(o).map_err(|e| SlugError(e.to_string()))?;
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc '{}' | tar -C '{}' -xf -",
                a.display(),
                o.display()
            ))
            .status()
            .map_err(|e| SlugError(e.to_string()))?;
        if st.success() {
            Ok(())
        } else {
            Err(SlugError("extract".into()))
        }
    }
}

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
pub fn run(_req: &BuildRequest, _out: &mut dyn FnMut(&str)) -> Result<BuildOutcome, BuildError> {
    Err(BuildError("stub".into()))
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
    pub fn pack(_a: &Path, _o: &Path, _m: u64) -> Result<SlugInfo, SlugError> {
        Err(SlugError("stub".into()))
    }
    pub fn extract(_a: &Path, _o: &Path) -> Result<(), SlugError> {
        Err(SlugError("stub".into()))
    }
}

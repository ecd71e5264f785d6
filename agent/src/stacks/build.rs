//! `havend stack:build NAME`: a stack's run and build images, made with Debian's
//! `mmdebstrap` from the package lists in `stacks/NAME/` (compiled in).
//!
//! Each image is one `mmdebstrap` run (variant `apt`: Debian's Essential set and apt, then
//! the listed packages without Recommends, no docs or man pages) whose tar output is
//! streamed through zstd into `OUT/NAME-run.tar.zst` or `OUT/NAME-build.tar.zst` (via a
//! `.part` file, renamed when complete) and read on the way: the unpacked size, the OS
//! release, and the checks that the image is ready for Haven (empty `/app`, `/tmp` with
//! mode 1777, empty `/etc/resolv.conf` and `/etc/hostname`, no apt lists, an
//! `/etc/os-release`). Downloaded packages are kept in a cache directory between runs,
//! so the build image (the run packages plus the build packages) downloads only what
//! the run image lacks.
//!
//! `SOURCE_DATE_EPOCH` (from the environment, or a fixed default) makes two builds from
//! the same mirror content byte-identical as far as mmdebstrap allows; the mirror moves
//! on, so the sha256 is not stable over time. Haven imports one image file and
//! replicates it, so every node runs the same bytes either way.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// The Debian mirror images are built from unless `--mirror` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// File mtimes are clamped to this when `SOURCE_DATE_EPOCH` is not set (2025-08-09, the
/// release of Debian 13): a fixed value, so that rebuilding gives the same tar.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_754_697_600;

/// The zstd level of the image files.
const ZSTD_LEVEL: i32 = 10;

/// A stack havend can build: its name, its Debian suite, and its package lists.
#[derive(Debug)]
pub struct Stack {
    pub name: &'static str,
    /// The Debian suite its images are built from.
    pub suite: &'static str,
    /// `stacks/NAME/run.packages`.
    pub run_packages: &'static str,
    /// `stacks/NAME/build.packages`: installed on top of the run packages.
    pub build_packages: &'static str,
}

/// The stacks havend can build, newest first (the names of `haven_catalog::STACKS`).
pub const STACKS: &[Stack] = &[
    Stack {
        name: "heroku-24",
        suite: "trixie",
        run_packages: include_str!("../../../stacks/heroku-24/run.packages"),
        build_packages: include_str!("../../../stacks/heroku-24/build.packages"),
    },
    Stack {
        name: "heroku-22",
        suite: "bookworm",
        run_packages: include_str!("../../../stacks/heroku-22/run.packages"),
        build_packages: include_str!("../../../stacks/heroku-22/build.packages"),
    },
];

/// The stack named `name`.
pub fn stack(name: &str) -> Option<&'static Stack> {
    STACKS.iter().find(|s| s.name == name)
}

/// One of a stack's two images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageKind {
    /// What dynos run on.
    Run,
    /// What builds run in: the run image plus compilers and headers.
    Build,
}

impl ImageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Run => "run",
            ImageKind::Build => "build",
        }
    }
}

/// The file name of a stack's image: `heroku-24-run.tar.zst`.
pub fn image_file_name(stack: &str, kind: ImageKind) -> String {
    format!("{stack}-{}.tar.zst", kind.as_str())
}

impl Stack {
    /// The packages of one of its images (the build image's include the run image's).
    pub fn packages(&self, kind: ImageKind) -> Vec<&'static str> {
        let mut list = parse_packages(self.run_packages);
        if kind == ImageKind::Build {
            list.extend(parse_packages(self.build_packages));
        }
        list
    }
}

/// A package list: one package per line, `#` starts a comment.
pub fn parse_packages(list: &str) -> Vec<&str> {
    list.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Images {
    Run,
    Build,
    Both,
}

/// `havend stack:build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The stack (heroku-24, heroku-22).
    pub name: String,
    /// Where NAME-run.tar.zst and NAME-build.tar.zst are written.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// The Debian mirror.
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub mirror: String,
    /// The Debian suite (default: the stack's, trixie for heroku-24, bookworm for heroku-22).
    #[arg(long)]
    pub suite: Option<String>,
    /// Which images to build.
    #[arg(long, value_enum, default_value_t = Images::Both)]
    pub image: Images,
    /// Where downloaded packages are kept between builds (default: OUT/.debs/SUITE).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Show apt's and dpkg's output too.
    #[arg(long)]
    pub verbose: bool,
}

/// What [`build_image`] made.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub path: PathBuf,
    /// Of the compressed file.
    pub sha256: String,
    /// Of the compressed file.
    pub size: u64,
    pub contents: Contents,
    pub elapsed: Duration,
}

/// Runs `havend stack:build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let Some(stack) = stack(&args.name) else {
        let names: Vec<&str> = STACKS.iter().map(|s| s.name).collect();
        bail!(
            "unknown stack {:?}: havend builds {}",
            args.name,
            names.join(", ")
        );
    };
    let suite = args.suite.as_deref().unwrap_or(stack.suite);
    let mirror = args.mirror.trim_end_matches('/');
    check_mmdebstrap()?;
    check_mirror(mirror, suite)?;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => args.out.join(".debs").join(suite),
    };
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let cache = cache
        .canonicalize()
        .with_context(|| format!("resolving {}", cache.display()))?;
    let kinds: &[ImageKind] = match args.image {
        Images::Run => &[ImageKind::Run],
        Images::Build => &[ImageKind::Build],
        Images::Both => &[ImageKind::Run, ImageKind::Build],
    };
    for &kind in kinds {
        println!(
            "-----> Building the {} {} image from Debian {suite} ({mirror}) ...",
            stack.name,
            kind.as_str()
        );
        let info = build_image(stack, suite, mirror, kind, &args.out, &cache, args.verbose)?;
        print_info(&info);
    }
    Ok(())
}

fn print_info(info: &ImageInfo) {
    let c = &info.contents;
    println!("       {}", info.path.display());
    println!("       sha256   {}", info.sha256);
    println!("       size     {} ({} bytes)", mib(info.size), info.size);
    println!(
        "       unpacked {} ({} bytes in {} files, {} entries)",
        mib(c.bytes),
        c.bytes,
        c.files,
        c.entries
    );
    println!(
        "       os       {}",
        c.os_release.as_deref().unwrap_or("(no /etc/os-release)")
    );
    println!("       took     {}", duration(info.elapsed));
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn check_mmdebstrap() -> anyhow::Result<()> {
    match Command::new("mmdebstrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("mmdebstrap --version failed ({status}): install Debian's mmdebstrap"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "mmdebstrap is not installed: install Debian's mmdebstrap \
             (apt-get install mmdebstrap, or scripts/install-deps)"
        ),
        Err(e) => bail!("running mmdebstrap: {e}: install Debian's mmdebstrap"),
    }
}

/// Fails fast, before mmdebstrap, when the mirror does not answer for the suite.
fn check_mirror(mirror: &str, suite: &str) -> anyhow::Result<()> {
    if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
        return Ok(());
    }
    let url = format!("{mirror}/dists/{suite}/Release");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    client
        .head(&url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("cannot reach the Debian mirror for {suite}: {url}: {e}"))?;
    Ok(())
}

/// Builds one image into `out` with mmdebstrap: see the module doc.
pub fn build_image(
    stack: &Stack,
    suite: &str,
    mirror: &str,
    kind: ImageKind,
    out: &Path,
    cache: &Path,
    verbose: bool,
) -> anyhow::Result<ImageInfo> {
    let started = Instant::now();
    let path = out.join(image_file_name(stack.name, kind));
    let part = out.join(format!("{}.part", image_file_name(stack.name, kind)));
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
    let args = mmdebstrap_args(&stack.packages(kind), suite, mirror, cache, verbose);
    let mut child = Command::new("mmdebstrap")
        .args(&args)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting mmdebstrap")?;
    let stdout = child.stdout.take().context("mmdebstrap's stdout")?;
    let streamed = fs::File::create(&part)
        .with_context(|| format!("creating {}", part.display()))
        .and_then(|file| compress_and_inspect(stdout, file).map_err(anyhow::Error::from));
    if streamed.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for mmdebstrap")?;
    let result = (|| {
        if !status.success() {
            bail!("mmdebstrap failed ({status}); its messages are above");
        }
        let (contents, sha256, size) = streamed.context("reading mmdebstrap's tar")?;
        let problems = contents.problems();
        if !problems.is_empty() {
            bail!("the image is not ready for Haven: {}", problems.join("; "));
        }
        fs::rename(&part, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(ImageInfo {
            path: path.clone(),
            sha256,
            size,
            contents,
            elapsed: started.elapsed(),
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

/// The customize hook that makes a root Haven-ready (`$1` is the root).
const CUSTOMIZE: &str = r#"set -e
root="$1"
mkdir -p "$root/app" "$root/tmp"
chmod 0755 "$root/app"
chmod 1777 "$root/tmp"
# Nothing of the build host: the runtime provides both.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"
# As on Heroku: en_US.UTF-8 besides C.UTF-8, and no /usr/lib/ssl/cert.pem (slow TLS set-up).
if [ -x "$root/usr/sbin/locale-gen" ]; then
  echo 'en_US.UTF-8 UTF-8' > "$root/etc/locale.gen"
  chroot "$root" /usr/sbin/locale-gen
fi
rm -f "$root/usr/lib/ssl/cert.pem"
rm -rf "$root"/var/lib/apt/lists/*
"#;

/// The arguments of the mmdebstrap run that writes the tar of a root with `packages`
/// to its stdout.
pub fn mmdebstrap_args(
    packages: &[&str],
    suite: &str,
    mirror: &str,
    cache: &Path,
    verbose: bool,
) -> Vec<String> {
    let cache = sh_quote(&cache.to_string_lossy());
    let mut args: Vec<String> = [
        "--variant=apt",
        "--components=main",
        "--format=tar",
        "--aptopt=APT::Install-Recommends \"false\"",
        "--aptopt=APT::Install-Suggests \"false\"",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/lintian/*",
        // Keep the essential packages' .debs for the cache (sync-out below).
        "--skip=essential/unlink",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--include={}", packages.join(",")));
    args.push("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/".into());
    args.push(format!(
        "--setup-hook=sync-in {cache} /var/cache/apt/archives/"
    ));
    args.push(format!(
        "--customize-hook=sync-out /var/cache/apt/archives {cache}"
    ));
    args.push(format!("--customize-hook={CUSTOMIZE}"));
    if verbose {
        args.push("--verbose".into());
    }
    args.extend([suite.to_string(), "-".to_string(), mirror.to_string()]);
    args
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a stack image's tar holds, as far as [`Contents::problems`] and the summary
/// need.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub entries: u64,
    pub files: u64,
    /// Bytes of regular file contents.
    pub bytes: u64,
    /// `PRETTY_NAME` of `/etc/os-release` (or the `/usr/lib/os-release` it links to).
    pub os_release: Option<String>,
    has_etc_os_release: bool,
    app: Option<u32>,
    app_entries: u64,
    tmp: Option<u32>,
    tmp_entries: u64,
    resolv_conf: Option<u64>,
    hostname: Option<u64>,
    apt_lists: u64,
}

impl Contents {
    /// What keeps the image from being used by Haven (empty when it is fine).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.app.is_none() || self.app_entries > 0 {
            problems.push("no empty /app".to_string());
        }
        if self.tmp != Some(0o1777) || self.tmp_entries > 0 {
            problems.push("no empty /tmp with mode 1777".to_string());
        }
        if self.resolv_conf.unwrap_or(0) > 0 {
            problems.push("/etc/resolv.conf is not empty".to_string());
        }
        if self.hostname.unwrap_or(0) > 0 {
            problems.push("/etc/hostname is not empty".to_string());
        }
        if self.apt_lists > 0 {
            problems.push(format!("{} files in /var/lib/apt/lists", self.apt_lists));
        }
        if !self.has_etc_os_release || self.os_release.is_none() {
            problems.push("no /etc/os-release".to_string());
        }
        problems
    }
}

/// Reads a stack image's tar (uncompressed) from `src`.
pub fn inspect(src: impl Read) -> io::Result<Contents> {
    let mut contents = Contents::default();
    let mut etc_os_release = None;
    let mut usr_os_release = None;
    let mut archive = tar::Archive::new(src);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw);
        let name = name.trim_start_matches("./").trim_end_matches('/');
        if name.is_empty() || name == "." {
            continue;
        }
        contents.entries += 1;
        let regular = kind.is_file() || kind.is_contiguous();
        if regular {
            contents.files += 1;
            contents.bytes += entry.size();
        }
        let mode = entry.header().mode().unwrap_or(0) & 0o7777;
        match name {
            "app" if kind.is_dir() => contents.app = Some(mode),
            "tmp" if kind.is_dir() => contents.tmp = Some(mode),
            "etc/resolv.conf" => contents.resolv_conf = Some(entry.size()),
            "etc/hostname" => contents.hostname = Some(entry.size()),
            "etc/os-release" => {
                contents.has_etc_os_release = true;
                if regular {
                    etc_os_release = Some(read_string(&mut entry)?);
                }
            }
            "usr/lib/os-release" if regular => usr_os_release = Some(read_string(&mut entry)?),
            _ if name.starts_with("app/") => contents.app_entries += 1,
            _ if name.starts_with("tmp/") => contents.tmp_entries += 1,
            _ if name.starts_with("var/lib/apt/lists/")
                && !kind.is_dir()
                && name != "var/lib/apt/lists/lock" =>
            {
                contents.apt_lists += 1
            }
            _ => {}
        }
    }
    contents.os_release = etc_os_release
        .or(usr_os_release)
        .as_deref()
        .and_then(pretty_name);
    Ok(contents)
}

fn read_string(r: &mut impl Read) -> io::Result<String> {
    let mut s = String::new();
    r.take(64 * 1024).read_to_string(&mut s)?;
    Ok(s)
}

/// `PRETTY_NAME` of an os-release file (or `NAME VERSION`).
fn pretty_name(os_release: &str) -> Option<String> {
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| Some(format!("{} {}", field("NAME")?, field("VERSION")?)))
}

/// Copies the tar from `src` into `dst` through zstd while inspecting it; returns what
/// it holds, the sha256 (hex) and size of what was written.
pub fn compress_and_inspect(
    src: impl Read,
    dst: impl Write,
) -> io::Result<(Contents, String, u64)> {
    let hashing = HashingWriter {
        inner: dst,
        hasher: Sha256::new(),
        written: 0,
    };
    let encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL)?;
    let mut tee = Tee { src, copy: encoder };
    let contents = inspect(&mut tee)?;
    // The end-of-archive blocks and the padding after them.
    io::copy(&mut tee, &mut io::sink())?;
    let mut hashing = tee.copy.finish()?;
    hashing.flush()?;
    let sha256 = hex::encode(hashing.hasher.finalize());
    Ok((contents, sha256, hashing.written))
}

/// Reads from `src`, writing everything read into `copy`.
struct Tee<R, W> {
    src: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_stack_has_package_lists() {
        for name in haven_raft::catalog::STACKS {
            let stack = stack(name).unwrap_or_else(|| panic!("no package lists for {name}"));
            let run = stack.packages(ImageKind::Run);
            let build = stack.packages(ImageKind::Build);
            assert!(run.len() > 20, "{name}: {run:?}");
            assert!(build.len() > run.len());
            assert_eq!(&build[..run.len()], &run[..]);
            for p in run.iter().chain(&build) {
                assert!(
                    p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
                    "{name}: {p:?} is not a Debian package name"
                );
            }
        }
        assert_eq!(STACKS.len(), haven_raft::catalog::STACKS.len());
    }

    #[test]
    fn the_lists_have_what_apps_and_buildpacks_need() {
        for stack in STACKS {
            let run = stack.packages(ImageKind::Run);
            let build = stack.packages(ImageKind::Build);
            for p in [
                "bash",
                "coreutils",
                "curl",
                "ca-certificates",
                "git",
                "tar",
                "gzip",
                "zstd",
                "xz-utils",
                "bzip2",
                "unzip",
                "jq",
                "locales",
                "tzdata",
                "libpq5",
                "imagemagick",
                "libxml2",
                "libyaml-0-2",
                "zlib1g",
                "procps",
                "less",
                "openssh-client",
                "netbase",
                "python3",
                "nodejs",
            ] {
                assert!(run.contains(&p), "{}: run lacks {p}", stack.name);
            }
            for p in [
                "build-essential",
                "pkg-config",
                "libpq-dev",
                "libssl-dev",
                "libffi-dev",
                "libyaml-dev",
                "zlib1g-dev",
                "libxml2-dev",
                "libmagickwand-dev",
                "autoconf",
                "automake",
                "libtool",
                "python3-venv",
                "python3-pip",
                "npm",
            ] {
                assert!(build.contains(&p), "{}: build lacks {p}", stack.name);
            }
        }
        let libssl = |s: &str| stack(s).expect("stack").packages(ImageKind::Run);
        assert!(libssl("heroku-24").contains(&"libssl3t64"));
        assert!(libssl("heroku-22").contains(&"libssl3"));
    }

    #[test]
    fn package_lists_drop_comments_and_blank_lines() {
        let list = "# header\n\nbash\n  curl  # for downloads\n#git\n";
        assert_eq!(parse_packages(list), ["bash", "curl"]);
    }

    #[test]
    fn mmdebstrap_writes_the_tar_to_stdout_with_the_packages_and_hooks() {
        let args = mmdebstrap_args(
            &["bash", "curl"],
            "trixie",
            DEFAULT_MIRROR,
            Path::new("/var/cache/it's"),
            false,
        );
        assert_eq!(
            &args[args.len() - 3..],
            ["trixie", "-", "http://deb.debian.org/debian"]
        );
        assert!(args.contains(&"--include=bash,curl".to_string()));
        assert!(args.contains(&"--variant=apt".to_string()));
        assert!(args.contains(
            &r"--setup-hook=sync-in '/var/cache/it'\''s' /var/cache/apt/archives/".to_string()
        ));
        assert!(args
            .iter()
            .any(|a| a.starts_with("--customize-hook=set -e")));
        assert!(!args.contains(&"--verbose".to_string()));
    }

    fn tar_of(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for &(name, kind, mode, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            if kind == tar::EntryType::Symlink {
                h.set_link_name("../usr/lib/os-release").expect("link");
            }
            builder.append_data(&mut h, name, data).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn a_haven_ready_image_passes_and_its_figures_are_read() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let tar = tar_of(&[
            ("./", Directory, 0o755, b""),
            ("./app/", Directory, 0o755, b""),
            ("./tmp/", Directory, 0o1777, b""),
            ("./etc/", Directory, 0o755, b""),
            ("./etc/resolv.conf", Regular, 0o644, b""),
            ("./etc/hostname", Regular, 0o644, b""),
            ("./etc/os-release", Symlink, 0o777, b""),
            (
                "./usr/lib/os-release",
                Regular,
                0o644,
                b"PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\n",
            ),
            ("./var/lib/apt/lists/", Directory, 0o755, b""),
            ("./var/lib/apt/lists/lock", Regular, 0o640, b""),
        ]);
        let mut compressed = Vec::new();
        let (contents, sha, size) =
            compress_and_inspect(&tar[..], &mut compressed).expect("compress");
        assert_eq!(contents.problems(), Vec::<String>::new());
        assert_eq!(
            contents.os_release.as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(contents.files, 4);
        assert_eq!(size, compressed.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&compressed)));
        assert_eq!(zstd::decode_all(&compressed[..]).expect("zstd"), tar);
    }

    #[test]
    fn host_files_and_apt_lists_are_problems() {
        use tar::EntryType::{Directory, Regular};
        let tar = tar_of(&[
            ("./tmp/", Directory, 0o755, b""),
            ("./tmp/leftover", Regular, 0o644, b"x"),
            (
                "./etc/resolv.conf",
                Regular,
                0o644,
                b"nameserver 10.0.0.1\n",
            ),
            (
                "./var/lib/apt/lists/deb.debian.org_dists_trixie_InRelease",
                Regular,
                0o644,
                b"x",
            ),
        ]);
        let problems = inspect(&tar[..]).expect("inspect").problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}

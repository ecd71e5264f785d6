//! Stacks: the root filesystem images apps build and run on (Heroku's `heroku-24`,
//! `heroku-22`).
//!
//! A stack is two images, as on Heroku: the run image dynos run on, and the build image
//! (the run image's packages plus compilers and `-dev` headers) builds run in. Both are
//! Debian roots made with `mmdebstrap` from the package lists in `stacks/NAME/`
//! (`run.packages`, `build.packages`), which are compiled into havend: `heroku-24` is
//! Debian trixie (glibc 2.41, runs binaries built for Ubuntu 24.04), `heroku-22` Debian
//! bookworm (glibc 2.36 ≥ Ubuntu 22.04's 2.35). An image is a zstd-compressed tar.
//!
//! - `build.rs`: `havend stack:build NAME`: the images from Debian packages, with their
//!   sha256, sizes and OS release.
//! - `unpack.rs`: an image into a root directory, atomically, refusing entries that
//!   leave the root and dropping device nodes and setuid bits.
//! - `roots.rs`: the images the replicated state names, fetched and unpacked once per
//!   node: the read-only root of builds and dynos.

pub mod build;
pub mod roots;
pub mod unpack;

#[allow(unused_imports)]
pub use build::{stack, Stack, STACKS};
#[allow(unused_imports)]
pub use unpack::{unpack, UnpackInfo};

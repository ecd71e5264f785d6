//! Stack images over a real cluster: the heroku-24 images that `havend stack:build` made
//! (`scripts/build-stack` leaves them in `target/stacks/`) are imported through a
//! follower, reach every node with the same sha256, and become the root of builds (the
//! build image) and dynos (the run image) instead of the host's `/usr` and `/etc`: a
//! file put into the host's `/usr` after the images were built is not there for a dyno,
//! and the dyno's OS is the image's (Debian trixie) whatever the host runs. The built-in
//! Python buildpack builds on the image and the app serves through every router.

use std::path::{Path, PathBuf};
use std::time::Duration;

use haven_tests::{
    cluster, eventually, hctl, hctl_ok as ok, heroku_schema, repo_path, validate_haven, Env,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn image(kind: &str) -> PathBuf {
    let p = repo_path(&format!("target/stacks/heroku-24-{kind}.tar.zst"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-stack (scripts/test does) to build the heroku-24 images",
        p.display()
    );
    p
}

fn sha256_of(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// A file that exists on the host's `/usr` only while the test runs.
struct HostOnlyFile(PathBuf);

impl HostOnlyFile {
    fn create() -> HostOnlyFile {
        let p = PathBuf::from(format!(
            "/usr/local/share/haven-host-only-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "the host's own\n").unwrap();
        HostOnlyFile(p)
    }
}

impl Drop for HostOnlyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn stack(env: &Env, node: usize) -> Value {
    env.get_json(node, "/stacks/heroku-24").unwrap()
}

#[test]
fn stack_images_reach_every_node_and_are_the_root_of_builds_and_dynos() {
    let (run, build) = (image("run"), image("build"));
    let (run_sha, build_sha) = (sha256_of(&run), sha256_of(&build));
    let mut env = cluster(3);
    let follower = (0..env.len())
        .find(|i| Some(*i) != env.leader_index())
        .unwrap();

    // Before an import the stacks answer as the Platform API's, on the host stack.
    let stacks = env.get_json(0, "/stacks").unwrap();
    let names: Vec<&str> = stacks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["heroku-24", "heroku-22"], "{stacks}");
    assert_eq!(stacks[0]["default"], true);
    assert!(stacks[0]["images"].as_array().unwrap().is_empty());
    let schema = heroku_schema();
    for s in stacks.as_array().unwrap() {
        let errs = validate_haven(&schema, &schema["definitions"]["stack"], s);
        assert!(errs.is_empty(), "{errs:?}: {s}");
    }

    // An app's stack: chosen at creation, changed for the next build by stack:set.
    let out = ok(hctl(
        &env,
        0,
        &["apps:create", "older", "--stack", "heroku-22"],
    ));
    assert!(out.contains("stack is heroku-22"), "{out}");
    let app = env.get_json(0, "/apps/older").unwrap();
    assert_eq!(app["build_stack"]["name"], "heroku-22", "{app}");
    ok(hctl(&env, 0, &["stack:set", "heroku-24", "-a", "older"]));
    let app = env.get_json(0, "/apps/older").unwrap();
    assert_eq!(app["build_stack"]["name"], "heroku-24", "{app}");
    let bad = hctl(&env, 0, &["stack:set", "cedar-14", "-a", "older"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Stack not found: cedar-14"), "{err}");
    let app = env.get_json(0, "/apps/older").unwrap();
    assert_eq!(app["build_stack"]["name"], "heroku-24", "{app}");

    let out = ok(hctl(
        &env,
        follower,
        &[
            "stacks:import",
            "heroku-24",
            "--run",
            &run.to_string_lossy(),
            "--build",
            &build.to_string_lossy(),
        ],
    ));
    assert!(out.contains(&run_sha) && out.contains(&build_sha), "{out}");
    assert!(out.contains("trixie"), "{out}");

    // Every node fetches both images: the same bytes everywhere.
    eventually(
        "both images on all three nodes",
        Duration::from_secs(300),
        || {
            let s = stack(&env, 0);
            let images = s["images"].as_array()?;
            (images.len() == 2
                && images
                    .iter()
                    .all(|i| i["nodes"].as_array().map(Vec::len) == Some(3)))
            .then_some(())
        },
    );
    for i in 0..env.len() {
        for sha in [&run_sha, &build_sha] {
            let held = env
                .data_dir(i)
                .unwrap()
                .join("slugs")
                .join(format!("{sha}.tar.zst"));
            assert_eq!(&sha256_of(&held), sha, "node {i}'s copy of {sha}");
        }
    }
    let table = ok(hctl(&env, 0, &["stacks"]));
    assert!(table.contains("* heroku-24"), "{table}");
    assert!(table.contains("3/3 nodes"), "{table}");
    assert!(table.contains(&run_sha[..12]), "{table}");

    // A refused import changes nothing.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not an image").unwrap();
    let refused = hctl(
        &env,
        0,
        &[
            "stacks:import",
            "heroku-24",
            "--run",
            &junk.path().to_string_lossy(),
        ],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not a stack image"), "{err}");
    let s = stack(&env, 0);
    assert!(
        s["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["sha256"] == run_sha.as_str()),
        "{s}"
    );

    // Builds run on the build image; the app runs on the run image.
    let host_only = HostOnlyFile::create();
    env.post_json(0, "/apps", &json!({ "name": "on-stack" }))
        .unwrap();
    let example = repo_path("examples/python-hello");
    let out = ok(hctl(
        &env,
        follower,
        &["deploy", &example.to_string_lossy(), "-a", "on-stack"],
    ));
    assert!(out.contains("Building on the heroku-24 stack"), "{out}");
    assert!(
        out.contains(&format!("build image {}", &build_sha[..12])),
        "{out}"
    );
    ok(hctl(&env, 0, &["ps:scale", "web=2", "-a", "on-stack"]));
    ok(hctl(
        &env,
        0,
        &["ps:wait", "-a", "on-stack", "--timeout", "120"],
    ));
    for i in 0..env.len() {
        let body = eventually("the app answers", Duration::from_secs(30), || {
            let r = reqwest::blocking::Client::new()
                .get(format!("{}/", env.router(i)))
                .header("Host", "on-stack.localhost")
                .timeout(Duration::from_secs(5))
                .send()
                .ok()?;
            r.status().is_success().then(|| r.text().ok()).flatten()
        });
        assert!(body.contains("Hello from web."), "{body}");
    }
    let script = format!(
        "grep PRETTY_NAME /etc/os-release; echo STACK=$STACK; \
         test -e {} && echo host-file-visible || echo host-file-absent",
        host_only.0.display()
    );
    let out = ok(hctl(&env, 1, &["run", "-a", "on-stack", &script]));
    assert!(
        out.contains("trixie"),
        "the dyno's OS is the image's: {out}"
    );
    assert!(out.contains("STACK=heroku-24"), "{out}");
    assert!(
        out.contains("host-file-absent"),
        "a dyno saw the host's /usr: {out}"
    );
    let host_os = std::fs::read_to_string("/etc/os-release").unwrap();
    assert!(
        !host_os.contains("trixie"),
        "the test means something only on a host that is not trixie"
    );
}

//! The built-in buildpacks against the host's toolchains (no network: every dependency
//! is local).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use haven_buildpacks::BuildError;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn on_path(tool: &str) -> bool {
    PATH.split(':').any(|d| Path::new(d).join(tool).is_file())
}

/// Runs `script` in bash the way a dyno would (HOME = the app, cwd = the app, a clean
/// environment), returning stdout+stderr.
fn run_in_app(app: &Path, script: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", app)
        .current_dir(app)
        .output()
        .expect("bash");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn grep_tree(dir: &Path, needle: &str, skip: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            hits.extend(grep_tree(&p, needle, skip));
        } else if ft.is_file() {
            if let Ok(text) = fs::read_to_string(&p) {
                if text.contains(needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn python_app_with_a_local_package() {
    let mut sb = Sandbox::new();
    sb.fresh_build_dir("src-python");
    let b = &sb.build;
    write(&b.join("requirements.txt"), "./vendor/hello\n");
    write(
        &b.join("vendor/hello/setup.py"),
        "from setuptools import setup\nsetup(name='hello', version='0.1', py_modules=['hello'],\n      entry_points={'console_scripts': ['hello-cli=hello:main']})\n",
    );
    write(
        &b.join("vendor/hello/hello.py"),
        "def greeting():\n    return 'hello from a vendored package'\n\ndef main():\n    print('cli says ' + greeting())\n",
    );
    write(&b.join("Procfile"), "web: python3 -m http.server $PORT\n");
    let mut req = sb.request();
    // Any attempt to reach an index fails fast instead of using the network.
    req.env
        .insert("PIP_INDEX_URL".into(), "http://127.0.0.1:9/simple".into());
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.frameworks, vec!["Python"]);
    assert_eq!(outcome.buildpacks, vec!["python"]);
    assert_eq!(outcome.process_types["web"], "python3 -m http.server $PORT");
    assert!(has_line(&lines, "-----> Python app detected"), "{lines:#?}");
    assert!(has_line(
        &lines,
        "-----> Installing dependencies from requirements.txt with pip"
    ));
    assert!(
        has_line(&lines, "       Successfully installed hello-0.1"),
        "{lines:#?}"
    );
    assert!(sb.cache.join("pip").is_dir());

    // The slug works at another path (as /app would): nothing names the build dir.
    let profile = fs::read_to_string(b.join(".profile.d/python.sh")).expect("profile");
    assert!(!profile.contains(b.to_str().expect("utf8")), "{profile}");
    let app = sb.path("app-copy");
    copy_dir(b, &app);
    fs::remove_dir_all(b).expect("remove the build dir");
    let (ok, text) = run_in_app(
        &app,
        ". .profile.d/python.sh; cd /; python3 -c 'import hello; print(hello.greeting())' && hello-cli && echo \"unbuffered=$PYTHONUNBUFFERED\"",
    );
    assert!(ok, "{text}");
    assert!(text.contains("hello from a vendored package"), "{text}");
    assert!(
        text.contains("cli says hello from a vendored package"),
        "{text}"
    );
    assert!(text.contains("unbuffered=1"), "{text}");
}

#[test]
fn python_pipfile_is_refused_clearly() {
    let sb = Sandbox::new();
    write(&sb.build.join("Pipfile"), "[packages]\n");
    let (r, lines) = build(&sb.request());
    assert!(matches!(r, Err(BuildError::Compile { .. })), "{r:?}");
    assert!(
        has_line(&lines, "Pipfile (Pipenv) is not supported"),
        "{lines:#?}"
    );
    assert!(has_line(
        &lines,
        "Push rejected, failed to compile Python app."
    ));
}

fn node_app(dir: &Path) {
    write(
        &dir.join("package.json"),
        r#"{
  "name": "app",
  "version": "1.0.0",
  "private": true,
  "scripts": { "build": "node build.js", "start": "node server.js" },
  "dependencies": { "localdep": "file:./localdep" }
}
"#,
    );
    write(
        &dir.join("localdep/package.json"),
        r#"{ "name": "localdep", "version": "1.0.0", "main": "index.js" }"#,
    );
    write(
        &dir.join("localdep/index.js"),
        "module.exports = () => 'hello from localdep';\n",
    );
    write(
        &dir.join("build.js"),
        "const fs = require('fs');\nfs.mkdirSync('dist', { recursive: true });\nfs.writeFileSync('dist/out.txt', require('localdep')());\nconsole.log('build script ran');\n",
    );
    write(&dir.join("server.js"), "console.log('server');\n");
}

#[test]
fn nodejs_app_with_a_build_script_and_a_cache() {
    if !on_path("node") || !on_path("npm") {
        eprintln!("skipped: no node/npm on this host");
        return;
    }
    let mut sb = Sandbox::new();
    sb.fresh_build_dir("src-node-1");
    node_app(&sb.build);
    let mut req = sb.request();
    // Any attempt to reach a registry fails fast instead of using the network.
    req.env
        .insert("npm_config_registry".into(), "http://127.0.0.1:9/".into());
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.frameworks, vec!["Node.js"]);
    assert_eq!(outcome.process_types["web"], "npm start");
    assert!(has_line(
        &lines,
        "-----> Running the build script (npm run build)"
    ));
    assert!(has_line(&lines, "       build script ran"), "{lines:#?}");
    assert!(!has_line(&lines, "Restored node_modules"), "{lines:#?}");
    assert_eq!(
        fs::read_to_string(sb.build.join("dist/out.txt")).expect("build output"),
        "hello from localdep"
    );
    assert!(sb.build.join("node_modules/localdep").exists());
    assert!(sb.build.join(".profile.d/nodejs.sh").is_file());
    let cached = sb.cache.join("node/node_modules");
    // `file:` dependencies are relative symlinks (dangling inside the cache).
    assert!(
        fs::symlink_metadata(cached.join("localdep")).is_ok(),
        "node_modules not cached"
    );

    // The slug works elsewhere.
    let app = sb.path("node-app-copy");
    copy_dir(&sb.build, &app);
    let (ok, text) = run_in_app(
        &app,
        ". .profile.d/nodejs.sh; cd /tmp && cd \"$HOME\" && node -e \"console.log(require('localdep')(), process.env.NODE_ENV)\"",
    );
    assert!(ok, "{text}");
    assert!(text.contains("hello from localdep production"), "{text}");

    // Second build: node_modules comes back from the cache.
    // npm keeps dot-directories in node_modules (tools cache there) but prunes unknown
    // packages, so the marker goes in node_modules/.cache.
    write(&cached.join(".cache/haven-cache-marker"), "from the cache");
    sb.fresh_build_dir("src-node-2");
    node_app(&sb.build);
    let mut req = sb.request();
    req.env
        .insert("npm_config_registry".into(), "http://127.0.0.1:9/".into());
    let (r, lines) = build(&req);
    r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert!(
        has_line(&lines, "Restored node_modules from the cache"),
        "{lines:#?}"
    );
    assert!(
        sb.build
            .join("node_modules/.cache/haven-cache-marker")
            .is_file(),
        "node_modules was not restored from the cache"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain syscall on the group this test started.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn static_site_is_built_and_served() {
    let mut sb = Sandbox::new();
    sb.fresh_build_dir("src-static");
    let b = &sb.build;
    write(&b.join("index.html"), "<h1>Hello static</h1>\n");
    write(&b.join("about.html"), "<p>About us</p>\n");
    write(&b.join("404.html"), "<p>Custom not found</p>\n");
    write(&b.join("static.json"), r#"{ "clean_urls": true }"#);
    let (r, lines) = build(&sb.request());
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.frameworks, vec!["Static HTML"]);
    let web = outcome.process_types["web"].clone();
    assert_eq!(web, "python3 .heroku/static/serve.py");

    let app = sb.path("static-app");
    copy_dir(b, &app);
    let port = free_port();
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for f in .profile.d/*.sh; do [ -e \"$f\" ] && . \"$f\"; done; exec {web}"
        ))
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", &app)
        .env("PORT", port.to_string())
        .current_dir(&app)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start web");
    let _guard = KillOnDrop(child);
    let mut index = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            index = http_get(port, "/");
            index.is_some()
        }),
        "the static server did not answer on port {port}"
    );
    let (status, body) = index.expect("index");
    assert_eq!(status, 200);
    assert!(body.contains("Hello static"), "{body}");
    let (status, body) = http_get(port, "/about").expect("about");
    assert_eq!((status, body.contains("About us")), (200, true), "{body}");
    let (status, body) = http_get(port, "/missing").expect("missing");
    assert_eq!(status, 404);
    assert!(body.contains("Custom not found"), "{body}");
    let (status, _) = http_get(port, "/.heroku/static/serve.py").expect("dotfile");
    assert_eq!(status, 404);
}

#[test]
fn missing_toolchains_fail_with_a_clear_message() {
    let sb = Sandbox::new();
    let cases = [
        ("go", "go.mod", "module example.com/app\n", "This host has no Go toolchain (go not found on PATH). Install Go on every Haven node to build Go apps.", "Go"),
        ("ruby", "Gemfile", "source 'https://rubygems.org'\n", "This host has no Ruby toolchain (ruby not found on PATH).", "Ruby"),
    ];
    for (tool, file, text, message, fw) in cases {
        if on_path(tool) {
            eprintln!("skipped {tool}: it is installed here");
            continue;
        }
        let dir = sb.path(&format!("src-{tool}"));
        write(&dir.join(file), text);
        let mut req = sb.request();
        req.build_dir = dir;
        let (r, lines) = build(&req);
        assert!(
            matches!(r, Err(BuildError::Compile { code: Some(1), .. })),
            "{r:?}"
        );
        assert!(has_line(&lines, &format!(" !     {message}")), "{lines:#?}");
        assert!(
            has_line(
                &lines,
                &format!(" !     Push rejected, failed to compile {fw} app.")
            ),
            "{lines:#?}"
        );
    }
}

#[test]
fn procfile_only_app_uses_the_procfile() {
    let sb = Sandbox::new();
    write(
        &sb.build.join("Procfile"),
        "web: ./run.sh\nworker: ./work.sh\n",
    );
    write(&sb.build.join("run.sh"), "#!/bin/sh\n");
    let (r, lines) = build(&sb.request());
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.buildpacks, vec!["procfile"]);
    assert_eq!(outcome.process_types.len(), 2);
    assert!(
        has_line(&lines, "Procfile declares types -> web, worker"),
        "{lines:#?}"
    );
    // Nothing in the build dir names the builder's paths.
    let hits = grep_tree(&sb.build, sb.tmp.path().to_str().expect("utf8"), &[]);
    assert!(hits.is_empty(), "{hits:?}");
}

//! The runner with small custom buildpacks: detection, explicit and git buildpacks,
//! several buildpacks, ENV_DIR, .slugignore, process types, failures and timeouts.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use haven_buildpacks::{apply_slugignore, builtin_order, detect_builtin, BuildError};

#[test]
fn builtins_install_idempotently_with_executable_scripts() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    // Tamper with one, install again: it is restored.
    write(&sb.builtin.join("python/bin/detect"), "garbage");
    haven_buildpacks::install_builtins(&sb.builtin).expect("reinstall");
    for name in builtin_order() {
        for script in ["detect", "compile", "release"] {
            let p = sb.builtin.join(name).join("bin").join(script);
            let mode = fs::metadata(&p).expect("script").permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{}", p.display());
        }
    }
    let detect = fs::read_to_string(sb.builtin.join("python/bin/detect")).expect("read");
    assert!(detect.starts_with("#!/usr/bin/env bash"), "{detect}");
    assert!(sb.builtin.join("static/lib/serve.py").is_file());
    assert_eq!(
        builtin_order(),
        ["python", "nodejs", "go", "ruby", "java", "static", "procfile"]
    );
}

#[test]
fn detection_follows_the_builtin_order() {
    let sb = Sandbox::new();
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        (
            &["requirements.txt", "package.json", "index.html"],
            Some(("python", "Python")),
        ),
        (&["pyproject.toml"], Some(("python", "Python"))),
        (&["Pipfile"], Some(("python", "Python"))),
        (
            &["package.json", "go.mod", "Procfile"],
            Some(("nodejs", "Node.js")),
        ),
        (&["go.mod", "Gemfile"], Some(("go", "Go"))),
        (&["Gemfile", "pom.xml"], Some(("ruby", "Ruby"))),
        (&["pom.xml", "index.html"], Some(("java", "Java"))),
        (&["index.html", "Procfile"], Some(("static", "Static HTML"))),
        (&["static.json"], Some(("static", "Static HTML"))),
        (&["Procfile", "README.md"], Some(("procfile", "Procfile"))),
        (&["README.md"], None),
    ];
    for (i, (files, want)) in cases.iter().enumerate() {
        let dir = sb.path(&format!("case{i}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in *files {
            write(&dir.join(f), "{}\n");
        }
        let got = detect_builtin(&sb.builtin, &dir, "haven-1").expect("detect");
        let want = want.map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(got, want, "files {files:?}");
    }
}

#[test]
fn no_buildpack_is_an_error_with_a_hint() {
    let sb = Sandbox::new();
    write(&sb.build.join("README.md"), "hi\n");
    let (r, lines) = build(&sb.request());
    assert!(matches!(r, Err(BuildError::NoBuildpack(_))), "{r:?}");
    assert!(
        has_line(
            &lines,
            " !     No default language could be detected for this app."
        ),
        "{lines:#?}"
    );
    assert!(has_line(&lines, "hctl buildpacks:set"), "{lines:#?}");
    assert!(has_line(&lines, "Push rejected"), "{lines:#?}");
}

#[test]
fn explicit_local_buildpack_runs_detect_compile_release() {
    let sb = Sandbox::new();
    let bp = sb.path("mybp");
    make_buildpack(
        &bp,
        "echo MyFramework",
        r#"echo "-----> compiling in $1"
echo "       stack=$STACK home=$HOME"
echo "args=$#"
touch "$1/compiled-marker"
echo cached > "$2/cache-file""#,
        Some("printf -- '---\\ndefault_process_types:\\n  web: ./server --port $PORT\\n'"),
    );
    write(&sb.build.join("app.txt"), "x");
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    req.stack = "haven-test".into();
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.frameworks, vec!["MyFramework"]);
    assert_eq!(outcome.buildpacks, vec![bp.display().to_string()]);
    assert_eq!(outcome.process_types["web"], "./server --port $PORT");
    assert!(has_line(
        &lines,
        &format!("-----> Using buildpack: {}", bp.display())
    ));
    assert!(has_line(&lines, "-----> MyFramework app detected"));
    assert!(has_line(&lines, "stack=haven-test home="), "{lines:#?}");
    assert!(has_line(&lines, "args=3"));
    assert!(
        has_line(&lines, "Default types for buildpack -> web"),
        "{lines:#?}"
    );
    assert!(sb.build.join("compiled-marker").is_file());
    assert!(sb.cache.join("cache-file").is_file());
    // A buildpack that does not apply is refused with a clear message.
    let other = sb.path("otherbp");
    make_buildpack(&other, "exit 1", "exit 0", None);
    let mut req = sb.request();
    req.buildpacks = vec![other.display().to_string()];
    let (r, lines) = build(&req);
    assert!(
        matches!(r, Err(BuildError::Detect { code: Some(1), .. })),
        "{r:?}"
    );
    assert!(has_line(&lines, "does not apply to this app"), "{lines:#?}");
    // Unknown names are refused.
    let mut req = sb.request();
    req.buildpacks = vec!["no-such-thing".into()];
    let (r, lines) = build(&req);
    assert!(matches!(r, Err(BuildError::Fetch(_))), "{r:?}");
    assert!(has_line(&lines, "Unknown buildpack"), "{lines:#?}");
}

#[test]
fn git_buildpack_is_cloned_at_its_ref() {
    let sb = Sandbox::new();
    let src = sb.path("bp-src");
    fs::create_dir_all(&src).expect("mkdir");
    git(&src, &["init", "-q", "-b", "main"]);
    make_buildpack(&src, "echo GitFw", "echo compile-from-main", None);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-qm", "main"]);
    git(&src, &["checkout", "-qb", "v2"]);
    make_buildpack(&src, "echo GitFw", "echo compile-from-v2", None);
    git(&src, &["commit", "-qam", "v2"]);
    git(&src, &["tag", "v2.0"]);
    git(&src, &["checkout", "-q", "main"]);
    let bare = sb.path("bp.git");
    git(
        sb.tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().expect("utf8"),
            bare.to_str().expect("utf8"),
        ],
    );
    let url = format!("file://{}", bare.display());

    for (spec, want, not) in [
        (format!("{url}#v2"), "compile-from-v2", "compile-from-main"),
        (
            format!("{url}#v2.0"),
            "compile-from-v2",
            "compile-from-main",
        ),
        (url.clone(), "compile-from-main", "compile-from-v2"),
    ] {
        let mut req = sb.request();
        req.buildpacks = vec![spec.clone()];
        let (r, lines) = build(&req);
        let outcome = r.unwrap_or_else(|e| panic!("{spec}: {e}: {lines:#?}"));
        assert_eq!(outcome.buildpacks, vec![spec.clone()]);
        assert!(has_line(&lines, want), "{spec}: {lines:#?}");
        assert!(!has_line(&lines, not), "{spec}: {lines:#?}");
    }
    let mut req = sb.request();
    req.buildpacks = vec![format!("{url}#no-such-branch")];
    let (r, lines) = build(&req);
    assert!(matches!(r, Err(BuildError::Fetch(_))), "{r:?}");
    assert!(
        has_line(&lines, "Could not fetch the buildpack"),
        "{lines:#?}"
    );
}

#[test]
fn export_of_one_buildpack_is_seen_by_the_next() {
    let sb = Sandbox::new();
    let one = sb.path("one");
    let two = sb.path("two");
    make_buildpack(
        &one,
        "echo One",
        r#"BP_DIR="$(cd "$(dirname "$0")/.." && pwd)"
cat > "$BP_DIR/export" <<'EOF'
export GREETING="hello from one"
export PATH="/opt/one/bin:$PATH"
EOF"#,
        Some("printf -- '---\\ndefault_process_types:\\n  web: one\\n'"),
    );
    make_buildpack(
        &two,
        r#"[ -n "$GREETING" ] && echo "Two($GREETING)""#,
        r#"echo "greeting=$GREETING"
echo "path=$PATH""#,
        Some("printf -- '---\\ndefault_process_types:\\n  web: two\\n  worker: two-worker\\n'"),
    );
    let mut req = sb.request();
    req.buildpacks = vec![one.display().to_string(), two.display().to_string()];
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.frameworks, vec!["One", "Two(hello from one)"]);
    assert!(has_line(&lines, "greeting=hello from one"), "{lines:#?}");
    assert!(
        has_line(&lines, "path=/opt/one/bin:/usr/local/sbin"),
        "{lines:#?}"
    );
    // Process types come from the last buildpack's release.
    assert_eq!(outcome.process_types.len(), 2);
    assert_eq!(outcome.process_types["web"], "two");
    // The buildpack sources themselves are untouched (export went to a private copy).
    assert!(!one.join("export").exists());
}

#[test]
fn config_vars_are_in_env_dir_only() {
    let sb = Sandbox::new();
    let bp = sb.path("bp");
    make_buildpack(
        &bp,
        "echo Env",
        r#"ls "$3" > "$1/env-dir-list.txt"
cat "$3/SECRET_TOKEN" > "$1/secret.txt"
env > "$1/env.txt"
echo "compiled""#,
        None,
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    req.env
        .insert("SECRET_TOKEN".into(), "s3cr3t-value-42".into());
    req.env
        .insert("DATABASE_URL".into(), "postgres://u:pw-9@db/x".into());
    let (r, lines) = build(&req);
    r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    let list = fs::read_to_string(sb.build.join("env-dir-list.txt")).expect("list");
    assert_eq!(list, "DATABASE_URL\nSECRET_TOKEN\n");
    assert_eq!(
        fs::read_to_string(sb.build.join("secret.txt")).expect("secret"),
        "s3cr3t-value-42"
    );
    let env = fs::read_to_string(sb.build.join("env.txt")).expect("env");
    for bad in ["SECRET_TOKEN", "s3cr3t-value-42", "DATABASE_URL", "pw-9"] {
        assert!(
            !env.contains(bad),
            "{bad} in the script environment:\n{env}"
        );
    }
    assert!(env.contains("STACK=haven-1"), "{env}");
    assert!(!lines
        .iter()
        .any(|l| l.contains("s3cr3t") || l.contains("pw-9")));
    // ENV_DIR does not outlive the build.
    assert!(!sb.work.join("env").exists());
}

#[test]
fn slugignore_removes_what_it_names() {
    let sb = Sandbox::new();
    let b = &sb.build;
    write(
        &b.join(".slugignore"),
        "# comment\n\n*.psd\n/docs/\ntmp/\nsecret.txt\nlib/*.bak\n!keep.psd\n**/cache/*.bin\n",
    );
    for f in [
        "a.psd",
        "art/deep/b.psd",
        "docs/x.md",
        "sub/docs/y.md",
        "tmp/t1",
        "sub/tmp/t2",
        "tmpfile",
        "secret.txt",
        "sub/secret.txt",
        "lib/a.bak",
        "lib/sub/a.bak",
        "keep.psd",
        "x/cache/a.bin",
        "x/cache/a.txt",
        "app.py",
    ] {
        write(&b.join(f), "x");
    }
    // A file named like a dir-only pattern stays.
    write(&b.join("other/tmp"), "file, not a dir");
    let mut removed = apply_slugignore(b).expect("apply");
    removed.sort();
    let want: Vec<PathBuf> = [
        "a.psd",
        "art/deep/b.psd",
        "docs",
        "keep.psd",
        "lib/a.bak",
        "secret.txt",
        "sub/secret.txt",
        "sub/tmp",
        "tmp",
        "x/cache/a.bin",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(removed, want);
    // `!` negations are not supported (as on Heroku): keep.psd went too.
    for kept in [
        "sub/docs/y.md",
        "tmpfile",
        "lib/sub/a.bak",
        "x/cache/a.txt",
        "app.py",
        "other/tmp",
        ".slugignore",
    ] {
        assert!(b.join(kept).exists(), "{kept} was removed");
    }
    for gone in &want {
        assert!(!b.join(gone).exists(), "{} still there", gone.display());
    }

    // The runner applies it before compiling and says so.
    let mut sb = sb;
    sb.fresh_build_dir("build2");
    write(&sb.build.join(".slugignore"), "*.log\n");
    write(&sb.build.join("a.log"), "x");
    write(&sb.build.join("b.log"), "x");
    let bp = sb.path("lsbp");
    make_buildpack(
        &bp,
        "echo Ls",
        r#"[ -e "$1/a.log" ] && echo "a.log still there"; echo done"#,
        None,
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let (r, lines) = build(&req);
    r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert!(
        has_line(
            &lines,
            "-----> Deleting 2 files matching .slugignore patterns."
        ),
        "{lines:#?}"
    );
    assert!(!has_line(&lines, "still there"));
}

#[test]
fn procfile_wins_over_release_defaults() {
    let mut sb = Sandbox::new();
    let bp = sb.path("bp");
    make_buildpack(
        &bp,
        "echo Fw",
        "true",
        Some("cat <<'EOF'\n---\naddons: []\ndefault_process_types:\n  web: \"python3 app.py\"\n  worker: run-worker\nEOF"),
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.process_types.len(), 2);
    assert_eq!(outcome.process_types["web"], "python3 app.py");
    assert_eq!(outcome.process_types["worker"], "run-worker");
    assert!(has_line(&lines, "-----> Discovering process types"));
    assert!(
        has_line(&lines, "       Default types for buildpack -> web, worker"),
        "{lines:#?}"
    );

    sb.fresh_build_dir("build2");
    write(
        &sb.build.join("Procfile"),
        "web: gunicorn app:app\nclock: python3 clock.py\n",
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let (r, lines) = build(&req);
    let outcome = r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(outcome.process_types.len(), 2);
    assert_eq!(outcome.process_types["web"], "gunicorn app:app");
    assert_eq!(outcome.process_types["clock"], "python3 clock.py");
    assert!(
        has_line(&lines, "       Procfile declares types -> clock, web"),
        "{lines:#?}"
    );

    sb.fresh_build_dir("build3");
    write(&sb.build.join("Procfile"), "web gunicorn\n");
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let (r, lines) = build(&req);
    assert!(matches!(r, Err(BuildError::Procfile(_))), "{r:?}");
    assert!(has_line(&lines, "Procfile line 1"), "{lines:#?}");
}

#[test]
fn compile_failure_is_reported_with_its_output() {
    let sb = Sandbox::new();
    let bp = sb.path("bp");
    make_buildpack(
        &bp,
        "echo Failing",
        "echo 'about to fail'\necho 'oops on stderr' >&2\nexit 3",
        None,
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let (r, lines) = build(&req);
    match r {
        Err(BuildError::Compile { code, .. }) => assert_eq!(code, Some(3)),
        other => panic!("{other:?}"),
    }
    let i = lines
        .iter()
        .position(|l| l == "about to fail")
        .expect("stdout line");
    let j = lines
        .iter()
        .position(|l| l == "oops on stderr")
        .expect("stderr line");
    assert!(i < j);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(" !     Push rejected, failed to compile Failing app.")
    );
}

#[test]
fn compile_timeout_kills_the_process_group() {
    let sb = Sandbox::new();
    let bp = sb.path("bp");
    make_buildpack(
        &bp,
        "echo Slow",
        r#"sleep 1000 &
echo $! > "$1/bg.pid"
echo started
sleep 1000"#,
        None,
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    req.compile_timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    let (r, lines) = build(&req);
    assert!(matches!(r, Err(BuildError::Timeout(_))), "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert!(has_line(&lines, "started"), "{lines:#?}");
    assert!(has_line(&lines, " !     The build timed out"), "{lines:#?}");
    assert!(
        has_line(&lines, "Push rejected, failed to compile Slow app."),
        "{lines:#?}"
    );
    let pid: u32 = fs::read_to_string(sb.build.join("bg.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_until(Duration::from_secs(5), || pid_gone(pid)),
        "background sleep {pid} survived the timeout"
    );
}

#[test]
fn leftover_background_processes_die_when_compile_exits() {
    let sb = Sandbox::new();
    let bp = sb.path("bp");
    make_buildpack(
        &bp,
        "echo Bg",
        r#"sleep 1000 &
echo $! > "$1/bg.pid"
echo finished"#,
        None,
    );
    let mut req = sb.request();
    req.buildpacks = vec![bp.display().to_string()];
    let t0 = Instant::now();
    let (r, lines) = build(&req);
    r.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let pid: u32 = fs::read_to_string(sb.build.join("bg.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(wait_until(Duration::from_secs(5), || pid_gone(pid)));
}

//! The web dashboard in a real browser (Debian's chromium, headless, through
//! chromedriver and WebDriver) against a real 2-node cluster: sign in, create an app,
//! scale it, set and reveal a config var, roll back, tail logs live, sign out (the
//! session ends on every node); another user sees nothing of the app; a form without the
//! CSRF token does nothing; no page shows a config var's value before "Reveal".
//! Screenshots of every page go to `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use haven_tests::{eventually, hctl, hctl_ok as ok, repo_path, Env};
use serde_json::{json, Value};

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromedriver (Debian's chromium-driver; scripts/install-deps installs it)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    eventually("chromedriver answers", Duration::from_secs(20), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/status"))
            .ok()
            .filter(|r| r.status().is_success())
    });
    d
}

/// A headless browser session, driven from synchronous test code.
struct Browser {
    rt: tokio::runtime::Runtime,
    c: Client,
    shots: PathBuf,
}

impl Browser {
    fn new(d: &Driver) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                            "--disable-gpu", "--window-size=1280,1000"]}),
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = rt
            .block_on(
                ClientBuilder::rustls()
                    .expect("rustls")
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{}", d.port)),
            )
            .expect("a chromium session");
        let shots = repo_path("target/dashboard-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { rt, c, shots }
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.c.goto(url)).unwrap();
    }

    fn url(&self) -> String {
        self.rt.block_on(self.c.current_url()).unwrap().to_string()
    }

    fn source(&self) -> String {
        self.rt.block_on(self.c.source()).unwrap()
    }

    fn fill(&self, css: &str, text: &str) {
        self.rt.block_on(async {
            let e = self.c.find(Locator::Css(css)).await.unwrap();
            e.clear().await.unwrap();
            e.send_keys(text).await.unwrap();
        });
    }

    /// Clicks what navigates (a form's button, a link) and waits until the next page
    /// has loaded: the old page's root element gone stale, the new one complete.
    fn click(&self, css: &str) {
        self.navigating(|| {
            self.rt
                .block_on(async { self.c.find(Locator::Css(css)).await?.click().await })
                .unwrap_or_else(|e| panic!("click {css}: {e}"));
        });
    }

    /// Clicks a button that asks for confirmation, accepts, and waits for the next page.
    fn click_confirmed(&self, css: &str) {
        self.navigating(|| {
            self.rt
                .block_on(async { self.c.find(Locator::Css(css)).await?.click().await })
                .unwrap_or_else(|e| panic!("click {css}: {e}"));
            eventually("the confirmation dialog", Duration::from_secs(5), || {
                self.rt.block_on(self.c.accept_alert()).ok()
            });
        });
    }

    fn navigating(&self, act: impl FnOnce()) {
        let old = self.rt.block_on(self.c.find(Locator::Css("html"))).unwrap();
        act();
        eventually("the next page", Duration::from_secs(20), || {
            let stale = self.rt.block_on(old.tag_name()).is_err();
            let ready = self
                .rt
                .block_on(self.c.execute("return document.readyState", vec![]))
                .ok()
                .is_some_and(|v| v == "complete");
            (stale && ready).then_some(())
        });
    }

    fn text(&self, css: &str) -> String {
        self.rt
            .block_on(async { self.c.find(Locator::Css(css)).await?.text().await })
            .unwrap_or_default()
    }

    /// What the page says a form did (its notice or its error).
    fn said(&self) -> String {
        format!("{} {}", self.text("p.notice"), self.text("p.error"))
    }

    fn cookie(&self, name: &str) -> String {
        self.rt
            .block_on(self.c.get_named_cookie(name))
            .unwrap()
            .value()
            .to_string()
    }

    fn shot(&self, name: &str) {
        let png = self.rt.block_on(self.c.screenshot()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    fn sign_in(&self, env: &Env, email: &str, password: &str) {
        self.goto(&format!("{}/", env.api(0)));
        assert!(self.url().contains("/dashboard/login"), "{}", self.url());
        self.fill("#email", email);
        self.fill("#password", password);
        self.click("form.card button[type=submit]");
        assert!(self.url().ends_with("/dashboard"), "{}", self.url());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let c = self.c.clone();
        let _ = self.rt.block_on(c.close());
    }
}

fn make_user(env: &Env, email: &str) -> String {
    let made = env
        .post_json(
            0,
            "/cluster/users",
            &json!({"email": email, "password": true}),
        )
        .unwrap();
    made["password"].as_str().unwrap().to_string()
}

/// A plain HTTP client that does not follow redirects.
fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn config(env: &Env, app: &str) -> Value {
    env.get_json(0, &format!("/apps/{app}/config-vars"))
        .unwrap()
}

#[test]
fn the_dashboard_manages_an_app_in_a_real_browser() {
    let env = haven_tests::cluster(2);
    let alice = make_user(&env, "alice@example.com");
    let bob = make_user(&env, "bob@example.com");
    let d = driver();
    let b = Browser::new(&d);

    // Without a session: the sign-in page (plain HTTP says 303 to it).
    let r = http()
        .get(format!("{}/dashboard", env.api(1)))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/dashboard/login"));
    b.goto(&format!("{}/dashboard/login", env.api(0)));
    b.shot("01-sign-in");
    b.fill("#email", "alice@example.com");
    b.fill("#password", "wrong password");
    b.click("form.card button[type=submit]");
    assert!(b.source().contains("not the email and password"));

    b.sign_in(&env, "alice@example.com", &alice);
    assert!(b.source().contains("No apps yet"));
    b.fill("#new-app", "dash-demo");
    b.click("form.card button[type=submit]");
    assert!(
        b.url().contains("/dashboard/apps/dash-demo?"),
        "{}",
        b.url()
    );
    assert!(b.source().contains("Created dash-demo"));
    b.shot("02-overview-empty");

    // Code arrives with hctl (the admin may deploy any app); then the browser scales it.
    let fixture = repo_path("tests/fixtures/router-app");
    ok(hctl(
        &env,
        0,
        &["deploy", &fixture.to_string_lossy(), "-a", "dash-demo"],
    ));
    b.goto(&format!(
        "{}/dashboard/apps/dash-demo/resources",
        env.api(0)
    ));
    b.fill("input[aria-label='web quantity']", "2");
    b.click("form.row button[type=submit]");
    assert!(b.said().contains("Scaled web to 2"), "{}", b.said());
    eventually(
        "two web dynos up on the Resources page",
        Duration::from_secs(90),
        || {
            b.goto(&format!(
                "{}/dashboard/apps/dash-demo/resources",
                env.api(0)
            ));
            let states = b.text("#dynos tbody");
            (states.matches("up").count() >= 2 && b.source().matches("web.").count() >= 2)
                .then_some(())
        },
    );
    b.shot("03-resources");

    // A config var: hidden until revealed, on any node.
    let secret = "s3cret-value-from-the-dashboard";
    b.goto(&format!("{}/dashboard/apps/dash-demo/settings", env.api(0)));
    b.fill("input[aria-label='Key']", "GREETING");
    b.fill("input[aria-label='Value']", secret);
    b.click("#config + form button[type=submit]");
    assert!(b.said().contains("Set GREETING"), "{}", b.said());
    assert!(!b.source().contains(secret), "a value before Reveal");
    b.shot("04-settings");
    let cookie = format!("haven_session={}", b.cookie("haven_session"));
    let page = |node: usize, path: &str| {
        http()
            .get(format!("{}{path}", env.api(node)))
            .header("Cookie", &cookie)
            .send()
            .unwrap()
    };
    let hidden = page(1, "/dashboard/apps/dash-demo/settings");
    assert_eq!(hidden.status().as_u16(), 200);
    assert_eq!(hidden.headers()["cache-control"], "no-store");
    assert!(!hidden.text().unwrap().contains(secret));
    assert!(page(1, "/dashboard/apps/dash-demo/settings?reveal=1")
        .text()
        .unwrap()
        .contains(secret));
    b.click("#reveal");
    assert!(b.text("#config").contains(secret));

    // A form without the CSRF token does nothing.
    let forged = http()
        .post(format!("{}/dashboard/apps/dash-demo/config", env.api(1)))
        .header("Cookie", &cookie)
        .form(&[("key", "FORGED"), ("value", "1")])
        .send()
        .unwrap();
    assert_eq!(forged.status().as_u16(), 303);
    assert!(forged.headers()["location"]
        .to_str()
        .unwrap()
        .contains("error="));
    assert!(config(&env, "dash-demo").get("FORGED").is_none());

    // Activity shows the release; rolling back to the one before it drops the var.
    b.goto(&format!("{}/dashboard/apps/dash-demo/activity", env.api(0)));
    assert!(b.text("#releases").contains("Set GREETING config vars"));
    b.shot("05-activity");
    b.click_confirmed("#releases tbody tr:nth-child(2) button");
    assert!(b.said().contains("Rolled back"), "{}", b.said());
    assert!(config(&env, "dash-demo").get("GREETING").is_none());

    // Logs: a line a dyno prints appears in the live tail.
    b.goto(&format!("{}/dashboard/apps/dash-demo/logs", env.api(0)));
    eventually("the tail's first lines", Duration::from_secs(20), || {
        (!b.text("#log").trim().is_empty()).then_some(())
    });
    let probe = "/dashboard-log-probe";
    let sent = Instant::now();
    let r = http()
        .get(format!("{}{probe}", env.router(1)))
        .header("Host", "dash-demo.localhost")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    eventually(
        "the router's line in the browser",
        Duration::from_secs(20),
        || {
            let log = b.text("#log");
            log.lines()
                .any(|l| l.contains(probe) && l.contains("heroku[router]"))
                .then_some(())
        },
    );
    println!(
        "dashboard: request → its router line shown in the browser in {:.2} s",
        sent.elapsed().as_secs_f64()
    );
    // A line a dyno prints: a one-off's output.
    let sent = Instant::now();
    env.post_json(
        1,
        "/apps/dash-demo/dynos",
        &json!({"command": "echo dashboard-dyno-probe", "attach": false}),
    )
    .unwrap();
    eventually(
        "the dyno's line in the browser",
        Duration::from_secs(30),
        || {
            let log = b.text("#log");
            log.lines()
                .any(|l| l.contains("dashboard-dyno-probe") && l.contains("app[run."))
                .then_some(())
        },
    );
    println!(
        "dashboard: a detached one-off's line shown in the browser {:.2} s after its POST",
        sent.elapsed().as_secs_f64()
    );
    b.shot("06-logs");

    // Metrics: the routers' counts, summed over the nodes.
    b.goto(&format!("{}/dashboard/apps/dash-demo/metrics", env.api(0)));
    let m = b.text("#metrics");
    let requests: u64 = m
        .lines()
        .skip_while(|l| !l.contains("Requests"))
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(requests >= 1, "{m}");
    assert!(b.source().contains("of 2 nodes"), "{}", b.source());
    b.shot("07-metrics");

    // Buildpacks, set in order for the next build.
    b.goto(&format!("{}/dashboard/apps/dash-demo/settings", env.api(0)));
    b.fill(
        "textarea[name=buildpacks]",
        "https://github.com/heroku/heroku-buildpack-python",
    );
    b.click("textarea[name=buildpacks] ~ button, form[action$='/buildpacks'] button");
    assert!(b.said().contains("Set 1 buildpack"), "{}", b.said());
    assert!(
        b.text("#buildpacks").contains("python"),
        "{}",
        b.text("#buildpacks")
    );

    // At phone width nothing overflows the page (wide tables scroll inside).
    b.rt.block_on(b.c.set_window_size(390, 844)).unwrap();
    b.goto(&format!(
        "{}/dashboard/apps/dash-demo/resources",
        env.api(0)
    ));
    let width =
        b.rt.block_on(b.c.execute("return document.documentElement.scrollWidth", vec![]))
            .unwrap();
    assert!(
        width.as_u64().unwrap() <= 400,
        "page width {width} at 390 px"
    );
    b.shot("08-phone-resources");
    b.rt.block_on(b.c.set_window_size(1280, 1000)).unwrap();
    for (name, path) in [
        ("09-deploy", "/dashboard/apps/dash-demo/deploy"),
        ("10-access", "/dashboard/apps/dash-demo/access"),
        ("11-apps", "/dashboard"),
    ] {
        b.goto(&format!("{}{path}", env.api(0)));
        b.shot(name);
    }

    // Signing out ends the session on every node.
    b.click("header form.inline button[type=submit]");
    assert!(b.url().contains("/dashboard/login"));
    eventually(
        "the old cookie refused on the other node",
        Duration::from_secs(10),
        || {
            let r = page(1, "/dashboard/apps/dash-demo/settings");
            (r.status().as_u16() == 303).then_some(())
        },
    );

    // Another user sees nothing of alice's app.
    b.sign_in(&env, "bob@example.com", &bob);
    assert!(!b.source().contains("dash-demo"));
    b.goto(&format!("{}/dashboard/apps/dash-demo/settings", env.api(0)));
    assert!(b.source().contains("class=\"error\""), "{}", b.source());
    assert!(!b.source().contains("GREETING"));

    // The cluster page is for admins: bob gets the API's refusal, the admin the nodes.
    b.goto(&format!("{}/dashboard/cluster", env.api(0)));
    assert!(b.source().contains("class=\"error\""), "{}", b.source());
    b.click("header form.inline button[type=submit]");
    let admin = env.get_json(0, "/account").unwrap()["email"]
        .as_str()
        .unwrap()
        .to_string();
    let pw = "admin-password-for-the-dashboard";
    let (st, v) = env
        .request(
            0,
            reqwest::Method::PUT,
            "/account/password",
            Some(&json!({ "password": pw })),
        )
        .unwrap();
    assert!(st.is_success(), "{v}");
    b.sign_in(&env, &admin, pw);
    b.goto(&format!("{}/dashboard/cluster", env.api(0)));
    let nodes = b.text("#nodes tbody");
    assert_eq!(nodes.matches("up").count(), 2, "{nodes}");
    assert!(nodes.contains("leader"), "{nodes}");
    b.shot("12-cluster");
}

/// A buildpack that prints a line every 0.3 s for about 9 s: a build long enough to be
/// watched while it runs.
fn ticker_buildpack() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [
        ("detect", "#!/bin/sh\necho ticker\n"),
        (
            "compile",
            "#!/bin/sh\ni=1\nwhile [ $i -le 30 ]; do echo \"-----> tick $i\"; sleep 0.3; i=$((i+1)); done\n",
        ),
    ] {
        let p = bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for d in [dir.path(), bin.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn the_dashboard_follows_a_build_live_and_shows_memory_and_platform_events() {
    let env = haven_tests::cluster(2);
    let d = driver();
    let b = Browser::new(&d);

    // Sign in with an API token: the session gets a token of its own.
    b.goto(&format!("{}/dashboard/login", env.api(1)));
    b.fill("#token", "not-a-token");
    b.click("#token ~ button");
    assert!(b.source().contains("not a valid API token"), "{}", b.said());
    b.fill("#token", env.token());
    b.click("#token ~ button");
    assert!(b.url().ends_with("/dashboard"), "{}", b.url());

    // A build whose output the page shows while it runs, then its final status.
    env.post_json(0, "/apps", &json!({"name": "dash-live"}))
        .unwrap();
    let ticker = ticker_buildpack();
    let (st, v) = env
        .request(
            0,
            reqwest::Method::PUT,
            "/apps/dash-live/buildpack-installations",
            Some(&json!({"updates": [
                {"buildpack": ticker.path().to_string_lossy()},
                {"buildpack": "python"},
            ]})),
        )
        .unwrap();
    assert!(st.is_success(), "{v}");
    let fixture = repo_path("tests/fixtures/router-app");
    let deploy = {
        let cmd = haven_tests::hctl_command(
            &env,
            0,
            &["deploy", &fixture.to_string_lossy(), "-a", "dash-live"],
        );
        std::thread::spawn(move || {
            let mut cmd = cmd;
            cmd.output().unwrap()
        })
    };
    let build = eventually("the build to start", Duration::from_secs(60), || {
        let builds = env.get_json(0, "/apps/dash-live/builds").ok()?;
        builds.as_array()?.last()?["id"]
            .as_str()
            .map(str::to_string)
    });
    b.goto(&format!(
        "{}/dashboard/apps/dash-live/builds/{build}",
        env.api(1)
    ));
    b.rt.block_on(b.c.execute("window.__samePage = 1", vec![]))
        .unwrap();
    eventually(
        "the first lines in the browser",
        Duration::from_secs(60),
        || b.text("pre.build-output").contains("tick 2").then_some(()),
    );
    let status = env
        .get_json(0, &format!("/apps/dash-live/builds/{build}"))
        .unwrap()["status"]
        .clone();
    assert_eq!(
        status, "pending",
        "the output was shown live, not after the build"
    );
    assert_eq!(b.text("#build-status"), "pending");
    b.shot("13-build-live");
    eventually(
        "the build's end and status in the same page",
        Duration::from_secs(180),
        || (b.text("#build-status") == "succeeded").then_some(()),
    );
    let out = b.text("pre.build-output");
    assert!(out.contains("tick 30"), "{out}");
    let same =
        b.rt.block_on(b.c.execute("return window.__samePage", vec![]))
            .unwrap();
    assert_eq!(same, 1, "the page was reloaded");
    let deployed = deploy.join().unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    b.goto(&format!("{}/dashboard/apps/dash-live/deploy", env.api(1)));
    assert!(
        b.text("#builds").contains("succeeded"),
        "{}",
        b.text("#builds")
    );

    // Memory per dyno, read on the dyno's node, shown by either node.
    eventually(
        "web.1's memory on the Metrics page",
        Duration::from_secs(60),
        || {
            b.goto(&format!("{}/dashboard/apps/dash-live/metrics", env.api(1)));
            let m = b.text("#memory");
            let row = m.lines().find(|l| l.contains("web.1"))?.to_string();
            let mb: f64 = row.split_whitespace().nth(1)?.parse().ok()?;
            (mb > 0.0 && row.contains("512 MB")).then_some(())
        },
    );
    b.shot("14-metrics-memory");

    // Platform events: what the nodes did, with a drain made here.
    b.goto(&format!("{}/dashboard/cluster", env.api(1)));
    let events = b.text("#events");
    assert!(events.contains("became the Raft leader"), "{events}");
    assert!(events.matches("started").count() >= 2, "{events}");
    b.click("#nodes tbody tr:nth-child(2) button");
    assert!(
        b.text("#events").contains("drained"),
        "{}",
        b.text("#events")
    );
    b.click("#nodes tbody tr:nth-child(2) button");
    assert!(
        b.text("#events").contains("undrained"),
        "{}",
        b.text("#events")
    );
    b.shot("15-cluster-events");

    // A repository connected from the Deploy tab: its secret shown once, never in a URL.
    let src = tempfile::tempdir().unwrap();
    for f in ["Procfile", "app.py", "requirements.txt"] {
        std::fs::copy(fixture.join(f), src.path().join(f)).unwrap();
    }
    for args in [
        &["init", "--quiet", "-b", "main"][..],
        &["add", "."],
        &[
            "-c",
            "user.email=d@example.com",
            "-c",
            "user.name=D",
            "commit",
            "--quiet",
            "-m",
            "one",
        ],
    ] {
        let st = Command::new("git")
            .args(args)
            .current_dir(src.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    b.goto(&format!("{}/dashboard/apps/dash-live/deploy", env.api(1)));
    b.fill("#repo-url", &format!("file://{}", src.path().display()));
    b.click("#repo form button[type=submit]");
    assert!(b.said().contains("Webhook secret"), "{}", b.said());
    assert!(!b.url().contains("secret"), "{}", b.url());
    b.goto(&format!("{}/dashboard/apps/dash-live/deploy", env.api(1)));
    assert!(b.text("#repo").contains("main"), "{}", b.text("#repo"));
    assert!(!b.source().contains("Webhook secret"));
    b.shot("16-deploy-repo");
    b.click_confirmed("#repo form.inline button[type=submit]");
    assert!(b.said().contains("Disconnected"), "{}", b.said());

    // Signing out revokes the session's own token, not the one pasted.
    b.click("header form.inline button[type=submit]");
    assert!(b.url().contains("/dashboard/login"));
    assert!(env.get_json(1, "/account").is_ok());
}

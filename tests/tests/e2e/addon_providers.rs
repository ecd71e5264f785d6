//! Third-party add-ons over Heroku's add-on provider API, against a small provider
//! written here (a std HTTP server on the host, reached by the nodes over the bridge in
//! netns mode) that checks Basic auth and records every call: an admin registers it (a
//! non-admin is refused), an add-on created through a follower gets the provider's config
//! as config vars in one release, a plan change PUTs, destroying DELETEs and unsets the
//! vars; a provider that answers 500, garbage or nothing gives a clear error and leaves
//! no add-on behind; the provider's password is in no node's log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use haven_tests::{cluster, eventually, hctl, hctl_ok as ok, Env};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "pr0vider-s3cret-ZQX";

/// How the provider answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ok,
    Fail500,
    Garbage,
    /// Never answers (the connection stays open until Haven gives up).
    Hang,
    /// 422 with a message.
    Refuse,
}

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: Value,
}

struct Provider {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Provider {
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// The address the nodes reach the host on: the bridge's host side in netns mode.
fn host_addr(env: &Env) -> String {
    let api = env.api(0);
    let host = api
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    match host.rsplit_once('.') {
        Some((net, _)) if host.starts_with("10.77.") => format!("{net}.1"),
        _ => "127.0.0.1".into(),
    }
}

fn start_provider(addr: &str) -> Provider {
    let listener = TcpListener::bind(format!("{addr}:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(Mode::Ok));
    let (c, m) = (calls.clone(), mode.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (c, m) = (c.clone(), m.clone());
            std::thread::spawn(move || serve(stream, &c, &m));
        }
    });
    Provider { url, calls, mode }
}

fn serve(stream: TcpStream, calls: &Mutex<Vec<Call>>, mode: &Mutex<Mode>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("my-mail:{PASSWORD}"))
    );
    let mut out = stream;
    let reply = |out: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if auth != want {
        reply(
            &mut out,
            "401 Unauthorized",
            r#"{"message":"bad credentials"}"#,
        );
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut c = calls.lock().unwrap();
        c.push(Call {
            method: method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        c.len()
    };
    let m = *mode.lock().unwrap();
    match m {
        Mode::Fail500 => reply(&mut out, "500 Internal Server Error", "{}"),
        Mode::Garbage => reply(&mut out, "200 OK", "<html>oops"),
        Mode::Refuse => reply(
            &mut out,
            "422 Unprocessable Entity",
            r#"{"message":"no more mailboxes today"}"#,
        ),
        // Hold the connection without answering; Haven's timeout ends it.
        Mode::Hang => {
            let _ = out.set_read_timeout(Some(Duration::from_secs(30)));
            let mut sink = [0u8; 1];
            let _ = out.read(&mut sink);
        }
        Mode::Ok => match method.as_str() {
            "POST" if path == "/heroku/resources" => {
                let a = json!({
                    "id": format!("res-{n}"),
                    "config": {
                        "MY_MAIL_URL": format!("https://mail.example/{n}"),
                        "MY_MAIL_TOKEN": format!("tok-{n}"),
                    },
                    "message": "your mailbox is ready",
                });
                reply(&mut out, "200 OK", &a.to_string());
            }
            "PUT" => {
                let plan = body["plan"].as_str().unwrap_or("").to_string();
                let a = json!({"config": {"MY_MAIL_URL": format!("https://mail.example/{plan}")}});
                reply(&mut out, "200 OK", &a.to_string());
            }
            "DELETE" => reply(&mut out, "204 No Content", ""),
            _ => reply(&mut out, "404 Not Found", "{}"),
        },
    }
}

fn config(env: &Env, node: usize, app: &str) -> Value {
    env.get_json(node, &format!("/apps/{app}/config-vars"))
        .unwrap()
}

fn last_release(env: &Env, app: &str) -> String {
    let rels = env.get_json(0, &format!("/apps/{app}/releases")).unwrap();
    rels.as_array().unwrap().last().unwrap()["description"]
        .as_str()
        .unwrap()
        .to_string()
}

fn follower(env: &mut Env) -> usize {
    let leader = eventually("a leader", Duration::from_secs(30), || env.leader_index());
    (leader + 1) % env.len()
}

#[test]
fn provider_addons_provision_upgrade_deprovision_and_fail_cleanly() {
    let mut env = cluster(3);
    let provider = start_provider(&host_addr(&env));
    let f = follower(&mut env);

    // Registering is for admins.
    let (st, made) = env
        .request(
            0,
            Method::POST,
            "/cluster/users",
            Some(&json!({"email": "eve@example.com"})),
        )
        .unwrap();
    assert_eq!(st, 201, "{made}");
    let eve = made["token"].as_str().unwrap().to_string();
    let body = json!({"name": "my-mail", "url": provider.url, "password": PASSWORD, "plans": ["basic", "pro"]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/cluster/addon-providers", env.api(f)))
        .bearer_auth(&eve)
        .header("Accept", "application/vnd.heroku+json; version=3")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    ok(hctl(
        &env,
        f,
        &[
            "addons:providers:add",
            "my-mail",
            "--url",
            &provider.url,
            "--password",
            PASSWORD,
            "--plans",
            "basic,pro",
        ],
    ));
    let listed = ok(hctl(&env, 0, &["addons:providers"]));
    assert!(
        listed.contains("my-mail") && listed.contains("basic, pro"),
        "{listed}"
    );
    let json_list = ok(hctl(&env, 2, &["addons:providers", "--json"]));
    assert!(!json_list.contains(PASSWORD), "{json_list}");

    // The catalog lists it with its plans.
    let services = env.get_json(1, "/addon-services").unwrap();
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "my-mail"),
        "{services}"
    );
    let plans = env.get_json(2, "/addon-services/my-mail/plans").unwrap();
    let names: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my-mail:basic", "my-mail:pro"]);
    assert!(ok(hctl(&env, 0, &["addons:plans", "my-mail"])).contains("my-mail:pro"));

    // Create through a follower: the provider is called, the app gets the vars.
    env.post_json(0, "/apps", &json!({"name": "shop"})).unwrap();
    let out = ok(hctl(
        &env,
        f,
        &["addons:create", "my-mail:basic", "-a", "shop", "--json"],
    ));
    let addon: Value = serde_json::from_str(&out).unwrap();
    let name = addon["name"].as_str().unwrap().to_string();
    assert_eq!(addon["state"], "provisioned", "{addon}");
    assert_eq!(addon["plan"]["name"], "my-mail:basic");
    assert_eq!(addon["provider_id"], "res-1");
    assert!(
        !out.contains("tok-1"),
        "the add-on object shows a config value: {out}"
    );
    let calls = provider.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/heroku/resources")
    );
    assert_eq!(calls[0].body["plan"], "basic");
    assert_eq!(calls[0].body["uuid"], addon["id"]);
    assert_eq!(calls[0].body["name"], name.as_str());
    assert!(calls[0].body["heroku_id"]
        .as_str()
        .unwrap()
        .ends_with("@haven"));
    for node in 0..3 {
        let c = config(&env, node, "shop");
        assert_eq!(
            c["MY_MAIL_URL"], "https://mail.example/1",
            "node {node}: {c}"
        );
        assert_eq!(c["MY_MAIL_TOKEN"], "tok-1");
    }
    assert_eq!(
        last_release(&env, "shop"),
        format!("Attach MY_MAIL (@ref:{name})")
    );
    let info = env.get_json(1, &format!("/addons/{name}")).unwrap();
    assert_eq!(info["members"], json!([]));
    let cfg = env.get_json(1, &format!("/addons/{name}/config")).unwrap();
    assert!(!cfg.to_string().contains("tok-1"), "{cfg}");

    // Upgrade: PUT at the provider; its new config replaces the vars.
    ok(hctl(
        &env,
        f,
        &["addons:upgrade", &name, "my-mail:pro", "-a", "shop"],
    ));
    let calls = provider.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        (calls[1].method.as_str(), calls[1].path.as_str()),
        ("PUT", "/heroku/resources/res-1")
    );
    assert_eq!(calls[1].body["plan"], "pro");
    let info = env.get_json(2, &format!("/addons/{name}")).unwrap();
    assert_eq!(info["plan"]["name"], "my-mail:pro");
    let c = config(&env, 2, "shop");
    assert_eq!(c["MY_MAIL_URL"], "https://mail.example/pro", "{c}");
    assert!(c.get("MY_MAIL_TOKEN").is_none(), "{c}");

    // Failing providers: a clear error, nothing left behind.
    let releases_before = env
        .get_json(0, "/apps/shop/releases")
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    for (mode, status, words) in [
        (Mode::Fail500, 503, "answered 500"),
        (Mode::Garbage, 503, "not the provider API's JSON"),
        (Mode::Hang, 503, "did not answer"),
        (Mode::Refuse, 422, "no more mailboxes today"),
    ] {
        provider.set(mode);
        let before = provider.calls().len();
        let (st, err) = env
            .request(
                f,
                Method::POST,
                "/apps/shop/addons",
                Some(&json!({"plan": "my-mail:basic"})),
            )
            .unwrap();
        assert_eq!(st.as_u16(), status, "{mode:?}: {err}");
        let msg = err["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("my-mail") && msg.contains(words),
            "{mode:?}: {msg}"
        );
        assert!(msg.contains("No add-on was created"), "{msg}");
        let tries = provider.calls().len() - before;
        let want = if mode == Mode::Refuse { 1 } else { 3 };
        assert_eq!(tries, want, "{mode:?}: attempts");
        let list = env.get_json(0, "/apps/shop/addons").unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1, "{mode:?}: {list}");
    }
    let releases_after = env
        .get_json(0, "/apps/shop/releases")
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(releases_before, releases_after);

    // A failing provider keeps the add-on on destroy (503), then DELETE succeeds.
    provider.set(Mode::Fail500);
    let (st, err) = env
        .request(
            f,
            Method::DELETE,
            &format!("/apps/shop/addons/{name}"),
            None,
        )
        .unwrap();
    assert_eq!(st.as_u16(), 503, "{err}");
    assert!(env.get_json(0, &format!("/addons/{name}")).is_ok());
    provider.set(Mode::Ok);
    ok(hctl(
        &env,
        f,
        &["addons:destroy", &name, "--confirm", "shop"],
    ));
    let last = provider.calls().last().cloned().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/heroku/resources/res-1")
    );
    let c = config(&env, 1, "shop");
    assert!(c.get("MY_MAIL_URL").is_none(), "{c}");
    assert_eq!(
        last_release(&env, "shop"),
        format!("Detach MY_MAIL (@ref:{name})")
    );
    assert!(env.get_json(0, &format!("/addons/{name}")).is_err());

    // The provider goes once it has no add-ons.
    ok(hctl(&env, 0, &["addons:providers:remove", "my-mail"]));
    assert!(env.get_json(0, "/addon-services/my-mail").is_err());

    // The password is in no node's log.
    for i in 0..env.len() {
        let own = std::fs::read_to_string(env.dir().join(format!("node{i}/havend.log"))).unwrap();
        assert!(
            !own.contains(PASSWORD),
            "node {i}'s log has the provider's password"
        );
        assert!(
            !own.contains("tok-1"),
            "node {i}'s log has a provider config value"
        );
    }
}

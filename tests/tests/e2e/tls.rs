//! HTTPS over real clusters: the API with the cluster CA pinned by `hctl login
//! --ca-fingerprint` (and refused by a client that trusts another CA), `https://` URLs for
//! HTTPS clients, and an app's own certificate served by SNI on every node's router, with
//! `X-Forwarded-Proto: https` reaching the dyno.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use haven_tests::{binary, cluster, eventually, hctl, hctl_ok as ok, Env};
use serde_json::Value;

use crate::router::deploy;

/// The node's API URL over HTTPS (same port).
fn https_api(env: &Env, i: usize) -> String {
    env.api(i).replacen("http://", "https://", 1)
}

fn ca_pem(env: &Env) -> String {
    std::fs::read_to_string(env.data_dir(0).unwrap().join("ca.pem")).unwrap()
}

/// sha256 of the CA's DER, as `havend init` prints it.
fn ca_fingerprint(env: &Env) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(env.data_dir(0).unwrap().join("ca.pem"))
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split('=')
            .nth(1)
            .unwrap_or_default()
            .trim()
            .replace(':', "")
            .to_ascii_lowercase(),
        // Without openssl: the fingerprint from the DER inside the PEM.
        _ => haven_api::pin::fingerprint(&pem_der(&ca_pem(env))),
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// `hctl ARGS` with its own config dir `home` and no HAVEN_API/HAVEN_TOKEN: only what
/// `hctl login` saved there.
fn hctl_home(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("hctl"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("HAVEN_API")
        .env_remove("HAVEN_TOKEN")
        .output()
        .unwrap()
}

fn addr_of(url: &str) -> SocketAddr {
    let host_port = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    host_port.parse().unwrap()
}

fn port_of(url: &str) -> u16 {
    addr_of(url).port()
}

/// A client that trusts only `root_pem`, reaching `host` at `addr`.
fn client_for(root_pem: &str, host: &str, addr: SocketAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(host, addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn the_https_api_works_with_the_pinned_ca_and_refuses_other_cas() {
    let env = cluster(2);
    let home = tempfile::tempdir().unwrap();
    let fp = ca_fingerprint(&env);
    for node in 0..2 {
        let api = https_api(&env, node);
        // A wrong fingerprint is refused before the token is sent.
        let wrong = "00".repeat(32);
        let out = hctl_home(
            home.path(),
            &[
                "login",
                "--api",
                &api,
                "--token",
                env.token(),
                "--ca-fingerprint",
                &wrong,
            ],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fingerprint"), "{err}");

        let out = ok(hctl_home(
            home.path(),
            &[
                "login",
                "--api",
                &api,
                "--token",
                env.token(),
                "--ca-fingerprint",
                &fp,
            ],
        ));
        assert!(out.contains("Logged in as"), "{out}");
        // The saved login trusts the CA from then on.
        ok(hctl_home(
            home.path(),
            &["apps:create", &format!("over-tls-{node}")],
        ));
        let info: Value = serde_json::from_str(&ok(hctl_home(
            home.path(),
            &["apps:info", "-a", &format!("over-tls-{node}"), "--json"],
        )))
        .unwrap();
        // HTTPS clients are handed https:// URLs.
        let git = info["git_url"].as_str().unwrap();
        assert!(git.starts_with("https://"), "{info}");
    }

    // Plain HTTP still answers on the same port, with http:// URLs.
    let info: Value = serde_json::from_str(&ok(hctl(
        &env,
        0,
        &["apps:info", "-a", "over-tls-0", "--json"],
    )))
    .unwrap();
    assert!(
        info["git_url"].as_str().unwrap().starts_with("http://"),
        "{info}"
    );

    // A client that trusts another CA is refused at the handshake.
    let other_ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let addr = addr_of(env.api(0));
    let host = addr.ip().to_string();
    let err = client_for(&other_ca, &host, addr)
        .get(format!("{}/account", https_api(&env, 0)))
        .send()
        .unwrap_err();
    assert!(
        err.is_connect() || err.to_string().contains("certificate"),
        "{err:?}"
    );
    // The cluster CA's own client gets in (with the token).
    let resp = client_for(&ca_pem(&env), &host, addr)
        .get(format!("{}/account", https_api(&env, 0)))
        .bearer_auth(env.token())
        .header("Accept", haven_api::ACCEPT)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn an_apps_certificate_is_served_by_sni_on_every_router() {
    let env = cluster(3);
    deploy(&env, "tlsapp", 1);
    ok(hctl(
        &env,
        0,
        &["domains:add", "www.example.test", "-a", "tlsapp"],
    ));

    // The app's own certificate, self-signed for its custom domain.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["www.example.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    // A key of another certificate is refused, naming the problem; nothing is added.
    let other_key = dir.path().join("other.key");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let out = hctl(
        &env,
        1,
        &[
            "certs:add",
            &cert_path.to_string_lossy(),
            &other_key.to_string_lossy(),
            "-a",
            "tlsapp",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");

    let added = ok(hctl(
        &env,
        1,
        &[
            "certs:add",
            &cert_path.to_string_lossy(),
            &key_path.to_string_lossy(),
            "-a",
            "tlsapp",
        ],
    ));
    assert!(added.contains("www.example.test"), "{added}");
    let list = ok(hctl(&env, 2, &["certs", "-a", "tlsapp"]));
    assert!(
        list.contains("www.example.test") && list.contains("SNI"),
        "{list}"
    );
    let domains: Value = env.get_json(0, "/apps/tlsapp/domains").unwrap();
    let custom = domains
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["hostname"] == "www.example.test")
        .unwrap();
    assert!(custom["sni_endpoint"]["id"].is_string(), "{custom}");

    for node in 0..3 {
        let addr = addr_of(env.router(node));
        let client = client_for(&cert.pem(), "www.example.test", addr);
        let url = format!(
            "https://www.example.test:{}/headers",
            port_of(env.router(node))
        );
        let headers: Value = eventually(
            &format!("router {node} serves the app's certificate"),
            Duration::from_secs(20),
            || {
                let r = client.get(&url).send().ok()?;
                (r.status() == 200).then(|| r.json().ok()).flatten()
            },
        );
        assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
    }

    // The app's default host is served with a certificate from the cluster CA.
    let addr = addr_of(env.router(0));
    let client = client_for(&ca_pem(&env), "tlsapp.localhost", addr);
    let r = client
        .get(format!(
            "https://tlsapp.localhost:{}/headers",
            port_of(env.router(0))
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Removed: the routers stop serving it.
    ok(hctl(&env, 0, &["certs:remove", "-a", "tlsapp"]));
    let client = client_for(&cert.pem(), "www.example.test", addr);
    let url = format!(
        "https://www.example.test:{}/headers",
        port_of(env.router(0))
    );
    eventually(
        "the removed certificate is no longer served",
        Duration::from_secs(20),
        || client.get(&url).send().is_err().then_some(()),
    );
    let list = ok(hctl(&env, 0, &["certs", "-a", "tlsapp"]));
    assert!(list.contains("has no SSL certificates"), "{list}");
}

fn git(dir: &Path, args: &[&str], ca: &Path) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_SSL_CAINFO", ca)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap()
}

#[test]
fn a_cluster_without_plain_http_builds_and_serves_over_https() {
    let env = haven_tests::cluster_opts(2, |o| {
        o.config_toml = Some("[tls]\nplain_http = false\n".into());
        o.https = true;
    });
    // Plain HTTP is answered with a pointer to https:// on both ports.
    for url in [env.api(1), env.router(1)] {
        let plain = url.replacen("https://", "http://", 1);
        let r = reqwest::blocking::get(format!("{plain}/")).unwrap();
        assert_eq!(r.status(), 400, "{plain}");
        assert!(r.text().unwrap().contains("https://"));
    }

    // git push over HTTPS to the node that is not the first: its pre-receive hook reaches
    // the API over HTTPS, and the build's slug travels to the other node.
    env.post_json(0, "/apps", &serde_json::json!({"name": "secure"}))
        .unwrap();
    let ca = env.data_dir(0).unwrap().join("ca.pem");
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Procfile"),
        "web: python3 -m http.server $PORT\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("index.html"), "hello over tls\n").unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-qm", "first"],
    ] {
        assert!(git(repo.path(), args, &ca).status.success());
    }
    let host_port = env.api(1).trim_start_matches("https://").to_string();
    let remote = format!("https://git:{}@{host_port}/secure.git", env.token());
    let out = git(repo.path(), &["push", &remote, "main"], &ca);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("Released v2"), "{err}");

    // The app's URLs are https://, and the routers serve it over TLS.
    let info: Value =
        serde_json::from_str(&ok(hctl(&env, 0, &["apps:info", "-a", "secure", "--json"]))).unwrap();
    assert!(
        info["web_url"].as_str().unwrap().starts_with("https://"),
        "{info}"
    );
    assert!(
        info["git_url"].as_str().unwrap().starts_with("https://"),
        "{info}"
    );
    ok(hctl(&env, 0, &["ps:scale", "web=1", "-a", "secure"]));
    let pem = std::fs::read_to_string(&ca).unwrap();
    for node in 0..2 {
        let addr = addr_of(env.router(node));
        let client = client_for(&pem, "secure.localhost", addr);
        let url = format!("https://secure.localhost:{}/", port_of(env.router(node)));
        let body = eventually(
            &format!("the app answers over HTTPS through router {node}"),
            Duration::from_secs(60),
            || {
                let r = client.get(&url).send().ok()?;
                (r.status() == 200).then(|| r.text().ok()).flatten()
            },
        );
        assert!(body.contains("hello over tls"), "{body}");
    }
}

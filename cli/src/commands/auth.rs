//! `login`, `logout`, `whoami`, `auth:token`, `authorizations*` and `passwords:set`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail, Context, Result};
use haven_api as w;
use reqwest::Method;

use crate::client::{self, print_json, Api, Login};
use crate::output::{key_values, table};

/// How `hctl login` proves who you are.
pub enum Credentials {
    Token(String),
    Password { email: String, password: String },
}

/// The cluster CA to trust for `url`: with a fingerprint, the CA in the server's chain
/// that matches it (checked by one request, then saved); else the one saved by an
/// earlier login to the same URL.
fn login_ca(url: &str, fingerprint: Option<&str>) -> Result<Option<String>> {
    let Some(fp) = fingerprint else {
        let saved = Login::load()?;
        return Ok(saved
            .ca_pem
            .filter(|_| saved.api.as_deref() == Some(url.trim_end_matches('/'))));
    };
    if !url.starts_with("https://") {
        bail!("--ca-fingerprint pins the CA of an HTTPS API; use --api https://NODE:7400");
    }
    let (probe, verifier) = Api::pinned(url, "", fp)?;
    // Any answer will do (401 included): what matters is the handshake.
    let _ = probe.get::<serde_json::Value>("/account");
    let der = verifier.matched_ca().ok_or_else(|| {
        anyhow!("{url} did not present a certificate from the CA with fingerprint {fp}; check the fingerprint (havend init prints it) and the URL")
    })?;
    Ok(Some(pem_of(der.as_ref())))
}

/// A DER certificate as PEM.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// `hctl login`: with a token, checks it; with an email and password, trades them for a
/// new token (`POST /oauth/authorizations`, as `heroku login -i` does). Saves the URL,
/// the token and, with `--ca-fingerprint`, the cluster CA it pinned.
pub fn login(
    api_flag: Option<&str>,
    token: Option<&str>,
    email: Option<&str>,
    ca_fingerprint: Option<&str>,
) -> Result<()> {
    let url = api_flag
        .map(str::to_string)
        .or_else(|| std::env::var("HAVEN_API").ok())
        .ok_or_else(|| anyhow!("pass --api http://NODE:7400 (the API of any node)"))?;
    let ca_pem = login_ca(&url, ca_fingerprint)?;
    let creds = match (token, email) {
        (Some(t), _) => Credentials::Token(t.to_string()),
        (None, Some(e)) => Credentials::Password {
            email: e.to_string(),
            password: read_line("Password: ", true)?,
        },
        (None, None) => read_credentials_interactively()?,
    };
    let token = match creds {
        Credentials::Token(t) => t,
        Credentials::Password { email, password } => {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "a terminal".into());
            let body = w::AuthorizationCreate {
                description: Some(format!("hctl login from {host}")),
                expires_in: None,
                scope: None,
            };
            let made: w::OAuthAuthorization = Api::new(&url, "", ca_pem.as_deref())?
                .post_with_password("/oauth/authorizations", &email, &password, &body)?
                .value;
            made.access_token
                .map(|a| a.token)
                .ok_or_else(|| anyhow!("{url} answered the login without a token"))?
        }
    };
    let client = Api::new(&url, &token, ca_pem.as_deref())?;
    let account: w::Account = client.get("/account")?.value;
    let path = Login {
        api: Some(client.url.clone()),
        token: Some(token),
        ca_pem: ca_pem.clone(),
    }
    .save()?;
    println!(
        "Logged in as {} at {} (saved in {})",
        account.email,
        client.url,
        path.display()
    );
    if let (Some(pem), Some(dir)) = (ca_pem, path.parent()) {
        // git (and curl) read the CA from a file.
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, pem).with_context(|| format!("write {}", ca_file.display()))?;
        println!(
            "Pinned the cluster CA; for git push over HTTPS: git config --global http.{}/.sslCAInfo {}",
            client.url,
            ca_file.display()
        );
    }
    Ok(())
}

/// One line of stdin, after a prompt on a terminal. Passwords are read the same way (the
/// terminal echoes them; pipe them in to keep them off the screen).
fn read_line(prompt: &str, required: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let t = line.trim_end_matches(['\n', '\r']).to_string();
    if required && t.trim().is_empty() {
        bail!(
            "nothing given for {:?}",
            prompt.trim_end_matches([':', ' '])
        );
    }
    Ok(t)
}

/// Email and password, or a token: a first line with `@` is an email, and the password
/// follows on the next line.
fn read_credentials_interactively() -> Result<Credentials> {
    let first = read_line("Email or API token: ", true)
        .context("no credentials given; pass --token, or --email and the password on stdin")?;
    let first = first.trim().to_string();
    if first.contains('@') {
        let password = read_line("Password: ", true)?;
        Ok(Credentials::Password {
            email: first,
            password,
        })
    } else {
        Ok(Credentials::Token(first))
    }
}

/// `hctl logout`: removes the saved login.
pub fn logout() -> Result<()> {
    let path = client::config_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => println!("Logged out (removed {})", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in"),
        Err(e) => return Err(e).context(format!("remove {}", path.display())),
    }
    Ok(())
}

/// `hctl whoami`.
pub fn whoami(api: &Api) -> Result<()> {
    let account: w::Account = api.get("/account")?.value;
    println!("{}", account.email);
    Ok(())
}

/// `hctl auth:token`: the token hctl uses (from HAVEN_TOKEN or the saved login).
pub fn token(api: &Api) -> Result<()> {
    println!("{}", api.token());
    Ok(())
}

/// `hctl passwords:set`: the new password from stdin (twice on a terminal).
pub fn set_password(api: &Api) -> Result<()> {
    let password = read_line("New password: ", true)?;
    if std::io::stdin().is_terminal() {
        let again = read_line("Again: ", true)?;
        if again != password {
            bail!("the two passwords differ; nothing changed");
        }
    }
    let account: w::Account = api
        .call_with(
            Method::PUT,
            "/account/password",
            &w::PasswordUpdate { password },
        )?
        .value;
    println!("Setting the password of {}... done", account.email);
    println!("Log in with it: hctl login --email {}", account.email);
    Ok(())
}

/// The `Expires` column: when, or never.
fn expires(a: &w::OAuthAuthorization) -> String {
    a.expires_at.clone().unwrap_or_else(|| "never".into())
}

/// `hctl authorizations`.
pub fn authorizations(api: &Api, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::OAuthAuthorization>>("/oauth/authorizations")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|a| {
            vec![
                a.description.clone(),
                a.id.clone(),
                a.scope.join(","),
                expires(a),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No OAuth authorizations.");
    } else {
        println!(
            "{}",
            table(&["Description", "ID", "Scope", "Expires"], &rows)
        );
    }
    Ok(())
}

fn show_authorization(a: &w::OAuthAuthorization) {
    let mut rows = vec![
        ("Client", "<none>".to_string()),
        ("ID", a.id.clone()),
        ("Description", a.description.clone()),
        ("Scope", a.scope.join(",")),
    ];
    if let Some(t) = &a.access_token {
        rows.push(("Token", t.token.clone()));
    }
    rows.push(("Expires at", expires(a)));
    rows.push(("Updated at", a.updated_at.clone()));
    println!("{}", key_values(&rows));
}

/// `hctl authorizations:create [--description D] [--expires-in SECONDS]`: prints the new
/// token once.
pub fn create_authorization(
    api: &Api,
    description: Option<&str>,
    expires_in: Option<i64>,
    json: bool,
) -> Result<()> {
    let body = w::AuthorizationCreate {
        description: description.map(str::to_string),
        expires_in,
        scope: None,
    };
    let made =
        api.call_with::<w::OAuthAuthorization, _>(Method::POST, "/oauth/authorizations", &body)?;
    if json {
        return print_json(&made);
    }
    eprintln!("Creating OAuth Authorization... done");
    show_authorization(&made.value);
    Ok(())
}

/// `hctl authorizations:info ID`.
pub fn authorization_info(api: &Api, id: &str, json: bool) -> Result<()> {
    let a = api.get::<w::OAuthAuthorization>(&format!("/oauth/authorizations/{id}"))?;
    if json {
        return print_json(&a);
    }
    show_authorization(&a.value);
    Ok(())
}

/// `hctl authorizations:revoke ID`.
pub fn revoke_authorization(api: &Api, id: &str) -> Result<()> {
    let a: w::OAuthAuthorization = api
        .call(Method::DELETE, &format!("/oauth/authorizations/{id}"))?
        .value;
    println!("Revoking OAuth Authorization {}... done", a.description);
    Ok(())
}

/// `hctl users` (admins).
pub fn users(api: &Api, json: bool) -> Result<()> {
    let list = api.get::<Vec<w::ClusterUser>>("/cluster/users")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|u| {
            vec![
                u.email.clone(),
                if u.admin { "admin" } else { "user" }.into(),
                if u.password { "yes" } else { "no" }.into(),
                u.apps.to_string(),
                u.created_at.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["Email", "Role", "Password", "Apps", "Created"], &rows)
    );
    Ok(())
}

/// `hctl users:create EMAIL [--admin] [--password]` (admins): prints the first token (or
/// the generated password) once.
pub fn create_user(api: &Api, email: &str, admin: bool, password: bool, json: bool) -> Result<()> {
    let body = w::ClusterUserCreate {
        email: email.to_string(),
        admin,
        password,
    };
    let made = api.call_with::<w::ClusterUserCreated, _>(Method::POST, "/cluster/users", &body)?;
    if json {
        return print_json(&made);
    }
    let made = made.value;
    let role = if made.user.admin { "admin" } else { "user" };
    println!("Creating {} ({role})... done", made.user.email);
    if let Some(t) = made.token {
        println!("API token (shown only once; hand it to them safely):");
        println!("  {t}");
        println!(
            "They log in with: hctl login --api {} --token TOKEN",
            api.url
        );
    }
    if let Some(p) = made.password {
        println!("Password (shown only once; they should change it with hctl passwords:set):");
        println!("  {p}");
        println!(
            "They log in with: hctl login --api {} --email {}",
            api.url, made.user.email
        );
    }
    Ok(())
}

/// `hctl users:remove EMAIL --confirm EMAIL` (admins).
pub fn remove_user(api: &Api, email: &str, confirm: Option<&str>) -> Result<()> {
    if confirm != Some(email) {
        bail!("this removes {email} and revokes their tokens; run again with --confirm {email}");
    }
    let u: w::ClusterUser = api
        .call(Method::DELETE, &format!("/cluster/users/{email}"))?
        .value;
    println!("Removing {}... done", u.email);
    Ok(())
}

//! The HTTP client of `hctl`: login config, requests with the token, one-line errors.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use haven_api::ErrorBody;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `~/.config/hctl/config.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Login {
    pub api: Option<String>,
    pub token: Option<String>,
    /// The cluster CA (PEM), saved by `hctl login --ca-fingerprint` after the server's
    /// chain matched the fingerprint; trusted for `https://` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// Where the login is kept: `$XDG_CONFIG_HOME/hctl/config.toml`, else `~/.config/...`.
pub fn config_path() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?)
            .join(".config"),
    };
    Ok(base.join("hctl").join("config.toml"))
}

impl Login {
    pub fn load() -> Result<Login> {
        let path = config_path()?;
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("parse {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Login::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Saves with mode 0600 in a 0700 directory.
    pub fn save(&self) -> Result<PathBuf> {
        let path = config_path()?;
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(toml::to_string(self)?.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// An API client bound to one node and token.
pub struct Api {
    pub url: String,
    token: String,
    http: Client,
    /// The cluster CA this client trusts besides the usual roots (PEM).
    ca_pem: Option<String>,
}

impl Api {
    /// From flags, env (`HAVEN_API`, `HAVEN_TOKEN`, and `HAVEN_CA_FILE`: a PEM CA to trust
    /// for HTTPS) and the saved login, in that order.
    pub fn from_env(api_flag: Option<&str>) -> Result<Api> {
        let login = Login::load()?;
        let url = api_flag
            .map(str::to_string)
            .or_else(|| std::env::var("HAVEN_API").ok().filter(|v| !v.is_empty()))
            .or(login.api)
            .ok_or_else(|| {
                anyhow!("no API URL; run hctl login --api http://NODE:7400 or set HAVEN_API")
            })?;
        let token = std::env::var("HAVEN_TOKEN")
            .ok()
            .filter(|v| !v.is_empty())
            .or(login.token)
            .ok_or_else(|| anyhow!("no API token; run hctl login or set HAVEN_TOKEN"))?;
        let ca = match std::env::var_os("HAVEN_CA_FILE").filter(|v| !v.is_empty()) {
            Some(path) => Some(fs::read_to_string(&path).with_context(|| {
                format!("read HAVEN_CA_FILE {}", PathBuf::from(&path).display())
            })?),
            None => login.ca_pem,
        };
        Api::new(&url, &token, ca.as_deref())
    }

    /// The token, for protocols that carry it themselves (the attach WebSocket).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A client of `url` with `token`, trusting `ca_pem` (the cluster CA) for HTTPS as
    /// well as the usual roots.
    pub fn new(url: &str, token: &str, ca_pem: Option<&str>) -> Result<Api> {
        let mut http = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .use_rustls_tls();
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .context("the saved cluster CA is not a PEM certificate; run hctl login again")?;
            http = http.add_root_certificate(ca);
        }
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: http.build()?,
            ca_pem: ca_pem.map(str::to_string),
        })
    }

    /// A client that trusts only a CA whose fingerprint is `fingerprint` (found in the
    /// server's chain), for the first contact of `hctl login --ca-fingerprint`. Returns
    /// the verifier too: after a request, it holds the CA that matched.
    pub fn pinned(
        url: &str,
        token: &str,
        fingerprint: &str,
    ) -> Result<(Api, std::sync::Arc<haven_api::pin::PinnedCaVerifier>)> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = std::sync::Arc::new(haven_api::pin::PinnedCaVerifier::new(
            fingerprint,
            provider.clone(),
        ));
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .use_preconfigured_tls(tls)
            .build()?;
        Ok((
            Api {
                url: url.trim_end_matches('/').to_string(),
                token: token.to_string(),
                http,
                ca_pem: None,
            },
            verifier,
        ))
    }

    /// The cluster CA this client trusts (PEM), if any.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("Accept", haven_api::ACCEPT);
        if self.token.is_empty() {
            req
        } else {
            req.bearer_auth(&self.token)
        }
    }

    /// POSTs `body` to `path` with Basic `email:password` instead of the token: the login
    /// call that trades a password for a token. Build the client with an empty token.
    pub fn post_with_password<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        email: &str,
        password: &str,
        body: &B,
    ) -> Result<Answer<T>> {
        let req = self
            .request(Method::POST, path)
            .basic_auth(email, Some(password))
            .json(body);
        self.call_json(req, path)
    }

    fn send(&self, req: RequestBuilder) -> Result<reqwest::blocking::Response> {
        let resp = req.send().map_err(|e| {
            let chain = error_chain(&e);
            if chain.to_ascii_lowercase().contains("certificate") {
                return anyhow!(
                    "{}: the server's TLS certificate is not trusted ({chain}); log in with hctl login --api {} --ca-fingerprint FINGERPRINT (havend init prints it)",
                    self.url,
                    self.url
                );
            }
            let why = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection refused or unreachable".to_string()
            } else {
                e.to_string()
            };
            anyhow!("cannot reach {}: {why}; check the URL (hctl login --api URL) and that havend is running there", self.url)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Option<ErrorBody> = resp.json().ok();
        let message = body
            .map(|b| b.message)
            .unwrap_or_else(|| status.to_string());
        match status {
            StatusCode::UNAUTHORIZED if self.token.is_empty() => {
                bail!("{message} ({} refused the email and password)", self.url)
            }
            StatusCode::UNAUTHORIZED => {
                bail!("the token was refused by {}; run hctl login", self.url)
            }
            _ => bail!("{message}"),
        }
    }

    /// Sends a request and decodes the answer into `T`.
    fn call_json<T: DeserializeOwned>(&self, req: RequestBuilder, path: &str) -> Result<Answer<T>> {
        let raw: Value = self
            .send(req)?
            .json()
            .with_context(|| format!("decode the answer of {}{path}", self.url))?;
        Answer::decode(raw).with_context(|| format!("decode the answer of {}{path}", self.url))
    }

    /// Sends a request without a body and decodes the answer into `T`.
    pub fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<Answer<T>> {
        self.call_json(self.request(method, path), path)
    }

    /// Sends a request with a JSON body and decodes the answer into `T`.
    pub fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Answer<T>> {
        self.call_json(self.request(method, path).json(body), path)
    }

    /// Like [`Api::call_with`] for calls that answer when long work is done (a backup),
    /// with no 30 s limit.
    pub fn call_long<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Answer<T>> {
        let req = self
            .request(method, path)
            .json(body)
            .timeout(Duration::from_secs(6 * 3600));
        self.call_json(req, path)
    }

    /// GETs `path` into the file `dest` (written whole, then renamed); returns its size.
    pub fn download(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let req = self
            .request(Method::GET, path)
            .timeout(Duration::from_secs(6 * 3600));
        let mut resp = self.send(req)?;
        let tmp = dest.with_extension("part");
        // Downloads (backups, dumps) hold secrets: only the caller reads them.
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
        }
        .with_context(|| format!("create {}", tmp.display()))?;
        let n = std::io::copy(&mut resp, &mut f).context("download")?;
        f.sync_all()?;
        fs::rename(&tmp, dest).with_context(|| format!("write {}", dest.display()))?;
        Ok(n)
    }

    /// PUTs a file's bytes to a full URL (a source's `put_url`), with no overall timeout.
    pub fn put_file(&self, url: &str, file: std::fs::File) -> Result<()> {
        let req = self
            .http
            .put(url)
            .bearer_auth(&self.token)
            .header("Content-Type", "application/octet-stream")
            .timeout(Duration::from_secs(3600))
            .body(reqwest::blocking::Body::from(file));
        self.send(req).map(|_| ())
    }

    /// PUTs `len` bytes read from `body` to `path` (a stack image) with no overall
    /// timeout, and decodes the answer into `T`.
    pub fn put_reader<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl std::io::Read + Send + 'static,
        len: u64,
    ) -> Result<Answer<T>> {
        let req = self
            .request(Method::PUT, path)
            .header("Content-Type", "application/octet-stream")
            .timeout(Duration::from_secs(6 * 3600))
            .body(reqwest::blocking::Body::sized(body, len));
        self.call_json(req, path)
    }

    /// GETs a full URL (a build's `output_stream_url`) and hands each line to `f` as it
    /// arrives, until the server ends the stream.
    pub fn stream_lines(&self, url: &str, mut f: impl FnMut(&str)) -> Result<()> {
        use std::io::BufRead;
        let req = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(6 * 3600));
        let resp = self.send(req)?;
        for line in std::io::BufReader::new(resp).lines() {
            match line {
                Ok(l) => f(&l),
                Err(e) => bail!("the output stream broke off: {e}"),
            }
        }
        Ok(())
    }

    /// GETs `path` and decodes the answer into `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>> {
        self.call(Method::GET, path)
    }

    /// GETs one page of a list (no `Next-Range` following).
    pub fn get_page<T: DeserializeOwned>(&self, path: &str, range: &str) -> Result<Vec<T>> {
        let req = self.request(Method::GET, path).header("Range", range);
        Ok(self.call_json::<Vec<T>>(req, path)?.value)
    }

    /// GETs every page of a list, following `Next-Range`; each item keeps its JSON.
    pub fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        first_range: &str,
    ) -> Result<Vec<Answer<T>>> {
        let mut out = Vec::new();
        let mut range = Some(first_range.to_string());
        let mut pages = 0;
        while let Some(r) = range.take() {
            pages += 1;
            if pages > 1000 {
                bail!("the server kept paginating {path}; giving up");
            }
            let resp = self.send(self.request(Method::GET, path).header("Range", r))?;
            let next = (resp.status() == StatusCode::PARTIAL_CONTENT)
                .then(|| {
                    resp.headers()
                        .get("next-range")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten();
            let page: Vec<Value> = resp
                .json()
                .with_context(|| format!("decode the answer of {}{path}", self.url))?;
            for raw in page {
                out.push(
                    Answer::decode(raw)
                        .with_context(|| format!("decode the answer of {}{path}", self.url))?,
                );
            }
            range = next;
        }
        Ok(out)
    }
}

/// A decoded answer, with the server's JSON kept as it came so that `--json` prints
/// everything the server said, including fields `T` does not model.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    pub raw: Value,
}

impl<T: DeserializeOwned> Answer<T> {
    /// Decodes `raw` into `T`; a missing or mistyped field is an error, never a blank.
    pub fn decode(raw: Value) -> Result<Answer<T>> {
        let value = T::deserialize(&raw)?;
        Ok(Answer { value, raw })
    }
}

/// Prints the server's JSON of one answer.
pub fn print_json<T>(answer: &Answer<T>) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&answer.raw)?);
    Ok(())
}

/// Prints the server's JSON of a list gathered from pages, as one array.
pub fn print_json_list<T>(items: &[Answer<T>]) -> Result<()> {
    let list: Vec<&Value> = items.iter().map(|a| &a.raw).collect();
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn login_is_saved_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Tests in this binary that touch XDG_CONFIG_HOME run only here.
        std::env::set_var("XDG_CONFIG_HOME", dir.path());
        let login = Login {
            api: Some("http://n:7400".into()),
            token: Some("t".into()),
            ca_pem: Some("PEM".into()),
        };
        let path = login.save().unwrap();
        assert_eq!(Login::load().unwrap(), login);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn answers_keep_the_servers_json_and_fail_on_missing_fields() {
        let raw = serde_json::json!({"id": "x", "message": "m", "extra": 1});
        let answer = Answer::<ErrorBody>::decode(raw.clone()).unwrap();
        assert_eq!(answer.value.message, "m");
        assert_eq!(answer.raw, raw, "fields the type does not model are kept");
        let renamed = serde_json::json!({"id": "x", "msg": "m"});
        assert!(Answer::<ErrorBody>::decode(renamed).is_err());
    }
}

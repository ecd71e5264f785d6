//! `hctl run CMD`: a one-off dyno attached to this terminal. The dyno's stdin, stdout and
//! stderr travel over a WebSocket to the node that runs it; `hctl` exits with the dyno's
//! exit code.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use haven_api as w;
use reqwest::Method;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::client::Api;
use haven_api::attach::{EXIT, STDERR, STDIN, STDIN_EOF, STDOUT};

/// Runs `command` in a one-off dyno of `app`; returns its exit code.
pub fn run(
    api: &Api,
    app: &str,
    command: &str,
    env: &[(String, String)],
    size: Option<&str>,
) -> Result<i32> {
    let body = w::DynoCreate {
        command: command.to_string(),
        attach: Some(true),
        env: (!env.is_empty()).then(|| env.iter().cloned().collect()),
        size: size.map(str::to_string),
        process_type: None,
    };
    let dyno: w::Dyno = api
        .call_with(Method::POST, &format!("/apps/{app}/dynos"), &body)?
        .value;
    let url = dyno
        .attach_url
        .ok_or_else(|| anyhow!("the server gave no attach_url"))?;
    eprintln!("Running `{command}` on ⬢ {app}... up, {}", dyno.name);
    let tls = url.starts_with("https://");
    let ws_url = if tls {
        url.replacen("https://", "wss://", 1)
    } else {
        url.replacen("http://", "ws://", 1)
    };
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .context("bad attach URL")?;
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", api.token())
            .parse()
            .context("bad token")?,
    );
    let host = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let tcp = TcpStream::connect(&host).with_context(|| format!("connect to {host}"))?;
    let stream = if tls {
        AttachStream::tls(tcp, &host, api.ca_pem())?
    } else {
        AttachStream::Plain(tcp)
    };
    let (mut ws, _) =
        tungstenite::client(req, stream).map_err(|e| anyhow!("attach to the dyno: {e}"))?;
    ws.get_mut()
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(50)))?;

    // stdin is read on its own thread and handed over a channel.
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut stdin_open = true;
    loop {
        while stdin_open {
            match rx.try_recv() {
                Ok(Some(data)) => {
                    let mut f = vec![STDIN];
                    f.extend_from_slice(&data);
                    ws.send(Message::Binary(f.into()))?;
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    ws.send(Message::Binary(vec![STDIN_EOF].into()))?;
                    stdin_open = false;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        match ws.read() {
            Ok(Message::Binary(b)) => match b.first() {
                Some(&STDOUT) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&b[1..])?;
                    out.flush()?;
                }
                Some(&STDERR) => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(&b[1..])?;
                    err.flush()?;
                }
                Some(&EXIT) if b.len() >= 5 => {
                    let code = i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                    let _ = ws.close(None);
                    return Ok(code);
                }
                _ => {}
            },
            Ok(Message::Close(_)) => {
                bail!("the dyno's node closed the connection before the dyno exited")
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => bail!("lost the dyno's connection: {e}"),
        }
    }
}

/// The attach connection: plain TCP for `http://` nodes, TLS for `https://` ones (trusting
/// the saved cluster CA and the usual roots).
enum AttachStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl AttachStream {
    fn tls(tcp: TcpStream, host_port: &str, ca_pem: Option<&str>) -> Result<AttachStream> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = ca_pem {
            let ca = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .context("the saved cluster CA is not a PEM certificate")?;
            roots.add(ca).context("the saved cluster CA is unusable")?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = match host_port.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => host_port,
        };
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .with_context(|| format!("{host} is not a host name"))?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name)?;
        Ok(AttachStream::Tls(Box::new(rustls::StreamOwned::new(
            conn, tcp,
        ))))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            AttachStream::Plain(s) => s,
            AttachStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for AttachStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            AttachStream::Plain(s) => s.read(buf),
            AttachStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for AttachStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            AttachStream::Plain(s) => s.write(buf),
            AttachStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            AttachStream::Plain(s) => s.flush(),
            AttachStream::Tls(s) => s.flush(),
        }
    }
}

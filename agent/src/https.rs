//! HTTP and HTTPS on one port, for the API (and git) and the router.
//!
//! A TLS connection starts with a handshake record (first byte 0x16), an HTTP request
//! with a method name in ASCII; the first byte, peeked, tells which. Plain HTTP can be
//! turned off (`[tls] plain_http = false`): such a connection gets one `400` telling the
//! client to use `https://`, and is closed. Handshakes run in their own tasks, so a slow
//! client never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

/// Longest wait for a new connection's first byte and for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection after the protocol is known.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

/// Where a connection came from and how: handlers read it to hand out `https://` URLs
/// to HTTPS clients, the router to set `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Tells HTTP from HTTPS and runs the handshake.
#[derive(Clone)]
pub struct Acceptor {
    tls: tokio_rustls::TlsAcceptor,
    plain_http: bool,
}

impl Acceptor {
    pub fn new(config: rustls::ServerConfig, plain_http: bool) -> Acceptor {
        Acceptor {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            plain_http,
        }
    }

    /// The connection as HTTP or HTTPS; `None` when it ended, timed out, failed its
    /// handshake, or was plain HTTP where that is off (it was told so).
    pub async fn accept(&self, stream: TcpStream) -> Option<Conn> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => return None,
        }
        if first[0] == TLS_HANDSHAKE {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(stream)).await {
                Ok(Ok(tls)) => Some(Conn::Tls(Box::new(tls))),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        } else if self.plain_http {
            Some(Conn::Plain(stream))
        } else {
            refuse_plain(stream).await;
            None
        }
    }
}

async fn refuse_plain(mut stream: TcpStream) {
    let body = "This node accepts HTTPS only: use an https:// URL.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// A connection whose first bytes were read to tell its protocol, and are given back to
/// the next reader first.
pub struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    conn: Conn,
}

impl Replay {
    pub fn new(prefix: Vec<u8>, conn: Conn) -> Replay {
        Replay {
            prefix,
            pos: 0,
            conn,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}

/// TLS connections whose first bytes are `prefix` go to `tx` instead of HTTP: the Heroku
/// CLI's `heroku run` rendezvous, which speaks its own protocol on the API port.
pub struct Divert {
    pub prefix: &'static [u8],
    pub tx: mpsc::Sender<(Replay, ConnInfo)>,
}

/// Reads from `conn` until its first bytes agree with `prefix` for its whole length, or
/// disagree (at the first differing byte), or it ends: those bytes, and whether they are
/// the prefix.
async fn sniff(conn: &mut Conn, prefix: &[u8]) -> io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::with_capacity(prefix.len());
    let mut buf = [0u8; 64];
    while got.len() < prefix.len() {
        let want = (prefix.len() - got.len()).min(buf.len());
        let n = conn.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok((got, false));
        }
        got.extend_from_slice(&buf[..n]);
        if !prefix.starts_with(&got) {
            return Ok((got, false));
        }
    }
    Ok((got, true))
}

/// A listener whose connections are already past [`Acceptor::accept`]: what `axum::serve`
/// takes for the API.
pub struct HttpsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(Replay, ConnInfo)>,
}

impl HttpsListener {
    /// Accepts on `listener` in a task of its own; each connection's protocol is told in
    /// a task too (and, with `divert`, a TLS connection's first bytes are read for it).
    pub fn spawn(
        listener: TcpListener,
        acceptor: Acceptor,
        divert: Option<Divert>,
    ) -> io::Result<HttpsListener> {
        let divert = divert.map(Arc::new);
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (stream, remote) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let divert = divert.clone();
                tokio::spawn(async move {
                    let Some(mut conn) = acceptor.accept(stream).await else {
                        return;
                    };
                    let info = ConnInfo {
                        remote,
                        tls: conn.is_tls(),
                    };
                    let divert = divert.filter(|_| conn.is_tls());
                    let Some(divert) = divert else {
                        let _ = tx.send((Replay::new(Vec::new(), conn), info)).await;
                        return;
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, sniff(&mut conn, divert.prefix))
                        .await
                    {
                        Ok(Ok((got, true))) => {
                            let _ = divert.tx.send((Replay::new(got, conn), info)).await;
                        }
                        Ok(Ok((got, false))) => {
                            let _ = tx.send((Replay::new(got, conn), info)).await;
                        }
                        Ok(Err(_)) | Err(_) => {}
                    }
                });
            }
        });
        Ok(HttpsListener { local, rx })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = Replay;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Replay, ConnInfo) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (it never does before the server): wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<ConnInfo> {
        Ok(ConnInfo {
            remote: self.local,
            tls: false,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> ConnInfo {
        *stream.remote_addr()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tls;

    fn acceptor(plain: bool) -> (Acceptor, String) {
        let ca = tls::generate_ca().unwrap();
        let cert = tls::issue_server_cert(&ca, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let key = tls::certified_key(&cert.cert_pem, &cert.key_pem).unwrap();
        let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
        let cfg = tls::https_server_config(resolver).unwrap();
        (Acceptor::new(cfg, plain), ca.cert_pem)
    }

    /// Serves one connection: echoes whether it was TLS.
    async fn serve_one(acceptor: Acceptor) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            if let Some(mut c) = acceptor.accept(s).await {
                let mut buf = [0u8; 4];
                c.read_exact(&mut buf).await.unwrap();
                let answer = if c.is_tls() { b"tls!" } else { b"txt!" };
                c.write_all(answer).await.unwrap();
                c.flush().await.unwrap();
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn one_port_takes_http_and_https() {
        let (a, ca) = acceptor(true);
        let (addr, task) = serve_one(a.clone()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET ").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"txt!");
        task.await.unwrap();

        let (addr, task) = serve_one(a).await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::pem::PemObject::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(b"GET ").await.unwrap();
        s.flush().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"tls!");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_divert_prefix_takes_tls_connections_and_others_get_their_bytes_back() {
        use axum::serve::Listener as _;
        let (a, ca) = acceptor(true);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (dtx, mut drx) = mpsc::channel(4);
        let mut listener = HttpsListener::spawn(
            l,
            a,
            Some(Divert {
                prefix: b"rdv-",
                tx: dtx,
            }),
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::pem::PemObject::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let connect = |first: &'static [u8]| {
            let cfg = cfg.clone();
            async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let mut s = tokio_rustls::TlsConnector::from(cfg)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .unwrap();
                s.write_all(first).await.unwrap();
                s.flush().await.unwrap();
                s
            }
        };
        let _r = connect(b"rdv-secret\r\n").await;
        let (mut conn, info) = drx.recv().await.unwrap();
        assert!(info.tls);
        let mut buf = [0u8; 12];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"rdv-secret\r\n");

        let _h = connect(b"GET / HTTP/1.1\r\n").await;
        let (mut conn, _) = listener.accept().await;
        let mut buf = [0u8; 16];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn plain_http_can_be_turned_off() {
        let (a, _) = acceptor(false);
        let (addr, task) = serve_one(a).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("https://"), "{answer}");
        task.await.unwrap();
    }
}

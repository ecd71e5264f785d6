//! Whether an add-on server answers, by its own protocol: Postgres asks for
//! authentication after a startup message (it answers `57P03` while it starts up or
//! recovers); Redis answers `PING` (`-NOAUTH` counts: it is up, it wants the password;
//! `-LOADING` does not).

use std::time::Duration;

use haven_raft::catalog::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Postgres v3.0 startup message for `user` and database `postgres`.
fn startup_message(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "postgres")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Whether a Postgres server's first answer means it accepts connections: an
/// authentication request (`R`), or an error other than "cannot connect now" (57P03).
pub fn postgres_ready(answer: &[u8]) -> bool {
    match answer.first() {
        Some(b'R') => true,
        Some(b'E') => !answer.windows(6).any(|w| w == b"C57P03"),
        _ => false,
    }
}

/// Whether a Redis server's answer to `PING` means it serves.
pub fn redis_ready(answer: &[u8]) -> bool {
    answer.starts_with(b"+PONG") || answer.starts_with(b"-NOAUTH")
}

/// Asks the server at `host:port` once, within `timeout`.
pub async fn answers(engine: Engine, host: &str, port: u16, user: &str, timeout: Duration) -> bool {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let attempt = async {
        let mut s = TcpStream::connect(&addr).await.ok()?;
        let ask = match engine {
            Engine::Postgres => startup_message(user),
            Engine::Redis => b"PING\r\n".to_vec(),
        };
        s.write_all(&ask).await.ok()?;
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).await.ok()?;
        buf.truncate(n);
        Some(match engine {
            Engine::Postgres => postgres_ready(&buf),
            Engine::Redis => redis_ready(&buf),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_like_the_servers_mean_them() {
        assert!(postgres_ready(b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256"));
        assert!(!postgres_ready(
            b"E\0\0\0\x50SFATAL\0C57P03\0Mthe database system is starting up\0"
        ));
        assert!(postgres_ready(b"E\0\0\0\x50SFATAL\0C28000\0Mno role\0"));
        assert!(!postgres_ready(b""));
        assert!(redis_ready(b"+PONG\r\n"));
        assert!(redis_ready(b"-NOAUTH Authentication required.\r\n"));
        assert!(!redis_ready(
            b"-LOADING Redis is loading the dataset in memory\r\n"
        ));
        let m = startup_message("u1");
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
    }
}

//! The scheme of the connection a request came on, for the URLs the API hands out: a
//! client on HTTPS gets `https://` URLs (log sessions, sources, build outputs, slugs,
//! attach, git), one on plain HTTP the node's configured ones.
//!
//! The middleware runs each handler inside [`scope`]; the conversion functions that build
//! URLs call [`public_url`] wherever they are, without a parameter through every layer.

use std::future::Future;

use axum::extract::ConnectInfo;
use axum::extract::Request;

use crate::https::ConnInfo;

tokio::task_local! {
    static OVER_TLS: bool;
}

/// Whether `req` came over TLS.
pub fn over_tls(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .is_some_and(|c| c.0.tls)
}

/// Runs `f` (the rest of a request's handling) knowing whether it came over TLS.
pub async fn scope<F: Future>(tls: bool, f: F) -> F::Output {
    OVER_TLS.scope(tls, f).await
}

/// `url` (one of this cluster's `http://` or `https://` URLs) in the scheme of the
/// request being handled: `https://` for a request that came over TLS.
pub fn public_url(url: &str) -> String {
    let tls = OVER_TLS.try_with(|t| *t).unwrap_or(false);
    match url.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => url.to_string(),
    }
}

/// Whether `url` starts with `prefix` once both have their scheme removed: a URL this
/// node handed out over either scheme.
pub fn same_place(url: &str, prefix: &str) -> bool {
    fn bare(u: &str) -> &str {
        u.strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"))
            .unwrap_or(u)
    }
    bare(url).starts_with(bare(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_follow_the_requests_scheme() {
        assert_eq!(public_url("http://n1:7400/x"), "http://n1:7400/x");
        let tls = OVER_TLS
            .scope(true, async { public_url("http://n1:7400/x") })
            .await;
        assert_eq!(tls, "https://n1:7400/x");
        let kept = OVER_TLS
            .scope(true, async { public_url("https://n1:7400/x") })
            .await;
        assert_eq!(kept, "https://n1:7400/x");
        assert!(same_place(
            "https://n1:7400/sources/1",
            "http://n1:7400/sources/"
        ));
        assert!(!same_place(
            "https://n2:7400/sources/1",
            "http://n1:7400/sources/"
        ));
    }
}

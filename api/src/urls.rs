//! URLs the API hands out that clients open themselves.

/// `http://APP.DOMAIN:PORT/` (or `https://` when the node's router is HTTPS-only): where
/// the routers answer for app `app` under the cluster's app domain, the port left out
/// when it is the scheme's default.
pub fn web_url(app: &str, domain: &str, router_port: u16, https: bool) -> String {
    let (scheme, default_port) = if https { ("https", 443) } else { ("http", 80) };
    if router_port == default_port {
        format!("{scheme}://{app}.{domain}/")
    } else {
        format!("{scheme}://{app}.{domain}:{router_port}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_leave_out_the_default_port() {
        assert_eq!(
            web_url("my-app", "haven.test", 80, false),
            "http://my-app.haven.test/"
        );
        assert_eq!(
            web_url("my-app", "haven.test", 8080, false),
            "http://my-app.haven.test:8080/"
        );
        assert_eq!(
            web_url("my-app", "haven.test", 443, true),
            "https://my-app.haven.test/"
        );
        assert_eq!(
            web_url("my-app", "haven.test", 7480, true),
            "https://my-app.haven.test:7480/"
        );
    }
}

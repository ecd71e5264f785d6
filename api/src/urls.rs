//! URLs the API hands out that clients open themselves.

/// `http://APP.DOMAIN:PORT/`: where the routers answer for app `app` under the cluster's
/// app domain, the port left out when it is 80.
pub fn web_url(app: &str, domain: &str, router_port: u16) -> String {
    if router_port == 80 {
        format!("http://{app}.{domain}/")
    } else {
        format!("http://{app}.{domain}:{router_port}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_leave_out_port_80() {
        assert_eq!(
            web_url("my-app", "haven.test", 80),
            "http://my-app.haven.test/"
        );
        assert_eq!(
            web_url("my-app", "haven.test", 8080),
            "http://my-app.haven.test:8080/"
        );
    }
}

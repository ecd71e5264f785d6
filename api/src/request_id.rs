//! The `Request-Id` rule shared by the API and the router.

/// A client's request id is kept when it looks like one (Heroku's router rule):
/// 20 to 200 characters of `[A-Za-z0-9+/=-]`.
pub fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("0123456789abcdefghij"));
        assert!(valid_request_id(&"a+/=-".repeat(8)));
        assert!(valid_request_id(&"A".repeat(200)));
        assert!(!valid_request_id("short"));
        assert!(!valid_request_id(&"a".repeat(19)));
        assert!(!valid_request_id(&"a".repeat(201)));
        assert!(!valid_request_id("0123456789abcdefghij with space"));
    }
}

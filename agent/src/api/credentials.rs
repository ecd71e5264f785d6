//! Secrets of users: API tokens (random, stored as sha256) and passwords (argon2).
//!
//! argon2 hashing is slow on purpose; callers on the async runtime run [`hash_password`]
//! and [`verify_password`] with `spawn_blocking`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A new API token: `hvn_` and 24 random bytes in hex.
pub fn new_token() -> String {
    let mut buf = [0u8; 24];
    rand::thread_rng().fill(&mut buf[..]);
    format!("hvn_{}", hex::encode(buf))
}

/// A new random password (for `users:create --password`): 20 characters of an alphabet
/// without look-alikes.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Checks a password a user chose.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > 1024 {
        return Err("the password is too long: use at most 1024 bytes".into());
    }
    Ok(())
}

/// The argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill(&mut bytes[..]);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| format!("cannot make a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// The hash checked when a login names no known user: a real argon2 hash of a random
/// password, made once, so the check costs what a real one does and matches nothing a
/// client can send.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill(&mut bytes[..]);
        hash_password(&hex::encode(bytes)).unwrap_or_default()
    })
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(decoy_hash().starts_with("$argon2"));
        assert!(!verify_password("", decoy_hash()));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("correct horse").unwrap());
    }

    #[test]
    fn generated_secrets_are_fresh_and_acceptable() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with("hvn_") && a.len() == 52, "{a}");
        assert_ne!(a, b);
        let p = new_password();
        assert_eq!(p.len(), 20);
        assert!(check_password(&p).is_ok());
        assert!(check_password("short").is_err());
        assert_ne!(p, new_password());
    }
}

//! Identifier normalisation and hashing — the only place raw PII is touched.
//!
//! Rules (DESIGN §4 "Identifiers", TikTok's matching rules in tiktok-api.md §5):
//! - email: trim, lowercase; valid when `local@domain` with both parts non-empty and no white
//!   space; SHA-256 lowercase hex → `EMAIL_SHA256`.
//! - phone: strip spaces, dashes, dots and parentheses; a leading `00` becomes `+`; valid when it
//!   is `+` then 7 to 15 digits (no country code → invalid); SHA-256 of the E.164 text →
//!   `PHONE_SHA256`.
//! - a value that already is 64 hex digits is taken as a hash and passed through (lowercased).
//!
//! Raw values are borrowed, normalised into a stack buffer where possible, hashed, and dropped:
//! they are never stored, logged, or put in an error.

use sha2::{Digest, Sha256};

/// A SHA-256 digest of a normalised identifier.
pub type IdHash = [u8; 32];

/// Lowercase hex of a digest, as TikTok expects it.
pub fn to_hex(hash: &IdHash) -> String {
    Hex::of(hash).as_str().to_owned()
}

/// Lowercase hex of a digest on the stack (for a line being written, without allocating).
pub struct Hex([u8; 64]);

impl Hex {
    pub fn of(hash: &IdHash) -> Hex {
        let mut out = [0u8; 64];
        hex::encode_to_slice(hash, &mut out).expect("64 bytes hold 32 in hex");
        Hex(out)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// If `s` is 64 hex digits, the digest it spells.
fn as_prehashed(s: &str) -> Option<IdHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> IdHash {
    Sha256::digest(bytes).into()
}

/// Normalises and hashes an email; `None` when it is not a valid email.
pub fn hash_email(raw: &str) -> Option<IdHash> {
    let s = raw.trim();
    if let Some(h) = as_prehashed(s) {
        return Some(h);
    }
    let (local, domain) = s.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    if s.chars().any(char::is_whitespace) {
        return None;
    }
    let lower = s.to_lowercase();
    Some(sha256(lower.as_bytes()))
}

/// Normalises a phone number to E.164 text (`+` and 7–15 digits) into `buf`; `None` if invalid.
fn normalise_phone<'b>(raw: &str, buf: &'b mut [u8; 17]) -> Option<&'b [u8]> {
    let mut len = 0usize;
    let mut digits = 0usize;
    let mut push = |b: u8, buf: &mut [u8; 17]| -> Option<()> {
        *buf.get_mut(len)? = b;
        len += 1;
        Some(())
    };
    let s = raw.trim();
    let rest = s.strip_prefix('+').or_else(|| s.strip_prefix("00"))?;
    push(b'+', buf)?;
    for c in rest.chars() {
        match c {
            '0'..='9' => {
                push(c as u8, buf)?;
                digits += 1;
            }
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !(7..=15).contains(&digits) {
        return None;
    }
    Some(&buf[..len])
}

/// Normalises and hashes a phone number; `None` when it is not a valid E.164 number.
pub fn hash_phone(raw: &str) -> Option<IdHash> {
    let s = raw.trim();
    if let Some(h) = as_prehashed(s) {
        return Some(h);
    }
    let mut buf = [0u8; 17];
    normalise_phone(s, &mut buf).map(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(s: &str) -> String {
        to_hex(&sha256(s.as_bytes()))
    }

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let h = hash_email("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(to_hex(&h), hex_of("jane.doe@example.com"));
    }

    #[test]
    fn invalid_emails_are_rejected() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "jane@",
            "ja ne@x.com",
            "a@b@c",
        ] {
            assert!(hash_email(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn phone_formats_normalise_to_e164() {
        let want = hex_of("+14155550123");
        for ok in [
            "+1 415-555-0123",
            "+1 (415) 555.0123",
            "001 415 555 0123",
            " +14155550123 ",
        ] {
            assert_eq!(
                hash_phone(ok).map(|h| to_hex(&h)),
                Some(want.clone()),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn phone_without_country_code_or_wrong_length_is_invalid() {
        for bad in [
            "(415) 555-0199",
            "4155550199",
            "+123456",
            "+1234567890123456",
            "+1 415 x",
        ] {
            assert!(hash_phone(bad).is_none(), "{bad:?}");
        }
        assert!(hash_phone("+1234567").is_some());
        assert!(hash_phone("+123456789012345").is_some());
    }

    #[test]
    fn prehashed_values_pass_through() {
        let h = hex_of("x@y.z");
        assert_eq!(to_hex(&hash_email(&h.to_uppercase()).unwrap()), h);
        assert_eq!(to_hex(&hash_phone(&h).unwrap()), h);
    }
}

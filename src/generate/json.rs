//! Small JSON writers: keys and fields, escaped strings, numbers, cents and ISO 8601
//! timestamps, formatted by hand into a reused buffer (no serde, no allocation per record).

// === small writers ===

pub(super) fn push_key(buf: &mut Vec<u8>, key: &str) {
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
}

pub(super) fn str_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    push_key(buf, key);
    push_str(buf, value);
    buf.push(b',');
}

pub(super) fn u64_field(buf: &mut Vec<u8>, key: &str, value: u64) {
    push_key(buf, key);
    push_u64(buf, value);
    buf.push(b',');
}

pub(super) fn bool_field(buf: &mut Vec<u8>, key: &str, value: bool) {
    push_key(buf, key);
    buf.extend_from_slice(if value { b"true," } else { b"false," });
}
/// Closes an object opened at `start`: drops the trailing comma of its last field.
pub(super) fn close(buf: &mut Vec<u8>, start: usize) {
    if buf.len() > start + 1 && buf.last() == Some(&b',') {
        buf.pop();
    }
    buf.push(b'}');
}

pub(super) fn user_id(user: u32) -> ([u8; 11], usize) {
    let mut id = [0u8; 11];
    id[0] = b'u';
    let mut digits = [0u8; 10];
    let n = format_u64(&mut digits, u64::from(user));
    id[1..=n.len()].copy_from_slice(n);
    (id, n.len() + 1)
}

pub(super) fn push_user(buf: &mut Vec<u8>, user: u32) {
    buf.extend_from_slice(b"\"u");
    push_u64(buf, u64::from(user));
    buf.push(b'"');
}

/// A user's device id, `"d<n>"` (each generated user has one device).
pub(super) fn push_device(buf: &mut Vec<u8>, user: u32) {
    buf.extend_from_slice(b"\"d");
    push_u64(buf, u64::from(user));
    buf.push(b'"');
}

pub(super) fn push_str(buf: &mut Vec<u8>, s: &str) {
    push_json_string(buf, s.as_bytes());
}

/// A JSON string: escapes `"`, `\` and control characters; other bytes (UTF-8 or not) pass.
pub(super) fn push_json_string(buf: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ],
            _ => continue,
        };
        buf.extend_from_slice(&s[run..i]);
        buf.extend_from_slice(escaped);
        run = i + 1;
    }
    buf.extend_from_slice(&s[run..]);
    buf.push(b'"');
}

fn format_u64(tmp: &mut [u8], mut v: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &tmp[i..];
        }
    }
}

pub(super) fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    buf.extend_from_slice(format_u64(&mut tmp, v));
}

fn push_2(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// 1234 → `12.34`
pub(super) fn push_cents(buf: &mut Vec<u8>, cents: u32) {
    push_u64(buf, u64::from(cents / 100));
    buf.push(b'.');
    push_2(buf, u64::from(cents % 100));
}

/// `2026-11-28T10:00:00.123Z`
pub(super) fn push_iso_ms(buf: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    push_2(buf, year / 100);
    push_2(buf, year % 100);
    buf.push(b'-');
    push_2(buf, month);
    buf.push(b'-');
    push_2(buf, day);
    buf.push(b'T');
    push_2(buf, sod / 3600);
    buf.push(b':');
    push_2(buf, sod / 60 % 60);
    buf.push(b':');
    push_2(buf, sod % 60);
    buf.push(b'.');
    let milli = ms % 1000;
    buf.extend_from_slice(&[
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

/// Days since 1970-01-01 → (year, month, day); H. Hinnant's `civil_from_days`, unsigned.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn iso_matches_time_crate() {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        for ms in [
            0u64,
            951_782_400_123,
            1_764_324_000_123,
            4_102_444_799_999,
            1_709_164_800_000,
        ] {
            let mut buf = Vec::new();
            push_iso_ms(&mut buf, ms);
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            assert_eq!(String::from_utf8(buf).unwrap(), at.format(fmt).unwrap());
        }
    }

    #[test]
    fn escaper_round_trips() {
        let s = "a\"b\\c\n\u{1}é ok";
        let mut buf = Vec::new();
        push_json_string(&mut buf, s.as_bytes());
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, s);
    }
}

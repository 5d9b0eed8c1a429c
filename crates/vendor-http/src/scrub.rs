//! Upstream text (vendor error bodies, SOAP fault strings, decoder messages quoting the body)
//! becomes error messages, and error messages reach people: the admin API's 502 body, logs,
//! `bindings.last_error`, DLQ reasons. A vendor may echo what we sent (our client secret in a
//! token error, a bearer token, a password in a SOAP fault), so every such text goes through
//! [`scrub`] first: one place, one rule.

/// Longest scrubbed text, in characters: enough for a vendor's message, too short to carry a
/// document or a payload full of guest data.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// What replaces anything that looks like a credential.
pub const REDACTED: &str = "[redacted]";

/// Key names whose values are credentials (matched inside longer names: `client_secret`,
/// `access_token`, `x-api-key`, `<Password>`).
const SECRET_KEYS: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "credential",
    "cookie",
];

/// Shortest unbroken run of token characters treated as a key, hash or token.
const LONG_RUN: usize = 32;

/// `text` made safe for a message: control characters and runs of whitespace become one
/// space; bearer/basic credentials, values of secret-looking keys (`password=…`,
/// `"client_secret": "…"`, `<Password>…</Password>`), JWT-shaped strings and long runs of
/// key-like characters (hex, base64) become [`REDACTED`]; the result is cut to
/// [`MAX_MESSAGE_CHARS`] characters (after redaction, so a cut never leaves half a secret
/// unrecognised).
pub fn scrub(text: &str) -> String {
    let flat = flatten(text);
    let keyed = redact_ranges(&flat, &credential_ranges(&flat));
    let runs = redact_runs(&keyed);
    // Personal data too: vendors echo the e-mail addresses we sent (security review L7).
    let masked = accesshub_domain::pii::mask_emails_in(&runs);
    truncate(&masked, MAX_MESSAGE_CHARS)
}

fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Byte ranges of credential values in `s` (ASCII lower-casing keeps byte offsets).
fn credential_ranges(s: &str) -> Vec<(usize, usize)> {
    let lower = s.to_ascii_lowercase();
    let b = lower.as_bytes();
    let mut ranges = Vec::new();
    // `Bearer xyz`, `Basic xyz`.
    for scheme in ["bearer", "basic"] {
        for (i, _) in lower.match_indices(scheme) {
            let end = i + scheme.len();
            if (i > 0 && is_word(b[i - 1])) || b.get(end) != Some(&b' ') {
                continue;
            }
            let start = end + 1;
            let stop = value_end(b, start, None);
            if stop > start {
                ranges.push((start, stop));
            }
        }
    }
    // `key=value`, `key: value`, `"key": "value"`, `<Key>value</Key>`.
    for key in SECRET_KEYS {
        for (i, _) in lower.match_indices(key) {
            let mut j = i + key.len();
            while j < b.len() && is_word(b[j]) {
                j += 1;
            }
            if matches!(b.get(j), Some(b'"' | b'\'')) {
                j += 1;
            }
            while b.get(j) == Some(&b' ') {
                j += 1;
            }
            let xml = match b.get(j) {
                Some(b'=' | b':') => false,
                Some(b'>') => true,
                _ => continue,
            };
            j += 1;
            while b.get(j) == Some(&b' ') {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(q @ (b'"' | b'\'')) if !xml => {
                    j += 1;
                    Some(*q)
                }
                _ => None,
            };
            let stop = if xml {
                lower[j..].find('<').map_or(b.len(), |k| j + k)
            } else {
                value_end(b, j, quote)
            };
            if stop > j {
                ranges.push((j, stop));
            }
        }
    }
    ranges
}

/// End of a value starting at `start`: the closing quote, or the first separator.
fn value_end(b: &[u8], start: usize, quote: Option<u8>) -> usize {
    let mut k = start;
    while k < b.len() {
        let c = b[k];
        let stop = match quote {
            Some(q) => c == q,
            None => matches!(
                c,
                b' ' | b'"' | b'\'' | b',' | b';' | b'&' | b'}' | b'<' | b')'
            ),
        };
        if stop {
            break;
        }
        k += 1;
    }
    k
}

fn redact_ranges(s: &str, ranges: &[(usize, usize)]) -> String {
    let mut rs = ranges.to_vec();
    rs.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in rs {
        // Ranges come from ASCII delimiters, so they lie on char boundaries; stay safe anyway.
        if end <= at || !s.is_char_boundary(start.max(at)) || !s.is_char_boundary(end) {
            continue;
        }
        let start = start.max(at);
        out.push_str(&s[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&s[at..]);
    out
}

fn is_run(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.')
}

/// JWT-shaped words and long key-like runs become [`REDACTED`]; GUIDs, words and paths stay.
fn redact_runs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars() {
        if is_run(c) {
            run.push(c);
        } else {
            out.push_str(&judge_run(&run));
            run.clear();
            out.push(c);
        }
    }
    out.push_str(&judge_run(&run));
    out
}

/// One run: a JWT goes whole; otherwise each `.`- or `/`-separated part is judged alone, so
/// paths and dotted names keep their readable parts.
fn judge_run(run: &str) -> String {
    if run.starts_with("eyJ") && run.contains('.') {
        return REDACTED.to_owned();
    }
    let mut out = String::with_capacity(run.len());
    let mut part = String::new();
    for c in run.chars().map(Some).chain(std::iter::once(None)) {
        match c {
            Some('.' | '/') | None => {
                if looks_like_key(&part) {
                    out.push_str(REDACTED);
                } else {
                    out.push_str(&part);
                }
                part.clear();
                if let Some(ch) = c {
                    out.push(ch);
                }
            }
            Some(ch) => part.push(ch),
        }
    }
    out
}

fn looks_like_key(part: &str) -> bool {
    part.len() >= LONG_RUN
        && !is_guid(part)
        && part.bytes().any(|b| b.is_ascii_digit())
        && part.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(input: &str, secrets: &[&str]) -> String {
        let out = scrub(input);
        for s in secrets {
            assert!(!out.contains(s), "{s:?} survived in {out:?}");
        }
        out
    }

    #[test]
    fn bearer_and_basic_credentials() {
        let out = clean(
            "401: invalid header Authorization: Bearer abc.DEF-123 and Basic dXNlcjpwYXNz",
            &["abc.DEF-123", "dXNlcjpwYXNz"],
        );
        assert!(out.starts_with("401: invalid header"), "{out}");
    }

    #[test]
    fn key_values_in_forms_json_and_xml() {
        let out = clean(
            r#"grant_type=client_credentials&client_id=api-user&client_secret=hunter2&scope=x {"password": "p@ss w0rd", "access_token":"t0k"} <Password>s3cr3t</Password> api_key = k3y; x-api-key: 12ab"#,
            &["hunter2", "p@ss w0rd", "t0k", "s3cr3t", "k3y", "12ab"],
        );
        assert!(out.contains("client_id=api-user"), "{out}");
        assert!(out.contains("scope=x"), "{out}");
        assert!(out.contains("client_secret=[redacted]"), "{out}");
    }

    #[test]
    fn jwts_and_long_key_like_runs() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x";
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let b64 = "QWxhZGRpbjpvcGVuIHNlc2FtZQ0KQWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        let out = clean(
            &format!("token {jwt} refused; key {hex}, blob {b64}."),
            &[jwt, "eyJzdWIiOiIxIn0", hex, b64],
        );
        assert!(out.ends_with('.'), "{out}");
    }

    #[test]
    fn keeps_what_operators_need() {
        let text = "Asset 3f2504e0-4f89-11d3-9a0c-0305e82c3301 not found at /api/v1/sites/site-1/time-restrictions (ValidationException: LicensePlateIsInvalid)";
        assert_eq!(scrub(text), text);
    }

    #[test]
    fn flattens_and_truncates_after_redaction() {
        assert_eq!(scrub("a\n\n\tb\r\nc"), "a b c");
        let long = "x".repeat(1000);
        let out = scrub(&long);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(out.ends_with('…'));
        // A secret straddling the cut is still removed whole.
        let text = format!("{} password={}", "y".repeat(295), "z".repeat(40));
        let out = scrub(&text);
        assert!(!out.contains("zzz"), "{out}");
        // Multi-byte text is cut on a character boundary.
        let out = scrub(&"é".repeat(400));
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}

//! Masking of personal data (names, e-mails, phones, plates) for logs, error strings and
//! listings. Events must carry PII to the vendors; nothing else should repeat it whole, so a
//! leaked log or DLQ listing does not become a guest register (security review L6, L7).

use serde_json::Value;

/// Shown instead of a whole value.
const STARS: &str = "***";

/// `peter.parker@example.com` → `p***@example.com`: the domain stays (it tells operators
/// which provider refused), the local part does not.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => format!("{}{STARS}@{domain}", first_chars(local, 1)),
        None => mask_text(email),
    }
}

/// `AB123C` → `AB***C`: enough to tell two plates of one booking apart, not to read one.
pub fn mask_plate(plate: &str) -> String {
    let chars: Vec<char> = plate.chars().collect();
    if chars.len() <= 3 {
        return STARS.to_owned();
    }
    let head: String = chars[..2].iter().collect();
    format!("{head}{STARS}{}", chars[chars.len() - 1])
}

/// `+31612345678` → `+31***78`.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 6 {
        return STARS.to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{STARS}{tail}")
}

/// `Doe, John` → `D***`: a name keeps its first letter only.
pub fn mask_name(name: &str) -> String {
    mask_text(name)
}

/// Any other personal text: first character, then `***`.
pub fn mask_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{}{STARS}", first_chars(text, 1))
    }
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Every e-mail address inside free text (`person quirina@zw.example not found`) masked as
/// [`mask_email`] does: vendor error bodies echo the addresses we sent.
pub fn mask_emails_in(text: &str) -> String {
    let is_local = |c: char| c.is_ascii_alphanumeric() || "._%+-'".contains(c);
    let is_domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > 0 && is_local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_domain(chars[end]) {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            let local_len = i - start;
            if local_len > 0 && domain.trim_end_matches('.').contains('.') {
                // The local part was already copied: take it back out.
                for _ in 0..local_len {
                    out.pop();
                }
                out.push(chars[start]);
                out.push_str(STARS);
                out.push('@');
                out.push_str(&domain);
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// How a JSON key's value is masked, by the key's name; `None` = not personal data.
fn masker(key: &str) -> Option<fn(&str) -> String> {
    let k = key.to_ascii_lowercase();
    let k = k.as_str();
    if k.contains("email") || k.contains("e_mail") {
        Some(mask_email)
    } else if k.contains("phone") || k == "mobile" {
        Some(mask_phone)
    } else if k.contains("plate") || k == "licenseplate" || k == "kenteken" {
        Some(mask_plate)
    } else if matches!(
        k,
        "name"
            | "guest_name"
            | "first_name"
            | "last_name"
            | "firstname"
            | "lastname"
            | "full_name"
            | "fullname"
            | "surname"
            | "guest"
            | "guestname"
            | "coworker_name"
            | "requested_by"
    ) {
        Some(mask_name)
    } else {
        None
    }
}

/// Masks, in place, every string (or list of strings) under a personal-data key anywhere in
/// `v` (`email`, `mobile_phone`, `license_plates`, `name`, `first_name`, …). Used for DLQ
/// listings and any other display of raw payloads.
pub fn mask_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, val) in map.iter_mut() {
                match (masker(key), val) {
                    (Some(m), Value::String(s)) => *s = m(s),
                    (Some(m), Value::Array(items)) if items.iter().all(Value::is_string) => {
                        for item in items {
                            if let Value::String(s) = item {
                                *s = m(s);
                            }
                        }
                    }
                    (_, other) => mask_json(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

/// [`mask_json`] over a JSON text; a text that is not JSON is returned unchanged only when
/// it holds nothing that looks like an e-mail address, else it is withheld.
pub fn mask_json_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            mask_json(&mut v);
            v.to_string()
        }
        Err(_) if text.contains('@') => "[withheld: not JSON, may hold personal data]".to_owned(),
        Err(_) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_each_kind() {
        assert_eq!(mask_email("peter@example.com"), "p***@example.com");
        assert_eq!(mask_plate("AB123C"), "AB***C");
        assert_eq!(mask_plate("AB1"), "***");
        assert_eq!(mask_phone("+31612345678"), "+31***78");
        assert_eq!(mask_name("Doe, John"), "D***");
        assert_eq!(mask_name(""), "");
        assert_eq!(
            mask_emails_in("person quirina.z@zw.example.com not found; a@b"),
            "person q***@zw.example.com not found; a@b"
        );
    }

    #[test]
    fn json_masks_nested_personal_keys_only() {
        let mut v = json!({
            "booking_key": "r-1",
            "payload": {"guest": {"name": "Zwaardemaker, Quirina", "email": "quirina@zw.example",
                                  "mobile_phone": "+31687654321"},
                        "license_plates": ["QZ99XY", "QZ11AB"], "rooms": ["101"]}
        });
        mask_json(&mut v);
        let s = v.to_string();
        for pii in ["Zwaardemaker", "quirina@", "87654321", "QZ99XY", "QZ11AB"] {
            assert!(!s.contains(pii), "{pii} in {s}");
        }
        assert!(s.contains("101") && s.contains("r-1"), "{s}");
    }
}

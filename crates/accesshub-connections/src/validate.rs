//! Checks a connection before it is stored, naming every offending field by its path
//! (`settings.encoders[1].kind`) so an operator can fix the YAML. Whether referenced vendor
//! objects (sites, time restrictions, locks) exist is a question for the vendor, answered by
//! lookups, not here.

use std::collections::BTreeSet;

use accesshub_domain::{
    FieldError,
    egress::{EgressPolicy, Host},
};

use crate::model::*;

/// Every problem with `conn` (empty means valid).
pub fn validate(conn: &Connection) -> Vec<FieldError> {
    let mut v = V::default();
    v.ident("tenant", &conn.tenant);
    v.ident("name", &conn.name);
    for (i, s) in conn.sites.iter().enumerate() {
        v.nonempty(&format!("sites[{i}]"), s);
    }
    match &conn.settings {
        VendorSettings::Cloudpass(s) => cloudpass(&mut v, s),
        VendorSettings::Dormakaba(s) => dormakaba(&mut v, s),
        VendorSettings::Ipassan(s) => ipassan(&mut v, s),
        VendorSettings::Tapkey(s) => tapkey(&mut v, s),
    }
    v.0
}

/// A URL's host as the egress policy sees it.
fn host_of(u: &url::Url) -> Option<Host<'_>> {
    match u.host() {
        Some(url::Host::Domain(d)) => Some(Host::Name(d)),
        Some(url::Host::Ipv4(ip)) => Some(Host::Ip(ip.into())),
        Some(url::Host::Ipv6(ip)) => Some(Host::Ip(ip.into())),
        None => None,
    }
}

/// Checks one endpoint URL that is not part of a connection (an upstream API's base URL the
/// admin API calls for a look-up) against the egress policy: the reason when refused.
pub fn check_endpoint(egress: &EgressPolicy, raw: &str) -> Result<(), String> {
    let u = url::Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let host = host_of(&u).ok_or_else(|| format!("{raw:?} names no host"))?;
    egress
        .check_target(u.scheme(), host, u.port())
        .map_err(|e| e.to_string())
}

/// [`validate`] plus the deployment's egress policy: every endpoint must be a target the
/// policy allows (https to a public address unless the allow-list says otherwise), so a
/// connection cannot aim a worker at an internal service or send its secret in clear.
pub fn validate_with(conn: &Connection, egress: &EgressPolicy) -> Vec<FieldError> {
    let mut out = validate(conn);
    let scheme_reported = out.iter().any(|e| e.field == "settings.scheme");
    let mut check = |field: &str, target: Option<(String, url::Url)>| {
        let Some((scheme, u)) = target else { return };
        // Fields already reported as malformed get one message, not two.
        if out.iter().any(|e| e.field == field) {
            return;
        }
        let Some(host) = host_of(&u) else { return };
        if let Err(e) = egress.check_target(&scheme, host, u.port()) {
            out.push(FieldError::new(field, e.to_string()));
        }
    };
    // Parsed with the same URL parser the HTTP client uses, so `0x7f.1` is 127.0.0.1 here too.
    let parsed = |u: &str| {
        url::Url::parse(u.trim())
            .ok()
            .map(|p| (p.scheme().to_owned(), p))
    };
    match &conn.settings {
        VendorSettings::Cloudpass(s) => check("settings.base_url", parsed(&s.base_url)),
        VendorSettings::Ipassan(s) => check("settings.base_url", parsed(&s.base_url)),
        VendorSettings::Tapkey(s) => {
            check("settings.authority_url", parsed(&s.authority_url));
            check("settings.base_url", parsed(&s.base_url));
        }
        // Reached through the hotel's edge relay on its LAN, never from the cluster.
        VendorSettings::Dormakaba(s) if s.edge_site.is_some() => {}
        VendorSettings::Dormakaba(s) => {
            let target = parsed(&format!("{}://{}:{}/", s.scheme, s.host.trim(), s.port));
            // The scheme's own message belongs to `scheme`, an address's to `host`.
            let field = match &target {
                Some((scheme, _)) if scheme != "https" => "settings.scheme",
                _ => "settings.host",
            };
            if !scheme_reported {
                check(field, target);
            }
        }
    }
    out
}

#[derive(Default)]
struct V(Vec<FieldError>);

impl V {
    fn err(&mut self, field: &str, problem: impl Into<String>) {
        self.0.push(FieldError::new(field, problem));
    }

    fn nonempty(&mut self, field: &str, value: &str) -> bool {
        if value.trim().is_empty() {
            self.err(field, "must not be empty");
            false
        } else {
            true
        }
    }

    /// Tenant and connection names travel in URLs and subjects: keep them plain.
    fn ident(&mut self, field: &str, value: &str) {
        if !self.nonempty(field, value) {
            return;
        }
        if value.len() > 128
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                field,
                "may contain only letters, digits, '-', '_' and '.' (at most 128)",
            );
        }
    }

    fn secret(&mut self, field: &str, s: &Secret) {
        if s.is_redacted() {
            self.err(
                field,
                "is the redaction placeholder \"***\" but no secret is stored yet: provide the secret",
            );
        } else if s.expose().trim().is_empty() {
            self.err(field, "must not be empty");
        }
    }

    fn url(&mut self, field: &str, value: &str) {
        if !self.nonempty(field, value) {
            return;
        }
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => self.err(
                field,
                format!(
                    "must be an http(s) URL with a host, got scheme {:?}",
                    u.scheme()
                ),
            ),
            Err(e) => self.err(field, format!("is not a valid URL: {e}")),
        }
    }

    fn guid(&mut self, field: &str, value: &str) {
        if self.nonempty(field, value) && uuid::Uuid::parse_str(value).is_err() {
            self.err(field, format!("{value:?} is not a GUID"));
        }
    }
}

const MAX_WINDOW_MINUTES: u32 = 24 * 60;

fn cloudpass(v: &mut V, s: &CloudpassSettings) {
    v.url("settings.base_url", &s.base_url);
    v.nonempty("settings.client_id", &s.client_id);
    v.secret("settings.client_secret", &s.client_secret);
    let mut needs_default = false;
    for (admin, a) in &s.administrations {
        let f = format!("settings.administrations.{admin}");
        v.nonempty(&format!("{f}.site_id"), &a.site_id);
        match &a.time_restriction_id {
            Some(t) => {
                v.nonempty(&format!("{f}.time_restriction_id"), t);
            }
            None => needs_default = true,
        }
        if admin.trim().is_empty() {
            v.err(
                "settings.administrations",
                "administration id must not be empty",
            );
        }
    }
    if needs_default && s.default_time_restriction_id.trim().is_empty() {
        v.err(
            "settings.default_time_restriction_id",
            "must be set when an administration has no time_restriction_id (list them with `accessctl lookup TENANT cloudpass time-restrictions site=SITE`)",
        );
    }
    for (f, m) in [
        ("settings.window_before_minutes", s.window_before_minutes),
        ("settings.window_after_minutes", s.window_after_minutes),
    ] {
        if m > MAX_WINDOW_MINUTES {
            v.err(f, format!("must be at most {MAX_WINDOW_MINUTES} minutes"));
        }
    }
}

fn dormakaba(v: &mut V, s: &DormakabaSettings) {
    if v.nonempty("settings.host", &s.host)
        && (s.host.contains("://") || s.host.contains('/') || s.host.contains(' '))
    {
        v.err(
            "settings.host",
            "must be a host name or IP address only (put the scheme in `scheme` and the path in `path`)",
        );
    }
    if s.port == 0 {
        v.err("settings.port", "must be between 1 and 65535");
    }
    if !matches!(s.scheme.as_str(), "http" | "https") {
        v.err("settings.scheme", "must be \"http\" or \"https\"");
    }
    if let Some(p) = &s.path
        && !p.starts_with('/')
    {
        v.err("settings.path", "must start with '/'");
    }
    if let Some(ns) = &s.namespace {
        v.nonempty("settings.namespace", ns);
    }
    v.nonempty("settings.username", &s.username);
    v.secret("settings.password", &s.password);
    v.nonempty("settings.site_name", &s.site_name);
    if let Some(site) = &s.edge_site
        && (site.is_empty()
            || !site
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        v.err(
            "settings.edge_site",
            "must be letters, digits, '-' or '_' (one NATS subject token)",
        );
    }
    v.nonempty("settings.pms_terminal_id", &s.pms_terminal_id);
    let mut ids = BTreeSet::new();
    for (i, e) in s.encoders.iter().enumerate() {
        let f = format!("settings.encoders[{i}]");
        v.nonempty(&format!("{f}.name"), &e.name);
        if v.nonempty(&format!("{f}.id"), &e.id) && !ids.insert(e.id.as_str()) {
            v.err(
                &format!("{f}.id"),
                format!("encoder id {:?} is used twice", e.id),
            );
        }
        if e.kind == EncoderKind::Usb {
            v.err(
                &format!("{f}.kind"),
                "USB encoders are not supported by the web service; use a networked encoder",
            );
        }
    }
    for (room, number) in &s.rooms {
        if room.trim().is_empty() {
            v.err("settings.rooms", "room key must not be empty");
        }
        v.nonempty(&format!("settings.rooms.{room}"), number);
    }
    for (area, level) in &s.common_areas {
        if area.trim().is_empty() {
            v.err("settings.common_areas", "common area key must not be empty");
        }
        if *level == 0 {
            v.err(
                &format!("settings.common_areas.{area}"),
                "pass level numbers start at 1",
            );
        }
    }
}

fn ipassan(v: &mut V, s: &IpassanSettings) {
    v.url("settings.base_url", &s.base_url);
    v.nonempty("settings.client_id", &s.client_id);
    v.secret("settings.client_secret", &s.client_secret);
    v.guid("settings.site_guid", &s.site_guid);
    for (facility, asset) in &s.facilities {
        if facility.trim().is_empty() {
            v.err("settings.facilities", "facility id must not be empty");
        }
        v.guid(&format!("settings.facilities.{facility}"), asset);
    }
}

fn tapkey(v: &mut V, s: &TapkeySettings) {
    v.url("settings.authority_url", &s.authority_url);
    v.url("settings.base_url", &s.base_url);
    v.nonempty("settings.client_id", &s.client_id);
    v.secret("settings.client_secret", &s.client_secret);
    v.nonempty("settings.owner_account_id", &s.owner_account_id);
    for (pass_type, locks) in &s.pass_types {
        let f = format!("settings.pass_types.{pass_type}");
        if pass_type.trim().is_empty() {
            v.err("settings.pass_types", "pass type id must not be empty");
        }
        if locks.is_empty() {
            v.err(&f, "must list at least one bound lock id");
        }
        for (i, l) in locks.iter().enumerate() {
            v.nonempty(&format!("{f}[{i}]"), l);
        }
    }
}

/// Checks a source's `site_defaults` document (`{"<site>"|"*": {check_in_time,
/// check_out_time, timezone}}`) as the ingest mapping and the Sync pull read it: times as
/// `HH:MM` or `HH:MM:SS` on a 24-hour clock, zones as IANA names the timezone database knows
/// (`Europe/Amsterdam`; `CET` or `Europe/Nowhere` would silently fall back to UTC and shift
/// every stay). Problems are named `<site>.<field>`.
pub fn site_defaults(doc: &serde_json::Value) -> Vec<FieldError> {
    let mut v = V::default();
    let Some(sites) = doc.as_object() else {
        v.err(
            "site_defaults",
            "must be an object keyed by site id (\"*\" for every site)",
        );
        return v.0;
    };
    for (site, entry) in sites {
        if site.trim().is_empty() {
            v.err("site_defaults", "site id must not be empty");
        }
        let Some(fields) = entry.as_object() else {
            v.err(
                site,
                "must be an object with check_in_time, check_out_time and/or timezone",
            );
            continue;
        };
        for (k, value) in fields {
            let path = format!("{site}.{k}");
            match k.as_str() {
                "check_in_time" | "check_out_time" => {
                    if value.as_str().and_then(time_of_day).is_none() {
                        v.err(
                            &path,
                            "must be a time of day like \"15:00\" (HH:MM, 24-hour clock)",
                        );
                    }
                }
                "timezone" => {
                    if let Err(problem) = value.as_str().map_or(
                        Err("must be a string naming an IANA time zone".to_owned()),
                        iana_zone,
                    ) {
                        v.err(&path, problem);
                    }
                }
                _ => v.err(
                    &path,
                    "unknown field (check_in_time, check_out_time, timezone)",
                ),
            }
        }
    }
    v.0
}

/// `HH:MM` or `HH:MM:SS`, 24-hour clock.
pub fn time_of_day(raw: &str) -> Option<chrono::NaiveTime> {
    let t = raw.trim();
    if t != raw || !(t.len() == 5 || t.len() == 8) {
        return None;
    }
    chrono::NaiveTime::parse_from_str(t, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

/// An IANA zone name the timezone database knows (`Europe/Amsterdam`, `UTC`), else why not.
pub fn iana_zone(raw: &str) -> Result<chrono_tz::Tz, String> {
    raw.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("{raw:?} is not an IANA time zone name (like \"Europe/Amsterdam\")"))
}

#[cfg(test)]
mod site_defaults_tests {
    use serde_json::json;

    #[test]
    fn zones_and_times_are_checked_by_name() {
        let ok = json!({"12": {"check_in_time": "16:00", "check_out_time": "10:30:00",
                               "timezone": "Europe/Amsterdam"}, "*": {"timezone": "UTC"}});
        assert!(super::site_defaults(&ok).is_empty());
        let bad = json!({"12": {"check_in_time": "25:00", "check_out_time": "3 pm",
                                "timezone": "Europe/Nowhere"}, "*": {"timezone": 1}});
        let mut fields: Vec<String> = super::site_defaults(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "*.timezone",
                "12.check_in_time",
                "12.check_out_time",
                "12.timezone"
            ]
        );
        assert!(super::time_of_day("9:00").is_none());
        assert!(super::time_of_day("09:00").is_some());
        assert!(super::site_defaults(&json!([1]))[0].field == "site_defaults");
    }
}

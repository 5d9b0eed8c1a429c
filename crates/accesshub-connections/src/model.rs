//! The connection model, per vendor. Field names are what operators write in YAML.

use std::collections::BTreeMap;

use accesshub_domain::FieldError;
use serde::{Deserialize, Serialize};

/// The access-control vendors accesshub drives.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    /// CloudPass car-park barriers.
    Cloudpass,
    /// dormakaba Saflok 6000 or Ambiance room keys.
    Dormakaba,
    /// iPassan facility doors.
    Ipassan,
    /// Tapkey smart locks.
    Tapkey,
}

impl Vendor {
    /// All vendors.
    pub const ALL: [Vendor; 4] = [
        Vendor::Cloudpass,
        Vendor::Dormakaba,
        Vendor::Ipassan,
        Vendor::Tapkey,
    ];

    /// Wire name, used in subjects, metrics and the `bindings.vendor` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Cloudpass => "cloudpass",
            Vendor::Dormakaba => "dormakaba",
            Vendor::Ipassan => "ipassan",
            Vendor::Tapkey => "tapkey",
        }
    }

    /// Name of the worker service owning this vendor.
    pub fn worker(self) -> &'static str {
        match self {
            Vendor::Cloudpass => "cloudpass-worker",
            Vendor::Dormakaba => "dormakaba-worker",
            Vendor::Ipassan => "ipassan-worker",
            Vendor::Tapkey => "tapkey-worker",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown vendor {s:?} (cloudpass|dormakaba|ipassan|tapkey)"))
    }
}

/// A secret value (password, client secret, webhook secret). Never printed: `Debug` and
/// `Display` redact it. It serializes as the plain string only where a full connection is
/// deliberately materialized (encrypted storage, the worker's in-memory copy). Its buffer is
/// wiped when dropped, so a decrypted secret does not linger in freed memory (issue 23).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is sent to the vendor.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty (for validation).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One tenant's connection to one vendor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Tenant id.
    pub tenant: String,
    /// Connection name, unique per tenant and vendor (default `default`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Switched off connections are kept but not used.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Upstream sites (administrations, properties) this connection serves, as the BEX App
    /// Store enables an app per administration. Empty means every site of the tenant.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Vendor-specific settings.
    pub settings: VendorSettings,
    /// Optimistic-concurrency version, bumped on every change.
    #[serde(default)]
    pub version: i64,
}

fn default_name() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

impl Connection {
    /// Which vendor this connection is for.
    pub fn vendor(&self) -> Vendor {
        self.settings.vendor()
    }

    /// Whether events of `site` are handled by this connection.
    pub fn serves_site(&self, site: &str) -> bool {
        self.enabled && (self.sites.is_empty() || self.sites.iter().any(|s| s == site))
    }

    /// What its mapping covers, for [`Connection::widens`]: CloudPass administrations,
    /// iPassan facilities, Tapkey pass types with at least one lock (dormakaba covers every
    /// site it serves: nothing here).
    fn mapped_keys(&self) -> std::collections::BTreeSet<&str> {
        match &self.settings {
            VendorSettings::Cloudpass(s) => s.administrations.keys().map(String::as_str).collect(),
            VendorSettings::Ipassan(s) => s.facilities.keys().map(String::as_str).collect(),
            VendorSettings::Tapkey(s) => s
                .pass_types
                .iter()
                .filter(|(_, locks)| !locks.is_empty())
                .map(|(k, _)| k.as_str())
                .collect(),
            _ => Default::default(),
        }
    }

    /// Whether this (enabled) connection may act on events its previous state `before` did
    /// not: enabled again, a site added (or the list emptied: every site), an administration,
    /// facility or pass type mapped. Events booking-ingest ignored meanwhile are then
    /// re-admitted by the connection's next sync run, which the admin API queues at once.
    pub fn widens(&self, before: &Connection) -> bool {
        if !self.enabled {
            return false;
        }
        if !before.enabled {
            return true;
        }
        let sites = !before.sites.is_empty()
            && (self.sites.is_empty() || self.sites.iter().any(|s| !before.sites.contains(s)));
        sites || !self.mapped_keys().is_subset(&before.mapped_keys())
    }
}

/// Settings per vendor, tagged by `vendor` in YAML/JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "vendor", rename_all = "snake_case")]
pub enum VendorSettings {
    /// CloudPass.
    Cloudpass(CloudpassSettings),
    /// dormakaba.
    Dormakaba(DormakabaSettings),
    /// iPassan.
    Ipassan(IpassanSettings),
    /// Tapkey.
    Tapkey(TapkeySettings),
}

impl VendorSettings {
    /// The vendor.
    pub fn vendor(&self) -> Vendor {
        match self {
            VendorSettings::Cloudpass(_) => Vendor::Cloudpass,
            VendorSettings::Dormakaba(_) => Vendor::Dormakaba,
            VendorSettings::Ipassan(_) => Vendor::Ipassan,
            VendorSettings::Tapkey(_) => Vendor::Tapkey,
        }
    }

    /// The CloudPass settings, or which vendor the connection is for instead.
    pub fn cloudpass(&self) -> Result<&CloudpassSettings, WrongVendor> {
        match self {
            VendorSettings::Cloudpass(s) => Ok(s),
            other => Err(WrongVendor::new(Vendor::Cloudpass, other)),
        }
    }

    /// The dormakaba settings, or which vendor the connection is for instead.
    pub fn dormakaba(&self) -> Result<&DormakabaSettings, WrongVendor> {
        match self {
            VendorSettings::Dormakaba(s) => Ok(s),
            other => Err(WrongVendor::new(Vendor::Dormakaba, other)),
        }
    }

    /// The iPassan settings, or which vendor the connection is for instead.
    pub fn ipassan(&self) -> Result<&IpassanSettings, WrongVendor> {
        match self {
            VendorSettings::Ipassan(s) => Ok(s),
            other => Err(WrongVendor::new(Vendor::Ipassan, other)),
        }
    }

    /// The Tapkey settings, or which vendor the connection is for instead.
    pub fn tapkey(&self) -> Result<&TapkeySettings, WrongVendor> {
        match self {
            VendorSettings::Tapkey(s) => Ok(s),
            other => Err(WrongVendor::new(Vendor::Tapkey, other)),
        }
    }
}

/// A connection handed to the adapter of another vendor: a wiring mistake no retry fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the connection is a {actual} connection, not {expected}")]
pub struct WrongVendor {
    /// The adapter's vendor.
    pub expected: Vendor,
    /// The connection's vendor.
    pub actual: Vendor,
}

impl WrongVendor {
    fn new(expected: Vendor, settings: &VendorSettings) -> Self {
        WrongVendor {
            expected,
            actual: settings.vendor(),
        }
    }
}

impl accesshub_domain::Classify for WrongVendor {
    fn class(&self) -> accesshub_domain::ErrorClass {
        accesshub_domain::ErrorClass::Permanent
    }
}

/// CloudPass: an API user's client credentials and administration → site mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudpassSettings {
    /// API base URL (`https://…`; the simulator locally).
    pub base_url: String,
    /// Client ID of the CloudPass API user (Settings → Website Users).
    pub client_id: String,
    /// Client secret of the API user.
    pub client_secret: Secret,
    /// Upstream administration (site) id → CloudPass site.
    pub administrations: BTreeMap<String, CloudpassAdministration>,
    /// Time restriction used for new vehicle bookings unless the administration overrides it.
    /// It applies to bookings as they are created: an existing booking keeps the restriction
    /// it has (an operator may have changed it in CloudPass) unless
    /// `reapply_time_restriction` is set.
    pub default_time_restriction_id: String,
    /// The operator's "re-apply": while true, existing vehicle bookings are also brought to
    /// the configured time restriction (on their next event, and by the next sync). Set it,
    /// sync, and set it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reapply_time_restriction: bool,
    /// Access starts this many minutes before check-in.
    #[serde(default = "thirty")]
    pub window_before_minutes: u32,
    /// Access ends this many minutes after check-out.
    #[serde(default = "thirty")]
    pub window_after_minutes: u32,
}

fn thirty() -> u32 {
    30
}

/// One administration's CloudPass mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudpassAdministration {
    /// CloudPass site id.
    pub site_id: String,
    /// Overrides the connection's default time restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_restriction_id: Option<String>,
}

/// Saflok 6000 (Messenger PMS WS Rev. 4) or Ambiance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DormakabaProduct {
    /// Saflok 6000 / Messenger PMS Web Service.
    Saflok,
    /// Ambiance PMS Web Service.
    Ambiance,
}

/// How an encoder is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    /// Networked encoder addressed by id in the lock system.
    Network,
    /// USB encoders cannot be driven through the web service: refused.
    Usb,
}

/// An encoder at the front desk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encoder {
    /// Display name ("Front desk 1").
    pub name: String,
    /// Identifier in the lock system (0 returns key data instead of encoding).
    pub id: String,
    /// Attachment.
    #[serde(default = "network")]
    pub kind: EncoderKind,
}

fn network() -> EncoderKind {
    EncoderKind::Network
}

/// dormakaba lock system connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DormakabaSettings {
    /// Which product's web service.
    pub product: DormakabaProduct,
    /// Host of the web service.
    pub host: String,
    /// Port of the web service.
    pub port: u16,
    /// `http` or `https`.
    #[serde(default = "https")]
    pub scheme: String,
    /// Endpoint path (defaults per product: `/MessengerPMSWS` or `/AmbiancePMSWS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SOAP namespace (default `http://tempuri.org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PMS user name configured in the lock system.
    pub username: String,
    /// PMS password.
    pub password: Secret,
    /// Site name in the lock system.
    pub site_name: String,
    /// PMS terminal id.
    pub pms_terminal_id: String,
    /// Encoders.
    #[serde(default)]
    pub encoders: Vec<Encoder>,
    /// Upstream room → lock-system room number (identity if absent).
    #[serde(default)]
    pub rooms: BTreeMap<String, String>,
    /// Upstream common area → pass level number.
    #[serde(default)]
    pub common_areas: BTreeMap<String, u32>,
    /// Send mobile keys when a reservation asks for one.
    #[serde(default)]
    pub mobile_keys: bool,
    /// Key size sent with encode requests.
    #[serde(default)]
    pub key_size: u32,
    /// The lock server sits on the hotel's LAN behind an edge relay (docs/deploy.md
    /// "On-premises lock servers"): SOAP calls go over NATS to
    /// `edge.dormakaba.<tenant>.<edge_site>` instead of HTTP from the cluster, and
    /// `scheme`/`host`/`port` only document what the relay dials on the LAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_site: Option<String>,
}

fn https() -> String {
    "https".into()
}

/// iPassan connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpassanSettings {
    /// API base URL.
    pub base_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// iPassan site GUID.
    pub site_guid: String,
    /// Upstream facility id → iPassan asset GUID.
    #[serde(default)]
    pub facilities: BTreeMap<String, String>,
}

/// Tapkey connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapkeySettings {
    /// OAuth authority (token endpoint is `{authority}/connect/token`).
    pub authority_url: String,
    /// API base (`{base}/api/v1`).
    pub base_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// Tapkey owner account id.
    pub owner_account_id: String,
    /// Upstream pass type id → bound lock ids.
    #[serde(default)]
    pub pass_types: BTreeMap<String, Vec<String>>,
}

/// The placeholder shown instead of a secret wherever a connection leaves the process (API
/// responses, `accessctl get`, the listing column). Applying it back means "keep the stored
/// secret", so `get -o yaml | apply -f -` round-trips.
pub const REDACTED: &str = "***";

impl Secret {
    /// Whether this is the [`REDACTED`] placeholder rather than a real secret.
    pub fn is_redacted(&self) -> bool {
        self.0 == REDACTED
    }
}

impl VendorSettings {
    /// Every secret field with its name (the YAML key), read-only.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        match self {
            VendorSettings::Cloudpass(s) => vec![("client_secret", &s.client_secret)],
            VendorSettings::Dormakaba(s) => vec![("password", &s.password)],
            VendorSettings::Ipassan(s) => vec![("client_secret", &s.client_secret)],
            VendorSettings::Tapkey(s) => vec![("client_secret", &s.client_secret)],
        }
    }

    /// Every secret field with its name, mutable (redaction, merging kept secrets).
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut Secret)> {
        match self {
            VendorSettings::Cloudpass(s) => vec![("client_secret", &mut s.client_secret)],
            VendorSettings::Dormakaba(s) => vec![("password", &mut s.password)],
            VendorSettings::Ipassan(s) => vec![("client_secret", &mut s.client_secret)],
            VendorSettings::Tapkey(s) => vec![("client_secret", &mut s.client_secret)],
        }
    }

    /// Every field saying where the secrets (and the tokens bought with them) are sent, with
    /// its name and its value normalized (no trailing `/`, lower-case scheme), in a fixed
    /// order per vendor. Changing any of them requires re-entering the secrets.
    pub fn endpoints(&self) -> Vec<(&'static str, String)> {
        fn url(u: &str) -> String {
            u.trim().trim_end_matches('/').to_owned()
        }
        match self {
            VendorSettings::Cloudpass(s) => vec![("base_url", url(&s.base_url))],
            VendorSettings::Dormakaba(s) => vec![
                ("scheme", s.scheme.trim().to_ascii_lowercase()),
                ("host", s.host.trim().to_ascii_lowercase()),
                ("port", s.port.to_string()),
                ("path", s.path.as_deref().map(url).unwrap_or_default()),
                ("edge_site", s.edge_site.clone().unwrap_or_default()),
            ],
            VendorSettings::Ipassan(s) => vec![("base_url", url(&s.base_url))],
            VendorSettings::Tapkey(s) => vec![
                ("authority_url", url(&s.authority_url)),
                ("base_url", url(&s.base_url)),
            ],
        }
    }

    /// A copy with every secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> VendorSettings {
        let mut out = self.clone();
        for (_, s) in out.secrets_mut() {
            *s = Secret::new(REDACTED);
        }
        out
    }
}

impl Connection {
    /// A copy safe to return or print: every secret is [`REDACTED`].
    pub fn redacted(&self) -> Connection {
        Connection {
            settings: self.settings.redacted(),
            ..self.clone()
        }
    }

    /// Replaces secrets given as [`REDACTED`] with the ones of `current` (same vendor), so an
    /// operator can re-apply what `get` printed without knowing the secrets.
    ///
    /// A stored secret is kept only for the endpoint it was entered for: when an endpoint
    /// field changes (see [`VendorSettings::endpoints`]), each secret still given as `***` is
    /// an error ("re-supply …") and stays the placeholder. Otherwise anyone allowed to edit a
    /// connection could point it at their own server and receive the vendor secret.
    pub fn keep_secrets_from(&mut self, current: &Connection) -> Vec<FieldError> {
        if self.vendor() != current.vendor() {
            return Vec::new();
        }
        let before = current.settings.endpoints();
        let changed: Vec<&'static str> = self
            .settings
            .endpoints()
            .into_iter()
            .zip(before)
            .filter(|((_, new), (_, old))| new != old)
            .map(|((name, _), _)| name)
            .collect();
        let kept: BTreeMap<&str, Secret> = current
            .settings
            .secrets()
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        let mut errors = Vec::new();
        for (name, s) in self.settings.secrets_mut() {
            if !s.is_redacted() {
                continue;
            }
            if let Some(first) = changed.first() {
                let fields: Vec<String> = changed.iter().map(|c| format!("settings.{c}")).collect();
                errors.push(FieldError::new(
                    format!("settings.{name}"),
                    format!(
                        "re-supply settings.{name} when settings.{first} changes (changed: {}): a stored secret is only sent to the endpoint it was entered for",
                        fields.join(", ")
                    ),
                ));
            } else if let Some(old) = kept.get(name) {
                *s = old.clone();
            }
        }
        errors
    }

    /// Whether two connections say the same thing (ignoring the version).
    pub fn same_content(&self, other: &Connection) -> bool {
        self.tenant == other.tenant
            && self.name == other.name
            && self.enabled == other.enabled
            && self.sites == other.sites
            && self.settings == other.settings
    }
}

/// Decodes vendor settings from JSON, reporting the exact failing path inside them
/// (`encoders[1].kind`, relative to the settings). serde's internally tagged enums lose the
/// inner path, so the variant is picked from `vendor` and its struct decoded directly.
pub fn settings_from_json(value: serde_json::Value) -> Result<VendorSettings, (String, String)> {
    fn inner<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let p = e.path().to_string();
            (
                if p == "." { String::new() } else { p },
                e.into_inner().to_string(),
            )
        })
    }
    let serde_json::Value::Object(mut m) = value else {
        return Err((
            String::new(),
            "must be an object with `vendor` and its settings".into(),
        ));
    };
    let vendor = match m.remove("vendor") {
        Some(serde_json::Value::String(v)) => v,
        Some(_) => return Err(("vendor".into(), "must be a string".into())),
        None => {
            return Err((
                "vendor".into(),
                "is required (cloudpass|dormakaba|ipassan|tapkey)".into(),
            ));
        }
    };
    let vendor: Vendor = vendor
        .parse()
        .map_err(|e: String| ("vendor".to_owned(), e))?;
    let v = serde_json::Value::Object(m);
    Ok(match vendor {
        Vendor::Cloudpass => VendorSettings::Cloudpass(inner(v)?),
        Vendor::Dormakaba => VendorSettings::Dormakaba(inner(v)?),
        Vendor::Ipassan => VendorSettings::Ipassan(inner(v)?),
        Vendor::Tapkey => VendorSettings::Tapkey(inner(v)?),
    })
}

#[cfg(test)]
mod widens_tests {
    #![allow(clippy::unwrap_used)]
    use super::Connection;

    fn ipassan(enabled: bool, sites: &[&str], facilities: &[&str]) -> Connection {
        let facilities: std::collections::BTreeMap<String, String> = facilities
            .iter()
            .map(|f| {
                (
                    (*f).to_owned(),
                    "6f1c9a8e-1111-4222-8333-944455556666".to_owned(),
                )
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "tenant": "t", "enabled": enabled, "sites": sites,
            "settings": {"vendor": "ipassan", "base_url": "https://x", "client_id": "c",
                "client_secret": "s", "site_guid": "6f1c9a8e-1111-4222-8333-944455556666",
                "facilities": facilities}
        }))
        .unwrap()
    }

    #[test]
    fn widens_when_enabled_again_a_site_added_or_something_mapped() {
        let on = ipassan(true, &["b1"], &["gym"]);
        assert!(on.widens(&ipassan(false, &["b1"], &["gym"])), "re-enabled");
        assert!(!ipassan(false, &["b1"], &["gym"]).widens(&on), "disabled");
        assert!(!on.widens(&on), "unchanged");
        assert!(
            ipassan(true, &["b1"], &["gym", "pool"]).widens(&on),
            "mapped"
        );
        assert!(!ipassan(true, &["b1"], &[]).widens(&on), "unmapped");
        assert!(
            ipassan(true, &["b1", "b2"], &["gym"]).widens(&on),
            "site added"
        );
        assert!(ipassan(true, &[], &["gym"]).widens(&on), "every site");
        assert!(!ipassan(true, &["b1"], &["gym"]).widens(&ipassan(true, &[], &["gym"])));
    }
}

#[cfg(test)]
mod secret_tests {
    #![allow(clippy::unwrap_used)]
    use super::{Connection, Secret};
    use crate::WebhookSecrets;

    const CLEAR: &str = "hunter2-vendor-client-secret-7f3a";

    /// Issue 23: no `Debug` or `Display` of a secret, or of anything holding one (a
    /// connection, a source's webhook secrets), shows it: these are what log lines and error
    /// strings are made of.
    #[test]
    fn debug_and_display_never_show_a_secret() {
        let s = Secret::new(CLEAR);
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), CLEAR);
        let conn: Connection = serde_json::from_value(serde_json::json!({
            "tenant": "acme",
            "settings": {
                "vendor": "tapkey", "base_url": "https://api.tapkey.io",
                "authority_url": "https://login.tapkey.com", "client_id": "cid",
                "client_secret": CLEAR, "owner_account_id": "owner-1"
            }
        }))
        .unwrap();
        let hooks = WebhookSecrets {
            current: Secret::new(CLEAR),
            previous: Some(Secret::new(format!("{CLEAR}-previous"))),
        };
        for printed in [
            format!("{conn:?}"),
            format!("{conn:#?}"),
            format!("{hooks:?}"),
            format!("{hooks:#?}"),
        ] {
            assert!(!printed.contains(CLEAR), "{printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
        }
        // Wiped on drop (not observable safely after the fact; the clone is independent).
        let copy = s.clone();
        drop(s);
        assert_eq!(copy.expose(), CLEAR);
    }
}

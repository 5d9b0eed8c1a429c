//! The account part of dormakaba, iPassan and Tapkey connections (add and edit): the fields
//! each vendor needs, as the issue lists them (Saflok: active switch, server host/port, user,
//! password; iPassan and Tapkey: their OAuth clients). CloudPass has its own form with its
//! mappings inline ([`crate::connections`]); the other vendors' mappings are a second form on
//! the same page ([`crate::mappings`]).
//!
//! The form is turned into the settings JSON the admin API accepts and decoded by the same
//! function ([`settings_from_json`]), then stored through the same store, so the API's rules
//! (validation, egress policy, re-entering a secret when its endpoint changes) apply and their
//! words are shown next to the field at fault. Secrets are write-only: the page says set / not
//! set; an empty secret field keeps the stored one (sent as the API's `***`).

use std::collections::HashMap;

use accesshub_connections::{
    Connection, ConnectionError, Vendor, VendorSettings, lookup::vendor_name, model::REDACTED,
    settings_from_json,
};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde_json::{Map, Value};

use crate::{
    ConsoleState,
    connections::{
        field_errors, form_value, identity, name_or_default, save_with_audit, sites_of,
        store_refusal,
    },
    error::ConsoleError,
    html::{csrf, field, page, secret_field, url, verdict},
    session::{Role, Session},
};

/// How a field is typed and turned into JSON.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A required string.
    Text,
    /// A string left out when empty (the settings' `Option`s).
    Optional,
    /// Write-only; empty keeps the stored one.
    Secret,
    /// A whole number.
    Number,
    /// A switch.
    Check,
    /// One of fixed values (value, label).
    Choice(&'static [(&'static str, &'static str)]),
}

/// One account field: its key in the vendor's settings, label and hint.
struct Spec {
    key: &'static str,
    label: &'static str,
    kind: Kind,
    hint: Option<&'static str>,
}

const fn spec(
    key: &'static str,
    label: &'static str,
    kind: Kind,
    hint: Option<&'static str>,
) -> Spec {
    Spec {
        key,
        label,
        kind,
        hint,
    }
}

const DORMAKABA: &[Spec] = &[
    spec(
        "product",
        "Lock system",
        Kind::Choice(&[
            ("saflok", "Saflok 6000 (Messenger PMS WS)"),
            ("ambiance", "Ambiance"),
        ]),
        None,
    ),
    spec(
        "scheme",
        "Protocol",
        Kind::Choice(&[
            ("https", "https"),
            ("http", "http (only on an allowed LAN)"),
        ]),
        None,
    ),
    spec(
        "host",
        "Server host",
        Kind::Text,
        Some(
            "Host name or IP address of the lock server's PMS web service, without scheme or path.",
        ),
    ),
    spec("port", "Server port", Kind::Number, None),
    spec(
        "path",
        "Endpoint path",
        Kind::Optional,
        Some("Empty: /MessengerPMSWS (Saflok) or /AmbiancePMSWS (Ambiance)."),
    ),
    spec(
        "username",
        "User",
        Kind::Text,
        Some("The PMS user configured in the lock system's PMS interface settings."),
    ),
    spec("password", "Password", Kind::Secret, None),
    spec(
        "site_name",
        "Site name",
        Kind::Text,
        Some("The site name in the lock system."),
    ),
    spec("pms_terminal_id", "PMS terminal ID", Kind::Text, None),
    spec(
        "key_size",
        "Key size",
        Kind::Number,
        Some("Sent with encode requests; 0 if unsure."),
    ),
    spec(
        "mobile_keys",
        "Send mobile keys when a reservation asks for one",
        Kind::Check,
        None,
    ),
    spec(
        "edge_site",
        "Edge relay site",
        Kind::Optional,
        Some("Only when the lock server sits on the hotel's LAN behind an edge relay."),
    ),
    spec(
        "namespace",
        "SOAP namespace",
        Kind::Optional,
        Some("Empty: http://tempuri.org."),
    ),
];

const IPASSAN: &[Spec] = &[
    spec(
        "base_url",
        "API base URL",
        Kind::Text,
        Some("e.g. https://api.ipassan.example"),
    ),
    spec("client_id", "Client ID", Kind::Text, None),
    spec("client_secret", "Client secret", Kind::Secret, None),
    spec(
        "site_guid",
        "Site GUID",
        Kind::Text,
        Some("The iPassan site the assets belong to."),
    ),
];

const TAPKEY: &[Spec] = &[
    spec(
        "authority_url",
        "Authorization server URL",
        Kind::Text,
        Some("The token endpoint is this URL + /connect/token."),
    ),
    spec("base_url", "API base URL", Kind::Text, None),
    spec("client_id", "Client ID", Kind::Text, None),
    spec("client_secret", "Client secret", Kind::Secret, None),
    spec("owner_account_id", "Owner account ID", Kind::Text, None),
];

fn specs(v: Vendor) -> &'static [Spec] {
    match v {
        Vendor::Dormakaba => DORMAKABA,
        Vendor::Ipassan => IPASSAN,
        Vendor::Tapkey => TAPKEY,
        Vendor::Cloudpass => &[],
    }
}

/// Whether the console edits `v`'s account with this form (CloudPass has its own).
pub fn handles(v: Vendor) -> bool {
    !specs(v).is_empty()
}

/// The form's values as typed (kept on errors; secrets never echoed).
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountForm {
    pub(crate) tenant: String,
    pub(crate) name: String,
    sites: String,
    /// Field key → typed value.
    values: HashMap<String, String>,
    /// Secret field key → whether one is stored.
    secrets_set: HashMap<String, bool>,
    version: i64,
    /// Editing a stored connection (not adding one).
    pub(crate) exists: bool,
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Which of `c`'s secrets are stored.
fn secrets_set(c: &Connection) -> HashMap<String, bool> {
    c.settings
        .secrets()
        .into_iter()
        .map(|(k, s)| (k.to_owned(), !s.is_empty()))
        .collect()
}

impl AccountForm {
    /// A new connection's form with the vendor's defaults.
    pub(crate) fn blank(v: Vendor, tenant: String) -> Self {
        let defaults: &[(&str, &str)] = match v {
            Vendor::Dormakaba => &[
                ("product", "saflok"),
                ("scheme", "https"),
                ("port", "443"),
                ("key_size", "0"),
                ("pms_terminal_id", "accesshub"),
            ],
            _ => &[],
        };
        AccountForm {
            tenant,
            values: defaults
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    /// The stored connection's values (secrets only as set / not set).
    pub(crate) fn from_conn(c: &Connection) -> Self {
        let json = serde_json::to_value(c.settings.redacted()).unwrap_or(Value::Null);
        let values = specs(c.vendor())
            .iter()
            .filter(|s| !matches!(s.kind, Kind::Secret))
            .map(|s| (s.key.to_owned(), json_text(&json[s.key])))
            .collect();
        AccountForm {
            tenant: c.tenant.clone(),
            name: c.name.clone(),
            sites: c.sites.join(", "),
            values,
            secrets_set: secrets_set(c),
            version: c.version,
            exists: true,
        }
    }

    /// What the browser sent (the vendor from the path or the hidden field).
    pub(crate) fn from_pairs(v: Vendor, pairs: &[(String, String)]) -> Self {
        let get = |k: &str| form_value(pairs, k);
        AccountForm {
            tenant: get("tenant"),
            name: get("name"),
            sites: get("sites"),
            values: specs(v)
                .iter()
                .map(|s| (s.key.to_owned(), get(s.key)))
                .collect(),
            secrets_set: HashMap::new(),
            version: get("version").parse().unwrap_or(0),
            exists: get("exists") == "true",
        }
    }

    fn value(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }

    /// The connection the form describes, on top of `current`'s mappings; or the errors
    /// per field.
    fn to_connection(
        &self,
        v: Vendor,
        current: Option<&Connection>,
    ) -> Result<Connection, HashMap<String, String>> {
        let mut errors = HashMap::new();
        if self.tenant.is_empty() {
            errors.insert("tenant".to_owned(), "Choose the tenant.".to_owned());
        }
        // The mappings edited on their own form stay as stored.
        let mut obj = match current.map(|c| serde_json::to_value(c.settings.redacted())) {
            Some(Ok(Value::Object(m))) => m,
            _ => Map::new(),
        };
        obj.insert("vendor".into(), Value::String(v.as_str().to_owned()));
        for s in specs(v) {
            let typed = self.value(s.key);
            let value = match s.kind {
                Kind::Text | Kind::Choice(_) => Value::String(typed.to_owned()),
                Kind::Optional if typed.is_empty() => {
                    obj.remove(s.key);
                    continue;
                }
                Kind::Optional => Value::String(typed.to_owned()),
                Kind::Secret if typed.is_empty() && current.is_some() => {
                    Value::String(REDACTED.to_owned())
                }
                Kind::Secret => Value::String(typed.to_owned()),
                Kind::Check => Value::Bool(typed == "true"),
                Kind::Number => match typed.parse::<u64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => {
                        errors.insert(
                            s.key.to_owned(),
                            "Enter a whole number, e.g. 443.".to_owned(),
                        );
                        continue;
                    }
                },
            };
            obj.insert(s.key.to_owned(), value);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let settings: VendorSettings =
            settings_from_json(Value::Object(obj)).map_err(|(path, problem)| {
                let key = path.split(['.', '[']).next().unwrap_or_default().to_owned();
                HashMap::from([(key, format!("Not accepted: {problem}."))])
            })?;
        Ok(Connection {
            tenant: self.tenant.clone(),
            name: name_or_default(&self.name),
            enabled: current.is_none_or(|c| c.enabled),
            sites: sites_of(&self.sites),
            settings,
            version: self.version,
        })
    }
}

fn input(s: &Spec, f: &AccountForm, error: Option<&str>) -> Markup {
    let value = f.value(s.key);
    match s.kind {
        Kind::Text | Kind::Optional | Kind::Number => field(s.label, s.key, value, error, s.hint),
        Kind::Secret => secret_field(
            s.label,
            s.key,
            f.secrets_set.get(s.key).copied().unwrap_or(false),
            f.exists,
            error,
        ),
        Kind::Check => html! {
            label.check {
                input type="checkbox" name=(s.key) value="true" checked[value == "true"];
                span { (s.label) }
                @if let Some(e) = error { small.error data-field=(s.key) { (e) } }
            }
        },
        Kind::Choice(options) => html! {
            label.field {
                span { (s.label) }
                select name=(s.key) aria-invalid=[error.map(|_| "true")] {
                    @for (val, label) in options {
                        option value=(val) selected[*val == value] { (label) }
                    }
                }
                @if let Some(h) = s.hint { small.hint { (h) } }
                @if let Some(e) = error { small.error data-field=(s.key) { (e) } }
            }
        },
    }
}

/// The account form (read-only for viewers).
pub(crate) fn form(
    s: &Session,
    v: Vendor,
    f: &AccountForm,
    errors: &HashMap<String, String>,
) -> Markup {
    let err = |k: &str| errors.get(k).map(String::as_str);
    let edit = s.can(Role::Operator);
    let action = if f.exists {
        format!("/connections/{}/{}/{}", f.tenant, v, f.name)
    } else {
        "/connections/new".to_owned()
    };
    let known: Vec<&str> = specs(v)
        .iter()
        .map(|s| s.key)
        .chain(["tenant", "name", "sites"])
        .collect();
    html! {
        @if !errors.is_empty() {
            p.error role="alert" #form-errors {
                "Please correct the fields marked below; nothing you typed was lost."
                // Problems no field of this form shows (e.g. of a mapping).
                @for (k, e) in errors.iter().filter(|(k, _)| !known.contains(&k.as_str())) { br; (k) ": " (e) }
            }
        }
        form.card.connection-form method="post" action=(url(&action)) #account-form data-vendor=(v.as_str()) {
            (csrf(s))
            input type="hidden" name="vendor" value=(v.as_str());
            input type="hidden" name="version" value=(f.version);
            input type="hidden" name="exists" value=(f.exists);
            fieldset disabled[!edit] {
                legend { (vendor_name(v)) " account" }
                (identity(f.exists, &f.tenant, &f.name, errors))
                div.account-fields {
                    @for sp in specs(v) { (input(sp, f, err(sp.key))) }
                }
                (field("Sites served (upstream site ids, comma separated)", "sites", &f.sites, err("sites"), Some("Empty: every site of the tenant.")))
            }
            @if edit { button type="submit" #save { "Save" } }
        }
    }
}

/// Stores the account form: the new connection's page, or the form again (400) with the
/// errors next to their fields.
pub(crate) async fn submit(
    state: &ConsoleState,
    s: &Session,
    v: Vendor,
    f: AccountForm,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "changing a connection")?;
    if !f.tenant.is_empty() {
        s.require_tenant(&f.tenant)?;
    }
    let title = format!(
        "{} {} connection",
        if f.exists { "Edit" } else { "Add" },
        vendor_name(v)
    );
    let current = if f.tenant.is_empty() {
        None
    } else {
        state
            .connections
            .get(&f.tenant, v, &name_or_default(&f.name))
            .await?
    };
    // The re-shown form says whether a secret is stored, as the edit page does.
    let mut f = f;
    if let Some(c) = &current {
        f.secrets_set = secrets_set(c);
    }
    let invalid = |errors: HashMap<String, String>| {
        (
            StatusCode::BAD_REQUEST,
            page(s, "connections", &title, form(s, v, &f, &errors)),
        )
            .into_response()
    };
    if !f.exists && current.is_some() {
        return Ok(invalid(HashMap::from([(
            "name".to_owned(),
            format!(
                "This tenant already has a {} connection of this name: edit it instead.",
                vendor_name(v)
            ),
        )])));
    }
    if f.exists && current.is_none() {
        return Err(ConsoleError::NotFound(format!(
            "No connection {}/{v}/{}.",
            f.tenant, f.name
        )));
    }
    let conn = match f.to_connection(v, current.as_ref()) {
        Ok(c) => c,
        Err(errors) => return Ok(invalid(errors)),
    };
    match save_with_audit(state, s, current.as_ref(), &conn).await? {
        Ok(saved) => Ok(Redirect::to(&url(&format!(
            "/connections/{}/{v}/{}?saved=1",
            saved.tenant, saved.name
        )))
        .into_response()),
        Err(e @ ConnectionError::Invalid(_)) => Ok(invalid(field_errors(&e).unwrap_or_default())),
        Err(e) => Ok(invalid(store_refusal(e, "name")?)),
    }
}

/// The edit page of a dormakaba, iPassan or Tapkey connection: account, then mappings.
pub(crate) async fn edit_page(
    state: &ConsoleState,
    s: &Session,
    c: &Connection,
    saved: bool,
) -> Markup {
    html! {
        @if saved { (verdict(true, "Saved. The worker picks up the change at once.")) }
        (form(s, c.vendor(), &AccountForm::from_conn(c), &HashMap::new()))
        (crate::mappings::section(state, s, c, &HashMap::new()).await)
    }
}

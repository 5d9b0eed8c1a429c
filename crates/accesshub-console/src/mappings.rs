//! Mappings of the other vendors, a form of its own under the account form on the
//! connection's page ([`crate::account`]): dormakaba encoders (name + ID, add and
//! remove), rooms (BEX object id or upstream room → lock-system room number, the BEX
//! rentables of the connection's administrations offered while typing) and common areas →
//! pass levels, iPassan facility → asset and Tapkey pass type → locks, with the assets and
//! locks in dropdowns from live look-ups.

use std::collections::{BTreeMap, HashMap};

use accesshub_connections::{
    Connection, ConnectionError, Encoder, EncoderKind, Vendor, VendorSettings, lookup::LookupItem,
};
use axum::{
    Extension, Form,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};

use crate::{
    ConsoleState,
    connections::{BexList, ask, ask_bex, field_errors, load, save_with_audit},
    error::ConsoleError,
    html::{csrf, page, url},
    session::{Role, Session},
};

/// One editable table: rows of (key, value) with what the columns mean.
struct Table {
    /// Form field prefix (`map`, `area`).
    prefix: &'static str,
    title: &'static str,
    key_label: &'static str,
    value_label: &'static str,
    rows: Vec<(String, Vec<String>)>,
    /// Live choices for the value (None: typed).
    choices: Option<Result<Vec<LookupItem>, String>>,
    /// Live suggestions for the key, offered while typing (None: typed).
    key_choices: Option<Result<Vec<LookupItem>, String>>,
    /// Several values per row (Tapkey locks).
    multiple: bool,
}

fn tables(
    state_choices: Option<Result<Vec<LookupItem>, String>>,
    rooms: Option<Result<Vec<LookupItem>, String>>,
    c: &Connection,
) -> Vec<Table> {
    match &c.settings {
        VendorSettings::Dormakaba(d) => vec![
            Table {
                prefix: "map",
                title: "Encoders",
                key_label: "Name",
                value_label: "Encoder ID",
                rows: d
                    .encoders
                    .iter()
                    .map(|e| (e.name.clone(), vec![e.id.clone()]))
                    .collect(),
                choices: None,
                key_choices: None,
                multiple: false,
            },
            Table {
                prefix: "room",
                title: "Rooms → lock-system room numbers",
                key_label: "BEX object id (or upstream room)",
                value_label: "Lock-system room number",
                rows: d
                    .rooms
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![v.clone()]))
                    .collect(),
                choices: None,
                key_choices: rooms,
                multiple: false,
            },
            Table {
                prefix: "area",
                title: "Common areas → pass levels",
                key_label: "Common area",
                value_label: "Pass level number",
                rows: d
                    .common_areas
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![v.to_string()]))
                    .collect(),
                choices: None,
                key_choices: None,
                multiple: false,
            },
        ],
        VendorSettings::Ipassan(i) => vec![Table {
            prefix: "map",
            title: "connecX facility → iPassan asset",
            key_label: "Facility id",
            value_label: "iPassan asset",
            rows: i
                .facilities
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone()]))
                .collect(),
            choices: state_choices,
            key_choices: None,
            multiple: false,
        }],
        VendorSettings::Tapkey(t) => vec![Table {
            prefix: "map",
            title: "Nexudus pass type → Tapkey locks",
            key_label: "Pass type id",
            value_label: "Locks",
            rows: t
                .pass_types
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            choices: state_choices,
            key_choices: None,
            multiple: true,
        }],
        VendorSettings::Cloudpass(_) => vec![],
    }
}

/// Which look-up fills the value dropdowns.
fn lookup_of(v: Vendor) -> Option<&'static str> {
    match v {
        Vendor::Ipassan => Some("assets"),
        Vendor::Tapkey => Some("locks"),
        _ => None,
    }
}

/// The key column's suggestions, when the look-up listed some.
fn key_list(t: &Table) -> Option<&[LookupItem]> {
    match &t.key_choices {
        Some(Ok(items)) if !items.is_empty() => Some(items),
        _ => None,
    }
}

fn value_cell(t: &Table, i: usize, values: &[String]) -> Markup {
    let name = format!("{}.{i}.value", t.prefix);
    match &t.choices {
        Some(Ok(items)) if !items.is_empty() => html! {
            select name=(name) multiple[t.multiple] size=[t.multiple.then_some(3)] {
                @if !t.multiple { option value="" { "Choose…" } }
                @for it in items {
                    option value=(it.id) selected[values.contains(&it.id)] {
                        (it.name) " (" (it.id) ")" @if let Some(d) = &it.detail { " · " (d) }
                    }
                }
                @for v in values.iter().filter(|v| !items.iter().any(|it| &it.id == *v)) {
                    option value=(v) selected { (v) " (not listed by the vendor)" }
                }
            }
        },
        _ => html! {
            input name=(name) value=(values.join(", ")) placeholder=[t.multiple.then_some("ids, comma separated")];
        },
    }
}

/// The mapping tables of a non-CloudPass connection (read-only for viewers).
pub async fn section(
    state: &ConsoleState,
    s: &Session,
    c: &Connection,
    errors: &HashMap<String, String>,
) -> Markup {
    let choices = match lookup_of(c.vendor()) {
        Some(what) => Some(ask(state, c.vendor(), &c.tenant, &c.name, what, BTreeMap::new()).await),
        None => None,
    };
    // dormakaba rooms are keyed by BEX object ids: the rentables of the administrations the
    // connection serves (of every administration of the tenant when it serves all).
    let rooms = match c.vendor() {
        Vendor::Dormakaba => Some(ask_bex(state, &c.tenant, BexList::Rentables(&c.sites)).await),
        _ => None,
    };
    let edit = s.can(Role::Operator);
    let path = format!(
        "/connections/{}/{}/{}/mappings",
        c.tenant,
        c.vendor(),
        c.name
    );
    html! {
        @if !errors.is_empty() {
            p.error role="alert" #form-errors {
                @for (f, e) in errors { (f) ": " (e) br; }
            }
        }
        form.card method="post" action=(url(&path)) #mappings-form {
            (csrf(s))
            @for t in tables(choices, rooms, c) {
                fieldset disabled[!edit] data-table=(t.prefix) {
                    legend { (t.title) }
                    @if let Some(Err(e)) = &t.choices {
                        p.hint { "The list could not be loaded (" (e) "); type the ids." }
                    }
                    @if let Some(Err(e)) = &t.key_choices {
                        p.hint data-hint=(t.prefix) { "The BEX room list could not be loaded (" (e) "); type the ids." }
                    }
                    @let list_id = format!("{}-suggestions", t.prefix);
                    @let suggestions = key_list(&t);
                    div.table-wrap { table.mappings {
                        thead { tr { th { (t.key_label) } th { (t.value_label) } } }
                        tbody {
                            @let rows: Vec<(String, Vec<String>)> = t.rows.iter().cloned()
                                .chain(std::iter::once(Default::default())).collect();
                            @for (i, (k, v)) in rows.iter().enumerate() {
                                tr {
                                    td data-label=(t.key_label) {
                                        input name=(format!("{}.{i}.key", t.prefix)) value=(k) list=[suggestions.map(|_| &list_id)];
                                        @if let Some(it) = suggestions.and_then(|l| l.iter().find(|it| &it.id == k)) {
                                            small.muted { (it.name) @if let Some(d) = &it.detail { " · " (d) } }
                                        }
                                    }
                                    td data-label=(t.value_label) { (value_cell(&t, i, v)) }
                                }
                            }
                        }
                    } }
                    @if let Some(items) = suggestions {
                        datalist id=(list_id) {
                            @for it in items {
                                option value=(it.id) { (it.name) @if let Some(d) = &it.detail { " · " (d) } }
                            }
                        }
                    }
                    p.hint { "Clear a row's first column to remove it; the empty row adds one." }
                }
            }
            @if edit { button type="submit" #save-mappings { "Save mappings" } }
        }
    }
}

/// Rows `prefix.N.key` / `prefix.N.value` (values repeated for multi-selects) of a form.
fn rows(pairs: &[(String, String)], prefix: &str) -> Vec<(String, Vec<String>)> {
    let mut out: BTreeMap<usize, (String, Vec<String>)> = BTreeMap::new();
    for (k, v) in pairs {
        let mut parts = k.splitn(3, '.');
        if parts.next() != Some(prefix) {
            continue;
        }
        let (Some(i), Some(what)) = (parts.next().and_then(|i| i.parse().ok()), parts.next())
        else {
            continue;
        };
        let r = out.entry(i).or_default();
        match what {
            "key" => r.0 = v.trim().to_owned(),
            "value" => r.1.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    out.into_values().filter(|(k, _)| !k.is_empty()).collect()
}

/// Applies the form's rows to `c`, or says which field is wrong.
fn apply_rows(
    c: &mut Connection,
    pairs: &[(String, String)],
) -> Result<(), HashMap<String, String>> {
    let map = rows(pairs, "map");
    let mut errors = HashMap::new();
    match &mut c.settings {
        VendorSettings::Dormakaba(d) => {
            // The form has no column for the attachment: a stored encoder keeps its own
            // (a USB one stays refused), a new one is a network encoder.
            let kinds: HashMap<String, EncoderKind> =
                d.encoders.iter().map(|e| (e.id.clone(), e.kind)).collect();
            d.encoders = map
                .into_iter()
                .map(|(name, ids)| {
                    let id = ids.first().cloned().unwrap_or_default();
                    Encoder {
                        kind: kinds.get(&id).copied().unwrap_or(EncoderKind::Network),
                        id,
                        name,
                    }
                })
                .collect();
            let mut areas = BTreeMap::new();
            for (area, level) in rows(pairs, "area") {
                match level.first().map(|l| l.parse::<u32>()) {
                    Some(Ok(n)) => {
                        areas.insert(area, n);
                    }
                    _ => {
                        errors.insert(
                            format!("common area {area}"),
                            "Enter the pass level as a number, e.g. 3.".to_owned(),
                        );
                        // Kept (as 0) so the row stays on the form.
                        areas.insert(area, 0);
                    }
                }
            }
            d.common_areas = areas;
            let mut rooms = BTreeMap::new();
            for (room, number) in rows(pairs, "room") {
                let problem = match number.as_slice() {
                    [_] if rooms.contains_key(&room) => Some("This room is mapped twice."),
                    [_] => None,
                    [] => Some("Enter the lock-system room number, e.g. 101."),
                    _ => Some("Enter one lock-system room number per row."),
                };
                if let Some(p) = problem {
                    errors.insert(format!("room {room}"), p.to_owned());
                }
                // Kept as typed so the row stays on the form.
                rooms.insert(room, number.join(", "));
            }
            d.rooms = rooms;
        }
        VendorSettings::Ipassan(i) => {
            i.facilities = map
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().next().unwrap_or_default()))
                .collect();
        }
        VendorSettings::Tapkey(t) => t.pass_types = map.into_iter().collect(),
        VendorSettings::Cloudpass(_) => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `POST /console/connections/{tenant}/{vendor}/{name}/mappings`.
pub async fn save(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "changing mappings")?;
    let (_, current) = load(&state, &s, &tenant, &vendor, &name).await?;
    if matches!(current.settings, VendorSettings::Cloudpass(_)) {
        return Err(ConsoleError::BadRequest(
            "CloudPass mappings are part of its connection form.".into(),
        ));
    }
    let mut next = current.clone();
    let (st, sess) = (&state, &s);
    // Shows the rows as typed, with the errors.
    let invalid = |errors: HashMap<String, String>, typed: Connection| async move {
        let body = section(st, sess, &typed, &errors).await;
        (
            StatusCode::BAD_REQUEST,
            page(sess, "connections", "Mappings", body),
        )
            .into_response()
    };
    if let Err(errors) = apply_rows(&mut next, &pairs) {
        return Ok(invalid(errors, next).await);
    }
    match save_with_audit(&state, &s, Some(&current), &next).await? {
        Ok(_) => Ok(Redirect::to(&url(&format!(
            "/connections/{tenant}/{vendor}/{name}?saved=1"
        )))
        .into_response()),
        Err(e @ ConnectionError::Invalid(_)) => {
            Ok(invalid(field_errors(&e).unwrap_or_default(), next).await)
        }
        Err(e) => Err(e.into()),
    }
}

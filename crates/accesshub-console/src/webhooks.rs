//! Webhooks: per tenant and upstream source the URL to paste into the PMS and its secret
//! (never shown again once set); Rotate generates a new secret, shown once, while the
//! previous one stays valid for a grace period (`TenantStore::set_source_secret`, as
//! `POST /admin/v1/tenants/{t}/sources/{s}/rotate`). Managing secrets needs the admin role.

use axum::{Extension, Form, extract::State};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ConsoleState, audit,
    connections::visible_tenants,
    error::ConsoleError,
    html::{csrf, page, url, when},
    session::{Role, Session},
};

/// Upstream sources the console offers for a new webhook.
const SOURCES: &[&str] = &["bex", "clock", "connecx", "nexudus"];

fn webhook_url(state: &ConsoleState, source: &str, tenant: &str) -> String {
    format!(
        "{}/webhooks/{source}/{tenant}",
        state.config.webhook_base_url
    )
}

/// `GET /console/webhooks`.
pub async fn render(
    state: &ConsoleState,
    s: &Session,
    shown: Option<Markup>,
) -> Result<Markup, ConsoleError> {
    let tenants = visible_tenants(state, s).await?;
    let mut sections = Vec::with_capacity(tenants.len());
    for (id, name) in &tenants {
        sections.push((id, name, state.tenants.sources(id).await?));
    }
    let body = html! {
        @if let Some(m) = shown { (m) }
        @for (tenant, name, sources) in &sections {
            section.card data-tenant=(tenant) {
                h2 { (name) " " small.muted { (tenant) } }
                @if sources.is_empty() { p.empty { "No webhook secrets yet." } }
                div.table-wrap { table.webhooks {
                    thead { tr { th { "Source" } th { "URL to paste into the PMS" } th { "Secret" } th { "" } } }
                    tbody {
                        @for src in sources {
                            tr data-source=(src.source) {
                                td data-label="Source" { (src.source) }
                                td data-label="URL" { code.url { (webhook_url(state, &src.source, tenant)) } }
                                td data-label="Secret" { "set"
                                    @if src.previous_valid { @if let Some(t) = src.previous_expires { br; small.muted { "previous one valid until " (when(t)) } } }
                                }
                                td.actions {
                                    @if s.can(Role::Admin) {
                                        form method="post" action=(url("/webhooks/rotate")) {
                                            (csrf(s))
                                            input type="hidden" name="tenant" value=(tenant);
                                            input type="hidden" name="source" value=(src.source);
                                            button type="submit" data-rotate=(src.source) { "Rotate secret" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
                @if s.can(Role::Admin) {
                    form.inline method="post" action=(url("/webhooks/rotate")) {
                        (csrf(s))
                        input type="hidden" name="tenant" value=(tenant);
                        label { "New source "
                            select name="source" { @for src in SOURCES { option value=(src) { (src) } } }
                        }
                        button.secondary type="submit" { "Create secret" }
                    }
                } @else {
                    p.muted { "Creating and rotating webhook secrets needs the admin role." }
                }
            }
        }
    };
    Ok(page(s, "webhooks", "Webhooks", body))
}

/// `GET /console/webhooks`.
pub async fn show(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Result<Markup, ConsoleError> {
    render(&state, &s, None).await
}

/// The rotate form.
#[derive(Debug, Deserialize)]
pub struct RotateForm {
    tenant: String,
    source: String,
}

/// `POST /console/webhooks/rotate`: a new random secret, shown once; the previous one stays
/// valid for the grace period.
pub async fn rotate(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Form(f): Form<RotateForm>,
) -> Result<Markup, ConsoleError> {
    s.require(Role::Admin, "rotating a webhook secret")?;
    s.require_tenant(&f.tenant)?;
    let source = f.source.trim();
    if source.is_empty()
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(ConsoleError::BadRequest(format!(
            "\"{source}\" is not a source name (letters, digits, - and _)."
        )));
    }
    let before = state
        .tenants
        .sources(&f.tenant)
        .await?
        .into_iter()
        .find(|x| x.source == source);
    let audit = audit::begin(
        &state,
        &s,
        "source.secret.rotate",
        Some(&f.tenant),
        &format!("{}/{source}", f.tenant),
        before.and_then(|b| serde_json::to_value(b).ok()),
    )
    .await?;
    let (src, secret) = state
        .tenants
        .set_source_secret(&f.tenant, source, None, state.config.secret_grace)
        .await?;
    audit.commit(None, serde_json::to_value(&src).ok()).await;
    let grace_h = state.config.secret_grace.as_secs() / 3600;
    let shown = html! {
        div.verdict.ok role="status" #new-secret {
            p { "New secret for " strong { (f.tenant) " / " (source) } ". Copy it now: it is not shown again." }
            pre.secret { (secret.expose()) }
            p { "Paste it into the PMS together with the URL " code { (webhook_url(&state, source, &f.tenant)) } "."
                @if src.previous_valid { " The previous secret stays valid for " (grace_h) " hours." } }
        }
    };
    render(&state, &s, Some(shown)).await
}

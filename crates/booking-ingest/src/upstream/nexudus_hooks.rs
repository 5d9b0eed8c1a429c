//! Nexudus webhooks as Nexudus sends them: a bare JSON array holding the entity (`[dto]`), no
//! envelope and no event name (the action is implied by the URL the webhook was registered
//! with), signed `X-Nexudus-Hook-Signature`. Nexudus has no webhook for time passes; what it
//! can tell us is that a coworker changed (CoworkerUpdate): the holder's e-mail of their
//! passes may have changed, so the tenant's Tapkey connections are asked to re-read Nexudus
//! (a queued `active` sync run: the pull re-reads passes and holders, then repairs the
//! grants). Any other entity is answered 200 `ignored` (a non-2xx would make Nexudus disable
//! the webhook).

use serde_json::json;
use sqlx::PgPool;

use super::Ignored;
use crate::{error::Reject, http::Handled};

/// Handles one verified Nexudus webhook body.
pub async fn handle(pool: &PgPool, tenant: &str, body: &[u8]) -> Result<Handled, Reject> {
    let value: serde_json::Value = super::parse(body)?;
    if !value.is_array() {
        return Err(Reject::field(
            "$",
            "expected a JSON array (Nexudus posts [dto])",
        ));
    }
    let coworkers = accesshub_upstreams::nexudus::coworker_ids(&value);
    if coworkers.is_empty() {
        return Ok(Handled::Ignored(Ignored::new(
            "unsupported_entity",
            "only coworker changes are used (passes are polled)",
        )));
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM connections WHERE tenant_id = $1 AND vendor = 'tapkey' AND enabled
          ORDER BY name",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "tapkey connections lookup failed");
        Reject::Unavailable
    })?;
    if names.is_empty() {
        return Ok(Handled::Ignored(Ignored::new(
            "no_connection",
            "the tenant has no enabled Tapkey connection",
        )));
    }
    let by = format!("nexudus webhook (coworker {})", coworkers.join(","));
    let mut runs = Vec::new();
    for name in &names {
        let conn = accesshub_sync_runs::ConnectionRef::new(tenant, "tapkey", name.clone());
        let outcome = accesshub_sync_runs::store::request_run(
            pool,
            &conn,
            accesshub_sync_runs::Scope::Active,
            accesshub_sync_runs::Trigger::Api,
            Some(by.as_str()),
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "queueing a re-read failed");
            Reject::Unavailable
        })?;
        runs.push(outcome.run().id);
    }
    tracing::info!(%tenant, coworkers = ?coworkers, ?runs, "Nexudus coworker change: re-read queued");
    Ok(Handled::Done(
        json!({"status": "accepted", "resync_runs": runs}),
    ))
}

//! Changes made in the console go to the admin API's audit log (`audit_log`), with the same
//! actions (`connection.apply`, `sync.request`, `dlq.replay`, …) and the session's token as
//! the actor, so `GET /admin/v1/audit` shows them next to the API's. Documents recorded are
//! the redacted views.
//!
//! As in the admin API (`accesshub_admin::audit`): a database change writes its record first
//! ([`begin`]) and commits it after the change ([`accesshub_store::audit::PendingAudit`]); a
//! record that cannot be written refuses the change (503 page, nothing changed), a change that
//! fails rolls its record back. DLQ replays and purges (NATS) are recorded after they happened
//! ([`record`]), per tenant of the entries actually touched; a failed write is logged in full.

use accesshub_store::audit::{AuditEntry, PendingAudit};
use serde_json::Value;

use crate::{ConsoleState, error::ConsoleError, session::Session};

/// Writes the record of a change `who` is about to make; commit it after the change, drop it
/// if the change failed or changed nothing. An error: nothing was written, refuse the change.
pub async fn begin(
    state: &ConsoleState,
    who: &Session,
    action: &str,
    tenant: Option<&str>,
    target: &str,
    before: Option<Value>,
) -> Result<PendingAudit, ConsoleError> {
    PendingAudit::write(
        &state.pool,
        AuditEntry {
            token_id: Some(who.token_id),
            actor: &who.name,
            action,
            tenant,
            target,
            before,
            after: None,
        },
    )
    .await
    .map_err(|_| ConsoleError::Unrecorded)
}

/// Records one action outside the database (a DLQ replay or purge) after it happened by `who`.
pub async fn record(
    state: &ConsoleState,
    who: &Session,
    action: &str,
    tenant: Option<&str>,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    // A failure is logged inside, with the whole record; the action already happened.
    if let Ok(p) = begin(state, who, action, tenant, target, before).await {
        p.commit(None, after).await;
    }
}

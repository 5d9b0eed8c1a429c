//! Changes made in the console go to the admin API's audit log (`audit_log`), with the same
//! actions (`connection.apply`, `sync.request`, `dlq.replay`, …) and the session's token as
//! the actor, so `GET /admin/v1/audit` shows them next to the API's. Documents recorded are
//! the redacted views; a failed write is logged in full and the change stands (as the API).

use serde_json::Value;

use crate::{ConsoleState, session::Session};

/// Records one change made by `who`.
pub async fn record(
    state: &ConsoleState,
    who: &Session,
    action: &str,
    tenant: Option<&str>,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    let res = sqlx::query(
        "INSERT INTO audit_log (token_id, actor, action, tenant_id, target, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(who.token_id)
    .bind(&who.name)
    .bind(action)
    .bind(tenant)
    .bind(target)
    .bind(&before)
    .bind(&after)
    .execute(&state.pool)
    .await;
    match res {
        Ok(_) => tracing::info!(action, tenant, target, by = %who.name, via = "console", "audit"),
        Err(e) => {
            let before = before.unwrap_or(Value::Null).to_string();
            let after = after.unwrap_or(Value::Null).to_string();
            tracing::error!(
                error = %e, action, tenant, target, by = %who.name, %before, %after,
                "audit record could not be stored; the change was made"
            );
        }
    }
}

//! Writing the `audit_log` record of a change *ahead* of the change, so that no change is made
//! without its record (issue 23 item 2). Shared by the admin API and the console, which own
//! the documents (redacted, masked) and the actors; this module owns the statement and the
//! transaction.
//!
//! [`PendingAudit::write`] inserts the record in a transaction of its own and keeps it open;
//! the caller then makes its change (through the stores, which own their transactions) and
//! calls [`PendingAudit::commit`] once the change committed, or drops the pending record
//! (rolled back: a change that failed leaves no trail). If the insert fails, the caller refuses
//! the request before changing anything. The one window left is a failed `COMMIT` of the
//! record after the change committed: logged at error level with the whole record.
//!
//! A pending record holds one pool connection until it is committed or dropped; the change
//! needs another. With every connection of a pool held by pending records, the changes wait
//! for the pool's acquire timeout and fail (nothing is changed, nothing recorded).

use sqlx::{
    PgPool, Postgres, Transaction,
    types::{JsonValue, Uuid},
};

/// One change to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Token id of the actor (`None`: not through a token).
    pub token_id: Option<Uuid>,
    /// Name of the actor.
    pub actor: &'a str,
    /// Dotted verb, e.g. `connection.apply`.
    pub action: &'a str,
    /// The tenant it belongs to, if one.
    pub tenant: Option<&'a str>,
    /// The object changed.
    pub target: &'a str,
    /// State before (already redacted by the caller).
    pub before: Option<JsonValue>,
    /// State after as requested; [`PendingAudit::commit`] replaces it with the stored one.
    pub after: Option<JsonValue>,
}

/// An audit record written but not yet committed: commit it after the change, or drop it.
#[must_use = "a pending audit record is rolled back when dropped"]
pub struct PendingAudit {
    tx: Transaction<'static, Postgres>,
    id: i64,
    token_id: Option<Uuid>,
    actor: String,
    action: String,
    tenant: Option<String>,
    target: String,
    before: Option<JsonValue>,
}

impl std::fmt::Debug for PendingAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAudit")
            .field("id", &self.id)
            .field("action", &self.action)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PendingAudit {
    /// Inserts the record in a new transaction, left open. An error means nothing was
    /// written: the caller must not make the change (it is logged here for the operator).
    pub async fn write(pool: &PgPool, e: AuditEntry<'_>) -> Result<Self, sqlx::Error> {
        let res = async {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO audit_log (token_id, actor, action, tenant_id, target, before, after)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(e.token_id)
            .bind(e.actor)
            .bind(e.action)
            .bind(e.tenant)
            .bind(e.target)
            .bind(&e.before)
            .bind(&e.after)
            .fetch_one(&mut *tx)
            .await?;
            Ok::<_, sqlx::Error>((tx, id))
        }
        .await;
        match res {
            Ok((tx, id)) => Ok(PendingAudit {
                tx,
                id,
                token_id: e.token_id,
                actor: e.actor.to_owned(),
                action: e.action.to_owned(),
                tenant: e.tenant.map(str::to_owned),
                target: e.target.to_owned(),
                before: e.before,
            }),
            Err(err) => {
                let before = e.before.unwrap_or(JsonValue::Null).to_string();
                let after = e.after.unwrap_or(JsonValue::Null).to_string();
                tracing::error!(
                    error = %err, action = e.action, tenant = e.tenant, target = e.target,
                    by = e.actor, token_id = ?e.token_id, %before, %after,
                    "audit record could not be stored"
                );
                Err(err)
            }
        }
    }

    /// The object changed, as recorded.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Commits the record after its change committed, with the state `after` it left (and,
    /// when the object's name is known only now — a minted token's id — its `target`).
    /// Failing to store `after` keeps the record with its requested `after`; failing to commit
    /// is logged with the whole record (the change stands).
    pub async fn commit(mut self, target: Option<String>, after: Option<JsonValue>) {
        if let Some(t) = target {
            self.target = t;
        }
        // A savepoint: a failed update must not abort the transaction holding the record.
        let updated = async {
            sqlx::query("SAVEPOINT audit_after")
                .execute(&mut *self.tx)
                .await?;
            let res = sqlx::query("UPDATE audit_log SET target = $2, after = $3 WHERE id = $1")
                .bind(self.id)
                .bind(&self.target)
                .bind(&after)
                .execute(&mut *self.tx)
                .await;
            if res.is_err() {
                sqlx::query("ROLLBACK TO SAVEPOINT audit_after")
                    .execute(&mut *self.tx)
                    .await?;
            }
            res.map(|_| ())
        }
        .await;
        if let Err(e) = &updated {
            tracing::warn!(error = %e, id = self.id, action = %self.action,
                "audit record keeps the requested state: the stored one could not be written");
        }
        let PendingAudit {
            tx,
            id,
            token_id,
            actor,
            action,
            tenant,
            target,
            before,
        } = self;
        match tx.commit().await {
            Ok(()) => tracing::info!(
                id, action = %action, tenant = tenant.as_deref(), target = %target,
                by = %actor, token_id = ?token_id, "audit"
            ),
            Err(e) => {
                let before = before.unwrap_or(JsonValue::Null).to_string();
                let after = after.unwrap_or(JsonValue::Null).to_string();
                tracing::error!(
                    error = %e, action = %action, tenant = tenant.as_deref(), target = %target,
                    by = %actor, token_id = ?token_id, %before, %after,
                    "audit record could not be committed; the change was made"
                );
            }
        }
    }
}

//! One run per connection across replicas: a session-level Postgres advisory lock on the
//! connection, held on a dedicated pool connection for the run's whole duration. If the
//! replica dies, its database session ends and Postgres releases the lock by itself, so a
//! crashed run never blocks the connection (its `running` row is requeued by the lease check).

use sqlx::{PgPool, Postgres, pool::PoolConnection};

use crate::{error::ReconcileError, model::ConnectionRef};

/// A held connection lock. Release it with [`ConnectionLock::release`]; dropping it closes
/// the session instead, which releases the lock too.
pub struct ConnectionLock {
    conn: Option<PoolConnection<Postgres>>,
    key: String,
}

impl std::fmt::Debug for ConnectionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLock")
            .field("key", &self.key)
            .finish()
    }
}

fn lock_key(c: &ConnectionRef) -> String {
    format!("accesshub-sync:{}/{}/{}", c.tenant, c.vendor, c.name)
}

/// Tries to take the lock without waiting; `None` if another session holds it.
pub async fn try_lock(
    pool: &PgPool,
    conn: &ConnectionRef,
) -> Result<Option<ConnectionLock>, ReconcileError> {
    let key = lock_key(conn);
    let mut c = pool.acquire().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .fetch_one(&mut *c)
        .await?;
    Ok(got.then_some(ConnectionLock { conn: Some(c), key }))
}

impl ConnectionLock {
    /// Unlocks and returns the session to the pool.
    pub async fn release(mut self) {
        if let Some(mut c) = self.conn.take() {
            let ok =
                sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&self.key)
                    .fetch_one(&mut *c)
                    .await;
            if !matches!(ok, Ok(true)) {
                // Unknown state: do not hand a possibly-locked session back to the pool.
                drop(c.detach());
            }
        }
    }
}

impl Drop for ConnectionLock {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // Closing the session releases every advisory lock it holds.
            drop(c.detach());
        }
    }
}

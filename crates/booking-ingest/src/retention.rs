//! Receipt retention: deletes `ingest_receipts` older than the configured retention, a bounded
//! batch at a time, so the idempotency table does not grow without end. Every replica runs
//! it; claims use `SKIP LOCKED`, so replicas share the work instead of queuing on each other.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::IngestMetrics;

/// Retention settings.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long a delivery's answer is kept for repeats (default 7 days).
    pub keep: Duration,
    /// How often expired receipts are looked for (default 1 minute).
    pub every: Duration,
    /// Rows deleted per statement (short transactions, no long locks).
    pub batch: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep: Duration::from_secs(7 * 24 * 3600),
            every: Duration::from_secs(60),
            batch: 5_000,
        }
    }
}

/// Deletes every receipt older than `keep` (in batches); returns how many went.
pub async fn prune_receipts(pool: &PgPool, keep: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let secs = keep.as_secs_f64();
    let mut total = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM ingest_receipts WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM ingest_receipts \
                 WHERE created_at < now() - make_interval(secs => $1) \
                 LIMIT $2 FOR UPDATE SKIP LOCKED))",
        )
        .bind(secs)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

/// Runs [`prune_receipts`] every `cfg.every` until `stop`.
pub async fn run(
    pool: PgPool,
    cfg: RetentionConfig,
    metrics: IngestMetrics,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.every) => {}
            _ = stop.cancelled() => return,
        }
        match prune_receipts(&pool, cfg.keep, cfg.batch).await {
            Ok(0) => {}
            Ok(n) => {
                metrics.receipts_pruned.inc_by(n);
                tracing::info!(deleted = n, "expired ingest receipts pruned");
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning ingest receipts failed; next round retries")
            }
        }
    }
}

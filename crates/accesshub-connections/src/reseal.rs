//! Re-encrypting stored secrets under the active key: the middle step of a key rotation, and
//! the migration of unbound `v1` ciphertexts to the row-bound `v2` format (security review
//! M14, L5). Covers every sealed column: `connections.settings_enc`,
//! `tenant_sources.secret_enc`, `tenant_sources.previous_enc` and
//! `upstream_credentials.credentials_enc` (the booking systems' API credentials).
//!
//! Resumable and safe while services serve traffic: rows are walked in primary-key order in
//! batches, each batch locked (`FOR UPDATE`) and committed on its own, and a row already
//! sealed with the active key in `v2` is left alone, so an interrupted run is simply run
//! again. Every row is decrypted on the way (also in a dry run), so the report lists the rows
//! no configured key opens.
//!
//! This is the library entry point; `accessctl secrets reseal` is its command line. It needs
//! the keys, so it runs where the services' key Secret is mounted (see docs/security.md).

use std::collections::BTreeMap;

use accesshub_store::{SecretBox, SecretError, connection_aad, source_aad, upstream_aad};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::error::ConnectionError;

/// How to run.
#[derive(Debug, Clone)]
pub struct ResealOptions {
    /// Rows per transaction.
    pub batch: i64,
    /// Count and check only; write nothing.
    pub dry_run: bool,
}

impl Default for ResealOptions {
    fn default() -> Self {
        ResealOptions {
            batch: 100,
            dry_run: false,
        }
    }
}

/// Ciphertexts found in one column under one key id and format (before resealing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyUse {
    /// `connections.settings_enc`, `tenant_sources.secret_enc`, `tenant_sources.previous_enc`.
    pub column: &'static str,
    /// Key id the ciphertext names (`?` when it is not a ciphertext at all).
    pub key_id: String,
    /// `v1` (unbound) or `v2`.
    pub format: &'static str,
}

/// A row no configured key opens.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRow {
    /// Column, as in [`KeyUse::column`].
    pub column: &'static str,
    /// `tenant/vendor/name` or `tenant/source`.
    pub row: String,
    /// Key id the ciphertext names.
    pub key_id: String,
    /// Why it does not open.
    #[serde(serialize_with = "display")]
    pub error: SecretError,
}

fn display<S: serde::Serializer>(e: &SecretError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// What a run found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResealReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The active key id.
    pub active_key_id: String,
    /// Ciphertexts per column, key id and format as found (before this run rewrote them).
    #[serde(serialize_with = "key_uses")]
    pub found: BTreeMap<KeyUse, u64>,
    /// Ciphertexts rewritten (or, in a dry run, that would be).
    pub resealed: u64,
    /// Expired previous webhook secrets dropped instead of resealed (or that would be).
    pub expired_cleared: u64,
    /// Rows no configured key opens (left as they are).
    pub failed: Vec<FailedRow>,
}

#[derive(Serialize)]
struct KeyUseCount<'a> {
    #[serde(flatten)]
    key: &'a KeyUse,
    rows: u64,
}

fn key_uses<S: serde::Serializer>(m: &BTreeMap<KeyUse, u64>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|(key, &rows)| KeyUseCount { key, rows }))
}

impl ResealReport {
    /// Ciphertexts that still need a reseal (other key than the active one, or `v1`).
    pub fn pending(&self) -> u64 {
        self.found
            .iter()
            .filter(|(k, _)| k.key_id != self.active_key_id || k.format != "v2")
            .map(|(_, n)| n)
            .sum()
    }

    fn saw(&mut self, column: &'static str, sealed: &str) {
        let key = match SecretBox::inspect(sealed) {
            Some(i) => KeyUse {
                column,
                key_id: i.key_id,
                format: i.format.as_str(),
            },
            None => KeyUse {
                column,
                key_id: "?".into(),
                format: "?",
            },
        };
        *self.found.entry(key).or_default() += 1;
    }

    fn fail(&mut self, column: &'static str, row: String, sealed: &str, error: SecretError) {
        let key_id = SecretBox::inspect(sealed).map_or_else(|| "?".into(), |i| i.key_id);
        tracing::error!(column, %row, key_id, error = %error, "stored secret cannot be decrypted");
        self.failed.push(FailedRow {
            column,
            row,
            key_id,
            error,
        });
    }
}

/// Progress after each batch.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// `connections`, `tenant_sources` or `upstream_credentials`.
    pub table: &'static str,
    /// Rows of that table looked at so far.
    pub scanned: u64,
    /// Ciphertexts rewritten so far (all tables).
    pub resealed: u64,
    /// Rows that do not open so far (all tables).
    pub failed: u64,
}

/// Reseals (or, with `dry_run`, counts) every stored secret; `progress` is called after each
/// committed batch. Undecryptable rows are reported, not fatal: the caller decides (accessctl
/// exits non-zero).
pub async fn reseal(
    pool: &PgPool,
    secrets: &SecretBox,
    opts: &ResealOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<ResealReport, ConnectionError> {
    let mut report = ResealReport {
        dry_run: opts.dry_run,
        active_key_id: secrets.active_key_id().to_owned(),
        ..Default::default()
    };
    let batch = opts.batch.max(1);
    sealed_column(
        pool,
        secrets,
        opts,
        batch,
        &CONNECTIONS,
        &mut report,
        &mut progress,
    )
    .await?;
    sources(pool, secrets, opts, batch, &mut report, &mut progress).await?;
    sealed_column(
        pool,
        secrets,
        opts,
        batch,
        &UPSTREAMS,
        &mut report,
        &mut progress,
    )
    .await?;
    Ok(report)
}

/// `Some(resealed)` when the ciphertext needs rewriting and opens, `None` when it is current;
/// an error when it does not open.
fn reseal_one(
    secrets: &SecretBox,
    sealed: &str,
    aad: &[u8],
) -> Result<Option<String>, SecretError> {
    let plain = zeroize::Zeroizing::new(secrets.open(sealed, aad)?);
    if !secrets.needs_reseal(sealed) {
        return Ok(None);
    }
    secrets.seal(&plain, aad).map(Some)
}

/// A table whose secret is one sealed column bound to the row's key (`connections`,
/// `upstream_credentials`): how to walk it and how to rewrite a row.
struct SealedColumn {
    /// The table, for progress.
    table: &'static str,
    /// `table.column`, for the report.
    column: &'static str,
    /// Key columns, in primary-key order, then the sealed column.
    select: &'static str,
    /// `UPDATE … SET <column> = $<keys+1> WHERE <key> = $1 …`.
    update: &'static str,
    /// How many key columns.
    keys: usize,
    /// The associated data binding a ciphertext to its row.
    aad: fn(&[String]) -> Vec<u8>,
}

const CONNECTIONS: SealedColumn = SealedColumn {
    table: "connections",
    column: "connections.settings_enc",
    select: "SELECT tenant_id, vendor, name, settings_enc FROM connections
              WHERE $1::text IS NULL OR (tenant_id, vendor, name) > ($1, $2, $3)
              ORDER BY tenant_id, vendor, name LIMIT $4",
    update: "UPDATE connections SET settings_enc = $4
              WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
    keys: 3,
    aad: |k| connection_aad(&k[0], &k[1], &k[2]),
};

const UPSTREAMS: SealedColumn = SealedColumn {
    table: "upstream_credentials",
    column: "upstream_credentials.credentials_enc",
    select: "SELECT tenant_id, source, credentials_enc FROM upstream_credentials
              WHERE $1::text IS NULL OR (tenant_id, source) > ($1, $2)
              ORDER BY tenant_id, source LIMIT $3",
    update: "UPDATE upstream_credentials SET credentials_enc = $3
              WHERE tenant_id = $1 AND source = $2",
    keys: 2,
    aad: |k| upstream_aad(&k[0], &k[1]),
};

/// Reseals one [`SealedColumn`] table in key order, `batch` rows per transaction.
async fn sealed_column(
    pool: &PgPool,
    secrets: &SecretBox,
    opts: &ResealOptions,
    batch: i64,
    t: &SealedColumn,
    report: &mut ResealReport,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ConnectionError> {
    let sql = format!(
        "{}{}",
        t.select,
        if opts.dry_run { "" } else { " FOR UPDATE" }
    );
    let mut after: Option<Vec<String>> = None;
    let mut scanned = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for i in 0..t.keys {
            q = q.bind(after.as_ref().map(|a| a[i].clone()));
        }
        let rows = q.bind(batch).fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let key = (0..t.keys)
                .map(|i| r.try_get::<String, _>(i))
                .collect::<Result<Vec<_>, _>>()?;
            let sealed: String = r.try_get(t.keys)?;
            scanned += 1;
            report.saw(t.column, &sealed);
            match reseal_one(secrets, &sealed, &(t.aad)(&key)) {
                Ok(None) => {}
                Ok(Some(new)) => {
                    report.resealed += 1;
                    if !opts.dry_run {
                        let mut u = sqlx::query(t.update);
                        for k in &key {
                            u = u.bind(k);
                        }
                        u.bind(new).execute(&mut *tx).await?;
                    }
                }
                Err(e) => report.fail(t.column, key.join("/"), &sealed, e),
            }
            after = Some(key);
        }
        tx.commit().await?;
        progress(&Progress {
            table: t.table,
            scanned,
            resealed: report.resealed,
            failed: report.failed.len() as u64,
        });
    }
    Ok(())
}

async fn sources(
    pool: &PgPool,
    secrets: &SecretBox,
    opts: &ResealOptions,
    batch: i64,
    report: &mut ResealReport,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ConnectionError> {
    const CURRENT: &str = "tenant_sources.secret_enc";
    const PREVIOUS: &str = "tenant_sources.previous_enc";
    let sql = format!(
        "SELECT tenant_id, source, secret_enc, previous_enc, previous_expires FROM tenant_sources
          WHERE $1::text IS NULL OR (tenant_id, source) > ($1, $2)
          ORDER BY tenant_id, source LIMIT $3{}",
        if opts.dry_run { "" } else { " FOR UPDATE" }
    );
    let mut after: Option<(String, String)> = None;
    let mut scanned = 0u64;
    let now = Utc::now();
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(after.as_ref().map(|a| a.0.as_str()))
            .bind(after.as_ref().map(|a| a.1.as_str()))
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let tenant: String = r.try_get("tenant_id")?;
            let source: String = r.try_get("source")?;
            let current: String = r.try_get("secret_enc")?;
            let previous: Option<String> = r.try_get("previous_enc")?;
            let expires: Option<DateTime<Utc>> = r.try_get("previous_expires")?;
            scanned += 1;
            let aad = source_aad(&tenant, &source);
            let label = format!("{tenant}/{source}");
            let new_current = match reseal_one(secrets, &current, &aad) {
                Ok(n) => n,
                Err(e) => {
                    report.fail(CURRENT, label.clone(), &current, e);
                    None
                }
            };
            report.saw(CURRENT, &current);
            // An expired previous secret is never used again: drop it rather than carry an
            // old key's ciphertext (or fail on it) forever.
            let mut clear_previous = false;
            let mut new_previous = None;
            if let Some(prev) = &previous {
                if expires.is_none_or(|e| e <= now) {
                    clear_previous = true;
                    report.expired_cleared += 1;
                } else {
                    report.saw(PREVIOUS, prev);
                    match reseal_one(secrets, prev, &aad) {
                        Ok(n) => new_previous = n,
                        Err(e) => report.fail(PREVIOUS, label.clone(), prev, e),
                    }
                }
            }
            report.resealed += u64::from(new_current.is_some()) + u64::from(new_previous.is_some());
            if !opts.dry_run && (new_current.is_some() || new_previous.is_some() || clear_previous)
            {
                // Unchanged columns are written back as read (the row is locked).
                sqlx::query(
                    "UPDATE tenant_sources SET secret_enc = $3, previous_enc = $4,
                            previous_expires = CASE WHEN $5 THEN NULL ELSE previous_expires END
                      WHERE tenant_id = $1 AND source = $2",
                )
                .bind(&tenant)
                .bind(&source)
                .bind(new_current.as_deref().unwrap_or(&current))
                .bind(if clear_previous {
                    None
                } else {
                    new_previous.as_deref().or(previous.as_deref())
                })
                .bind(clear_previous)
                .execute(&mut *tx)
                .await?;
            }
            after = Some((tenant, source));
        }
        tx.commit().await?;
        progress(&Progress {
            table: "tenant_sources",
            scanned,
            resealed: report.resealed,
            failed: report.failed.len() as u64,
        });
    }
    Ok(())
}

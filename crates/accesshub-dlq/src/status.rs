//! `accessctl status`: one screen that says whether events are flowing — streams, consumers
//! with their backlog and redeliveries, DLQ depth per worker, and the last sync runs.
//!
//! Every part is collected independently: a missing stream or table becomes a line in
//! `problems`, not a failed command, because status is what one runs when things are broken.

use std::collections::{BTreeMap, HashMap, HashSet};

use accesshub_bus::Bus;
use accesshub_domain::subjects;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};

use crate::DlqError;

/// One stream.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamStatus {
    /// Namespaced name.
    pub name: String,
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Consumers attached.
    pub consumers: usize,
    /// Last sequence assigned.
    pub last_seq: u64,
}

/// One consumer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsumerStatus {
    /// Stream it reads.
    pub stream: String,
    /// Consumer name.
    pub name: String,
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Messages delivered more than once and not yet acknowledged.
    pub num_redelivered: usize,
    /// Delivered, awaiting acknowledgement.
    pub num_ack_pending: usize,
    /// Pull requests waiting.
    pub num_waiting: usize,
}

/// The last sync run of one connection; `row` keeps every column, whatever the reconciler's
/// table looks like.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncRun {
    /// Connection (id, or tenant/vendor).
    pub connection: String,
    /// Status column, when there is one.
    pub status: Option<String>,
    /// Start time, when there is one.
    pub started_at: Option<String>,
    /// End time, when there is one.
    pub finished_at: Option<String>,
    /// The whole row.
    pub row: serde_json::Value,
}

/// A connection whose vendor is down: its worker's circuit breaker parked its events
/// (`parked_events`), which apply again when the vendor answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParkedConnection {
    /// Tenant.
    pub tenant: String,
    /// Vendor.
    pub vendor: String,
    /// Connection name.
    pub connection: String,
    /// Events waiting.
    pub parked: i64,
    /// When the oldest was parked (RFC 3339).
    pub since: String,
}

/// A hotel's edge site as the dormakaba worker last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EdgeSite {
    /// Tenant.
    pub tenant: String,
    /// Edge site.
    pub site: String,
    /// Whether its relay answers.
    pub online: bool,
    /// Since when (RFC 3339).
    pub since: String,
}

/// Everything `accessctl status` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// Streams of the namespace.
    pub streams: Vec<StreamStatus>,
    /// Consumers of those streams.
    pub consumers: Vec<ConsumerStatus>,
    /// DLQ entries per worker (advisories as `<worker> (advisory)`).
    pub dlq_depth: BTreeMap<String, u64>,
    /// Last sync run per connection; None when the `sync_runs` table does not exist (yet).
    pub sync_runs: Option<Vec<SyncRun>>,
    /// Hotels' edge sites and whether their relay answers (docs/deploy.md "On-premises lock
    /// servers"); empty without edge sites.
    #[serde(default)]
    pub edge_sites: Vec<EdgeSite>,
    /// Connections with events parked by an open circuit breaker (vendor down); empty when
    /// every vendor answers.
    #[serde(default)]
    pub parked: Vec<ParkedConnection>,
    /// What could not be collected.
    pub problems: Vec<String>,
}

/// Collects the status of the namespace of `bus`.
pub async fn collect(bus: &Bus, pool: &PgPool) -> Status {
    let mut st = Status::default();
    for base in [
        subjects::BOOKINGS_STREAM,
        subjects::DLQ_STREAM,
        subjects::RESULTS_STREAM,
        subjects::SYNC_STREAM,
    ] {
        let name = bus.stream_name(base);
        let stream = match bus.js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) => {
                st.problems.push(format!("stream {name}: {e}"));
                continue;
            }
        };
        let info = stream.cached_info();
        st.streams.push(StreamStatus {
            name: name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            consumers: info.state.consumer_count,
            last_seq: info.state.last_sequence,
        });
        let mut consumers = stream.consumers();
        while let Some(c) = consumers.next().await {
            match c {
                Ok(c) => st.consumers.push(ConsumerStatus {
                    stream: name.clone(),
                    name: c.name,
                    num_pending: c.num_pending,
                    num_redelivered: c.num_redelivered,
                    num_ack_pending: c.num_ack_pending,
                    num_waiting: c.num_waiting,
                }),
                Err(e) => {
                    st.problems.push(format!("consumers of {name}: {e}"));
                    break;
                }
            }
        }
    }
    match dlq_depth(bus).await {
        Ok(d) => st.dlq_depth = d.into_iter().collect(),
        Err(e) => st.problems.push(format!("DLQ depth: {e}")),
    }
    match sync_runs(pool).await {
        Ok(r) => st.sync_runs = r,
        Err(e) => st.problems.push(format!("sync runs: {e}")),
    }
    match edge_sites(pool).await {
        Ok(r) => st.edge_sites = r,
        Err(e) => st.problems.push(format!("edge sites: {e}")),
    }
    match parked(pool).await {
        Ok(r) => st.parked = r,
        Err(e) => st.problems.push(format!("parked events: {e}")),
    }
    st
}

/// Connections with parked events, most first.
async fn parked(pool: &PgPool) -> Result<Vec<ParkedConnection>, sqlx::Error> {
    let rows: Vec<(String, String, String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT tenant_id, vendor, connection, count(*), min(parked_at) FROM parked_events \
         GROUP BY tenant_id, vendor, connection ORDER BY count(*) DESC, tenant_id, vendor, connection",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(tenant, vendor, connection, parked, since)| ParkedConnection {
                tenant,
                vendor,
                connection,
                parked,
                since: since.to_rfc3339(),
            },
        )
        .collect())
}

/// Hotels' edge sites, offline first.
async fn edge_sites(pool: &PgPool) -> Result<Vec<EdgeSite>, sqlx::Error> {
    let rows: Vec<(String, String, bool, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT tenant_id, site, online, since FROM edge_sites ORDER BY online, tenant_id, site",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, site, online, since)| EdgeSite {
            tenant,
            site,
            online,
            since: since.to_rfc3339(),
        })
        .collect())
}

/// DLQ entries per worker from the server's per-subject counts.
pub async fn dlq_depth(bus: &Bus) -> Result<HashMap<String, u64>, DlqError> {
    let name = bus.stream_name(subjects::DLQ_STREAM);
    let stream = bus
        .js
        .get_stream(&name)
        .await
        .map_err(|e| DlqError::nats("get stream", format!("{name}: {e}")))?;
    let mut out: HashMap<String, u64> = HashMap::new();
    let prefix = bus.stream_name("");
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(">")
        .await
        .map_err(|e| DlqError::nats("stream subjects", e))?
        .try_collect()
        .await
        .map_err(|e| DlqError::nats("stream subjects", e))?;
    for (subject, count) in subjects {
        let worker = if let Some(rest) = subject.strip_prefix(subjects::MAX_DELIVERIES_ADVISORY) {
            let consumer = rest.rsplit('.').next().unwrap_or(rest);
            let consumer = if prefix.is_empty() {
                consumer
            } else {
                consumer.strip_prefix(&prefix).unwrap_or(consumer)
            };
            format!("{consumer} (advisory)")
        } else {
            bus.ns
                .strip(&subject)
                .strip_prefix("dlq.")
                .and_then(|r| r.split('.').next())
                .map(subjects::untoken)
                .unwrap_or_else(|| "?".to_owned())
        };
        *out.entry(worker).or_default() += count as u64;
    }
    Ok(out)
}

/// Last run per connection, if the reconciler's `sync_runs` table exists. Its columns are not
/// ours to know: pick the usual names when present, keep the whole row regardless.
async fn sync_runs(pool: &PgPool) -> Result<Option<Vec<SyncRun>>, sqlx::Error> {
    let cols: Vec<String> = sqlx::query(
        "SELECT column_name::text AS c FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = 'sync_runs'",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .filter_map(|r| r.try_get::<String, _>("c").ok())
    .collect();
    if cols.is_empty() {
        return Ok(None);
    }
    let has: HashSet<&str> = cols.iter().map(String::as_str).collect();
    // Only whitelisted column names reach the SQL text.
    let order = ["started_at", "created_at", "finished_at", "id"]
        .into_iter()
        .find(|c| has.contains(c));
    let sql = match order {
        Some(c) => {
            format!(
                "SELECT to_jsonb(s) AS j FROM sync_runs s ORDER BY s.{c} DESC NULLS LAST LIMIT 1000"
            )
        }
        None => "SELECT to_jsonb(s) AS j FROM sync_runs s LIMIT 1000".to_owned(),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    let text = |v: &serde_json::Value, keys: &[&str]| {
        keys.iter().find_map(|k| match v.get(*k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in rows {
        let row: serde_json::Value = r.try_get("j")?;
        let connection = text(&row, &["connection_id", "connection"]).unwrap_or_else(|| {
            format!(
                "{}/{}",
                text(&row, &["tenant_id", "tenant"]).unwrap_or_default(),
                text(&row, &["vendor"]).unwrap_or_default()
            )
        });
        if !seen.insert(connection.clone()) {
            continue;
        }
        out.push(SyncRun {
            connection,
            status: text(&row, &["status", "state", "outcome"]),
            started_at: text(&row, &["started_at", "created_at"]),
            finished_at: text(&row, &["finished_at", "ended_at", "completed_at"]),
            row,
        });
    }
    Ok(Some(out))
}

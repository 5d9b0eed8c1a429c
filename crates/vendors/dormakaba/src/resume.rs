//! Site offline is a state: while a hotel's edge relay does not answer, the handler parks its
//! reservations (binding status `pending`, revision recorded, message acknowledged — no
//! delivery burned, nothing dead-lettered). This watcher pings the sites the worker knows
//! about; when one answers again, its parked reservations are applied again, oldest first,
//! through the worker's own repair feed (a forced `apply` on SYNC, as the reconciler sends:
//! same locks, same revision rule, same record).

use std::sync::Arc;
use std::time::Duration;

use accesshub_bus::Bus;
use accesshub_domain::{
    Event, EventBody, SCHEMA_VERSION, Source, headers,
    subjects::{self},
    sync::{self, SyncAction},
};
use async_nats::jetstream;
use sqlx::{PgPool, Row as _};
use tokio_util::sync::CancellationToken;

use crate::edge::{EdgeLink, EdgeTarget, SiteInfo, SiteState};

/// Parked reservations of a site, oldest first.
const PARKED: &str = "SELECT b.booking_key, k.site, k.revision, k.source, k.event_id, \
        k.payload::text AS payload, k.updated_at \
   FROM bindings b \
   JOIN bookings k ON k.tenant_id = b.tenant_id AND k.kind = b.kind AND k.booking_key = b.booking_key \
  WHERE b.tenant_id = $1 AND b.vendor = 'dormakaba' AND b.kind = 'reservation' \
    AND b.status = 'pending' AND k.revision = b.applied_revision \
    AND (cardinality($2::text[]) = 0 OR k.site = ANY($2)) \
  ORDER BY b.updated_at, b.booking_key";

/// Pings every known site each `interval`; resumes a site's parked reservations once it
/// answers. Runs until `shutdown`.
pub async fn watch(
    link: Arc<EdgeLink>,
    pool: PgPool,
    bus: Bus,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // What `edge_sites` says, so a state is written once per change.
    let mut written: std::collections::HashMap<(String, String), SiteState> = Default::default();
    // Sites offline when an earlier process stopped: their parked reservations are still
    // waiting, and nothing else would remind this process of them.
    let offline: Result<Vec<(String, String)>, _> = sqlx::query_as(
        "SELECT tenant_id, site FROM edge_sites WHERE vendor = 'dormakaba' AND NOT online",
    )
    .fetch_all(&pool)
    .await;
    match offline {
        Ok(rows) => {
            for (tenant, site) in rows {
                link.seed_offline(&tenant, &site);
                written.insert((tenant, site), SiteState::Offline);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading edge sites offline at start failed"),
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = link.changed(interval) => {}
        }
        for site in link.sites() {
            let key = (site.tenant.clone(), site.site.clone());
            if written.get(&key) != Some(&site.state) {
                match record_state(&pool, &site).await {
                    Ok(()) => {
                        written.insert(key, site.state);
                    }
                    Err(e) => tracing::warn!(error = %e, "recording the edge site's state failed"),
                }
            }
            let target = EdgeTarget {
                tenant: site.tenant.clone(),
                site: site.site.clone(),
                upstream_sites: site.upstream_sites.clone(),
            };
            let state = link.ping(&target).await;
            if state == SiteState::Online && link.take_parked(&site.tenant, &site.site) {
                match resume(&pool, &bus, &site).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(tenant = %site.tenant, site = %site.site, resumed = n,
                            "edge site back online: parked reservations applied again");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, tenant = %site.tenant, site = %site.site,
                            "resuming parked reservations failed; trying again");
                        link.park(&site.tenant, &site.site);
                    }
                }
            }
        }
    }
}

/// Writes a site's state into `edge_sites` (what `accessctl status` shows).
pub async fn record_state(pool: &PgPool, site: &SiteInfo) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO edge_sites (tenant_id, vendor, site, online, since, updated_at) \
         VALUES ($1, 'dormakaba', $2, $3, $4, now()) \
         ON CONFLICT (tenant_id, vendor, site) DO UPDATE SET online = EXCLUDED.online, \
           since = EXCLUDED.since, updated_at = now()",
    )
    .bind(&site.tenant)
    .bind(&site.site)
    .bind(site.state == SiteState::Online)
    .bind(site.since)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Publishes a forced `apply` for each parked reservation of `site`; how many.
pub async fn resume(pool: &PgPool, bus: &Bus, site: &SiteInfo) -> Result<usize, String> {
    let rows = sqlx::query(PARKED)
        .bind(&site.tenant)
        .bind(&site.upstream_sites)
        .fetch_all(pool)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let stamp = chrono::Utc::now().timestamp_millis();
    let mut acks = Vec::with_capacity(rows.len());
    for row in &rows {
        let ev = event_of(&site.tenant, row)?;
        let body = serde_json::to_vec(&ev).map_err(|e| e.to_string())?;
        let mut h = async_nats::HeaderMap::new();
        h.insert(sync::HEADER_RUN, "0");
        h.insert(sync::HEADER_FORCE, "true");
        h.insert(sync::HEADER_ACTION, SyncAction::Apply.as_str());
        h.insert(sync::HEADER_REASON, "edge site back online");
        h.insert(headers::TENANT, ev.tenant.as_str());
        h.insert(headers::KIND, ev.kind().as_str());
        h.insert(headers::REVISION, ev.revision.to_string().as_str());
        h.insert(headers::EVENT_ID, ev.id.to_string().as_str());
        h.insert(
            headers::SCHEMA_VERSION,
            ev.schema_version.to_string().as_str(),
        );
        accesshub_telemetry::propagation::inject_nats(&mut h);
        let msg = jetstream::message::PublishMessage::build()
            .payload(body.into())
            .headers(h)
            .message_id(format!(
                "edge-resume-{}-{}-{stamp}",
                subjects::token(&ev.booking_key),
                ev.revision
            ));
        let subject = bus.subject(&subjects::sync("dormakaba", &ev.tenant, &ev.booking_key));
        let ack = bus
            .js
            .send_publish(subject, msg)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| format!("publish ack: {e}"))?;
    }
    Ok(rows.len())
}

fn event_of(tenant: &str, row: &sqlx::postgres::PgRow) -> Result<Event, String> {
    let get = |e: sqlx::Error| e.to_string();
    let text: String = row.try_get("payload").map_err(get)?;
    let stored = serde_json::from_str::<Event>(&text).map(|e| e.body);
    let body: EventBody = match stored {
        Ok(b) => b,
        Err(_) => serde_json::from_value(serde_json::json!({
            "kind": "reservation",
            "payload": serde_json::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string())?,
        }))
        .map_err(|e| format!("stored reservation: {e}"))?,
    };
    let source: String = row.try_get("source").map_err(get)?;
    Ok(Event {
        id: row.try_get("event_id").map_err(get)?,
        tenant: tenant.to_owned(),
        site: row.try_get("site").map_err(get)?,
        booking_key: row.try_get("booking_key").map_err(get)?,
        revision: row.try_get("revision").map_err(get)?,
        source: source.parse().unwrap_or(Source::Native),
        occurred_at: row.try_get("updated_at").map_err(get)?,
        schema_version: SCHEMA_VERSION,
        body,
    })
}

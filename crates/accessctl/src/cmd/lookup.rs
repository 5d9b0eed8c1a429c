//! `accessctl lookup TENANT VENDOR WHAT [key=value…]`: asks the vendor, through its worker,
//! for what an operator needs to fill a connection (CloudPass `sites` and
//! `time-restrictions site=ID`, iPassan `assets`, Tapkey `locks`, dormakaba `encoder-test`).
//! `accessctl lookup TENANT bex administrations|rentables administration=ID` asks the
//! tenant's BEX (with its stored API key) instead: the administrations of its organization,
//! or an administration's rentables — the object ids a dormakaba connection's `rooms` map
//! turns into lock-system room numbers.

use accesshub_connections::{Vendor, lookup::LookupItem};
use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use super::connections::{ApiClient, seg};
use crate::output::{self, Format};

/// Arguments of `accessctl lookup` (TENANT before VENDOR, as everywhere; the old order
/// `VENDOR TENANT` is still understood, with a warning).
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// Tenant id.
    pub tenant: String,
    /// Vendor (cloudpass, dormakaba, ipassan, tapkey), or the booking system `bex`.
    pub vendor: String,
    /// What to list (sites, time-restrictions, assets, locks, encoder-test; bex:
    /// administrations, rentables).
    pub what: String,
    /// Parameters as key=value (e.g. site=site-1).
    pub params: Vec<String>,
    /// Connection name.
    #[arg(long, default_value = "default")]
    pub connection: String,
}

/// The API's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupItems {
    /// Entries.
    pub items: Vec<LookupItem>,
}

/// Runs the lookup and returns the items (errors carry the worker's message, e.g. the
/// CloudPass hint about Settings → Website Users).
pub async fn fetch(api: &ApiClient, a: &LookupArgs) -> anyhow::Result<Vec<LookupItem>> {
    let mut query = Vec::with_capacity(a.params.len() + 1);
    let (tenant, system) = if a.vendor == BEX {
        (a.tenant.clone(), BEX.to_owned())
    } else {
        let (tenant, vendor) = tenant_and_vendor(&a.tenant, &a.vendor)?;
        query.push(("connection".to_owned(), a.connection.clone()));
        (tenant, vendor.to_string())
    };
    for p in &a.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("parameter {p:?} must be key=value"))?;
        query.push((k.to_owned(), v.to_owned()));
    }
    let path = format!("/lookups/{system}/{}/{}", seg(&tenant), seg(&a.what));
    let r: LookupItems = api
        .get(&path, &query)
        .await
        .map_err(|e| anyhow!("lookup {tenant} {system} {}: {e}", a.what))?;
    Ok(r.items)
}

/// The booking system whose look-ups the admin API answers itself (`/lookups/bex/…`).
pub const BEX: &str = "bex";

/// `TENANT VENDOR`, or the old `VENDOR TENANT` (when only the first is a vendor).
pub fn tenant_and_vendor(first: &str, second: &str) -> anyhow::Result<(String, Vendor)> {
    match (second.parse::<Vendor>(), first.parse::<Vendor>()) {
        (Ok(v), _) => Ok((first.to_owned(), v)),
        (Err(_), Ok(v)) => {
            eprintln!(
                "warning: `accessctl lookup {first} {second} …` is the old argument order; \
                 use `accessctl lookup {second} {first} …` (TENANT VENDOR WHAT)"
            );
            Ok((second.to_owned(), v))
        }
        (Err(e), Err(_)) => Err(anyhow!("VENDOR {second:?}: {e}")),
    }
}

/// Runs `accessctl lookup` with the client from the environment.
pub async fn run(a: LookupArgs, format: Format) -> anyhow::Result<()> {
    run_with(&ApiClient::from_env()?, a, format).await
}

/// Runs `accessctl lookup` with `api`.
pub async fn run_with(api: &ApiClient, a: LookupArgs, format: Format) -> anyhow::Result<()> {
    let items = fetch(api, &a).await?;
    let rows = items
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.name.clone(),
                i.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::print(format, &items, &["ID", "NAME", "DETAIL"], rows)
}

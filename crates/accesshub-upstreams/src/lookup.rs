//! What a mapping screen needs from BEX (issue 21 item 4), read with the tenant's stored API
//! key: the administrations of the tenant's organization (the CloudPass mapping's keys) and
//! the rentables of administrations (the object ids a dormakaba connection's `rooms` map turns
//! into lock-system room numbers). ONE implementation for the admin API's
//! `GET /lookups/bex/{tenant}/…` and the console's dropdowns, so both check the egress policy
//! and the organization the same way.

use accesshub_connections::{EgressPolicy, TenantStore, lookup::LookupItem};
use accesshub_domain::{Classify, ErrorClass};

use crate::{
    UpstreamError, UpstreamStore,
    bex::{self, BexClient},
};

/// Why a BEX look-up could not answer, classified for the caller's answer.
#[derive(Debug, thiserror::Error)]
pub enum BexLookupError {
    /// The tenant has no BEX API credentials stored.
    #[error("tenant {tenant:?} has no BEX API credentials")]
    NoCredentials {
        /// The tenant.
        tenant: String,
    },
    /// The stored credentials could not be read (database, encryption keys).
    #[error("BEX API credentials: {0}")]
    Credentials(UpstreamError),
    /// The tenant's sources (its BEX organization) could not be read.
    #[error("tenant sources: {0}")]
    Tenants(accesshub_connections::ConnectionError),
    /// The stored base URL is outside the deployment's egress policy: BEX is not called.
    #[error("BEX base URL refused: {0}")]
    Egress(String),
    /// BEX refused or failed (or the client could not be built from the credentials).
    #[error("bex: {0}")]
    Bex(UpstreamError),
    /// The administration belongs to another organization than the tenant's.
    #[error(
        "administration {administration} belongs to organization {theirs}, not the tenant's {ours}"
    )]
    ForeignAdministration {
        /// The administration asked about.
        administration: String,
        /// The organization BEX lists it under.
        theirs: String,
        /// The tenant's organization.
        ours: String,
    },
}

impl BexLookupError {
    /// A sentence for an operator's screen: BEX's own words scrubbed (an answer may quote
    /// what we sent), never a secret.
    pub fn operator_message(&self) -> String {
        match self {
            BexLookupError::NoCredentials { tenant } => format!(
                "{self}; an administrator sets them with `accessctl tenants set-api {tenant} bex`"
            ),
            BexLookupError::Credentials(UpstreamError::Secret(_)) => {
                "the BEX API key cannot be decrypted with the configured keys".to_owned()
            }
            other => vendor_http::scrub(&other.to_string()),
        }
    }
}

impl Classify for BexLookupError {
    fn class(&self) -> ErrorClass {
        match self {
            BexLookupError::Credentials(e) | BexLookupError::Bex(e) => e.class(),
            BexLookupError::Tenants(e) => e.class(),
            BexLookupError::NoCredentials { .. }
            | BexLookupError::Egress(_)
            | BexLookupError::ForeignAdministration { .. } => ErrorClass::Permanent,
        }
    }
}

/// A tenant's BEX, opened for look-ups: its client (base URL checked against the egress
/// policy) and the organization the tenant is tied to, if any.
#[derive(Debug, Clone)]
pub struct BexLookup {
    client: BexClient,
    organization: Option<String>,
}

impl BexLookup {
    /// Opens `tenant`'s BEX: reads its stored credentials, checks their base URL against
    /// `egress` (refused: BEX is never called) and reads its BEX organization.
    pub async fn open(
        upstreams: &UpstreamStore,
        tenants: &TenantStore,
        egress: &EgressPolicy,
        tenant: &str,
    ) -> Result<Self, BexLookupError> {
        let creds = upstreams
            .get(tenant, "bex")
            .await
            .map_err(BexLookupError::Credentials)?
            .ok_or_else(|| BexLookupError::NoCredentials {
                tenant: tenant.to_owned(),
            })?;
        accesshub_connections::validate::check_endpoint(egress, &creds.base_url)
            .map_err(BexLookupError::Egress)?;
        let client = BexClient::from_credentials(&creds).map_err(BexLookupError::Bex)?;
        let organization = tenants
            .sources(tenant)
            .await
            .map_err(BexLookupError::Tenants)?
            .into_iter()
            .find(|src| src.source == "bex")
            .and_then(|src| src.organization_id);
        Ok(BexLookup {
            client,
            organization,
        })
    }

    /// The organization the tenant is tied to, if any.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    /// The administrations the key reaches, only those of the tenant's organization when it
    /// is tied to one (`detail`: the organization).
    pub async fn administrations(&self) -> Result<Vec<LookupItem>, BexLookupError> {
        let listed = self
            .client
            .administrations()
            .await
            .map_err(BexLookupError::Bex)?;
        Ok(self.own(&listed).map(administration_item).collect())
    }

    /// The rentables of `administrations` (`detail`: the administration), in that order;
    /// every administration [`Self::administrations`] lists when `administrations` is empty.
    /// An administration of another organization than the tenant's is refused before any of
    /// them is listed.
    pub async fn rentables(
        &self,
        administrations: &[String],
    ) -> Result<Vec<LookupItem>, BexLookupError> {
        let wanted: Vec<String> = if administrations.is_empty() || self.organization.is_some() {
            let listed = self
                .client
                .administrations()
                .await
                .map_err(BexLookupError::Bex)?;
            if let Some((admin, theirs)) =
                bex::foreign_administrations(&listed, self.organization(), administrations)
                    .into_iter()
                    .next()
            {
                return Err(BexLookupError::ForeignAdministration {
                    administration: admin.clone(),
                    theirs,
                    ours: self.organization.clone().unwrap_or_default(),
                });
            }
            if administrations.is_empty() {
                self.own(&listed).map(|a| a.id.to_string()).collect()
            } else {
                administrations.to_vec()
            }
        } else {
            administrations.to_vec()
        };
        let mut items = Vec::new();
        for admin in &wanted {
            let rentables = self
                .client
                .rentables(admin)
                .await
                .map_err(BexLookupError::Bex)?;
            items.extend(rentables.into_iter().map(|r| LookupItem {
                name: r.attributes.name.unwrap_or_else(|| r.id.to_string()),
                id: r.id.to_string(),
                detail: Some(format!("administration {admin}")),
            }));
        }
        Ok(items)
    }

    /// Of `listed`, those of the tenant's organization (all when it is tied to none).
    fn own<'a>(
        &'a self,
        listed: &'a [bex::AdministrationResource],
    ) -> impl Iterator<Item = &'a bex::AdministrationResource> {
        listed.iter().filter(|a| {
            self.organization.is_none() || a.organization().as_deref() == self.organization()
        })
    }
}

fn administration_item(a: &bex::AdministrationResource) -> LookupItem {
    LookupItem {
        detail: a.organization().map(|o| format!("organization {o}")),
        name: a
            .attributes
            .name
            .clone()
            .unwrap_or_else(|| a.id.to_string()),
        id: a.id.to_string(),
    }
}

//! The deployment's egress policy at connect time. Validation checks a connection's URLs when
//! they are stored, but a host name can resolve to anything later (DNS rebinding: public when
//! checked, 169.254.169.254 when called), a vendor can redirect, and connections stored before
//! the policy existed were never checked. So a client built under a policy checks each request
//! URL, every redirect target, and every address its resolver returns.
//!
//! Services install the policy once at start-up ([`install_egress_policy`], from
//! `ACCESSHUB_EGRESS_ALLOW`); every [`crate::VendorClient`] built afterwards enforces it.
//! Without an installed policy (library tests driving simulators) clients do not check.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use accesshub_domain::egress::{EgressDenied, EgressPolicy, Host};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

static INSTALLED: OnceLock<EgressPolicy> = OnceLock::new();

/// Makes `policy` the process's egress policy for every vendor client built from now on.
/// Returns `false` (and changes nothing) when a policy was already installed.
pub fn install_egress_policy(policy: EgressPolicy) -> bool {
    INSTALLED.set(policy).is_ok()
}

/// The installed policy, if any.
pub fn installed_egress_policy() -> Option<&'static EgressPolicy> {
    INSTALLED.get()
}

/// The policy refused a target: the error inside reqwest's error chain, so the client can tell
/// it from a network failure and classify it as permanent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("egress refused: {0}")]
pub struct EgressRefused(pub EgressDenied);

/// Checks a request or redirect URL: scheme, host (IP literals are never resolved, so their
/// address is judged here) and port.
pub(crate) fn check_url(policy: &EgressPolicy, url: &reqwest::Url) -> Result<(), EgressRefused> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => Host::Name(d),
        Some(url::Host::Ipv4(ip)) => Host::Ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => Host::Ip(ip.into()),
        None => {
            return Err(EgressRefused(EgressDenied::Local {
                host: url.as_str().to_owned(),
            }));
        }
    };
    policy
        .check_target(url.scheme(), host, url.port())
        .map_err(EgressRefused)
}

/// Resolves a host name to addresses: the system resolver in services; a fixed answer in
/// tests, so a name "resolving" to loopback or a changing answer can be shown without DNS.
pub(crate) type Lookup = Arc<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>,
        > + Send
        + Sync,
>;

/// The system resolver.
pub(crate) fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// A resolver, keeping only addresses the policy allows for the name; a name left with none
/// fails to resolve with [`EgressRefused`]. reqwest asks it for every new connection (a pooled
/// connection is reused only while it lives: 90 s idle at most), so an answer that changed
/// since the connection was saved or last used is judged again.
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        let lookup = Arc::clone(&self.lookup);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup(host.clone()).await?;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_resolved(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(e)) => Err(Box::new(EgressRefused(e)) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// Whether `e` (or anything it was caused by) is an egress refusal, and which.
pub(crate) fn refusal_in<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a EgressRefused> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<EgressRefused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::str::FromStr as _;

    use super::*;

    /// DNS rebinding: a name that passed validation (not an IP literal, not `localhost`)
    /// resolving to a loopback or metadata address is refused when connecting.
    #[tokio::test]
    async fn resolver_drops_addresses_the_policy_refuses() {
        let strict = GuardedResolver {
            policy: Arc::new(EgressPolicy::strict()),
            lookup: system_lookup(),
        };
        let err = match strict.resolve(Name::from_str("localhost").unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refused = refusal_in(err.as_ref()).unwrap();
        assert!(refused.to_string().contains("loopback"), "{refused}");

        let allowing = GuardedResolver {
            policy: Arc::new("http://localhost:*".parse().unwrap()),
            lookup: system_lookup(),
        };
        let addrs: Vec<SocketAddr> = allowing
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}

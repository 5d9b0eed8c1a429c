//! Tenant-scoped access to the DLQ: the one place that decides which dead letters a caller of
//! some tenants may see, replay and purge. The admin API (`/admin/v1/dlq`) and the console
//! both go through it, so a token gets the same answer from either (issue 23).
//!
//! Rules: an entry belongs to its tenant; an entry of no known tenant (an advisory whose
//! original is gone, an unparseable message) only to callers of every tenant. A filter naming
//! a tenant outside the scope is refused; a bulk replay or purge by a caller of some tenants
//! must name one of them, so it can never reach another tenant's entries.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    Dlq, DlqEntry, DlqError, EntryDetail, Filter, PurgeReport, ReplayObserver, ReplayOptions,
    ReplayReport, ReplayTarget,
};

/// The tenants a caller may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every tenant, and entries of no known tenant.
    All,
    /// Only these tenants.
    Only(&'a BTreeSet<String>),
}

impl<'a> Scope<'a> {
    /// `None`: every tenant (the form tokens and console sessions keep it in).
    pub fn new(tenants: Option<&'a BTreeSet<String>>) -> Self {
        tenants.map_or(Scope::All, Scope::Only)
    }

    /// Whether `tenant` is in scope.
    pub fn sees_tenant(self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(tenant),
        }
    }

    /// Whether the caller may see (and act on) `e`.
    pub fn sees(self, e: &DlqEntry) -> bool {
        match &e.tenant {
            Some(t) => self.sees_tenant(t),
            None => self == Scope::All,
        }
    }

    /// A listing filter: its tenant, if any, must be in scope.
    pub fn check_filter(self, f: &Filter) -> Result<(), DlqError> {
        match &f.tenant {
            Some(t) if !self.sees_tenant(t) => Err(DlqError::Forbidden(format!(
                "the token is not scoped to tenant {t:?}"
            ))),
            _ => Ok(()),
        }
    }

    /// A bulk replay or purge: as [`Scope::check_filter`], and a caller of some tenants must
    /// name the tenant.
    pub fn check_bulk(self, f: &Filter) -> Result<(), DlqError> {
        self.check_filter(f)?;
        if matches!(self, Scope::Only(_)) && f.tenant.is_none() {
            return Err(DlqError::Invalid {
                field: "tenant",
                message: "a token of some tenants must name the tenant to replay or purge by \
                          filter"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Entry ids per tenant (`None`: entries of no known tenant): audit records of DLQ actions
/// are filed per tenant, so each tenant's tokens see what was done to their entries.
pub fn ids_by_tenant<'e>(
    entries: impl IntoIterator<Item = &'e DlqEntry>,
) -> BTreeMap<Option<String>, Vec<u64>> {
    let mut m = BTreeMap::<Option<String>, Vec<u64>>::new();
    for e in entries {
        m.entry(e.tenant.clone()).or_default().push(e.seq);
    }
    m
}

impl Dlq {
    /// [`Dlq::list`] limited to `scope` (the limit counts visible entries only).
    pub async fn list_in(
        &self,
        scope: Scope<'_>,
        filter: &Filter,
        limit: Option<usize>,
    ) -> Result<Vec<DlqEntry>, DlqError> {
        scope.check_filter(filter)?;
        self.list_where(filter, limit, |e| scope.sees(e)).await
    }

    /// [`Dlq::get`], or [`DlqError::OutOfScope`].
    pub async fn get_in(&self, scope: Scope<'_>, seq: u64) -> Result<DlqEntry, DlqError> {
        let e = self.get(seq).await?;
        if scope.sees(&e) {
            Ok(e)
        } else {
            Err(DlqError::OutOfScope(seq))
        }
    }

    /// [`Dlq::show`], or [`DlqError::OutOfScope`].
    pub async fn show_in(&self, scope: Scope<'_>, seq: u64) -> Result<EntryDetail, DlqError> {
        self.get_in(scope, seq).await?;
        self.show(seq).await
    }

    /// Checks that `target` is the caller's to act on (see the module docs).
    pub async fn check_target(
        &self,
        scope: Scope<'_>,
        target: &ReplayTarget,
    ) -> Result<(), DlqError> {
        match target {
            ReplayTarget::One(seq) => self.get_in(scope, *seq).await.map(|_| ()),
            ReplayTarget::Filter(f) => scope.check_bulk(f),
        }
    }

    /// [`Dlq::replay`] after [`Dlq::check_target`].
    pub async fn replay_in(
        &self,
        scope: Scope<'_>,
        target: &ReplayTarget,
        opts: &ReplayOptions,
        observer: &mut dyn ReplayObserver,
    ) -> Result<ReplayReport, DlqError> {
        self.check_target(scope, target).await?;
        self.replay(target, opts, observer).await
    }

    /// What a purge of `target` would delete, limited to `scope` (advisories hidden behind a
    /// dead letter included, as [`Dlq::purge_preview`]).
    pub async fn purge_preview_in(
        &self,
        scope: Scope<'_>,
        target: &ReplayTarget,
    ) -> Result<Vec<DlqEntry>, DlqError> {
        self.check_target(scope, target).await?;
        match target {
            ReplayTarget::One(seq) => Ok(vec![self.get(*seq).await?]),
            ReplayTarget::Filter(f) => {
                let mut v = self.purge_preview(f).await?;
                v.retain(|e| scope.sees(e));
                Ok(v)
            }
        }
    }

    /// Deletes exactly `seqs` (a confirmed preview), skipping entries outside `scope`; those
    /// and entries already gone count as `missing`. Returns the report and the ids deleted.
    pub async fn delete_in(
        &self,
        scope: Scope<'_>,
        seqs: &[u64],
    ) -> Result<(PurgeReport, Vec<u64>), DlqError> {
        let mut allowed = Vec::with_capacity(seqs.len());
        let mut skipped = 0;
        for &seq in seqs {
            match self.get_in(scope, seq).await {
                Ok(_) => allowed.push(seq),
                Err(DlqError::NotFound(_) | DlqError::OutOfScope(_)) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        let mut report = self.delete(&allowed).await?;
        report.missing += skipped;
        Ok((report, allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: Option<&str>) -> DlqEntry {
        crate::entry::parse(
            &accesshub_domain::subjects::Namespace::default(),
            1,
            "dlq.x",
            b"not json",
            None,
        )
        .0
        .with_tenant(tenant)
    }

    impl DlqEntry {
        fn with_tenant(mut self, t: Option<&str>) -> Self {
            self.tenant = t.map(str::to_owned);
            self
        }
    }

    #[test]
    fn a_scoped_caller_sees_its_tenants_only_and_never_entries_of_no_tenant() {
        let acme: BTreeSet<String> = ["acme".to_owned()].into();
        let only = Scope::Only(&acme);
        assert!(only.sees(&entry(Some("acme"))));
        assert!(!only.sees(&entry(Some("globex"))));
        assert!(!only.sees(&entry(None)));
        assert!(Scope::All.sees(&entry(None)));
        let globex = Filter {
            tenant: Some("globex".into()),
            ..Filter::default()
        };
        assert!(matches!(
            only.check_filter(&globex),
            Err(DlqError::Forbidden(_))
        ));
        assert!(only.check_filter(&Filter::default()).is_ok());
        assert!(matches!(
            only.check_bulk(&Filter::default()),
            Err(DlqError::Invalid {
                field: "tenant",
                ..
            })
        ));
        assert!(Scope::All.check_bulk(&Filter::default()).is_ok());
    }
}

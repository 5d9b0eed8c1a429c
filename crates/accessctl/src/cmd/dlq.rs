//! `accessctl dlq`: list, show, replay and purge dead letters through the admin API
//! (`/admin/v1/dlq`) with the context's server and token, so the token's role and tenants
//! apply as everywhere else (issue 23). `--direct` is the break-glass path for when the admin
//! API is down: the `accesshub-dlq` library straight on NATS and PostgreSQL with the
//! `accessctl-dlq` NATS identity, audited as `accessctl:<user>`. This module parses flags,
//! asks for confirmation, draws progress (direct only) and prints, the same either way.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use accesshub_dlq::{
    Dlq, DlqEntry, EntryDetail, Filter, ReplayObserver, ReplayOptions, ReplayOutcome, ReplayReport,
    ReplayStatus, ReplayTarget,
};
use accesshub_domain::ErrorClass;
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use accesshub_admin::dlq::{DlqFilter, PurgeRequest, PurgeResponse, ReplayRequest};

use super::connections::ApiClient;
use crate::output::{self, Format};

/// `accessctl dlq [--direct] ...`
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Break-glass, when the admin API is down: read and replay straight on NATS and
    /// PostgreSQL (NATS_URL, DATABASE_URL, ACCESSCTL_NATS_USER/ACCESSCTL_NATS_PASSWORD of the
    /// `accessctl-dlq` identity) instead of through the admin API with a token.
    #[arg(long, global = true)]
    pub direct: bool,
    /// Subcommand.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// `accessctl dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Entries, newest first.
    List {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Show names, e-mails, phones and plates unmasked (recorded in the audit log).
        #[arg(long)]
        show_pii: bool,
    },
    /// One entry: payload, headers, reason, attempts, trace id, earlier replays.
    Show {
        /// Entry id (its DLQ sequence, first column of `dlq list`).
        id: u64,
        /// Show names, e-mails, phones and plates unmasked (recorded in the audit log).
        #[arg(long)]
        show_pii: bool,
    },
    /// Republish entries to their original subject with a fresh Nats-Msg-Id.
    Replay(Box<ReplayArgs>),
    /// Delete entries matching a filter (asks first).
    Purge {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Every entry (required when no filter flag is given).
        #[arg(long)]
        all: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Filter flags shared by list, replay and purge.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Tenant id.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Worker (`tapkey-worker`) or vendor (`tapkey`).
    #[arg(long, alias = "vendor")]
    pub worker: Option<String>,
    /// Event kind (reservation, facility, pass, keyreq).
    #[arg(long)]
    pub kind: Option<String>,
    /// Booking key.
    #[arg(long)]
    pub booking: Option<String>,
    /// transient or permanent.
    #[arg(long)]
    pub class: Option<ErrorClass>,
    /// Failed at or after: RFC 3339 time or an age like `2h`, `30m`, `1day`.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Failed before: RFC 3339 time or an age like `10m`.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Text contained in the reason (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
}

impl FilterArgs {
    /// The library filter.
    pub fn to_filter(&self) -> Filter {
        Filter {
            tenant: self.tenant.clone(),
            worker: self.worker.clone(),
            kind: self.kind.clone(),
            booking: self.booking.clone(),
            class: self.class,
            since: self.since,
            until: self.until,
            reason_contains: self.reason.clone(),
        }
    }
}

/// `dlq replay` flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// One entry id; or use filter flags, or `--all`.
    pub id: Option<u64>,
    /// Which entries (instead of an id).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every entry.
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
    /// Publish nothing; show (and record as dry run) what would be replayed.
    #[arg(long)]
    pub dry_run: bool,
    /// Rate limit, e.g. `50/s` or `50`.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Delete each entry once its replay is acknowledged (default: keep it, marked replayed).
    #[arg(long)]
    pub delete_after: bool,
    /// Replay even events replayed `--max-replays` times already.
    #[arg(long)]
    pub force: bool,
    /// Loop protection: refuse events already replayed this many times.
    #[arg(long, default_value_t = 5)]
    pub max_replays: u32,
    /// With a filter or --all: also replay entries replayed before.
    #[arg(long)]
    pub include_replayed: bool,
    /// Recorded as who replayed with --direct (default: $USER, else $LOGNAME); through the
    /// admin API the token's name is recorded.
    #[arg(long, default_value_t = default_user())]
    pub replayed_by: String,
    /// Do not ask before a bulk replay.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Who is at the keyboard, for the replay record: `$USER`, else `$LOGNAME`, else "unknown"
/// (containers often set neither; pass `--replayed-by` there).
fn default_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `2026-01-02T03:04:05Z` or an age (`2h` = two hours ago).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is neither an RFC 3339 time nor an age like 2h: {e}"))?;
    let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
    Ok(Utc::now() - d)
}

/// `50/s` or `50` messages per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s").trim();
    let v: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a rate like 50/s"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: the rate must be positive"));
    }
    Ok(v)
}

/// Connects with `CommonConfig::from_env("accessctl")` and runs the subcommand.
pub async fn run(cmd: DlqCommand, format: Format) -> anyhow::Result<()> {
    let dlq = connect().await?;
    run_with(&dlq, cmd, format).await
}

/// NATS and Postgres from `CommonConfig::from_env("accessctl")` (NATS_URL, DATABASE_URL,
/// ACCESSHUB_NAMESPACE): accessctl talks to them directly, so it works when services are down.
pub async fn connect() -> anyhow::Result<Dlq> {
    let mut cfg = accesshub_config::CommonConfig::from_env("accessctl")?;
    // The DLQ role has its own NATS identity (docs/security.md "NATS identities").
    cfg.use_nats_identity_from("ACCESSCTL_NATS_USER", "ACCESSCTL_NATS_PASSWORD");
    let bus = accesshub_bus::connect(&cfg).await?;
    let pool = accesshub_store::connect_lazy(&cfg.database_url, 4)?;
    Ok(Dlq::new(bus, pool))
}

/// Runs against an existing handle (tests call this in-process).
pub async fn run_with(dlq: &Dlq, cmd: DlqCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            filter,
            limit,
            show_pii,
        } => {
            let mut entries = dlq.list(&filter.to_filter(), Some(limit)).await?;
            pii_gate(dlq, show_pii, &mut entries).await?;
            print_list(format, &entries)
        }
        DlqCommand::Show { id, show_pii } => {
            let mut detail = dlq.show(id).await?;
            pii_gate(dlq, show_pii, std::slice::from_mut(&mut detail.entry)).await?;
            print_show(format, &detail)
        }
        DlqCommand::Replay(args) => replay(dlq, *args, format).await,
        DlqCommand::Purge { filter, all, yes } => {
            let f = filter.to_filter();
            if f.is_empty() && !all {
                bail!("dlq purge needs a filter (--tenant, --worker, ...) or --all");
            }
            let entries = dlq.purge_preview(&f).await?;
            if entries.is_empty() {
                println!("no matching entries");
                return Ok(());
            }
            if !confirm(
                &format!("Delete {} DLQ entries for good?", entries.len()),
                yes,
            )? {
                bail!("aborted");
            }
            let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
            let report = dlq.delete(&seqs).await?;
            let by_tenant = accesshub_dlq::ids_by_tenant(&entries);
            let filter = serde_json::to_value(&f).unwrap_or_default();
            audit_dlq(dlq, "dlq.purge", &default_user(), by_tenant, &filter).await;
            print_purged(format, &report)
        }
    }
}

impl FilterArgs {
    /// The admin API's filter (`GET /dlq` parameters, `filter` of replay and purge).
    pub fn to_api(&self) -> DlqFilter {
        DlqFilter {
            tenant: self.tenant.clone(),
            vendor: self.worker.clone(),
            kind: self.kind.clone(),
            booking: self.booking.clone(),
            class: self.class.map(|c| c.as_str().to_owned()),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
            age: None,
        }
    }

    /// [`FilterArgs::to_api`] as query parameters.
    fn to_query(&self) -> Vec<(String, String)> {
        let f = self.to_api();
        let mut q = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k.to_owned(), v));
            }
        };
        add("tenant", f.tenant);
        add("vendor", f.vendor);
        add("kind", f.kind);
        add("booking", f.booking);
        add("class", f.class);
        add("reason", f.reason);
        add("since", f.since.map(|t| t.to_rfc3339()));
        add("until", f.until.map(|t| t.to_rfc3339()));
        q
    }
}

/// Runs the subcommand through the admin API: the same output and exit codes as `--direct`,
/// with the token's role and tenants applied by the server.
pub async fn run_api(api: &ApiClient, cmd: DlqCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            filter,
            limit,
            show_pii,
        } => {
            let mut q = filter.to_query();
            q.push(("limit".into(), limit.to_string()));
            if show_pii {
                q.push(("show_pii".into(), "true".into()));
            }
            let entries: Vec<DlqEntry> = api.get("/dlq", &q).await?;
            print_list(format, &entries)
        }
        DlqCommand::Show { id, show_pii } => {
            let q = if show_pii {
                vec![("show_pii".to_owned(), "true".to_owned())]
            } else {
                vec![]
            };
            let detail: EntryDetail = api.get(&format!("/dlq/{id}"), &q).await?;
            print_show(format, &detail)
        }
        DlqCommand::Replay(a) => replay_api(api, *a, format).await,
        DlqCommand::Purge { filter, all, yes } => {
            if filter.to_filter().is_empty() && !all {
                bail!("dlq purge needs a filter (--tenant, --worker, ...) or --all");
            }
            let mut req = PurgeRequest {
                seq: None,
                filter: Some(filter.to_api()),
                all,
                confirm: false,
                seqs: None,
            };
            let preview: PurgeResponse = api
                .write(
                    reqwest::Method::POST,
                    "/dlq/purge",
                    &[],
                    &serde_json::to_value(&req)?,
                )
                .await?;
            if preview.seqs.is_empty() {
                println!("no matching entries");
                return Ok(());
            }
            if !confirm(
                &format!("Delete {} DLQ entries for good?", preview.seqs.len()),
                yes,
            )? {
                bail!("aborted");
            }
            req.confirm = true;
            req.seqs = Some(preview.seqs);
            let done: PurgeResponse = api
                .write(
                    reqwest::Method::POST,
                    "/dlq/purge",
                    &[],
                    &serde_json::to_value(&req)?,
                )
                .await?;
            print_purged(
                format,
                &accesshub_dlq::PurgeReport {
                    deleted: done.deleted,
                    missing: done.missing,
                },
            )
        }
    }
}

/// The replay target of `a`, or the usage error (same rules with and without `--direct`).
fn replay_target(a: &ReplayArgs) -> anyhow::Result<ReplayTarget> {
    let filter = a.filter.to_filter();
    Ok(match (a.id, a.all, filter.is_empty()) {
        (Some(id), false, true) => ReplayTarget::One(id),
        (Some(_), _, _) => bail!("give either an entry id or filter flags, not both"),
        (None, true, _) | (None, false, false) => ReplayTarget::Filter(filter),
        (None, false, true) => bail!("dlq replay needs an entry id, filter flags, or --all"),
    })
}

/// What `replay` exits with after printing the report.
fn replay_verdict(target: &ReplayTarget, report: &ReplayReport) -> anyhow::Result<()> {
    if report.failed > 0 {
        bail!("{} replays failed", report.failed);
    }
    if matches!(target, ReplayTarget::One(_)) && report.skipped > 0 {
        bail!("entry was not replayed");
    }
    Ok(())
}

async fn replay_api(api: &ApiClient, a: ReplayArgs, format: Format) -> anyhow::Result<()> {
    let target = replay_target(&a)?;
    if let ReplayTarget::Filter(_) = &target
        && !a.dry_run
    {
        let mut q = a.filter.to_query();
        q.push(("limit".into(), "10000".into()));
        let n = api.get::<Vec<serde_json::Value>>("/dlq", &q).await?.len();
        if n == 0 {
            println!("no matching entries");
            return Ok(());
        }
        if !confirm(
            &format!("Replay {n} DLQ entries to their original subjects?"),
            a.yes,
        )? {
            bail!("aborted");
        }
    }
    let req = ReplayRequest {
        seq: a.id,
        filter: (!a.filter.to_filter().is_empty()).then(|| a.filter.to_api()),
        all: a.all,
        dry_run: a.dry_run,
        rate: a.rate,
        delete_after: a.delete_after,
        force: a.force,
        max_replays: Some(a.max_replays),
        include_replayed: a.include_replayed,
    };
    let report: ReplayReport = api
        .write(
            reqwest::Method::POST,
            "/dlq/replay",
            &[],
            &serde_json::to_value(&req)?,
        )
        .await?;
    print_report(format, &report)?;
    replay_verdict(&target, &report)
}

/// Masks personal data in `entries`, unless `show_pii`: then who saw which entries is recorded
/// in the audit log first (`dlq.show_pii`, one record per tenant), and nothing is shown when
/// that record cannot be stored. accessctl reads the DLQ with the pod's credentials, not an
/// admin token, so the audit trail is the control (docs/security.md "Personal data").
pub async fn pii_gate(dlq: &Dlq, show_pii: bool, entries: &mut [DlqEntry]) -> anyhow::Result<()> {
    if !show_pii {
        entries.iter_mut().for_each(DlqEntry::mask_pii);
        return Ok(());
    }
    use accesshub_admin::audit::{self, Actor, Change};
    let actor = Actor {
        token_id: None,
        name: format!("accessctl:{}", default_user()),
    };
    for (tenant, ids) in accesshub_dlq::ids_by_tenant(entries.iter()) {
        let change = Change {
            action: "dlq.show_pii",
            tenant: tenant.as_deref(),
            target: "dlq".into(),
            before: None,
            after: Some(serde_json::json!({ "entries": ids })),
        };
        audit::try_record(dlq.pool(), &actor, change)
            .await
            .context("--show-pii: the audit record could not be stored, so nothing is shown")?;
    }
    Ok(())
}

/// Records a replay or purge in the admin audit log, one record per tenant. accessctl reaches
/// NATS and Postgres directly, without an admin token: the actor is `accessctl:<user>`. The
/// records hold DLQ ids and the filter, never payloads (PII).
async fn audit_dlq(
    dlq: &Dlq,
    action: &str,
    user: &str,
    by_tenant: std::collections::BTreeMap<Option<String>, Vec<u64>>,
    selection: &serde_json::Value,
) {
    use accesshub_admin::audit::{self, Actor, Change};
    let actor = Actor {
        token_id: None,
        name: format!("accessctl:{user}"),
    };
    for (tenant, ids) in by_tenant {
        let change = Change {
            action,
            tenant: tenant.as_deref(),
            target: "dlq".into(),
            before: None,
            after: Some(serde_json::json!({ "entries": ids, "selection": selection })),
        };
        audit::record(dlq.pool(), &actor, change).await;
    }
}

fn print_purged(format: Format, report: &accesshub_dlq::PurgeReport) -> anyhow::Result<()> {
    match format {
        Format::Table => println!(
            "deleted {} entries ({} were already gone)",
            report.deleted, report.missing
        ),
        _ => output::print(format, report, &[], vec![])?,
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

fn print_list(format: Format, entries: &[DlqEntry]) -> anyhow::Result<()> {
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.failed_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.worker.clone(),
                e.class.to_string(),
                e.tenant.clone().unwrap_or_default(),
                e.kind.clone().unwrap_or_default(),
                e.booking_key.clone().unwrap_or_default(),
                e.attempts.to_string(),
                if e.replays > 0 {
                    format!("{} (this entry {})", e.replay_count, e.replays)
                } else {
                    e.replay_count.to_string()
                },
                truncate(&e.reason, 70),
            ]
        })
        .collect();
    output::print(
        format,
        &entries,
        &[
            "ID",
            "FAILED AT",
            "WORKER",
            "CLASS",
            "TENANT",
            "KIND",
            "BOOKING",
            "ATTEMPTS",
            "REPLAYS",
            "REASON",
        ],
        rows,
    )
}

fn print_show(format: Format, d: &EntryDetail) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::print(format, d, &[], vec![]);
    }
    let e = &d.entry;
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
    println!("DLQ entry {} ({})", e.seq, e.source.as_str());
    println!("  id:              {}", opt(&e.id));
    println!("  failed at:       {}", e.failed_at.to_rfc3339());
    println!("  worker:          {}", e.worker);
    println!("  class:           {}", e.class);
    println!("  reason:          {}", e.reason);
    println!("  attempts:        {}", e.attempts);
    println!("  replay count:    {}", e.replay_count);
    println!("  tenant:          {}", opt(&e.tenant));
    println!("  kind:            {}", opt(&e.kind));
    println!("  booking:         {}", opt(&e.booking_key));
    println!("  event id:        {}", opt(&e.event_id));
    println!("  trace id:        {}", opt(&e.trace_id));
    println!(
        "  original:        {} (stream {} seq {})",
        opt(&e.original_subject),
        e.stream,
        e.stream_sequence
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into())
    );
    println!("  headers:");
    for (k, vs) in &e.headers {
        for v in vs {
            println!("    {k}: {v}");
        }
    }
    println!("  payload:");
    match (&e.payload, e.payload_encoding) {
        (Some(p), Some(accesshub_domain::PayloadEncoding::Utf8)) => {
            let pretty = serde_json::from_str::<serde_json::Value>(p)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| p.clone());
            for line in pretty.lines() {
                println!("    {line}");
            }
        }
        (Some(p), _) => println!("    (base64) {p}"),
        (None, _) => println!("    (not available)"),
    }
    if d.earlier_replays.is_empty() {
        println!("  earlier replays: none");
    } else {
        println!("  earlier replays:");
        for r in &d.earlier_replays {
            println!(
                "    {} by {} from entry {} as {}{}",
                r.replayed_at.to_rfc3339(),
                r.replayed_by,
                r.dlq_seq,
                r.new_msg_id.as_deref().unwrap_or("-"),
                if r.dry_run { " (dry run)" } else { "" }
            );
        }
    }
    Ok(())
}

async fn replay(dlq: &Dlq, a: ReplayArgs, format: Format) -> anyhow::Result<()> {
    let target = replay_target(&a)?;
    // The entries, for the audit record's tenants (a dry run changes nothing: no record).
    let mut entries = Vec::new();
    if let ReplayTarget::Filter(f) = &target
        && !a.dry_run
    {
        entries = dlq.list(f, None).await?;
        let n = entries.len();
        if n == 0 {
            println!("no matching entries");
            return Ok(());
        }
        if !confirm(
            &format!("Replay {n} DLQ entries to their original subjects?"),
            a.yes,
        )? {
            bail!("aborted");
        }
    }
    if let (ReplayTarget::One(id), false) = (&target, a.dry_run)
        && let Ok(d) = dlq.show(*id).await
    {
        entries.push(d.entry);
    }
    let by = a.replayed_by.clone();
    let opts = ReplayOptions {
        dry_run: a.dry_run,
        rate: a.rate,
        delete_after: a.delete_after,
        replayed_by: a.replayed_by,
        max_replays: a.max_replays,
        force: a.force,
        include_replayed: a.include_replayed,
        ..ReplayOptions::default()
    };
    let mut progress = Progress::new();
    let report = dlq.replay(&target, &opts, &mut progress).await?;
    let replayed: std::collections::HashSet<u64> = report
        .outcomes
        .iter()
        .filter(|o| matches!(o.status, ReplayStatus::Replayed { .. }))
        .map(|o| o.seq)
        .collect();
    if !replayed.is_empty() {
        let by_tenant =
            accesshub_dlq::ids_by_tenant(entries.iter().filter(|e| replayed.contains(&e.seq)));
        let what = match &target {
            ReplayTarget::One(id) => serde_json::json!({ "id": id }),
            ReplayTarget::Filter(f) => serde_json::to_value(f).unwrap_or_default(),
        };
        audit_dlq(dlq, "dlq.replay", &by, by_tenant, &what).await;
    }
    print_report(format, &report)?;
    replay_verdict(&target, &report)
}

fn print_report(format: Format, r: &ReplayReport) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::print(format, r, &[], vec![]);
    }
    let show_each = r.outcomes.len() <= 50;
    for o in &r.outcomes {
        let line = match &o.status {
            ReplayStatus::Replayed { new_msg_id, .. } => {
                if !show_each {
                    continue;
                }
                format!(
                    "replayed  {} -> {} as {new_msg_id}",
                    o.seq,
                    o.subject.as_deref().unwrap_or("-")
                )
            }
            ReplayStatus::DryRun => {
                if !show_each {
                    continue;
                }
                format!(
                    "would replay {} -> {}",
                    o.seq,
                    o.subject.as_deref().unwrap_or("-")
                )
            }
            ReplayStatus::Skipped { reason } => format!("skipped   {}: {reason}", o.seq),
            ReplayStatus::Failed { error } => format!("FAILED    {}: {error}", o.seq),
        };
        println!("{line}");
    }
    let secs = r.elapsed_ms as f64 / 1000.0;
    println!(
        "{} selected, {} replayed, {} dry run, {} skipped, {} failed, {} deleted in {:.1}s{}",
        r.selected,
        r.replayed,
        r.dry_run,
        r.skipped,
        r.failed,
        r.deleted,
        secs,
        if secs > 0.0 && r.replayed > 0 {
            format!(" ({:.0}/s)", r.replayed as f64 / secs)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Asks on the terminal. Without a terminal only `--yes` proceeds: a script must say so.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing without a terminal to confirm on; pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}

/// A progress bar on a terminal, a line every few seconds otherwise (logs, CI).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

impl Progress {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Progress {
            bar: None,
            total: 0,
            done: 0,
            started: now,
            last_line: now,
        }
    }
}

impl ReplayObserver for Progress {
    fn started(&mut self, total: u64) {
        self.total = total;
        if total > 1 && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
            ) {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
    }

    fn advanced(&mut self, _o: &ReplayOutcome) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.total > 1 && self.last_line.elapsed().as_secs() >= 2 {
            self.last_line = std::time::Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!("replay: {}/{} ({rate:.0}/s)", self.done, self.total);
        }
    }

    fn finished(&mut self, _r: &ReplayReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<DlqCommand, clap::Error> {
        let mut v = vec!["accessctl", "dlq"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v)?.command {
            Command::Dlq(a) => Ok(a.command),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rates_and_times_parse() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        let t = parse_time("2h").unwrap();
        let age = Utc::now() - t;
        assert!(age > chrono::Duration::minutes(119) && age < chrono::Duration::minutes(121));
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z").unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert!(parse_time("yesterday-ish").is_err());
    }

    #[test]
    fn list_flags_become_a_filter() {
        let DlqCommand::List { filter, limit, .. } = parse(&[
            "list",
            "--tenant",
            "acme",
            "--vendor",
            "tapkey",
            "--kind",
            "pass",
            "--booking",
            "P-1",
            "--class",
            "permanent",
            "--since",
            "1h",
            "--reason",
            "mapping",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(limit, 50);
        let f = filter.to_filter();
        assert_eq!(f.tenant.as_deref(), Some("acme"));
        assert_eq!(f.worker.as_deref(), Some("tapkey"));
        assert_eq!(f.class, Some(ErrorClass::Permanent));
        assert!(f.since.is_some() && f.until.is_none());
        assert!(parse(&["list", "--class", "sometimes"]).is_err());
    }

    #[test]
    fn replay_forms() {
        let DlqCommand::Replay(a) = parse(&["replay", "42", "--dry-run"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.id, Some(42));
        assert!(a.dry_run);
        assert_eq!(a.max_replays, 5);
        let DlqCommand::Replay(a) =
            parse(&["replay", "--worker", "tapkey", "--rate", "20/s", "--yes"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.rate, Some(20.0));
        assert!(a.yes && a.id.is_none());
        assert!(parse(&["replay", "42", "--all"]).is_err());
        assert!(parse(&["replay", "--rate", "-1"]).is_err());
    }

    #[test]
    fn confirm_needs_yes_without_a_terminal() {
        assert!(confirm("sure?", true).unwrap());
        if !std::io::stdin().is_terminal() {
            assert!(confirm("sure?", false).is_err());
        }
    }
}

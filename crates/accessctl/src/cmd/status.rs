//! `accessctl status`: the one-screen health view (streams, consumers, DLQ depth per worker,
//! last sync runs), collected by `accesshub_dlq::status` in the admin service (`GET /status`),
//! or by accessctl itself with `--direct`.

use accesshub_dlq::Status;

use crate::output::Format;

/// Fetches the status from the admin API (`GET /status`, a token of every tenant), prints it,
/// and fails with exit code 4 ([`crate::exit::UNHEALTHY`]) when [`problems`] finds any.
pub async fn run_api(api: &super::connections::ApiClient, format: Format) -> anyhow::Result<()> {
    let st: Status = api.get("/status", &[]).await?;
    verdict(format, &st)
}

/// Break-glass (`--direct`): collects with `CommonConfig::from_env("accessctl")` (the
/// `accessctl-dlq` NATS identity), then as [`run_api`].
pub async fn run(format: Format) -> anyhow::Result<()> {
    let dlq = super::dlq::connect().await?;
    let st = accesshub_dlq::collect_status(dlq.bus(), dlq.pool()).await;
    verdict(format, &st)
}

/// Prints `st`; exit code 4 when it has problems.
fn verdict(format: Format, st: &Status) -> anyhow::Result<()> {
    print(format, st)?;
    let found = problems(st);
    if found.is_empty() {
        return Ok(());
    }
    Err(crate::exit::Exit::error(
        crate::exit::UNHEALTHY,
        format!("unhealthy: {}", found.join("; ")),
    ))
}

/// What makes the status unhealthy: anything that could not be collected (a stream or table
/// missing, NATS or PostgreSQL unreachable), dead letters waiting for an operator, and
/// connections whose last sync run failed or was partial, and connections whose vendor is
/// down (events parked by an open circuit breaker).
pub fn problems(st: &Status) -> Vec<String> {
    let mut out = st.problems.clone();
    for (worker, n) in &st.dlq_depth {
        if *n > 0 {
            out.push(format!(
                "{n} dead letter(s) of {worker} (accessctl dlq list)"
            ));
        }
    }
    for r in st.sync_runs.iter().flatten() {
        if let Some(s @ ("failed" | "partial")) = r.status.as_deref() {
            out.push(format!("last sync run of {} {s}", r.connection));
        }
    }
    for p in &st.parked {
        out.push(format!(
            "{} event(s) of {}/{}/{} parked since {}: its vendor does not answer",
            p.parked, p.tenant, p.vendor, p.connection, p.since
        ));
    }
    out
}

/// Prints a collected status.
pub fn print(format: Format, st: &Status) -> anyhow::Result<()> {
    if format != Format::Table {
        return crate::output::print(format, st, &[], vec![]);
    }
    let table = |headers: &[&str], rows: Vec<Vec<String>>| {
        crate::output::print(Format::Table, &(), headers, rows)
    };
    println!("STREAMS");
    table(
        &["STREAM", "MESSAGES", "BYTES", "CONSUMERS", "LAST SEQ"],
        st.streams
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.messages.to_string(),
                    s.bytes.to_string(),
                    s.consumers.to_string(),
                    s.last_seq.to_string(),
                ]
            })
            .collect(),
    )?;
    println!("CONSUMERS");
    table(
        &[
            "STREAM",
            "CONSUMER",
            "PENDING",
            "REDELIVERED",
            "ACK PENDING",
            "WAITING",
        ],
        st.consumers
            .iter()
            .map(|c| {
                vec![
                    c.stream.clone(),
                    c.name.clone(),
                    c.num_pending.to_string(),
                    c.num_redelivered.to_string(),
                    c.num_ack_pending.to_string(),
                    c.num_waiting.to_string(),
                ]
            })
            .collect(),
    )?;
    println!("DLQ DEPTH");
    if st.dlq_depth.is_empty() {
        println!("  empty");
    } else {
        table(
            &["WORKER", "ENTRIES"],
            st.dlq_depth
                .iter()
                .map(|(w, n)| vec![w.clone(), n.to_string()])
                .collect(),
        )?;
    }
    println!("LAST SYNC RUNS");
    match &st.sync_runs {
        None => println!("  (no sync_runs table yet)"),
        Some(runs) if runs.is_empty() => println!("  none"),
        Some(runs) => table(
            &["CONNECTION", "STATUS", "STARTED", "FINISHED"],
            runs.iter()
                .map(|r| {
                    vec![
                        r.connection.clone(),
                        r.status.clone().unwrap_or_default(),
                        r.started_at.clone().unwrap_or_default(),
                        r.finished_at.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        )?,
    }
    if !st.edge_sites.is_empty() {
        println!("EDGE SITES");
        table(
            &["TENANT", "SITE", "STATE", "SINCE"],
            st.edge_sites
                .iter()
                .map(|e| {
                    let state = if e.online { "online" } else { "OFFLINE" };
                    vec![
                        e.tenant.clone(),
                        e.site.clone(),
                        state.to_owned(),
                        e.since.clone(),
                    ]
                })
                .collect(),
        )?;
    }
    if !st.parked.is_empty() {
        println!("VENDORS DOWN (circuit breaker open, events parked)");
        table(
            &["TENANT", "VENDOR", "CONNECTION", "PARKED", "SINCE"],
            st.parked
                .iter()
                .map(|p| {
                    vec![
                        p.tenant.clone(),
                        p.vendor.clone(),
                        p.connection.clone(),
                        p.parked.to_string(),
                        p.since.clone(),
                    ]
                })
                .collect(),
        )?;
    }
    for p in &st.problems {
        println!("problem: {p}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose vendor is down makes the status unhealthy (exit code 4), naming it.
    #[test]
    fn parked_events_are_a_problem() {
        let mut st = Status::default();
        assert!(problems(&st).is_empty());
        st.parked.push(accesshub_dlq::ParkedConnection {
            tenant: "acme".into(),
            vendor: "tapkey".into(),
            connection: "default".into(),
            parked: 3,
            since: "2026-12-06T10:00:00+00:00".into(),
        });
        let found = problems(&st);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("3 event(s) of acme/tapkey/default parked"),
            "{found:?}"
        );
    }
}

//! Shared benchmark plumbing: machine description, latency percentiles and the writer that
//! keeps one section per benchmark in BENCHMARKS.md (each `make bench` run replaces them).

pub mod cpu;
pub mod http_load;
pub mod mix;
pub mod summary;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// `nproc`, CPU model and memory, so figures are read against the machine that made them.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpus} cores ({model}), {mem}")
}

/// `/proc/loadavg`'s 1/5/15-minute averages, so a figure can be read against how busy the
/// shared machine was while it was measured.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// Percentile of sorted samples (p in 0..=100).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Path of BENCHMARKS.md at the workspace root (or `BENCHMARKS_FILE`).
pub fn benchmarks_file() -> PathBuf {
    if let Ok(p) = std::env::var("BENCHMARKS_FILE") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md")
}

/// Replaces (or appends) the section `## {title}` of BENCHMARKS.md with `body`, stamped with
/// the date and machine; also prints it.
pub fn write_section(title: &str, body: &str) -> std::io::Result<()> {
    write_section_at(title, body, false)
}

/// [`write_section`], but a new section goes first (right after the file's preamble), where the
/// summary of the whole run belongs.
pub fn write_section_first(title: &str, body: &str) -> std::io::Result<()> {
    write_section_at(title, body, true)
}

fn write_section_at(title: &str, body: &str, first: bool) -> std::io::Result<()> {
    let stamp = format!(
        "_Measured {} on {}._\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    );
    let section = format!("## {title}\n\n{stamp}{}\n", body.trim_end());
    println!("{section}");
    let path = benchmarks_file();
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `make bench`; each section is replaced by its latest run.\n\n"
            .to_owned()
    });
    std::fs::write(path, upsert_section(&current, title, &section, first))
}

/// `current` with its `## {title}` section replaced by `section`; a missing one is appended, or
/// with `first` put before the first `## ` section.
pub fn upsert_section(current: &str, title: &str, section: &str, first: bool) -> String {
    let header = format!("## {title}\n");
    let at_line_start = |i: usize| i == 0 || current.as_bytes()[i - 1] == b'\n';
    let found = current
        .match_indices(&header)
        .map(|(i, _)| i)
        .find(|i| at_line_start(*i));
    match found {
        Some(start) => {
            let rest = &current[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map(|i| start + header.len() + i + 1)
                .unwrap_or(current.len());
            let rest = &current[end..];
            let gap = if rest.is_empty() { "" } else { "\n" };
            format!("{}{}\n{gap}{rest}", &current[..start], section.trim_end())
        }
        None if first => match current.find("\n## ") {
            Some(i) => format!(
                "{}\n\n{section}\n{}",
                current[..i].trim_end(),
                &current[i + 1..]
            ),
            None => format!("{}\n\n{section}", current.trim_end()),
        },
        None => format!("{}\n\n{section}", current.trim_end()),
    }
}

/// One benchmark's key figures as written to `target/bench/<bench>.json`; `bench-summary`
/// reads them back to print baselines, figures and their ratios side by side.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FiguresFile {
    /// Benchmark name (`baselines`, `ingest`, `worker`, `dlq`, `sync`).
    pub bench: String,
    /// When it was measured (RFC 3339, UTC).
    pub measured_at: String,
    /// [`machine`] at that time.
    pub machine: String,
    /// Figure name → value (rates per second, times in ms or s, memory in MB; the name says).
    pub figures: std::collections::BTreeMap<String, f64>,
}

/// Directory of the figures files: `BENCH_FIGURES_DIR`, else `target/bench` at the workspace
/// root.
pub fn figures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("BENCH_FIGURES_DIR") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench")
}

/// Writes `bench`'s key figures to `<figures_dir>/<bench>.json` for `bench-summary`. Called once
/// at the end of each benchmark's `main`, after its BENCHMARKS.md section.
pub fn record_figures(bench: &str, figures: &[(&str, f64)]) -> std::io::Result<()> {
    record_figures_in(&figures_dir(), bench, figures)
}

/// [`record_figures`] into `dir`.
pub fn record_figures_in(dir: &Path, bench: &str, figures: &[(&str, f64)]) -> std::io::Result<()> {
    let file = FiguresFile {
        bench: bench.to_owned(),
        measured_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: machine(),
        figures: figures
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
    };
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("{bench}.json")), json)
}

/// A duration in milliseconds, for [`record_figures`].
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident memory of this process in KiB (`VmHWM` of /proc/self/status; 0 elsewhere).
pub fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A fresh namespace on `nats_url` (one URL or a comma-separated cluster) with the streams
/// as production has them: file storage, `replicas` replicas. Returns the services' common
/// configuration (rename `service` per service) and a connected bus; delete its streams with
/// `bus.delete_streams()` at the end.
pub async fn production_bus(
    db_url: &str,
    nats_url: &str,
    replicas: usize,
) -> Result<(accesshub_config::CommonConfig, accesshub_bus::Bus), accesshub_bus::BusError> {
    let namespace = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut common = accesshub_config::CommonConfig::for_test("bench", &namespace, db_url);
    common.nats_url = nats_url.to_owned();
    // Production's stream settings (file storage, a 10-minute duplicate window), not the
    // tests' short ones: a service process started on these streams checks them as in
    // production and refuses a shorter duplicate window (rss-bench).
    common.streams = accesshub_config::StreamSettings {
        replicas,
        ..accesshub_config::StreamSettings::default()
    };
    let bus = accesshub_bus::connect(&common).await?;
    bus.ensure_streams().await?;
    Ok((common, bus))
}

/// `common` for the service called `service`.
pub fn service_config(
    common: &accesshub_config::CommonConfig,
    service: &str,
) -> accesshub_config::CommonConfig {
    let mut c = common.clone();
    c.service = service.to_owned();
    c
}

/// A CloudPass connection of `tenant` mapping administration `admin` to the simulator's
/// Amsterdam site (the sync and pull benchmarks).
pub fn cloudpass_connection(
    tenant: &str,
    admin: &str,
    base_url: &str,
) -> accesshub_connections::Connection {
    use accesshub_connections::{
        CloudpassAdministration, CloudpassSettings, Secret, VendorSettings,
    };
    use vendor_sim::cloudpass as cp;
    accesshub_connections::Connection {
        tenant: tenant.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Cloudpass(CloudpassSettings {
            base_url: base_url.into(),
            client_id: cp::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(cp::DEMO_CLIENT_SECRET),
            administrations: [(
                admin.to_owned(),
                CloudpassAdministration {
                    site_id: cp::DEMO_SITE_AMSTERDAM.into(),
                    time_restriction_id: None,
                },
            )]
            .into(),
            default_time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
            reapply_time_restriction: false,
            window_before_minutes: 30,
            window_after_minutes: 30,
        }),
        version: 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOC: &str = "# Benchmarks\n\nIntro.\n\n## A\n\na1\n## B\n\nb1\n";

    #[test]
    fn sections_are_replaced_in_place_or_added() {
        let s = upsert_section(DOC, "A", "## A\n\na2\n", false);
        assert_eq!(s, "# Benchmarks\n\nIntro.\n\n## A\n\na2\n\n## B\n\nb1\n");
        let s = upsert_section(DOC, "C", "## C\n\nc1\n", false);
        assert!(s.ends_with("b1\n\n## C\n\nc1\n"), "{s}");
        let s = upsert_section(DOC, "Summary", "## Summary\n\ns1\n", true);
        assert_eq!(
            s,
            "# Benchmarks\n\nIntro.\n\n## Summary\n\ns1\n\n## A\n\na1\n## B\n\nb1\n"
        );
        // Once there, the summary is replaced where it is.
        let again = upsert_section(&s, "Summary", "## Summary\n\ns2\n", true);
        assert_eq!(again, s.replace("s1", "s2"));
    }

    #[test]
    fn figures_round_trip_through_the_summary_loader() {
        let dir = std::env::temp_dir().join(format!("bench-rt-{}", std::process::id()));
        record_figures_in(&dir, "dlq", &[("replay_per_s", 4_565.0), ("nan", f64::NAN)]).unwrap();
        std::fs::write(dir.join("broken.json"), b"{").unwrap();
        let (figs, problems) = summary::load(&dir);
        assert_eq!(
            problems.len(),
            1,
            "an unreadable file is reported: {problems:?}"
        );
        let f = &figs["dlq"].figures;
        assert_eq!(f.get("replay_per_s"), Some(&4_565.0));
        assert!(!f.contains_key("nan"), "non-finite figures are left out");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// An event could not be published (NATS down, no PubAck): the benchmark stops.
#[derive(Debug, thiserror::Error)]
#[error("publish {subject}: {message}")]
pub struct PublishError {
    /// Subject published to.
    pub subject: String,
    /// What went wrong.
    pub message: String,
}

impl accesshub_domain::Classify for PublishError {
    fn class(&self) -> accesshub_domain::ErrorClass {
        accesshub_domain::ErrorClass::Transient
    }
}

/// Publishes an event on the namespaced BOOKINGS stream (`Nats-Msg-Id` = event id) and waits
/// for its PubAck, as the outbox relay does.
pub async fn publish_event(
    bus: &accesshub_bus::Bus,
    ev: &accesshub_domain::Event,
) -> Result<(), PublishError> {
    let subject = bus.subject(&ev.subject());
    let fail = |message: String| PublishError {
        subject: subject.clone(),
        message,
    };
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        accesshub_domain::headers::MSG_ID,
        ev.id.to_string().as_str(),
    );
    let payload = serde_json::to_vec(ev).map_err(|e| fail(e.to_string()))?;
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .headers(h);
    bus.js
        .send_publish(subject.clone(), msg)
        .await
        .map_err(|e| fail(e.to_string()))?
        .await
        .map_err(|e| fail(format!("PubAck: {e}")))?;
    Ok(())
}

/// Publishes `events` as a backlog for a worker to drain: each with its PubAck awaited, 1,000
/// in flight.
pub async fn publish_backlog(
    bus: &accesshub_bus::Bus,
    events: impl IntoIterator<Item = accesshub_domain::Event>,
) -> Result<(), PublishError> {
    let joined = |e: tokio::task::JoinError| PublishError {
        subject: "BOOKINGS".into(),
        message: e.to_string(),
    };
    let mut pubs = Vec::new();
    for ev in events {
        let bus = bus.clone();
        pubs.push(tokio::spawn(async move { publish_event(&bus, &ev).await }));
        if pubs.len() >= 1000 {
            for p in pubs.drain(..) {
                p.await.map_err(joined)??;
            }
        }
    }
    for p in pubs {
        p.await.map_err(joined)??;
    }
    Ok(())
}

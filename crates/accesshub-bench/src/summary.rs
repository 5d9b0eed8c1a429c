//! The `make bench` summary: reads every benchmark's figures file (see
//! [`crate::record_figures`]) and puts the raw baselines, accesshub's figures, their targets and
//! the ratios between them in one table, so a figure is always read against what the same
//! machine can do at all in the same run.

use std::{collections::BTreeMap, path::Path};

use crate::FiguresFile;

/// A target a figure is held to (from the foundation, runtime and reconciler issues).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be below this.
    Below(f64),
}

impl Target {
    /// Whether `v` meets the target.
    pub fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::Below(t) => v < t,
        }
    }
}

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Per second (messages, commits, events…): `12,345/s`.
    PerSec,
    /// Milliseconds: `12.34 ms`.
    Ms,
    /// Seconds: `12.3 s`.
    Secs,
    /// Mebibytes: `127 MB`.
    Mb,
}

impl Unit {
    /// `v` with its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::PerSec => format!("{}/s", thousands(v)),
            Unit::Ms => format!("{v:.2} ms"),
            Unit::Secs => format!("{v:.1} s"),
            Unit::Mb => format!("{v:.0} MB"),
        }
    }

    fn target(self, t: Target) -> String {
        match t {
            Target::AtLeast(v) => format!("≥ {}", self.format(v)),
            Target::Below(v) => format!("< {}", self.format(v)),
        }
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `baseline` or the benchmark that produced the figure.
    pub source: &'static str,
    /// What was measured.
    pub measure: String,
    /// The value, `None` when its benchmark did not run (or did not report it).
    pub value: Option<f64>,
    /// How to print it.
    pub unit: Unit,
    /// Its target, if it has one.
    pub target: Option<Target>,
    /// The ratio to a baseline: (value, what it is divided by).
    pub ratio: Option<(f64, &'static str)>,
}

impl Row {
    /// `met`, `missed`, `—` (no target) or `not run`.
    pub fn status(&self) -> &'static str {
        match (self.value, self.target) {
            (None, _) => "not run",
            (Some(_), None) => "—",
            (Some(v), Some(t)) if t.met(v) => "met",
            (Some(_), Some(_)) => "missed",
        }
    }
}

/// Every figures file found, by benchmark name.
pub type Figures = BTreeMap<String, FiguresFile>;

/// Reads every `*.json` in `dir`; unreadable files are reported in the second value.
pub fn load(dir: &Path) -> (Figures, Vec<String>) {
    let mut figs = Figures::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        problems.push(format!("no figures directory {}", dir.display()));
        return (figs, problems);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<FiguresFile>(&b).map_err(|e| e.to_string()))
        {
            Ok(f) => {
                figs.insert(f.bench.clone(), f);
            }
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    (figs, problems)
}

fn get(f: &Figures, bench: &str, name: &str) -> Option<f64> {
    f.get(bench).and_then(|b| b.figures.get(name)).copied()
}

fn ratio(num: Option<f64>, den: Option<f64>, label: &'static str) -> Option<(f64, &'static str)> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some((n / d, label)),
        _ => None,
    }
}

/// The table: baselines first, then accesshub's figures with their targets and ratios.
pub fn rows(f: &Figures) -> Vec<Row> {
    let js_pub = get(f, "baselines", "js_publish_per_s");
    let js_con = get(f, "baselines", "js_consume_per_s");
    // The raw commit rate of the baselines run; ingest-bench measures its own as a fallback.
    let pg = get(f, "baselines", "pg_commits_per_s").or(get(f, "ingest", "pg_commits_per_s"));
    let accepted = get(f, "ingest", "accepted_per_s");
    let events = get(f, "worker", "events_per_s");
    let replay = get(f, "dlq", "replay_per_s");
    let ingest_rate = get(f, "ingest", "fixed_rate_offered_per_s").unwrap_or(2_000.0);
    let worker_rate = get(f, "worker", "offered_per_s");
    let worker_at = worker_rate
        .map(|r| format!(" at {}/s offered", thousands(r)))
        .unwrap_or_default();
    let sync_n = get(f, "sync", "bookings")
        .map(|n| format!(" of {} bookings", thousands(n)))
        .unwrap_or_default();
    let row = |source, measure: &str, value, unit, target, ratio| Row {
        source,
        measure: measure.to_owned(),
        value,
        unit,
        target,
        ratio,
    };
    let mut rows = vec![
        row(
            "baseline",
            "JetStream publish, PubAck awaited",
            js_pub,
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "baseline",
            "JetStream pull consume + ack",
            js_con,
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "baseline",
            "JetStream publish → receive p99",
            get(f, "baselines", "js_latency_p99_ms"),
            Unit::Ms,
            None,
            None,
        ),
        row(
            "baseline",
            "PostgreSQL single-row INSERT + COMMIT",
            pg,
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "ingest",
            "durable webhook accepts",
            accepted,
            Unit::PerSec,
            Some(Target::AtLeast(10_000.0)),
            ratio(accepted, pg, "PostgreSQL single-row commits/s"),
        ),
        row(
            "ingest",
            "CPU-bound ceiling (cores ÷ CPU per webhook, all processes)",
            get(f, "ingest", "cpu_ceiling_per_s"),
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "ingest",
            "durable webhook accepts vs bus",
            accepted,
            Unit::PerSec,
            None,
            ratio(accepted, js_pub, "JetStream publish/s"),
        ),
        row(
            "ingest",
            &format!("webhook p50 at {}/s offered", thousands(ingest_rate)),
            get(f, "ingest", "p50_ms"),
            Unit::Ms,
            None,
            None,
        ),
        row(
            "ingest",
            &format!("webhook p99 at {}/s offered", thousands(ingest_rate)),
            get(f, "ingest", "p99_ms"),
            Unit::Ms,
            Some(Target::Below(20.0)),
            None,
        ),
        row(
            "worker",
            "events applied at the vendor",
            events,
            Unit::PerSec,
            Some(Target::AtLeast(5_000.0)),
            ratio(events, js_con, "JetStream consume/s"),
        ),
        row(
            "worker",
            "CPU-bound ceiling (cores ÷ CPU per event, all processes)",
            get(f, "worker", "cpu_ceiling_per_s"),
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "worker",
            &format!("publish → applied p50{worker_at}"),
            get(f, "worker", "p50_ms"),
            Unit::Ms,
            None,
            None,
        ),
        row(
            "worker",
            &format!("publish → applied p99{worker_at}"),
            get(f, "worker", "p99_ms"),
            Unit::Ms,
            Some(Target::Below(100.0)),
            ratio(
                get(f, "worker", "p99_ms"),
                get(f, "baselines", "js_latency_p99_ms"),
                "JetStream publish → receive p99",
            ),
        ),
        row(
            "dlq",
            "DLQ replay",
            replay,
            Unit::PerSec,
            None,
            ratio(replay, js_pub, "JetStream publish/s"),
        ),
        row(
            "keyreq",
            "key request answered (Saflok simulator) p50",
            get(f, "keyreq", "p50_ms"),
            Unit::Ms,
            None,
            None,
        ),
        row(
            "keyreq",
            "key request answered (Saflok simulator) p99",
            get(f, "keyreq", "p99_ms"),
            Unit::Ms,
            Some(Target::Below(1_000.0)),
            None,
        ),
        row(
            "sync",
            &format!("full sync{sync_n}: wall time"),
            get(f, "sync", "wall_s"),
            Unit::Secs,
            Some(Target::Below(60.0)),
            None,
        ),
        row(
            "sync",
            &format!("full sync{sync_n}: peak resident memory"),
            get(f, "sync", "peak_rss_mb"),
            Unit::Mb,
            Some(Target::Below(200.0)),
            None,
        ),
    ];
    rows.extend(production_rows(f, pg, js_con));
    rows
}

/// Worker names as the workers benchmark records them (vendor name first).
const FLOWS: [(&str, &str); 4] = [
    ("cloudpass", "cloudpass-worker"),
    ("dormakaba", "dormakaba-worker"),
    ("ipassan", "ipassan-worker"),
    ("tapkey", "tapkey-worker"),
];

/// The image's services (accessctl is a CLI, not a resident process): the RSS benchmark
/// measures each.
pub const SERVICES: [&str; 7] = [
    "booking-ingest",
    "cloudpass-worker",
    "dormakaba-worker",
    "ipassan-worker",
    "tapkey-worker",
    "reconciler",
    "accesshub-admin",
];

/// The production-like benchmarks (issue 25) and the upstream pull sync (issue 21).
fn production_rows(f: &Figures, pg: Option<f64>, js_con: Option<f64>) -> Vec<Row> {
    let row = |source, measure: String, value, unit, target, ratio| Row {
        source,
        measure,
        value,
        unit,
        target,
        ratio,
    };
    let pipe_at = get(f, "pipeline", "offered_per_s")
        .map(|r| format!(" at {}/s offered", thousands(r)))
        .unwrap_or_default();
    let max_rate = get(f, "pipeline", "max_rate_per_s");
    let mut rows = vec![
        row(
            "pipeline",
            "webhooks → four workers → vendors, maximum rate".into(),
            max_rate,
            Unit::PerSec,
            Some(Target::AtLeast(5_000.0)),
            ratio(max_rate, pg, "PostgreSQL single-row commits/s"),
        ),
        row(
            "pipeline",
            "CPU-bound ceiling (cores ÷ CPU per booking, all processes)".into(),
            get(f, "pipeline", "cpu_ceiling_per_s"),
            Unit::PerSec,
            None,
            None,
        ),
        row(
            "pipeline",
            format!("webhook → applied at vendor p50{pipe_at}"),
            get(f, "pipeline", "p50_ms"),
            Unit::Ms,
            None,
            None,
        ),
        row(
            "pipeline",
            format!("webhook → applied at vendor p99{pipe_at}"),
            get(f, "pipeline", "p99_ms"),
            Unit::Ms,
            Some(Target::Below(50.0)),
            ratio(
                get(f, "pipeline", "p99_ms"),
                get(f, "baselines", "js_latency_p99_ms"),
                "JetStream publish → receive p99",
            ),
        ),
    ];
    for (vendor, worker) in FLOWS {
        let w = |key: &str| get(f, "workers", &format!("{vendor}_{key}_per_s"));
        let r1_fast = w("r1_0ms");
        let r1_slow = w("r1_100ms");
        let r1_slow_more = w("r1_100ms_1024slots");
        rows.push(row(
            "workers",
            format!("{worker}, file streams R1, vendor 0 ms"),
            r1_fast,
            Unit::PerSec,
            Some(Target::AtLeast(5_000.0)),
            ratio(r1_fast, js_con, "JetStream consume/s"),
        ));
        rows.push(row(
            "workers",
            format!("{worker}, file streams R1, vendor 100 ms"),
            r1_slow,
            Unit::PerSec,
            Some(Target::AtLeast(3_000.0)),
            ratio(
                r1_slow,
                w("r1_100ms_slots_bound"),
                "slots ÷ (latency × calls per event)",
            ),
        ));
        rows.push(row(
            "workers",
            format!("{worker}, file streams R1, vendor 100 ms, 1,024 slots"),
            r1_slow_more,
            Unit::PerSec,
            Some(Target::AtLeast(3_000.0)),
            ratio(
                r1_slow_more,
                w("r1_100ms_1024slots_slots_bound"),
                "slots ÷ (latency × calls per event)",
            ),
        ));
        for (lat, r1) in [("0ms", r1_fast), ("100ms", r1_slow)] {
            rows.push(row(
                "workers",
                format!("{worker}, 3-node R3, vendor {}", lat.replace("ms", " ms")),
                w(&format!("r3_{lat}")),
                Unit::PerSec,
                None,
                ratio(w(&format!("r3_{lat}")), r1, "the R1 figure"),
            ));
        }
    }
    for s in SERVICES {
        rows.push(row(
            "rss",
            format!("{s} idle resident memory"),
            get(f, "rss", &format!("{s}_idle_mb")),
            Unit::Mb,
            Some(Target::Below(30.0)),
            None,
        ));
        rows.push(row(
            "rss",
            format!("{s} peak resident memory under load"),
            get(f, "rss", &format!("{s}_peak_mb")),
            Unit::Mb,
            None,
            None,
        ));
    }
    rows.push(row(
        "rss",
        "container image size".into(),
        get(f, "rss", "image_mb"),
        Unit::Mb,
        Some(Target::Below(100.0)),
        None,
    ));
    let pull_n = get(f, "pull-bench", "reservations")
        .map(|n| format!(" of {} upstream reservations", thousands(n)))
        .unwrap_or_default();
    rows.push(row(
        "pull",
        format!("sync{pull_n} (paged from BEX) until all at CloudPass: wall time"),
        get(f, "pull-bench", "through_secs"),
        Unit::Secs,
        None,
        None,
    ));
    rows.push(row(
        "pull",
        format!("sync{pull_n}: peak resident memory (whole process)"),
        get(f, "pull-bench", "peak_rss_mb"),
        Unit::Mb,
        None,
        None,
    ));
    rows
}

/// Ratios below 0.01 keep two significant digits; others two decimals.
pub fn format_ratio(r: f64) -> String {
    if r != 0.0 && r.abs() < 0.01 {
        format!("{r:.2e}×")
    } else {
        format!("{r:.2}×")
    }
}

/// The markdown body of the `## Summary` section (without its heading and stamp).
pub fn render(f: &Figures, problems: &[String]) -> String {
    let mut out = String::from(
        "`make bench` in one run: raw baselines, accesshub's figures, their targets and the \
         ratio of each figure to the baseline that bounds it.\n\n\
         | source | measure | value | target | status | ratio to baseline |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in rows(f) {
        let value = r.value.map(|v| r.unit.format(v)).unwrap_or("—".into());
        let target = r.target.map(|t| r.unit.target(t)).unwrap_or_default();
        let ratio = r
            .ratio
            .map(|(v, of)| format!("{} {of}", format_ratio(v)))
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {value} | {target} | {} | {ratio} |\n",
            r.source,
            r.measure,
            r.status()
        ));
    }
    out.push('\n');
    let mut when: Vec<String> = f
        .values()
        .map(|b| format!("{} {}", b.bench, b.measured_at))
        .collect();
    when.sort();
    if !when.is_empty() {
        out.push_str(&format!("Figures measured: {}.\n", when.join(", ")));
    }
    let mut machines: Vec<&str> = f.values().map(|b| b.machine.as_str()).collect();
    machines.sort();
    machines.dedup();
    if machines.len() > 1 {
        out.push_str(&format!(
            "**The figures come from different machines:** {}.\n",
            machines.join("; ")
        ));
    }
    for b in [
        "baselines",
        "ingest",
        "worker",
        "dlq",
        "sync",
        "keyreq",
        "pull-bench",
        "pipeline",
        "workers",
        "rss",
    ] {
        if !f.contains_key(b) {
            out.push_str(&format!(
                "- {b}: no figures (benchmark not run or failed)\n"
            ));
        }
    }
    if get(f, "sync", "counts_match") == Some(0.0) {
        out.push_str("- sync: repair counts did NOT match the injected drift\n");
    }
    for p in problems {
        out.push_str(&format!("- {p}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(bench: &str, figs: &[(&str, f64)]) -> (String, FiguresFile) {
        (
            bench.to_owned(),
            FiguresFile {
                bench: bench.to_owned(),
                measured_at: "2026-11-23T14:00:00Z".into(),
                machine: "2 cores (AMD EPYC), 24 GiB".into(),
                figures: figs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            },
        )
    }

    fn all() -> Figures {
        [
            file(
                "baselines",
                &[
                    ("js_publish_per_s", 40_000.0),
                    ("js_consume_per_s", 50_000.0),
                    ("js_latency_p99_ms", 2.0),
                    ("pg_commits_per_s", 2_000.0),
                ],
            ),
            file(
                "ingest",
                &[
                    ("accepted_per_s", 1_700.0),
                    ("pg_commits_per_s", 2_213.0),
                    ("p50_ms", 5.0),
                    ("p99_ms", 650.0),
                ],
            ),
            file(
                "worker",
                &[
                    ("events_per_s", 636.0),
                    ("offered_per_s", 1_000.0),
                    ("p50_ms", 4_111.5),
                    ("p99_ms", 15_468.5),
                ],
            ),
            file("dlq", &[("replay_per_s", 4_565.0)]),
            file(
                "sync",
                &[
                    ("bookings", 1e6),
                    ("wall_s", 12.8),
                    ("peak_rss_mb", 127.0),
                    ("counts_match", 1.0),
                ],
            ),
        ]
        .into_iter()
        .collect()
    }

    fn find<'a>(rows: &'a [Row], measure: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.measure.starts_with(measure))
            .unwrap_or_else(|| panic!("no row {measure}"))
    }

    #[test]
    fn ratios_divide_each_figure_by_its_baseline() {
        let rows = rows(&all());
        let ingest = find(&rows, "durable webhook accepts");
        assert_eq!(ingest.ratio.unwrap().0, 1_700.0 / 2_000.0);
        assert!(ingest.ratio.unwrap().1.contains("PostgreSQL"));
        assert_eq!(
            find(&rows, "durable webhook accepts vs bus")
                .ratio
                .unwrap()
                .0,
            1_700.0 / 40_000.0
        );
        let worker = find(&rows, "events applied");
        assert_eq!(worker.ratio.unwrap().0, 636.0 / 50_000.0);
        assert_eq!(
            find(&rows, "DLQ replay").ratio.unwrap().0,
            4_565.0 / 40_000.0
        );
    }

    #[test]
    fn targets_are_met_or_missed() {
        let rows = rows(&all());
        assert_eq!(find(&rows, "durable webhook accepts").status(), "missed");
        assert_eq!(find(&rows, "webhook p99").status(), "missed");
        assert_eq!(find(&rows, "events applied").status(), "missed");
        assert_eq!(
            find(&rows, "full sync of 1,000,000 bookings: wall").status(),
            "met"
        );
        assert_eq!(
            find(&rows, "full sync of 1,000,000 bookings: peak").status(),
            "met"
        );
        assert_eq!(find(&rows, "DLQ replay").status(), "—");
        assert_eq!(find(&rows, "JetStream publish,").status(), "—");
    }

    #[test]
    fn missing_benchmarks_show_as_not_run_and_ingest_commits_are_the_fallback() {
        let mut f = all();
        f.remove("baselines");
        f.remove("dlq");
        let rows = rows(&f);
        assert_eq!(find(&rows, "DLQ replay").status(), "not run");
        assert_eq!(find(&rows, "DLQ replay").ratio, None);
        assert_eq!(
            find(&rows, "durable webhook accepts").ratio.unwrap().0,
            1_700.0 / 2_213.0
        );
        let md = render(&f, &[]);
        assert!(md.contains("- baselines: no figures"), "{md}");
        assert!(md.contains("- dlq: no figures"), "{md}");
    }

    #[test]
    fn renders_one_table_with_values_targets_and_ratios() {
        let md = render(&all(), &[]);
        assert!(
            md.contains("| ingest | durable webhook accepts | 1,700/s | ≥ 10,000/s | missed | 0.85× PostgreSQL single-row commits/s |"),
            "{md}"
        );
        assert!(
            md.contains("| worker | events applied at the vendor | 636/s | ≥ 5,000/s | missed | 0.01× JetStream consume/s |"),
            "{md}"
        );
        assert!(
            md.contains("| sync | full sync of 1,000,000 bookings: peak resident memory | 127 MB | < 200 MB | met |  |"),
            "{md}"
        );
        assert!(md.contains("| baseline | PostgreSQL single-row INSERT + COMMIT | 2,000/s |"));
        assert!(md.contains(
            "publish → applied p99 at 1,000/s offered | 15468.50 ms | < 100.00 ms | missed"
        ));
        assert!(!md.contains("different machines"));
    }

    #[test]
    fn production_benchmarks_show_goals_and_ratios_to_their_baselines() {
        let mut f = all();
        f.extend([
            file(
                "pipeline",
                &[
                    ("max_rate_per_s", 3_000.0),
                    ("offered_per_s", 1_000.0),
                    ("p99_ms", 20.0),
                ],
            ),
            file(
                "workers",
                &[
                    ("tapkey_r1_0ms_per_s", 6_000.0),
                    ("tapkey_r1_100ms_per_s", 2_000.0),
                    ("tapkey_r1_100ms_slots_bound_per_s", 2_560.0),
                    ("tapkey_r1_100ms_1024slots_per_s", 3_500.0),
                    ("tapkey_r1_100ms_1024slots_slots_bound_per_s", 5_120.0),
                    ("tapkey_r3_0ms_per_s", 3_000.0),
                ],
            ),
            file(
                "rss",
                &[
                    ("booking-ingest_idle_mb", 25.0),
                    ("reconciler_idle_mb", 31.0),
                    ("image_mb", 58.8),
                ],
            ),
            file(
                "pull-bench",
                &[
                    ("reservations", 100_000.0),
                    ("through_secs", 42.0),
                    ("peak_rss_mb", 300.0),
                ],
            ),
        ]);
        let rows = rows(&f);
        let pipe = find(&rows, "webhooks → four workers → vendors");
        assert_eq!(pipe.status(), "missed");
        assert_eq!(pipe.ratio.unwrap().0, 3_000.0 / 2_000.0);
        let p99 = find(&rows, "webhook → applied at vendor p99 at 1,000/s offered");
        assert_eq!(p99.status(), "met");
        assert_eq!(p99.ratio.unwrap().0, 10.0);
        let fast = find(&rows, "tapkey-worker, file streams R1, vendor 0 ms");
        assert_eq!(fast.status(), "met");
        assert_eq!(fast.ratio.unwrap().0, 6_000.0 / 50_000.0);
        let slow = find(&rows, "tapkey-worker, file streams R1, vendor 100 ms");
        assert_eq!(slow.status(), "missed");
        assert_eq!(slow.ratio.unwrap().0, 2_000.0 / 2_560.0);
        let more = find(
            &rows,
            "tapkey-worker, file streams R1, vendor 100 ms, 1,024 slots",
        );
        assert_eq!(more.status(), "met");
        assert_eq!(more.ratio.unwrap().0, 3_500.0 / 5_120.0);
        let r3 = find(&rows, "tapkey-worker, 3-node R3, vendor 0 ms");
        assert_eq!(r3.ratio.unwrap(), (0.5, "the R1 figure"));
        assert_eq!(
            find(&rows, "cloudpass-worker, file streams R1, vendor 0 ms").status(),
            "not run"
        );
        assert_eq!(
            find(&rows, "booking-ingest idle resident memory").status(),
            "met"
        );
        assert_eq!(
            find(&rows, "reconciler idle resident memory").status(),
            "missed"
        );
        assert_eq!(find(&rows, "container image size").status(), "met");
        let pull = find(&rows, "sync of 100,000 upstream reservations");
        assert_eq!(pull.value, Some(42.0));
        let md = render(&f, &[]);
        assert!(md.contains("- keyreq: no figures"), "{md}");
        assert!(!md.contains("- workers: no figures"), "{md}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(format_ratio(0.85), "0.85×");
        assert_eq!(format_ratio(0.0012), "1.20e-3×");
    }
}

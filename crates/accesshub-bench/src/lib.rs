//! Shared benchmark plumbing: machine description, latency percentiles and the writer that
//! keeps one section per benchmark in BENCHMARKS.md (each `make bench` run replaces them).

use std::{path::PathBuf, time::Duration};

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
    let header = format!("## {title}\n");
    let updated = match current.find(&header) {
        Some(start) => {
            let rest = &current[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map(|i| start + header.len() + i + 1)
                .unwrap_or(current.len());
            format!("{}{}{}", &current[..start], section, &current[end..])
        }
        None => format!("{}\n\n{section}", current.trim_end()),
    };
    std::fs::write(path, updated)
}

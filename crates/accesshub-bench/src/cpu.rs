//! CPU accounting for benchmarks. On a shared 2-core machine wall-clock rates move with
//! whatever else runs; CPU seconds per event do not, so every bench reports them and the
//! ceiling they imply.

use std::collections::HashMap;

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn proc_cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the 1st, utime the 12th.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// Thread name of a bench's harness runtime ([`harness_runtime`]).
pub const HARNESS_THREADS: &str = "bench-harness";

/// A runtime for what is not accesshub — the load generator and the vendor simulators — whose
/// threads are named, so [`CpuSnapshot`] counts their CPU apart: in production they are other
/// machines, here they share the cores with the services under test.
pub fn harness_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(HARNESS_THREADS)
        .enable_all()
        .build()
}

/// CPU seconds used so far by this process's threads named `prefix…` (live ones: a thread
/// that ended is no longer listed).
fn threads_cpu_secs(prefix: &str) -> f64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .map(|e| proc_cpu_secs(&format!("self/task/{}", e.file_name().to_string_lossy())))
        .sum()
}

/// Pids of every process whose `comm` is `name`.
fn pids_named(name: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// CPU used so far by this process, by every Postgres process (backends of every database,
/// WAL writer, checkpointer, autovacuum: all of it is the cost of our writes), and by
/// nats-server.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    own: f64,
    harness: f64,
    postgres: HashMap<String, f64>,
    nats: HashMap<String, f64>,
}

/// CPU seconds spent between two snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// This (bench) process: load generator plus the service under test when in-process.
    pub own: f64,
    /// The part of `own` spent on the [`harness_runtime`]'s threads (0 when there is none).
    pub harness: f64,
    /// Every Postgres process.
    pub postgres: f64,
    /// nats-server.
    pub nats: f64,
}

impl CpuUse {
    /// Sum of all three.
    pub fn total(&self) -> f64 {
        self.own + self.postgres + self.nats
    }

    /// Microseconds of CPU per item, for each part and the total.
    pub fn per_item_us(&self, items: u64) -> CpuUse {
        let n = items.max(1) as f64;
        CpuUse {
            own: self.own * 1e6 / n,
            harness: self.harness * 1e6 / n,
            postgres: self.postgres * 1e6 / n,
            nats: self.nats * 1e6 / n,
        }
    }

    /// What accesshub itself costs: everything but the harness's threads.
    pub fn without_harness(&self) -> f64 {
        self.total() - self.harness
    }

    /// [`CpuUse::ceiling_per_s`] with the harness on other machines, as in production.
    pub fn ceiling_without_harness_per_s(&self, items: u64, cores: f64) -> f64 {
        cores * items as f64 / self.without_harness().max(1e-9)
    }

    /// Items per second the machine's `cores` could sustain at this CPU per item.
    pub fn ceiling_per_s(&self, items: u64, cores: f64) -> f64 {
        cores * items as f64 / self.total().max(1e-9)
    }
}

impl CpuSnapshot {
    /// Reads the counters now.
    pub fn take() -> CpuSnapshot {
        let read = |name: &str| {
            pids_named(name)
                .into_iter()
                .map(|p| {
                    let v = proc_cpu_secs(&p);
                    (p, v)
                })
                .collect::<HashMap<_, _>>()
        };
        let mut postgres = read("postgres");
        // Debian names backends after their role ("postgres: 15/main: ..."), comm stays
        // "postgres"; keep the reader robust to a renamed binary too.
        postgres.extend(read("postmaster"));
        CpuSnapshot {
            own: proc_cpu_secs("self"),
            harness: threads_cpu_secs(HARNESS_THREADS),
            postgres,
            nats: read("nats-server"),
        }
    }

    /// CPU used since `earlier` (processes that ended in between are not counted; ones that
    /// started count in full).
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let delta = |now: &HashMap<String, f64>, then: &HashMap<String, f64>| -> f64 {
            now.iter()
                .map(|(pid, v)| v - then.get(pid).copied().unwrap_or(0.0))
                .sum()
        };
        CpuUse {
            own: self.own - earlier.own,
            harness: self.harness - earlier.harness,
            postgres: delta(&self.postgres, &earlier.postgres),
            nats: delta(&self.nats, &earlier.nats),
        }
    }
}

/// CPU cores of this machine (for ceilings).
pub fn cores() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

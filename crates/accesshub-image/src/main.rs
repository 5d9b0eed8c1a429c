//! `accesshub`: the container image's one binary. Each service and `accessctl` is a link to
//! it (`/usr/local/bin/booking-ingest -> accesshub`, …) and runs by the name it was called by,
//! so the image carries tokio, sqlx, rustls, async-nats, the vendor clients … once instead of
//! eight times (issue 24: the image under 100 MB). Each service's own `main.rs` is compiled in
//! unchanged as a module, so the image runs exactly what the per-service binaries run.

/// mimalloc for every service in the image (booking-ingest and tapkey-worker measured the
/// gain; the others allocate the same way).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../booking-ingest/src/main.rs"]
mod booking_ingest_main;

#[path = "../../accesshub-admin/src/main.rs"]
mod admin_main;

#[path = "../../vendors/cloudpass/src/main.rs"]
mod cloudpass_main;

#[path = "../../vendors/dormakaba/src/main.rs"]
mod dormakaba_main;

#[path = "../../vendors/ipassan/src/main.rs"]
mod ipassan_main;

#[path = "../../vendors/tapkey/src/main.rs"]
mod tapkey_main;

#[path = "../../reconciler/src/main.rs"]
mod reconciler_main;

#[path = "../../accessctl/src/main.rs"]
mod accessctl_main;

use std::process::ExitCode;

/// A program's entry point.
type Entry = fn() -> ExitCode;

/// The programs of the image: the name each is called by (a link in /usr/local/bin; the
/// chart's `command:`), and its entry point.
const PROGRAMS: &[(&str, Entry)] = &[
    ("booking-ingest", || service(booking_ingest_main::main())),
    ("accesshub-admin", || service(admin_main::main())),
    ("cloudpass-worker", || service(cloudpass_main::main())),
    ("dormakaba-worker", || service(dormakaba_main::main())),
    ("ipassan-worker", || service(ipassan_main::main())),
    ("tapkey-worker", || service(tapkey_main::main())),
    ("reconciler", || service(reconciler_main::main())),
    ("accessctl", accessctl_main::main),
];

/// A service's result as its own binary reports it (`Error: …` and status 1).
fn service(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// Transparent huge pages off for this process. mimalloc's arenas are 2 MiB aligned, so with
/// THP every page a service touches first costs 2 MiB of resident memory: booking-ingest sat
/// at 42 MB idle with 22 MB of it in huge pages, 21 MB without them (the same with mimalloc's
/// `MIMALLOC_ALLOW_THP=0`). The `no_thp` feature stops mimalloc asking for them (THP
/// "madvise", Debian's default); this stops the kernel giving them anyway (THP "always", as
/// many node images set it). A service's memory is many small objects, which gain nothing
/// from huge pages. Inherited by anything the process starts.
fn without_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: only memory is at stake (e.g. a kernel without the prctl).
        eprintln!("accesshub: transparent huge pages stay on: {e}");
    }
}

fn main() -> ExitCode {
    without_huge_pages();
    let called = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    match PROGRAMS.iter().find(|(name, _)| *name == called) {
        Some((_, run)) => run(),
        None => {
            eprintln!(
                "accesshub: called as {called:?}; run it through one of its links: {}",
                PROGRAMS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::from(2)
        }
    }
}

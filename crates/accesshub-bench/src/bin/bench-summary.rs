//! Last step of `make bench`: reads every benchmark's figures file (`target/bench/*.json`),
//! prints one table of baselines, figures, targets (met/missed) and ratios, and writes it as the
//! `## Summary` section at the top of BENCHMARKS.md.

use accesshub_bench::{figures_dir, summary, write_section_first};

fn main() -> anyhow::Result<()> {
    let dir = figures_dir();
    let (figures, problems) = summary::load(&dir);
    let body = summary::render(&figures, &problems);
    // write_section_first prints the section too.
    write_section_first("Summary", &body)?;
    Ok(())
}

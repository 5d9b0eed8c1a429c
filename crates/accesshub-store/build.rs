// `sqlx::migrate!()` embeds migrations at compile time, but cargo does not watch the folder on
// stable Rust: without this, adding a migration leaves a stale MIGRATOR in incremental builds.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

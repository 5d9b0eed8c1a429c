//! The `ipassan-worker` binary (wired to the worker runtime once it lands).

fn main() {}

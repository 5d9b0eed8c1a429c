//! `dormakaba-worker`: thin binary around the library (see `lib.rs`).

fn main() {}

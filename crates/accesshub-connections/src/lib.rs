//! A connection is one tenant's link to one access-control vendor: credentials plus the
//! mappings that vendor needs. Workers read them; operators write them through the admin
//! API and `accessctl apply -f`.

pub mod model;

pub use model::*;

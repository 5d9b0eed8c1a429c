//! One module per subcommand.

pub mod dlq;
pub mod migrate;
pub mod status;
pub mod sync;

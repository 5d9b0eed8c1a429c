//! One module per subcommand.

pub mod audit;
pub mod connections;
pub mod dlq;
pub mod lookup;
pub mod migrate;
pub mod offboard;
pub mod secrets;
pub mod status;
pub mod streams;
pub mod sync;
pub mod tenants;
pub mod tokens;

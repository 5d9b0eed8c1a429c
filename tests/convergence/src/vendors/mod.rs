//! The vendors under test.

pub mod cloudpass;
pub mod dormakaba;
pub mod ipassan;
pub mod tapkey;

pub use cloudpass::Cloudpass;
pub use dormakaba::Dormakaba;
pub use ipassan::Ipassan;
pub use tapkey::Tapkey;

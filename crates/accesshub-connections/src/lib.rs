//! A connection is one tenant's link to one access-control vendor: credentials plus the
//! mappings that vendor needs. Workers read them (through [`ConnectionCache`]); operators write
//! them through the admin API and `accessctl apply -f`. Secrets are sealed at rest with the
//! store's `SecretBox` and redacted (`***`) everywhere else.

pub mod bookings;
pub mod cache;
pub mod diff;
pub mod error;
pub mod lookup;
pub mod model;
pub mod offboard;
pub mod reseal;
pub mod role;
pub mod store;
pub mod tenants;
pub mod validate;

pub use accesshub_domain::egress::EgressPolicy;
pub use cache::{ConnectionCache, DEFAULT_TTL};
pub use diff::{Change, ChangeOp};
pub use error::ConnectionError;
pub use model::*;
pub use offboard::{AccessChoice, OffboardIntent};
pub use role::Role;
pub use store::{ApplyOutcome, ApplyStatus, ConnectionChanged, ConnectionStore, pick_for_site};
pub use tenants::{IgnoredBooking, Tenant, TenantSource, TenantStore, WebhookSecrets};
pub use validate::{site_defaults as validate_site_defaults, validate, validate_with};

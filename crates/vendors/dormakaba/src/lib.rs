//! dormakaba worker: turns reservations and key requests into Saflok 6000 / Ambiance lock-system
//! bookings, key cards and mobile keys over the Messenger PMS SOAP web service.

pub mod exec;
pub mod handler;
pub mod inventory;
pub mod keyreq;
pub mod lookup;
pub mod plan;
pub mod soap;

pub use handler::{DormakabaHandler, WORKER};
pub use keyreq::{KeyRequestStatus, StoredStatus, key_request_status};

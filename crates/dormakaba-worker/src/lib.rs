//! dormakaba worker: turns reservations and key requests into Saflok 6000 / Ambiance lock-system
//! bookings, key cards and mobile keys over the Messenger PMS SOAP web service.

pub mod plan;
pub mod soap;

//! dormakaba simulator: Saflok 6000 "Messenger PMS Web Service Interface Rev. 4" (SOAP 1.1,
//! namespace `http://tempuri.org`) at [`SAFLOK_PATH`], and Ambiance (same operations and
//! fault model, its own namespace, our choice) at [`AMBIANCE_PATH`]. `?wsdl` serves a WSDL.
//!
//! Results are `<OpResponse><OpResult>` whose children are the `CMessengerResponse` fields
//! (`bSuccess, ResponseCode, ResponseMessage, retAccessKey`, plus `retPMSTransactionNo` for
//! `CMessengerGuestCreateResponse`), or a `<Fault>` (faultcode, faultstring, detailInfo)
//! **inside the result element** — not a SOAP Fault, as the real service does. Real SOAP
//! Faults are only used for requests that are not SOAP at all or name an unknown operation.
//!
//! Each product keeps its own site: credentials, encoders (online / busy), rooms, pass levels,
//! guests registered in the mobile app (surname + phone), bookings, issued keys, mobile keys
//! and a lock-system event log.

mod ops;
mod soap;
pub(crate) mod xml;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::state::{SimState, lock};

pub(crate) use soap::{injected_fault_response, router, soap_operation};

/// Path of the Saflok Messenger endpoint.
pub const SAFLOK_PATH: &str = "/MessengerPMSWS";
/// Path of the Ambiance endpoint.
pub const AMBIANCE_PATH: &str = "/AmbiancePMSWS";
/// Saflok namespace (as in the Messenger documentation).
pub const SAFLOK_NAMESPACE: &str = "http://tempuri.org";
/// Default Ambiance namespace (our choice; configurable with [`DormakabaFixture::namespace`]).
pub const AMBIANCE_NAMESPACE: &str = "http://tempuri.org/AmbiancePMSWS";

/// Which dormakaba product an endpoint speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// Saflok 6000 (Messenger PMS WS).
    #[default]
    Saflok,
    /// Ambiance.
    Ambiance,
}

/// A card encoder attached to the lock system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    /// Encoder id in the lock system (0 is reserved: "return the key data").
    pub id: u32,
    /// Offline encoders answer `EncoderNotOnlineOrNotExist`.
    #[serde(default = "yes")]
    pub online: bool,
    /// Busy encoders answer `EncoderBusy`.
    #[serde(default)]
    pub busy: bool,
}

fn yes() -> bool {
    true
}

/// A common-area pass level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassLevel {
    /// Pass level number.
    pub no: u32,
    /// Name.
    pub name: String,
}

/// A guest registered in the mobile app (BlueSky / Saflok app): matched by surname + phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppGuest {
    /// Surname as registered.
    pub surname: String,
    /// Phone as registered (compared on digits only).
    pub phone: String,
}

/// A common area in a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommonArea {
    /// Pass level.
    pub pass_level_no: u32,
    /// `DefaultConfiguredAccess`, `GrantAccess` or `DenyAccess`.
    pub mode: String,
}

/// A booking (reservation) in the lock system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    /// The PMS reservation id.
    pub reservation_id: String,
    /// Our transaction number, returned as `retPMSTransactionNo`.
    pub transaction_no: String,
    /// Guest name as sent ("Surname, First, Middle").
    pub guest_name: String,
    /// Main room.
    pub main_room: String,
    /// Extra rooms.
    pub variable_rooms: Vec<String>,
    /// Common areas.
    pub common_areas: Vec<CommonArea>,
    /// Check-in.
    pub check_in: DateTime<Utc>,
    /// Check-out.
    pub check_out: DateTime<Utc>,
    /// Whether `CheckOutGuest` was called.
    pub checked_out: bool,
    /// Duplicates made so far.
    pub duplicates: u32,
    /// Shared guests added so far.
    pub shared_guests: Vec<String>,
}

/// One key encoded (or returned as data by encoder 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyIssue {
    /// Reservation.
    pub reservation_id: String,
    /// `new`, `duplicate`, `shared` or `change`.
    pub kind: String,
    /// Encoder used.
    pub encoder_id: u32,
    /// Keys encoded.
    pub key_count: u32,
    /// Guest name on the key.
    pub guest_name: String,
    /// Key data when the encoder was 0.
    pub key_data: Option<String>,
    /// When (simulated clock).
    pub at: DateTime<Utc>,
}

/// A mobile key sent (or not) to a phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileKey {
    /// Reservation.
    pub reservation_id: String,
    /// Room.
    pub room: String,
    /// Surname used for matching.
    pub surname: String,
    /// Phone (as sent).
    pub phone: String,
    /// Whether it reached the app.
    pub delivered: bool,
    /// Whether it was cancelled (checkout or `CancelGuestsMobileAccessToRoom`).
    pub cancelled: bool,
    /// When (simulated clock).
    pub at: DateTime<Utc>,
}

/// An entry of the lock system's own log (e.g. undeliverable mobile key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockEvent {
    /// When (simulated clock).
    pub at: DateTime<Utc>,
    /// Short code, e.g. `MobileKeyNotDelivered`.
    pub code: String,
    /// Human text.
    pub message: String,
}

/// One product's lock-system site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockSystem {
    /// `SiteName` every request must carry.
    pub site_name: String,
    /// AuthHeader user.
    pub username: String,
    /// AuthHeader password.
    pub password: String,
    /// XML namespace of requests and responses.
    pub namespace: String,
    /// Encoders.
    pub encoders: Vec<Encoder>,
    /// Room numbers.
    pub rooms: Vec<String>,
    /// Pass levels.
    pub pass_levels: Vec<PassLevel>,
    /// Guests registered in the mobile app.
    pub app_guests: Vec<AppGuest>,
    /// Maximum duplicates per reservation (`MaxDuplicatesMadeReached`).
    pub max_duplicates: u32,
    /// Maximum shared guests per reservation (`MaxSharedReached`).
    pub max_shared: u32,
    /// Bookings.
    pub bookings: Vec<Booking>,
    /// Keys issued.
    pub keys: Vec<KeyIssue>,
    /// Mobile keys.
    pub mobile_keys: Vec<MobileKey>,
    /// Lock-system log.
    pub events: Vec<LockEvent>,
    /// Next transaction number.
    pub next_transaction_no: u64,
}

impl LockSystem {
    fn empty(namespace: &str) -> Self {
        Self {
            site_name: String::new(),
            username: String::new(),
            password: String::new(),
            namespace: namespace.to_owned(),
            encoders: Vec::new(),
            rooms: Vec::new(),
            pass_levels: Vec::new(),
            app_guests: Vec::new(),
            max_duplicates: 5,
            max_shared: 4,
            bookings: Vec::new(),
            keys: Vec::new(),
            mobile_keys: Vec::new(),
            events: Vec::new(),
            next_transaction_no: 100_001,
        }
    }
}

/// Both products' state plus the RNG for key data.
#[derive(Debug, Serialize)]
pub struct DormakabaState {
    /// Saflok 6000.
    pub saflok: LockSystem,
    /// Ambiance.
    pub ambiance: LockSystem,
    #[serde(skip)]
    pub(crate) rng: StdRng,
}

impl DormakabaState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            saflok: LockSystem::empty(SAFLOK_NAMESPACE),
            ambiance: LockSystem::empty(AMBIANCE_NAMESPACE),
            rng: StdRng::seed_from_u64(seed ^ 0x5af1_0c6e),
        }
    }

    pub(crate) fn system(&mut self, p: Product) -> &mut LockSystem {
        match p {
            Product::Saflok => &mut self.saflok,
            Product::Ambiance => &mut self.ambiance,
        }
    }
}

/// Fixture for [`SimState::seed_dormakaba`] / `POST /seed/dormakaba`. Set fields replace the
/// product's values; list entries are upserted (encoders by id, rooms and pass levels by
/// number, app guests by surname + phone).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DormakabaFixture {
    /// Which product (default saflok).
    #[serde(default)]
    pub product: Product,
    /// `SiteName`.
    #[serde(default)]
    pub site_name: Option<String>,
    /// AuthHeader user.
    #[serde(default)]
    pub username: Option<String>,
    /// AuthHeader password.
    #[serde(default)]
    pub password: Option<String>,
    /// Namespace override (Ambiance's is configurable).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Encoders.
    #[serde(default)]
    pub encoders: Vec<Encoder>,
    /// Rooms.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Pass levels.
    #[serde(default)]
    pub pass_levels: Vec<PassLevel>,
    /// App guests.
    #[serde(default)]
    pub app_guests: Vec<AppGuest>,
    /// Maximum duplicates per reservation.
    #[serde(default)]
    pub max_duplicates: Option<u32>,
    /// Maximum shared guests per reservation.
    #[serde(default)]
    pub max_shared: Option<u32>,
    /// Front-desk action: these reservations' keys are cancelled by hand at the lock system
    /// (booking deleted, its mobile keys cancelled, an event logged), so the PMS interface
    /// answers `ReservationNotFound` for them from now on. `POST /seed/dormakaba` with
    /// `{"product": "saflok", "cancel_reservations": ["acme-R1"]}`.
    #[serde(default)]
    pub cancel_reservations: Vec<String>,
}

fn cancel_by_hand(s: &mut LockSystem, reservation_id: &str, now: DateTime<Utc>) -> bool {
    let before = s.bookings.len();
    s.bookings.retain(|b| b.reservation_id != reservation_id);
    if s.bookings.len() == before {
        return false;
    }
    for m in s
        .mobile_keys
        .iter_mut()
        .filter(|m| m.reservation_id == reservation_id)
    {
        m.cancelled = true;
    }
    s.events.push(LockEvent {
        at: now,
        code: "KeysCancelledAtFrontDesk".to_owned(),
        message: format!("keys of reservation {reservation_id} cancelled at the front desk"),
    });
    true
}

/// Demo Saflok site name.
pub const DEMO_SAFLOK_SITE: &str = "DEMO-HOTEL";
/// Demo Ambiance site name.
pub const DEMO_AMBIANCE_SITE: &str = "DEMO-AMBIANCE";
/// Demo AuthHeader user (both products).
pub const DEMO_USERNAME: &str = "pms-demo";
/// Demo AuthHeader password (both products).
pub const DEMO_PASSWORD: &str = "pms-demo-secret";

impl SimState {
    /// Applies a dormakaba fixture to one product.
    pub fn seed_dormakaba(&self, f: DormakabaFixture) -> Result<(), SimError> {
        let now = self.now();
        let mut st = lock(&self.inner.dormakaba);
        let s = st.system(f.product);
        if let Some(v) = f.site_name {
            s.site_name = v;
        }
        if let Some(v) = f.username {
            s.username = v;
        }
        if let Some(v) = f.password {
            s.password = v;
        }
        if let Some(v) = f.namespace {
            s.namespace = v;
        }
        if let Some(v) = f.max_duplicates {
            s.max_duplicates = v;
        }
        if let Some(v) = f.max_shared {
            s.max_shared = v;
        }
        for e in f.encoders {
            if e.id == 0 {
                return Err(SimError::InvalidFixture(
                    "encoder 0 is reserved (returns key data)".into(),
                ));
            }
            s.encoders.retain(|x| x.id != e.id);
            s.encoders.push(e);
        }
        for r in f.rooms {
            if !s.rooms.contains(&r) {
                s.rooms.push(r);
            }
        }
        for p in f.pass_levels {
            s.pass_levels.retain(|x| x.no != p.no);
            s.pass_levels.push(p);
        }
        for g in f.app_guests {
            s.app_guests
                .retain(|x| !(x.surname == g.surname && x.phone == g.phone));
            s.app_guests.push(g);
        }
        for id in &f.cancel_reservations {
            if !s.bookings.iter().any(|b| &b.reservation_id == id) {
                return Err(SimError::InvalidFixture(format!(
                    "no {:?} booking {id} to cancel",
                    f.product
                )));
            }
        }
        for id in f.cancel_reservations {
            cancel_by_hand(s, &id, now);
        }
        Ok(())
    }

    /// The front desk cancels a reservation's keys by hand (see
    /// [`DormakabaFixture::cancel_reservations`]); `false` if there is no such booking.
    pub fn dormakaba_cancel_by_hand(&self, product: Product, reservation_id: &str) -> bool {
        let now = self.now();
        let mut st = lock(&self.inner.dormakaba);
        cancel_by_hand(st.system(product), reservation_id, now)
    }

    /// Sets an encoder's online / busy state (adding it if unknown).
    pub fn dormakaba_set_encoder(
        &self,
        product: Product,
        id: u32,
        online: bool,
        busy: bool,
    ) -> Result<(), SimError> {
        self.seed_dormakaba(DormakabaFixture {
            product,
            encoders: vec![Encoder { id, online, busy }],
            ..DormakabaFixture::default()
        })
    }

    /// Registers a guest in the mobile app.
    pub fn dormakaba_register_app_guest(&self, product: Product, surname: &str, phone: &str) {
        let mut st = lock(&self.inner.dormakaba);
        st.system(product).app_guests.push(AppGuest {
            surname: surname.to_owned(),
            phone: phone.to_owned(),
        });
    }

    /// A copy of one product's whole lock system (bookings, keys, mobile keys, events...).
    pub fn dormakaba(&self, product: Product) -> LockSystem {
        lock(&self.inner.dormakaba).system(product).clone()
    }

    /// One product's bookings.
    pub fn dormakaba_bookings(&self, product: Product) -> Vec<Booking> {
        self.dormakaba(product).bookings
    }

    /// One product's issued keys.
    pub fn dormakaba_keys(&self, product: Product) -> Vec<KeyIssue> {
        self.dormakaba(product).keys
    }

    /// One product's mobile keys.
    pub fn dormakaba_mobile_keys(&self, product: Product) -> Vec<MobileKey> {
        self.dormakaba(product).mobile_keys
    }

    /// One product's lock-system event log.
    pub fn dormakaba_events(&self, product: Product) -> Vec<LockEvent> {
        self.dormakaba(product).events
    }

    pub(crate) fn seed_dormakaba_demo(&self) {
        for (product, site) in [
            (Product::Saflok, DEMO_SAFLOK_SITE),
            (Product::Ambiance, DEMO_AMBIANCE_SITE),
        ] {
            let _ = self.seed_dormakaba(DormakabaFixture {
                product,
                site_name: Some(site.into()),
                username: Some(DEMO_USERNAME.into()),
                password: Some(DEMO_PASSWORD.into()),
                namespace: None,
                encoders: vec![
                    Encoder {
                        id: 1,
                        online: true,
                        busy: false,
                    },
                    Encoder {
                        id: 2,
                        online: true,
                        busy: false,
                    },
                    Encoder {
                        id: 3,
                        online: false,
                        busy: false,
                    },
                ],
                rooms: ["101", "102", "103", "201", "202", "301"]
                    .map(String::from)
                    .to_vec(),
                pass_levels: vec![
                    PassLevel {
                        no: 1,
                        name: "Main entrance".into(),
                    },
                    PassLevel {
                        no: 2,
                        name: "Fitness".into(),
                    },
                    PassLevel {
                        no: 3,
                        name: "Parking".into(),
                    },
                ],
                app_guests: vec![AppGuest {
                    surname: "Jansen".into(),
                    phone: "+31612345678".into(),
                }],
                max_duplicates: None,
                max_shared: None,
                cancel_reservations: Vec::new(),
            });
        }
    }
}

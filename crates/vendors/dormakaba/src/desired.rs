//! The domain logic as plain functions: what the lock system should hold for a reservation,
//! what we recorded doing there, and the operations that close the gap. No I/O here, so the
//! rules (surname cut, encoder checks, idempotency after a crash) are testable in isolation.

use accesshub_connections::{DormakabaSettings, EncoderKind};
use accesshub_domain::{Classify, ErrorClass, KeyAction, KeyRequest, Reservation};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{AreaMode, BookingRequest, CommonArea, SoapError};

/// Longest `ReservationID` we send. Messenger documents no limit; PMS reservation numbers are
/// short, so we stay well inside what lock systems store and hash anything longer.
pub const RESERVATION_ID_MAX: usize = 32;

/// Encoder id that makes the lock system return key data instead of encoding a card; used
/// (with `KeyCount` 0) to register or change a booking without producing any card.
pub const NO_CARD_ENCODER: &str = "0";

/// Why an event cannot be turned into lock-system operations. All permanent: the same event
/// and connection will always fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The reservation has no room.
    #[error("reservation has no room to put on a key")]
    NoRoom,
    /// A common area is not mapped to a pass level in the connection.
    #[error("common area {0:?} is not mapped to a pass level in the dormakaba connection")]
    UnmappedCommonArea(String),
    /// The site timezone is not an IANA zone.
    #[error("{0}")]
    Time(String),
    /// A key request without an encoder.
    #[error("key request needs an encoder_id from the connection's encoder list")]
    EncoderRequired,
    /// The encoder is not in the connection's list.
    #[error("encoder {0:?} is not in the dormakaba connection's encoder list")]
    UnknownEncoder(String),
    /// USB encoders cannot be driven through the web service.
    #[error(
        "encoder {0:?} is a USB encoder: USB encoders are not supported by the dormakaba web service; use a network encoder"
    )]
    UsbEncoder(String),
    /// Keys for a reservation that should have no access.
    #[error("reservation is {0}: no keys can be issued")]
    NoAccess(&'static str),
    /// A mobile key without a phone number.
    #[error("mobile key requested but the guest has no mobile phone number")]
    NoPhone,
    /// The connection does not send mobile keys.
    #[error("mobile keys are not enabled on the dormakaba connection")]
    MobileKeysDisabled,
    /// Access wanted again after the lock system checked the reservation out.
    #[error(
        "reservation {0} was checked out in the lock system and cannot be reopened; create a new reservation"
    )]
    Reopen(String),
}

impl Classify for PlanError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Our `ReservationID` for a booking, the same on every call so a retry addresses (and its
/// probe finds) the booking an earlier attempt made; what a repeated `CreateNewBooking` does
/// is undocumented, so it is never relied on ([`Op::CreateUnlessExists`]).
///
/// It must never be another booking's id: a collision checks out or changes another guest's
/// stay (security review L9). Two disjoint forms, so the mapping is injective:
/// - `<tenant>-<booking_key>` when that fits [`RESERVATION_ID_MAX`] and neither part holds a
///   `-` or a `~` (`-` would make `a-b`/`c` and `a`/`b-c` one id). This is also the id
///   every such booking always had, so existing stays keep theirs.
/// - otherwise a readable prefix, `~`, and 80 bits of SHA-256 over the length-prefixed pair
///   (hex): the only ids holding a `~`, and a collision needs about 2^40 ids in one lock
///   system (the old 32-bit FNV collided at tens of thousands).
///
/// A booking already made keeps the id it was made with ([`keep_recorded_id`]).
pub fn reservation_id(tenant: &str, booking_key: &str) -> String {
    let plain = |s: &str| !s.contains(['-', '~']);
    let full = format!("{tenant}-{booking_key}");
    if plain(tenant) && plain(booking_key) && full.chars().count() <= RESERVATION_ID_MAX {
        return full;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{}:{tenant}:{booking_key}", tenant.len()));
    let hash = hex::encode(&digest[..HASH_BYTES]);
    let prefix: String = full
        .chars()
        .filter(|c| *c != '~')
        .take(RESERVATION_ID_MAX - 1 - 2 * HASH_BYTES)
        .collect();
    format!("{prefix}~{hash}")
}

/// Bytes of SHA-256 kept in a hashed [`reservation_id`] (80 bits, 20 hex characters).
const HASH_BYTES: usize = 10;

/// A mobile key target: the app matches the surname and the phone. Debug masks both.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MobileTarget {
    /// Lock-system room the key opens.
    pub room: String,
    /// Guest name cut at the first comma ([`accesshub_domain::Guest::surname`]).
    pub surname: String,
    /// Phone as given upstream (the lock system validates it).
    pub phone: String,
}

impl std::fmt::Debug for MobileTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use accesshub_domain::pii::{mask_name, mask_phone};
        f.debug_struct("MobileTarget")
            .field("room", &self.room)
            .field("surname", &mask_name(&self.surname))
            .field("phone", &mask_phone(&self.phone))
            .finish()
    }
}

/// What the lock system should hold for one reservation.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Our `ReservationID`.
    pub reservation_id: String,
    /// Whether access should exist.
    pub wants_access: bool,
    /// Status name (for messages).
    pub status: &'static str,
    /// Full guest name ("Surname, First, Middle").
    pub guest_name: String,
    /// Main room (lock-system number), if any.
    pub main_room: Option<String>,
    /// Further rooms.
    pub extra_rooms: Vec<String>,
    /// Pass levels of the common areas.
    pub pass_levels: Vec<u32>,
    /// Validity, in the site timezone.
    pub check_in: DateTime<chrono_tz::Tz>,
    /// Validity end, in the site timezone.
    pub check_out: DateTime<chrono_tz::Tz>,
    /// A mobile key should exist (requested, phone present, enabled on the connection).
    pub mobile: Option<MobileTarget>,
    /// `mobile` is the desk's key (sent by a key request; kept, and moved with the room, by
    /// [`keep_desk_mobile_key`]): recorded as the desk's when it is sent again.
    pub desk_mobile: bool,
}

fn status_name(r: &Reservation) -> &'static str {
    use accesshub_domain::ReservationStatus as S;
    match r.status {
        S::Confirmed => "confirmed",
        S::CheckedIn => "checked in",
        S::CheckedOut => "checked out",
        S::Cancelled => "cancelled",
        S::NoShow => "a no-show",
    }
}

/// Reservation → desired lock-system state: rooms through the connection's room map
/// (identity when unmapped), common areas through its pass-level map (unmapped → error, as
/// for every unknown mapping), validity from the check-in/check-out instants in the site
/// timezone.
pub fn desired(
    tenant: &str,
    booking_key: &str,
    r: &Reservation,
    s: &DormakabaSettings,
) -> Result<Desired, PlanError> {
    let tz = r.tz().map_err(|e| PlanError::Time(e.to_string()))?;
    let check_in = r
        .check_in()
        .map_err(|e| PlanError::Time(e.to_string()))?
        .with_timezone(&tz);
    let check_out = r
        .check_out()
        .map_err(|e| PlanError::Time(e.to_string()))?
        .with_timezone(&tz);
    let map_room = |room: &String| s.rooms.get(room).cloned().unwrap_or_else(|| room.clone());
    let rooms: Vec<String> = r.rooms.iter().map(map_room).collect();
    let mut pass_levels = Vec::new();
    if r.status.wants_access() {
        for area in &r.common_areas {
            let level = s
                .common_areas
                .get(area)
                .ok_or_else(|| PlanError::UnmappedCommonArea(area.clone()))?;
            if !pass_levels.contains(level) {
                pass_levels.push(*level);
            }
        }
    }
    let main_room = rooms.first().cloned();
    let mobile = match (&main_room, &r.guest.mobile_phone) {
        (Some(room), Some(phone)) if r.mobile_key && s.mobile_keys => Some(MobileTarget {
            room: room.clone(),
            surname: r.guest.surname().to_owned(),
            phone: phone.clone(),
        }),
        _ => None,
    };
    Ok(Desired {
        reservation_id: reservation_id(tenant, booking_key),
        wants_access: r.status.wants_access(),
        status: status_name(r),
        guest_name: r.guest.name.clone(),
        main_room,
        extra_rooms: rooms.into_iter().skip(1).collect(),
        pass_levels,
        check_in,
        check_out,
        mobile,
        desk_mobile: false,
    })
}

/// Addresses the booking `rec` names: a booking made under an id keeps it (ids made by an
/// older [`reservation_id`] scheme included); a reservation with nothing recorded gets the
/// current scheme's.
pub fn keep_recorded_id(d: &mut Desired, rec: &LockRecord) {
    if let Some(id) = rec.reservation_id.as_ref().filter(|id| !id.is_empty()) {
        d.reservation_id.clone_from(id);
    }
}

/// What we did at the lock system for one reservation; stored as the reservation binding's
/// `vendor_ids`, read back by the next event (reservation or key request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// `ReservationID` used at the lock system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// `CreateNewBooking` succeeded.
    #[serde(default)]
    pub booked: bool,
    /// `retPMSTransactionNo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_no: Option<String>,
    /// Main room on the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_room: Option<String>,
    /// Extra rooms on the booking.
    #[serde(default)]
    pub extra_rooms: Vec<String>,
    /// Pass levels on the booking.
    #[serde(default)]
    pub pass_levels: Vec<u32>,
    /// Guest name on the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_name: Option<String>,
    /// Validity start on the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in: Option<DateTime<Utc>>,
    /// Validity end on the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_out: Option<DateTime<Utc>>,
    /// `CheckOutGuest` succeeded: the lock system will refuse this `ReservationID` from now on.
    #[serde(default)]
    pub checked_out: bool,
    /// The mobile key sent (and not cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_key: Option<MobileTarget>,
    /// The recorded mobile key was sent by a key request (the desk asked, maybe to a number
    /// the reservation does not carry): kept while the stay wants access
    /// ([`keep_desk_mobile_key`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mobile_key_from_desk: bool,
    /// The desk's mobile key as the stay should hold it, also while it is being moved to
    /// another room (between the cancel at the old room and the key at the new one, when
    /// `mobile_key` is empty): a retry after a failure there still sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desk_mobile_key: Option<MobileTarget>,
    /// The key request that sent the desk's mobile key: a key sent again after a room move
    /// is reported to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desk_request: Option<uuid::Uuid>,
    /// Cards encoded so far (new + duplicates).
    #[serde(default)]
    pub keys_encoded: u32,
    /// A `CreateNewBooking` was sent and its outcome is not recorded yet. Written before the
    /// call (see [`note_in_doubt`]) and cleared when its success is recorded: a worker killed
    /// during the call leaves `booked == false` although the lock system may hold the
    /// booking, so an ending must check the guest out anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub booking_in_doubt: bool,
    /// Mobile keys sent whose sending is not recorded yet (same reason): an ending cancels
    /// them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobile_keys_in_doubt: Vec<MobileTarget>,
}

impl LockRecord {
    /// Reads a binding's `vendor_ids` (an empty or foreign object is "nothing done yet").
    pub fn from_json(v: &serde_json::Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// For the binding.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Whether a live booking exists at the lock system.
    pub fn live(&self) -> bool {
        self.booked && !self.checked_out
    }

    /// Whether the lock system may hold a live booking of ours: recorded live, or created by
    /// an attempt whose outcome was never recorded (worker killed during the call). An ending
    /// checks such a booking out, and the sync probes it.
    pub fn maybe_live(&self) -> bool {
        self.live() || self.booking_in_doubt
    }

    /// Whether what we last set at the lock system is exactly the desired state (access,
    /// validity and mobile key).
    pub fn matches(&self, d: &Desired) -> bool {
        self.access_matches(d)
            && self.check_out == Some(d.check_out.with_timezone(&Utc))
            && self.mobile_key == d.mobile
    }

    fn access_matches(&self, d: &Desired) -> bool {
        self.main_room == d.main_room
            && self.extra_rooms == d.extra_rooms
            && self.pass_levels == d.pass_levels
            && self.guest_name.as_deref() == Some(d.guest_name.as_str())
            && self.check_in == Some(d.check_in.with_timezone(&Utc))
    }
}

/// One lock-system operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `CreateNewBooking` with the desired access on `encoder`, encoding `key_count` cards.
    CreateBooking {
        /// Encoder id (`0` with no cards: register only).
        encoder: String,
        /// Cards.
        key_count: u32,
    },
    /// A `CreateNewBooking` for a booking an earlier attempt may already have created
    /// ([`LockRecord::booking_in_doubt`]). Messenger documents nothing about a repeated
    /// `ReservationID`, so a create is never simply sent again: `ExtendCheckOut` with the
    /// desired check-out probes first (what the reconciler's probe does), then
    /// [`create_after_probe`] decides between creating and changing the booking found.
    CreateUnlessExists {
        /// Encoder id (`0` with no cards: register only).
        encoder: String,
        /// Cards.
        key_count: u32,
        /// The attempt in doubt was this very request's (an interrupted key request): a
        /// booking found means its cards were encoded then, so none are cut again.
        earlier_attempt_encoded: bool,
    },
    /// `ChangeKeyAccess` to the desired access, encoding `key_count` cards on `encoder`.
    ChangeAccess {
        /// Encoder id.
        encoder: String,
        /// Cards (0: change access only).
        key_count: u32,
    },
    /// `MakeDuplicateKey`.
    Duplicate {
        /// Encoder id.
        encoder: String,
        /// Cards.
        key_count: u32,
    },
    /// `ExtendCheckOut` to the desired check-out.
    ExtendCheckOut,
    /// The mobile-key operation.
    IssueMobileKey(MobileTarget),
    /// `CancelGuestsMobileAccessToRoom`.
    CancelMobileKey(MobileTarget),
    /// `CheckOutGuest`.
    CheckOut,
}

impl Op {
    /// Whether this operation encodes physical cards (never repeated blindly after a crash).
    pub fn encodes_cards(&self) -> bool {
        match self {
            Op::CreateBooking { key_count, .. }
            | Op::CreateUnlessExists { key_count, .. }
            | Op::ChangeAccess { key_count, .. }
            | Op::Duplicate { key_count, .. } => *key_count > 0,
            _ => false,
        }
    }

    /// The encoder this operation uses, if any.
    pub fn encoder(&self) -> Option<&str> {
        match self {
            Op::CreateBooking { encoder, .. }
            | Op::CreateUnlessExists { encoder, .. }
            | Op::ChangeAccess { encoder, .. }
            | Op::Duplicate { encoder, .. } => Some(encoder),
            _ => None,
        }
    }
}

/// Reservation event: desired vs recorded → operations.
///
/// A stay needs no lock-system booking until a key is cut (key request) or a mobile key is
/// sent, so a plain reservation registers nothing. Once a booking exists, changes follow it:
/// validity-only changes use `ExtendCheckOut`, room/area/name/check-in changes
/// `ChangeKeyAccess` without cards; check-out, cancellation and no-show cancel the mobile key
/// (if one was sent) and check the guest out.
///
/// Mobile keys that are no longer wanted are cancelled **before** `ChangeKeyAccess`:
/// `CancelGuestsMobileAccessToRoom` names the room, and once the booking has moved the lock
/// system refuses the old room (`InvalidWSParameter`), so the old room's key would outlive
/// the move. See [`mobile_key_ops`].
pub fn plan_reservation(d: &Desired, rec: &LockRecord) -> Result<Vec<Op>, PlanError> {
    if !d.wants_access {
        return Ok(ending_ops(rec));
    }
    if rec.booked && rec.checked_out {
        return Err(PlanError::Reopen(d.reservation_id.clone()));
    }
    if d.main_room.is_none() && (rec.booked || d.mobile.is_some()) {
        return Err(PlanError::NoRoom);
    }
    let mut access = Vec::new();
    if !rec.booked {
        // A booking an interrupted attempt may have made is settled now (probed, then changed
        // to the desired access or registered without cards): left alone it would keep the
        // old rooms although no mobile key is wanted any more (convergence seed 8).
        if d.mobile.is_some() || rec.booking_in_doubt {
            access.push(create_op(rec, NO_CARD_ENCODER.into(), 0));
        }
    } else if !rec.access_matches(d) {
        access.push(Op::ChangeAccess {
            encoder: NO_CARD_ENCODER.into(),
            key_count: 0,
        });
    } else if rec.check_out != Some(d.check_out.with_timezone(&Utc)) {
        access.push(Op::ExtendCheckOut);
    }
    Ok(mobile_key_ops(rec, d, d.mobile.as_ref(), access))
}

/// `CreateNewBooking`, or [`Op::CreateUnlessExists`] when an earlier attempt may have
/// created the booking already.
fn create_op(rec: &LockRecord, encoder: String, key_count: u32) -> Op {
    if rec.booking_in_doubt {
        Op::CreateUnlessExists {
            encoder,
            key_count,
            earlier_attempt_encoded: false,
        }
    } else {
        Op::CreateBooking { encoder, key_count }
    }
}

/// Wraps the access operations `access` (create, change, extend) with the mobile-key ones
/// for the wanted key `want`. The lock system only accepts a cancel for a room on the
/// reservation, so each cancel goes where that room is surely on the booking:
///
/// - before `access`: the recorded key when it is not the wanted one (it is at a room the
///   recorded booking holds), and keys in doubt at rooms the desired booking will not hold;
/// - after `access`: keys in doubt at rooms the desired booking holds (a crashed attempt sent
///   them, if at all, after moving the booking there), then the wanted key when it is not
///   the recorded one. A key in doubt that is the wanted one is thus cancelled right before
///   it is sent again, so the guest never holds two.
///
/// A key in doubt whose cancel the lock system refuses because its room is not on the
/// reservation was never sent (see [`cancel_refused_is_done`]).
pub fn mobile_key_ops(
    rec: &LockRecord,
    d: &Desired,
    want: Option<&MobileTarget>,
    access: Vec<Op>,
) -> Vec<Op> {
    let desired_room = |m: &MobileTarget| {
        d.main_room.as_deref() == Some(m.room.as_str()) || d.extra_rooms.contains(&m.room)
    };
    let mut before = Vec::new();
    let mut after = Vec::new();
    if let Some(old) = rec.mobile_key.as_ref().filter(|m| Some(*m) != want) {
        before.push(Op::CancelMobileKey(old.clone()));
    }
    for m in &rec.mobile_keys_in_doubt {
        let cancel = Op::CancelMobileKey(m.clone());
        if rec.mobile_key.as_ref() == Some(m) || before.contains(&cancel) || after.contains(&cancel)
        {
            continue;
        }
        if desired_room(m) {
            after.push(cancel);
        } else {
            before.push(cancel);
        }
    }
    let mut ops = before;
    ops.extend(access);
    ops.extend(after);
    if let Some(m) = want
        && rec.mobile_key.as_ref() != Some(m)
    {
        if rec.mobile_keys_in_doubt.contains(m) && !ops.contains(&Op::CancelMobileKey(m.clone())) {
            ops.push(Op::CancelMobileKey(m.clone()));
        }
        ops.push(Op::IssueMobileKey(m.clone()));
    }
    ops
}

/// `ops` cut into steps whose outcome is recorded before the next step starts: a step ends
/// after each operation that creates or moves the booking. A record that still names the old
/// room after a move would make the next attempt cancel a mobile key at a room the lock system
/// no longer has on the reservation (`InvalidWSParameter`), and one that lacks a create would
/// make it probe again.
pub fn steps(ops: &[Op]) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, op) in ops.iter().enumerate() {
        let moves = matches!(
            op,
            Op::CreateBooking { .. } | Op::CreateUnlessExists { .. } | Op::ChangeAccess { .. }
        );
        if moves && i + 1 < ops.len() {
            out.push(&ops[start..=i]);
            start = i + 1;
        }
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

/// Whether the lock system's refusal `e` of cancelling the key `m` in doubt means there is
/// nothing to cancel: `InvalidWSParameter` says the key's room is not on the reservation, and
/// keys are only sent to rooms the booking holds and cancelled before a move away from them
/// ([`mobile_key_ops`]), so a key in doubt at such a room was never sent or was cancelled
/// before the move (a recorded key becomes one in doubt before its cancel is sent:
/// [`note_changes_in_doubt`]). A recorded key gets no such benefit of the doubt: its room is
/// on the reservation unless a move was lost, and a move is always preceded by its cancel.
pub fn cancel_refused_is_done(rec: &LockRecord, m: &MobileTarget, e: &SoapError) -> bool {
    rec.mobile_keys_in_doubt.contains(m)
        && rec.mobile_key.as_ref() != Some(m)
        && e.fault_code()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("InvalidWSParameter"))
}

/// What an [`Op::CreateUnlessExists`] becomes once its probe said whether the booking
/// exists: the create itself when it does not; when it does, nothing if the attempt in doubt
/// was this request's own (its cards were encoded then), else `ChangeKeyAccess` to the
/// desired access with the cards asked for (the found booking was created with an older
/// desired state). Any other operation is returned unchanged.
pub fn create_after_probe(op: &Op, found: bool) -> Option<Op> {
    match op {
        Op::CreateUnlessExists {
            encoder, key_count, ..
        } if !found => Some(Op::CreateBooking {
            encoder: encoder.clone(),
            key_count: *key_count,
        }),
        Op::CreateUnlessExists {
            earlier_attempt_encoded: true,
            ..
        } => None,
        Op::CreateUnlessExists {
            encoder, key_count, ..
        } => Some(Op::ChangeAccess {
            encoder: encoder.clone(),
            key_count: *key_count,
        }),
        other => Some(other.clone()),
    }
}

/// Turns every `CreateNewBooking` in `ops` into an [`Op::CreateUnlessExists`]: for an
/// interrupted key request (`earlier_attempt_encoded`), whose own create may have reached the
/// lock system although the reservation's record never noted it.
pub fn probe_before_create(ops: &mut [Op], earlier_attempt_encoded: bool) {
    for op in ops.iter_mut() {
        if let Op::CreateBooking { encoder, key_count }
        | Op::CreateUnlessExists {
            encoder, key_count, ..
        } = op
        {
            *op = Op::CreateUnlessExists {
                encoder: std::mem::take(encoder),
                key_count: *key_count,
                earlier_attempt_encoded,
            };
        }
    }
}

/// Records that the probe of an [`Op::CreateUnlessExists`] found the booking: it is live
/// and now has the desired check-out. Its rooms and areas are not known (the attempt that
/// created it recorded nothing), so they stay as recorded and the next plan changes them if
/// they differ.
pub fn record_found(rec: &mut LockRecord, d: &Desired) {
    rec.reservation_id = Some(d.reservation_id.clone());
    rec.booked = true;
    rec.booking_in_doubt = false;
    rec.checked_out = false;
    rec.check_out = Some(d.check_out.with_timezone(&Utc));
}

/// Ending access: cancel every mobile key that was or may have been sent, then check the
/// guest out — whenever the lock system may hold our booking ([`LockRecord::maybe_live`]),
/// not only when the record says it does. A booking that turns out not to exist answers
/// [`GONE_FAULTS`], which counts as done.
pub fn ending_ops(rec: &LockRecord) -> Vec<Op> {
    let mut ops = Vec::new();
    if !rec.maybe_live() {
        return ops;
    }
    for m in rec.mobile_key.iter().chain(&rec.mobile_keys_in_doubt) {
        let cancel = Op::CancelMobileKey(m.clone());
        if !ops.contains(&cancel) {
            ops.push(cancel);
        }
    }
    ops.push(Op::CheckOut);
    ops
}

/// Before a reservation's `ops` are sent: forgets the recorded validity a change replaces,
/// since a change whose answer is lost (timeout, reset, 5xx after the lock system applied it,
/// a worker killed, Postgres down for the record) leaves the booking in an unknown state:
/// `ChangeAccess` clears the recorded check-in, `ExtendCheckOut` the check-out. Otherwise a
/// later revision that returns to the recorded values finds nothing to do and leaves the lost
/// change's dates at the lock system (convergence seed dormakaba 215: a stay moved to 3–6
/// July, the answer lost, then moved back to 1–2 July kept the guest's access for 3–6 July).
///
/// Likewise a cancel of the recorded mobile key moves it among the keys in doubt: it comes
/// before a room move ([`mobile_key_ops`]), and when the move lands but its answer is lost,
/// the key's room is no longer on the reservation. A retry, or a cancellation's check-out,
/// that cancelled it again as the recorded key would have its refusal (`InvalidWSParameter`)
/// taken as permanent and leave the booking live (convergence seed dormakaba 622); as a key
/// in doubt the refusal means it is gone ([`cancel_refused_is_done`]).
///
/// Returns whether the record changed (then it is stored before the first call, with
/// [`note_in_doubt`]'s marks). Not for key requests: their change carries the reservation's
/// current access and their cards' own doubt rule.
pub fn note_changes_in_doubt(rec: &mut LockRecord, ops: &[Op]) -> bool {
    let mut changed = false;
    for op in ops {
        match op {
            Op::CancelMobileKey(m) if rec.mobile_key.as_ref() == Some(m) => {
                if rec.mobile_key_from_desk && rec.desk_mobile_key.is_none() {
                    rec.desk_mobile_key = Some(m.clone());
                }
                rec.mobile_key = None;
                rec.mobile_key_from_desk = false;
                if !rec.mobile_keys_in_doubt.contains(m) {
                    rec.mobile_keys_in_doubt.push(m.clone());
                }
                changed = true;
            }
            Op::ChangeAccess { .. } if rec.check_in.is_some() => {
                rec.check_in = None;
                changed = true;
            }
            Op::ExtendCheckOut if rec.check_out.is_some() => {
                rec.check_out = None;
                changed = true;
            }
            _ => {}
        }
    }
    changed
}

/// Notes in `rec` what `ops` may create at the lock system before they are sent
/// ([`LockRecord::booking_in_doubt`], [`LockRecord::mobile_keys_in_doubt`]). Returns whether
/// the record changed: then it must be stored durably before the first call, so a crash
/// during the calls leaves a trace for the next event and the sync.
pub fn note_in_doubt(rec: &mut LockRecord, ops: &[Op]) -> bool {
    let mut changed = false;
    for op in ops {
        match op {
            Op::CreateBooking { .. } | Op::CreateUnlessExists { .. }
                if !rec.booked && !rec.booking_in_doubt =>
            {
                rec.booking_in_doubt = true;
                changed = true;
            }
            Op::IssueMobileKey(m)
                if rec.mobile_key.as_ref() != Some(m) && !rec.mobile_keys_in_doubt.contains(m) =>
            {
                rec.mobile_keys_in_doubt.push(m.clone());
                changed = true;
            }
            _ => {}
        }
    }
    changed
}

/// Messenger cannot say whether a mobile key was sent. A redelivered event may follow an
/// attempt that sent the key and then could not record it (worker killed, Postgres down), so
/// on a redelivery every `IssueMobileKey` is preceded by a `CancelMobileKey` of the same
/// target: the guest ends with exactly one working key (at worst notified twice) instead of
/// two live ones. Cancelling a key that was never sent is a no-op at the lock system.
pub fn cancel_before_resend(ops: &mut Vec<Op>) {
    let mut out = Vec::with_capacity(ops.len() + 1);
    for op in ops.drain(..) {
        if let Op::IssueMobileKey(m) = &op
            && !out.contains(&Op::CancelMobileKey(m.clone()))
        {
            out.push(Op::CancelMobileKey(m.clone()));
        }
        out.push(op);
    }
    *ops = out;
}

/// Fault reasons meaning the lock system holds no live booking for the `ReservationID`:
/// removed by hand at the front desk (`ReservationNotFound`) or checked out
/// (`ReservationCheckedOut`).
pub const GONE_FAULTS: &[&str] = &["ReservationNotFound", "ReservationCheckedOut"];

/// Whether `e` says the booking is gone at the lock system (see [`GONE_FAULTS`]).
pub fn is_gone(e: &crate::client::SoapError) -> bool {
    e.fault_code()
        .is_some_and(|c| GONE_FAULTS.iter().any(|g| g.eq_ignore_ascii_case(c.trim())))
}

/// What a refused create-in-doubt probe (`ExtendCheckOut` to the desired check-out) says
/// about the booking: `Some(false)` none was made (`ReservationNotFound`); `Some(true)` it
/// exists but the new check-out is not after its check-in (`InvalidWSParameter`: the stay
/// moved earlier since the booking was made, and the `ChangeKeyAccess` that follows sets both
/// dates); `None` anything else — the probe failed, or `ReservationCheckedOut`, which is no
/// licence to create: the id is spent ([`record_checked_out`]).
pub fn probe_refusal(e: &crate::client::SoapError) -> Option<bool> {
    if is_not_found(e) {
        Some(false)
    } else if e
        .fault_code()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("InvalidWSParameter"))
    {
        Some(true)
    } else {
        None
    }
}

/// Whether the reservation should have access at the lock system at `now`: its status wants
/// access and its check-out has not passed (departed stays are no longer desired).
pub fn access_wanted(d: &Desired, now: DateTime<Utc>) -> bool {
    d.wants_access && d.check_out > now
}

/// Re-creating a booking the lock system lost: `CreateNewBooking` on encoder 0 (key data
/// returned, no card encoded, no guest or encoder needed) with the desired access, then the
/// mobile key again if the stay has one.
pub fn plan_recreate(d: &Desired) -> Result<Vec<Op>, PlanError> {
    if d.main_room.is_none() {
        return Err(PlanError::NoRoom);
    }
    let mut ops = vec![Op::CreateBooking {
        encoder: NO_CARD_ENCODER.into(),
        key_count: 0,
    }];
    if let Some(m) = &d.mobile {
        ops.push(Op::IssueMobileKey(m.clone()));
    }
    Ok(ops)
}

/// What a sync (the reconciler's re-assertion probe) does for one reservation. Messenger and
/// Ambiance cannot list or read bookings, so the desired state (the reservation) and our
/// record of what we set (the binding) are all there is to compare; the lock system's answer
/// to an idempotent re-assertion tells whether our booking still exists there.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncCheck {
    /// Nothing to do: no access wanted and none live, or access wanted but nothing is
    /// registered at the lock system yet and nothing needs to be (no key cut, no mobile key).
    InSync,
    /// Our record matches the desired state: send `ExtendCheckOut` with this (desired)
    /// check-out. Success: in sync. A [`GONE_FAULTS`] answer: the access was removed at the
    /// lock system and must be re-created.
    Reassert(DateTime<chrono_tz::Tz>),
    /// Our record differs from the desired state (a missed event): the worker must apply
    /// it. `create`: nothing is registered at the lock system yet.
    Apply {
        /// Nothing registered yet (counted as created, else updated).
        create: bool,
    },
    /// We created access that is no longer wanted (cancelled, checked out, no-show,
    /// departed): check the guest out. `probe`: the check-out to re-assert first, to tell a
    /// live booking (removed) from one already gone (in sync); `None` when it has passed (the
    /// lock system refuses past dates), then the check-out itself decides.
    Remove {
        /// `ExtendCheckOut` probe value, if still in the future.
        probe: Option<DateTime<chrono_tz::Tz>>,
    },
    /// Cannot be repaired automatically; the reason.
    Unrepairable(String),
}

/// Desired state vs our record → what a sync does (pure; the reconciler and this worker's
/// `apply` share [`desired`], [`LockRecord`] and these rules).
pub fn sync_check(d: &Desired, rec: &LockRecord, now: DateTime<Utc>) -> SyncCheck {
    if !access_wanted(d, now) {
        if !rec.maybe_live() {
            return SyncCheck::InSync;
        }
        // A booking in doubt was created (if at all) with the check-out desired then; the
        // current desired one is as good a probe: any live booking accepts it.
        let tz = d.check_out.timezone();
        let probe = rec
            .check_out
            .or_else(|| {
                (rec.booking_in_doubt && !rec.booked).then(|| d.check_out.with_timezone(&Utc))
            })
            .filter(|c| *c > now)
            .map(|c| c.with_timezone(&tz));
        return SyncCheck::Remove { probe };
    }
    if rec.booked && rec.checked_out {
        return SyncCheck::Unrepairable(format!(
            "reservation {} was checked out at the lock system; its ReservationID cannot be reused: cut a new key at the front desk",
            d.reservation_id
        ));
    }
    if !rec.booked {
        return if d.mobile.is_some() || rec.booking_in_doubt {
            SyncCheck::Apply { create: true }
        } else {
            SyncCheck::InSync
        };
    }
    if rec.matches(d) {
        SyncCheck::Reassert(d.check_out)
    } else {
        SyncCheck::Apply { create: false }
    }
}

/// Looks an encoder up in the connection: by lock-system id or by display name. Unknown and
/// USB encoders are clear permanent errors (the web service cannot reach USB encoders).
pub fn resolve_encoder(
    s: &DormakabaSettings,
    requested: Option<&str>,
) -> Result<String, PlanError> {
    let want = requested
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or(PlanError::EncoderRequired)?;
    let enc = s
        .encoders
        .iter()
        .find(|e| e.id == want)
        .or_else(|| s.encoders.iter().find(|e| e.name == want))
        .ok_or_else(|| PlanError::UnknownEncoder(want.to_owned()))?;
    if enc.kind == EncoderKind::Usb {
        return Err(PlanError::UsbEncoder(want.to_owned()));
    }
    Ok(enc.id.clone())
}

/// The desired state as the reservation's own events see it, keeping a mobile key the desk
/// sent: a reservation that does not ask for a mobile key itself (no flag, no phone, the desk
/// entered the number at issuance) would otherwise cancel it at its next update. Kept while
/// access is wanted, and it follows the booking's main room: after a room move the same
/// phone gets the new room's key (the guest keeps a working key), the old room's is
/// cancelled. The lock system only takes a mobile key for a room on the reservation and
/// only cancels one at a room still on it, so [`mobile_key_ops`] cancels before the
/// `ChangeKeyAccess` that moves the booking and sends the new key after it. An ending
/// lets it go as before.
pub fn keep_desk_mobile_key(mut d: Desired, rec: &LockRecord) -> Desired {
    let desk = rec
        .desk_mobile_key
        .as_ref()
        .or(rec.mobile_key.as_ref().filter(|_| rec.mobile_key_from_desk));
    if let Some(m) = desk
        && d.wants_access
        && let Some(room) = d.main_room.clone()
    {
        d.mobile = Some(MobileTarget { room, ..m.clone() });
        d.desk_mobile = true;
    }
    d
}

/// Marks the recorded mobile key as the desk's, sent for key request `request` (the
/// reservation's own events then keep it: [`keep_desk_mobile_key`]).
pub fn record_desk_key(rec: &mut LockRecord, request: uuid::Uuid) {
    rec.mobile_key_from_desk = rec.mobile_key.is_some();
    rec.desk_mobile_key = rec.mobile_key.clone();
    rec.desk_request = rec.mobile_key.as_ref().map(|_| request);
}

/// The desk's mobile key that `d` sends again at another room than the recorded one (a room
/// move), with the key request to report it to: `None` unless the desk's key moves.
pub fn moved_desk_key<'a>(
    before: &'a LockRecord,
    d: &'a Desired,
) -> Option<(&'a MobileTarget, Option<uuid::Uuid>)> {
    let sent = before.desk_mobile_key.as_ref().or(before
        .mobile_key
        .as_ref()
        .filter(|_| before.mobile_key_from_desk))?;
    let now = d.mobile.as_ref().filter(|_| d.desk_mobile)?;
    (now.room != sent.room).then_some((now, before.desk_request))
}

/// Key request → operations. New key: `CreateNewBooking` on the encoder when the lock system
/// has no booking yet, otherwise `ChangeKeyAccess` (new cards with the current access; older
/// cards stop working). Duplicate: `MakeDuplicateKey` (the lock system answers
/// `ReservationNotFound` when no key was ever made). Mobile: registers the booking without a
/// card if needed, then sends the key to surname + phone. A card request with the mobile-key
/// flag (a phone number entered while issuing the key) sends the mobile key after the cards.
pub fn plan_key_request(
    req: &KeyRequest,
    d: &Desired,
    rec: &LockRecord,
    s: &DormakabaSettings,
) -> Result<Vec<Op>, PlanError> {
    if !d.wants_access {
        return Err(PlanError::NoAccess(d.status));
    }
    if rec.booked && rec.checked_out {
        return Err(PlanError::Reopen(d.reservation_id.clone()));
    }
    if d.main_room.is_none() {
        return Err(PlanError::NoRoom);
    }
    // Checked before any card is cut: a card without the mobile key the desk asked for is
    // half an answer.
    let mobile = if req.wants_mobile_key() {
        if !s.mobile_keys {
            return Err(PlanError::MobileKeysDisabled);
        }
        Some(d.mobile.clone().ok_or(PlanError::NoPhone)?)
    } else {
        None
    };
    let count = req.key_count.clamp(1, 10);
    let mut ops = match req.action {
        KeyAction::NewKey => {
            let encoder = resolve_encoder(s, req.encoder_id.as_deref())?;
            if rec.booked {
                // The new cards carry the reservation's current rooms: a mobile key at a room
                // the booking leaves is cancelled while the lock system still accepts it.
                let mut ops: Vec<Op> = rec
                    .mobile_key
                    .iter()
                    .chain(&rec.mobile_keys_in_doubt)
                    .filter(|m| {
                        d.main_room.as_deref() != Some(m.room.as_str())
                            && !d.extra_rooms.contains(&m.room)
                    })
                    .map(|m| Op::CancelMobileKey(m.clone()))
                    .collect();
                ops.dedup();
                ops.push(Op::ChangeAccess {
                    encoder,
                    key_count: count,
                });
                ops
            } else {
                vec![create_op(rec, encoder, count)]
            }
        }
        KeyAction::DuplicateKey => {
            let encoder = resolve_encoder(s, req.encoder_id.as_deref())?;
            vec![Op::Duplicate {
                encoder,
                key_count: count,
            }]
        }
        KeyAction::MobileKey if rec.booked => Vec::new(),
        KeyAction::MobileKey => vec![create_op(rec, NO_CARD_ENCODER.into(), 0)],
    };
    if let Some(target) = mobile {
        // One mobile key per reservation: a key sent to another number (or room) before is
        // cancelled first, so it does not outlive our record of it.
        if let Some(old) = rec.mobile_key.as_ref().filter(|m| **m != target) {
            let cancel = Op::CancelMobileKey(old.clone());
            if !ops.contains(&cancel) {
                ops.push(cancel);
            }
        }
        ops.push(Op::IssueMobileKey(target));
    }
    Ok(ops)
}

/// A key request's [`Desired`]: like a reservation's, but the mobile target only needs a
/// phone (the guest asked at the desk, whatever the reservation's `mobile_key` flag says),
/// and a number the desk entered at issuance wins over the reservation's.
pub fn desired_for_key_request(
    tenant: &str,
    req: &KeyRequest,
    r: &Reservation,
    s: &DormakabaSettings,
) -> Result<Desired, PlanError> {
    let mut d = desired(tenant, &req.reservation_key, r, s)?;
    let entered = req
        .mobile_phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let phone = entered.or(r.guest.mobile_phone.as_deref());
    if let (Some(room), Some(phone)) = (&d.main_room, phone)
        && (d.mobile.is_none() || entered.is_some())
    {
        d.mobile = Some(MobileTarget {
            room: room.clone(),
            surname: r.guest.surname().to_owned(),
            phone: phone.to_owned(),
        });
    }
    Ok(d)
}

/// The `CreateNewBooking` / `ChangeKeyAccess` fields for the desired access.
pub fn booking_request(
    d: &Desired,
    encoder: &str,
    key_count: u32,
    key_size: u32,
) -> Result<BookingRequest, PlanError> {
    Ok(BookingRequest {
        reservation_id: d.reservation_id.clone(),
        guest_name: d.guest_name.clone(),
        main_room: d.main_room.clone().ok_or(PlanError::NoRoom)?,
        extra_rooms: d.extra_rooms.clone(),
        common_areas: d
            .pass_levels
            .iter()
            .map(|p| CommonArea {
                pass_level: *p,
                mode: AreaMode::GrantAccess,
            })
            .collect(),
        check_in: d.check_in,
        check_out: d.check_out,
        encoder_id: encoder.to_owned(),
        key_count,
        key_size,
        mobile_number: None,
    })
}

/// Records a successful cancellation or check-out (an ending needs no desired state). A
/// check-out the lock system accepted, or answered `ReservationCheckedOut`, proves a booking
/// was made under our `ReservationID` — also when the record only had it in doubt — and that
/// the id is spent ([`record_checked_out`]); a `ReservationNotFound` answer is
/// [`record_not_found`]'s.
pub fn record_ending(rec: &mut LockRecord, op: &Op) {
    match op {
        Op::CancelMobileKey(m) => {
            rec.mobile_keys_in_doubt.retain(|x| x != m);
            if rec.mobile_key.as_ref() == Some(m) {
                rec.mobile_key = None;
                rec.mobile_key_from_desk = false;
            }
            if rec.desk_mobile_key.as_ref() == Some(m) {
                rec.desk_mobile_key = None;
                rec.desk_request = None;
            }
        }
        Op::CheckOut => record_checked_out(rec),
        _ => {}
    }
}

/// The lock system holds our `ReservationID` checked out: a booking was made under it (even
/// if the record only had it in doubt: a create whose answer was lost) and Messenger refuses
/// the id from now on. Recorded as booked and checked out, so a stay that wants access again
/// is refused as documented ([`PlanError::Reopen`]) instead of planning a `CreateNewBooking`
/// the lock system refuses with `ReservationCheckedOut` (convergence seed 1039).
pub fn record_checked_out(rec: &mut LockRecord) {
    rec.booked = true;
    rec.checked_out = true;
    rec.booking_in_doubt = false;
    rec.mobile_keys_in_doubt.clear();
    rec.mobile_key = None;
    rec.mobile_key_from_desk = false;
    rec.desk_mobile_key = None;
    rec.desk_request = None;
}

/// The lock system has no booking under our `ReservationID` (`ReservationNotFound` to a
/// check-out): nothing is live and nothing spent the id, so a stay that wants access again
/// registers afresh.
pub fn record_not_found(rec: &mut LockRecord) {
    rec.booked = false;
    rec.checked_out = false;
    rec.booking_in_doubt = false;
    rec.mobile_keys_in_doubt.clear();
    rec.mobile_key = None;
    rec.mobile_key_from_desk = false;
    rec.desk_mobile_key = None;
    rec.desk_request = None;
}

/// Whether `e` is the lock system's `ReservationCheckedOut`: our `ReservationID` is spent.
pub fn is_checked_out(e: &SoapError) -> bool {
    e.fault_code()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("ReservationCheckedOut"))
}

/// Whether `e` is the lock system's `ReservationNotFound`: nothing under our `ReservationID`.
pub fn is_not_found(e: &SoapError) -> bool {
    e.fault_code()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("ReservationNotFound"))
}

/// Records a successful operation in the record, so a retry after a later failure does not
/// repeat it.
pub fn record_done(rec: &mut LockRecord, d: &Desired, op: &Op, transaction_no: Option<String>) {
    let set_access = |rec: &mut LockRecord| {
        rec.reservation_id = Some(d.reservation_id.clone());
        rec.main_room = d.main_room.clone();
        rec.extra_rooms = d.extra_rooms.clone();
        rec.pass_levels = d.pass_levels.clone();
        rec.guest_name = Some(d.guest_name.clone());
        rec.check_in = Some(d.check_in.with_timezone(&Utc));
        rec.check_out = Some(d.check_out.with_timezone(&Utc));
    };
    match op {
        Op::CreateBooking { key_count, .. } | Op::CreateUnlessExists { key_count, .. } => {
            set_access(rec);
            rec.booked = true;
            rec.booking_in_doubt = false;
            rec.checked_out = false;
            if transaction_no.is_some() {
                rec.transaction_no = transaction_no;
            }
            rec.keys_encoded += key_count;
        }
        Op::ChangeAccess { key_count, .. } => {
            set_access(rec);
            rec.keys_encoded += key_count;
        }
        Op::Duplicate { key_count, .. } => rec.keys_encoded += key_count,
        Op::ExtendCheckOut => rec.check_out = Some(d.check_out.with_timezone(&Utc)),
        Op::IssueMobileKey(m) => {
            rec.mobile_keys_in_doubt.retain(|x| x != m);
            rec.mobile_key = Some(m.clone());
            // The reservation's key, unless it is the desk's sent again (a room move) or the
            // key request marks it as the desk's ([`record_desk_key`]).
            rec.mobile_key_from_desk = d.desk_mobile;
            if d.desk_mobile {
                rec.desk_mobile_key = Some(m.clone());
            } else {
                rec.desk_mobile_key = None;
                rec.desk_request = None;
            }
        }
        Op::CancelMobileKey(_) | Op::CheckOut => {
            // The desk's key being moved survives the cancel at its old room.
            let desk = (rec.desk_mobile_key.clone(), rec.desk_request);
            record_ending(rec, op);
            if d.desk_mobile && d.wants_access && matches!(op, Op::CancelMobileKey(_)) {
                (rec.desk_mobile_key, rec.desk_request) = desk;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(code: &str) -> crate::client::SoapError {
        crate::client::SoapError::Fault {
            operation: "ExtendCheckOut",
            code: code.into(),
            string: String::new(),
            detail: String::new(),
        }
    }

    /// Issue 20 (convergence seed 5): a probe refused because the stay moved earlier proves
    /// the booking exists; gone faults prove it does not; anything else is a failed probe.
    #[test]
    fn a_probe_refused_for_its_dates_finds_the_booking() {
        assert_eq!(probe_refusal(&fault("InvalidWSParameter")), Some(true));
        assert_eq!(probe_refusal(&fault("ReservationNotFound")), Some(false));
        assert_eq!(probe_refusal(&fault("ReservationCheckedOut")), None);
        assert_eq!(probe_refusal(&fault("EncoderBusy")), None);
    }
    use accesshub_connections::{DormakabaProduct, Encoder, Secret};
    use accesshub_domain::{Guest, ReservationStatus};
    use chrono::{NaiveDate, NaiveTime};
    use uuid::Uuid;

    fn settings() -> DormakabaSettings {
        DormakabaSettings {
            product: DormakabaProduct::Saflok,
            host: "h".into(),
            port: 1,
            scheme: "http".into(),
            path: None,
            namespace: None,
            username: "u".into(),
            password: Secret::new("p"),
            site_name: "S".into(),
            pms_terminal_id: "T".into(),
            encoders: vec![
                Encoder {
                    name: "Front desk 1".into(),
                    id: "1".into(),
                    kind: EncoderKind::Network,
                },
                Encoder {
                    name: "Back office USB".into(),
                    id: "9".into(),
                    kind: EncoderKind::Usb,
                },
            ],
            rooms: [("R-101".to_owned(), "101".to_owned())].into(),
            common_areas: [("gym".to_owned(), 2)].into(),
            mobile_keys: true,
            key_size: 0,
            edge_site: None,
        }
    }

    fn reservation(status: ReservationStatus) -> Reservation {
        Reservation {
            status,
            guest: Guest {
                name: "Doe, John, Paul".into(),
                email: None,
                mobile_phone: Some("+31612345678".into()),
            },
            arrival: NaiveDate::from_ymd_opt(2030, 5, 1).unwrap(),
            departure: NaiveDate::from_ymd_opt(2030, 5, 3).unwrap(),
            check_in_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
            check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            timezone: "Europe/Amsterdam".into(),
            rooms: vec!["R-101".into(), "102".into()],
            common_areas: vec!["gym".into()],
            license_plates: vec![],
            mobile_key: false,
        }
    }

    #[test]
    fn desired_maps_rooms_areas_times_and_surname() {
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let d = desired("acme", "R1", &r, &settings()).unwrap();
        assert_eq!(d.reservation_id, "acme-R1");
        assert_eq!(d.main_room.as_deref(), Some("101"));
        assert_eq!(d.extra_rooms, vec!["102".to_owned()]);
        assert_eq!(d.pass_levels, vec![2]);
        assert_eq!(d.check_in.to_rfc3339(), "2030-05-01T15:00:00+02:00");
        assert_eq!(d.mobile.as_ref().unwrap().surname, "Doe");
        r.common_areas.push("spa".into());
        assert_eq!(
            desired("acme", "R1", &r, &settings()),
            Err(PlanError::UnmappedCommonArea("spa".into()))
        );
    }

    #[test]
    fn reservation_ids_are_stable_and_bounded() {
        let long = "x".repeat(100);
        let a = reservation_id("tenant", &long);
        assert_eq!(a.chars().count(), RESERVATION_ID_MAX);
        assert_eq!(a, reservation_id("tenant", &long));
        assert_ne!(a, reservation_id("tenant", &format!("{long}y")));
    }

    /// Security review L9: `<tenant>-<key>` was ambiguous when either held a `-`, and long
    /// ids kept a 32-bit FNV, which a birthday search over plain booking numbers breaks (this
    /// pair collided). A collision checks out or changes another guest's stay.
    #[test]
    fn reservation_ids_never_collide() {
        assert_ne!(reservation_id("a-b", "c"), reservation_id("a", "b-c"));
        assert_ne!(reservation_id("a", "b~c"), reservation_id("a~b", "c"));
        let k1 = "booking-with-a-long-shared-prefix-112789";
        let k2 = "booking-with-a-long-shared-prefix-349192";
        assert_ne!(reservation_id("acme", k1), reservation_id("acme", k2));
        // A plain id holds no `~`, a hashed one always does: the two forms never meet.
        assert_eq!(reservation_id("acme", "R1"), "acme-R1");
        assert!(reservation_id("a-b", "c").contains('~'));
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let id = reservation_id("acme", &format!("booking-with-a-long-shared-prefix-{i}"));
            assert!(id.chars().count() <= RESERVATION_ID_MAX, "{id}");
            assert!(seen.insert(id), "collision at {i}");
        }
    }

    /// A booking made under an id (an older scheme's, say) is addressed by it from then on:
    /// a new scheme must not strand it at the lock system.
    #[test]
    fn a_booking_keeps_the_reservation_id_it_was_made_with() {
        let s = settings();
        let r = reservation(ReservationStatus::Confirmed);
        let mut d = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        keep_recorded_id(&mut d, &rec);
        assert_eq!(d.reservation_id, "t-k");
        rec.reservation_id = Some("t-k~0badc0de".into());
        keep_recorded_id(&mut d, &rec);
        assert_eq!(d.reservation_id, "t-k~0badc0de");
        let req = booking_request(&d, "0", 0, 0).unwrap();
        assert_eq!(req.reservation_id, "t-k~0badc0de");
    }

    #[test]
    fn reservation_changes() {
        let s = settings();
        let r = reservation(ReservationStatus::Confirmed);
        let d = desired("t", "k", &r, &s).unwrap();
        // Nothing at the lock system until a key is made.
        assert_eq!(
            plan_reservation(&d, &LockRecord::default()).unwrap(),
            vec![]
        );
        let mut rec = LockRecord::default();
        record_done(
            &mut rec,
            &d,
            &Op::CreateBooking {
                encoder: "1".into(),
                key_count: 1,
            },
            Some("100001".into()),
        );
        assert_eq!(plan_reservation(&d, &rec).unwrap(), vec![]);
        // Departure moved → ExtendCheckOut.
        let mut later = r.clone();
        later.departure = NaiveDate::from_ymd_opt(2030, 5, 5).unwrap();
        let d2 = desired("t", "k", &later, &s).unwrap();
        assert_eq!(
            plan_reservation(&d2, &rec).unwrap(),
            vec![Op::ExtendCheckOut]
        );
        // Room change → ChangeKeyAccess without cards.
        let mut moved = r.clone();
        moved.rooms = vec!["201".into()];
        let d3 = desired("t", "k", &moved, &s).unwrap();
        assert_eq!(
            plan_reservation(&d3, &rec).unwrap(),
            vec![Op::ChangeAccess {
                encoder: "0".into(),
                key_count: 0
            }]
        );
        // Mobile key sent, then cancelled → cancel mobile + checkout.
        rec.mobile_key = d3.mobile.clone().or(Some(MobileTarget {
            room: "101".into(),
            surname: "Doe".into(),
            phone: "+31612345678".into(),
        }));
        for st in [
            ReservationStatus::Cancelled,
            ReservationStatus::NoShow,
            ReservationStatus::CheckedOut,
        ] {
            let dc = desired("t", "k", &reservation(st), &s).unwrap();
            let ops = plan_reservation(&dc, &rec).unwrap();
            assert!(matches!(ops[0], Op::CancelMobileKey(_)));
            assert_eq!(ops[1], Op::CheckOut);
        }
        // Once checked out: nothing more; reopening is refused.
        record_done(&mut rec, &d, &Op::CheckOut, None);
        let dc = desired("t", "k", &reservation(ReservationStatus::Cancelled), &s).unwrap();
        assert_eq!(plan_reservation(&dc, &rec).unwrap(), vec![]);
        assert!(matches!(
            plan_reservation(&d, &rec),
            Err(PlanError::Reopen(_))
        ));
    }

    #[test]
    fn mobile_key_on_reservation() {
        let s = settings();
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let d = desired("t", "k", &r, &s).unwrap();
        let ops = plan_reservation(&d, &LockRecord::default()).unwrap();
        assert_eq!(
            ops,
            vec![
                Op::CreateBooking {
                    encoder: "0".into(),
                    key_count: 0
                },
                Op::IssueMobileKey(d.mobile.clone().unwrap())
            ]
        );
        assert!(!ops[0].encodes_cards());
        let mut off = s.clone();
        off.mobile_keys = false;
        let d = desired("t", "k", &r, &off).unwrap();
        assert!(
            plan_reservation(&d, &LockRecord::default())
                .unwrap()
                .is_empty()
        );
    }

    /// Issue 26: after a room move the desk's mobile key is not lost: the same phone gets the
    /// new room's key. The old room's key is cancelled before `ChangeKeyAccess` (the lock
    /// system refuses a cancel at a room no longer on the reservation), the new one sent
    /// after it (nor does it take a key for a room not on the reservation yet), in two
    /// recorded steps; a failure between them still re-sends it on the retry; an ending
    /// lets it go.
    #[test]
    fn desk_mobile_key_follows_a_room_move() {
        let s = settings();
        let r = reservation(ReservationStatus::CheckedIn);
        let request = Uuid::now_v7();
        let entered = MobileTarget {
            room: "101".into(),
            surname: "Doe".into(),
            phone: "+44 7700 900123".into(),
        };
        let own = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        let create = create_op(&rec, "1".into(), 1);
        record_done(&mut rec, &own, &create, None);
        record_done(&mut rec, &own, &Op::IssueMobileKey(entered.clone()), None);
        record_desk_key(&mut rec, request);
        let mut moved = r.clone();
        moved.rooms = vec!["103".into()];
        let d = keep_desk_mobile_key(desired("t", "k", &moved, &s).unwrap(), &rec);
        let again = MobileTarget {
            room: "103".into(),
            ..entered.clone()
        };
        assert_eq!(d.mobile.as_ref(), Some(&again), "same phone, new room");
        assert!(d.desk_mobile);
        assert_eq!(moved_desk_key(&rec, &d), Some((&again, Some(request))));
        let ops = plan_reservation(&d, &rec).unwrap();
        let change = Op::ChangeAccess {
            encoder: NO_CARD_ENCODER.into(),
            key_count: 0,
        };
        assert_eq!(
            ops,
            vec![
                Op::CancelMobileKey(entered.clone()),
                change.clone(),
                Op::IssueMobileKey(again.clone())
            ]
        );
        assert_eq!(
            steps(&ops),
            vec![&ops[..2], &ops[2..]],
            "the move is recorded before the new key"
        );
        // The first step is recorded; the new key's call fails. The retry (planned from the
        // record, as every retry is) still sends the desk's key, and only that.
        let mut mid = rec.clone();
        for op in &ops[..2] {
            record_done(&mut mid, &d, op, None);
        }
        assert_eq!(mid.mobile_key, None);
        let retry = keep_desk_mobile_key(desired("t", "k", &moved, &s).unwrap(), &mid);
        assert_eq!(
            plan_reservation(&retry, &mid).unwrap(),
            vec![Op::IssueMobileKey(again.clone())]
        );
        record_done(&mut mid, &retry, &Op::IssueMobileKey(again.clone()), None);
        assert_eq!(mid.mobile_key.as_ref(), Some(&again));
        assert!(mid.mobile_key_from_desk, "still the desk's key");
        assert_eq!(mid.desk_request, Some(request));
        // The stay's next update keeps it at the new room, and reports nothing again.
        let next = keep_desk_mobile_key(desired("t", "k", &moved, &s).unwrap(), &mid);
        assert!(plan_reservation(&next, &mid).unwrap().is_empty());
        assert_eq!(moved_desk_key(&mid, &next), None);
        // Check-out: cancelled with the booking, and gone from the record.
        let mut out = moved.clone();
        out.status = ReservationStatus::CheckedOut;
        let end = keep_desk_mobile_key(desired("t", "k", &out, &s).unwrap(), &mid);
        let ops = plan_reservation(&end, &mid).unwrap();
        assert_eq!(ops, vec![Op::CancelMobileKey(again.clone()), Op::CheckOut]);
        for op in &ops {
            record_done(&mut mid, &end, op, None);
        }
        assert_eq!(
            (mid.mobile_key, mid.desk_mobile_key, mid.desk_request),
            (None, None, None)
        );
    }

    /// Issue 26: the number the desk enters while issuing the key is where the mobile key
    /// goes (not the reservation's), a card request with the mobile-key flag sends it after
    /// the cards, a key sent to another number before is cancelled first, and a mobile key
    /// the connection cannot send fails before any card is cut.
    #[test]
    fn mobile_key_to_the_number_entered_at_issuance() {
        let s = settings();
        let r = reservation(ReservationStatus::CheckedIn);
        let mut req = KeyRequest {
            request_id: Uuid::nil(),
            reservation_key: "k".into(),
            action: KeyAction::NewKey,
            encoder_id: Some("1".into()),
            key_count: 1,
            requested_by: None,
            mobile_phone: Some(" +44 7700 900123 ".into()),
            mobile_key: true,
        };
        let d = desired_for_key_request("t", &req, &r, &s).unwrap();
        let entered = MobileTarget {
            room: "101".into(),
            surname: "Doe".into(),
            phone: "+44 7700 900123".into(),
        };
        assert_eq!(d.mobile.as_ref(), Some(&entered));
        let rec = LockRecord::default();
        assert_eq!(
            plan_key_request(&req, &d, &rec, &s).unwrap(),
            vec![
                Op::CreateBooking {
                    encoder: "1".into(),
                    key_count: 1
                },
                Op::IssueMobileKey(entered.clone())
            ]
        );
        // Without the flag a phone alone changes nothing for a card.
        req.mobile_key = false;
        assert_eq!(plan_key_request(&req, &d, &rec, &s).unwrap().len(), 1);
        // A key sent to the reservation's number before: cancelled, then the new one.
        req.action = KeyAction::MobileKey;
        let old = MobileTarget {
            phone: "+31612345678".into(),
            ..entered.clone()
        };
        let booked = LockRecord {
            booked: true,
            mobile_key: Some(old.clone()),
            ..LockRecord::default()
        };
        assert_eq!(
            plan_key_request(&req, &d, &booked, &s).unwrap(),
            vec![
                Op::CancelMobileKey(old),
                Op::IssueMobileKey(entered.clone())
            ]
        );
        // Mobile keys off: refused before any card.
        let mut off = s.clone();
        off.mobile_keys = false;
        req.action = KeyAction::DuplicateKey;
        req.mobile_key = true;
        assert_eq!(
            plan_key_request(&req, &d, &booked, &off),
            Err(PlanError::MobileKeysDisabled)
        );
        // The reservation's own events keep the desk's key while the stay wants access (a
        // room move: see desk_mobile_key_follows_a_room_move).
        let desk = LockRecord {
            booked: true,
            mobile_key: Some(entered.clone()),
            mobile_key_from_desk: true,
            ..LockRecord::default()
        };
        let own = desired("t", "k", &r, &s).unwrap();
        assert_eq!(
            own.mobile, None,
            "the reservation asks for no mobile key itself"
        );
        let kept = keep_desk_mobile_key(own.clone(), &desk);
        assert_eq!(kept.mobile.as_ref(), Some(&entered));
        let not_desk = LockRecord {
            mobile_key_from_desk: false,
            ..desk.clone()
        };
        assert_eq!(keep_desk_mobile_key(own.clone(), &not_desk), own);
        // Debug never shows the number or the surname whole.
        let shown = format!("{entered:?} {req:?}");
        assert!(
            !shown.contains("900123") && !shown.contains("Doe"),
            "{shown}"
        );
    }

    #[test]
    fn key_requests() {
        let s = settings();
        let r = reservation(ReservationStatus::CheckedIn);
        let mut req = KeyRequest {
            request_id: Uuid::nil(),
            reservation_key: "k".into(),
            action: KeyAction::NewKey,
            encoder_id: Some("Front desk 1".into()),
            key_count: 2,
            requested_by: None,
            mobile_phone: None,
            mobile_key: false,
        };
        let d = desired_for_key_request("t", &req, &r, &s).unwrap();
        let rec = LockRecord::default();
        assert_eq!(
            plan_key_request(&req, &d, &rec, &s).unwrap(),
            vec![Op::CreateBooking {
                encoder: "1".into(),
                key_count: 2
            }]
        );
        let booked = LockRecord {
            booked: true,
            ..LockRecord::default()
        };
        assert!(matches!(
            plan_key_request(&req, &d, &booked, &s).unwrap()[0],
            Op::ChangeAccess { .. }
        ));
        req.encoder_id = Some("9".into());
        assert!(matches!(
            plan_key_request(&req, &d, &rec, &s),
            Err(PlanError::UsbEncoder(_))
        ));
        req.encoder_id = Some("7".into());
        assert!(matches!(
            plan_key_request(&req, &d, &rec, &s),
            Err(PlanError::UnknownEncoder(_))
        ));
        req.encoder_id = None;
        assert_eq!(
            plan_key_request(&req, &d, &rec, &s),
            Err(PlanError::EncoderRequired)
        );
        req.action = KeyAction::MobileKey;
        let ops = plan_key_request(&req, &d, &rec, &s).unwrap();
        assert_eq!(
            ops.last(),
            Some(&Op::IssueMobileKey(MobileTarget {
                room: "101".into(),
                surname: "Doe".into(),
                phone: "+31612345678".into()
            }))
        );
        let cancelled = desired("t", "k", &reservation(ReservationStatus::Cancelled), &s).unwrap();
        assert!(matches!(
            plan_key_request(&req, &cancelled, &rec, &s),
            Err(PlanError::NoAccess(_))
        ));
    }

    #[test]
    fn sync_check_covers_every_case() {
        let s = settings();
        let now = "2030-04-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let d = desired("t", "K", &reservation(ReservationStatus::Confirmed), &s).unwrap();
        let none = LockRecord::default();
        assert_eq!(
            sync_check(&d, &none, now),
            SyncCheck::InSync,
            "no key cut yet"
        );
        let mut mobile = d.clone();
        mobile.mobile = Some(MobileTarget {
            room: "101".into(),
            surname: "Doe".into(),
            phone: "+31612345678".into(),
        });
        assert_eq!(
            sync_check(&mobile, &none, now),
            SyncCheck::Apply { create: true }
        );
        let mut rec = LockRecord::default();
        record_done(
            &mut rec,
            &d,
            &Op::CreateBooking {
                encoder: NO_CARD_ENCODER.into(),
                key_count: 0,
            },
            None,
        );
        assert_eq!(sync_check(&d, &rec, now), SyncCheck::Reassert(d.check_out));
        assert_eq!(
            sync_check(&mobile, &rec, now),
            SyncCheck::Apply { create: false },
            "record differs: a missed event"
        );
        // Departed: no longer wanted, the recorded check-out has passed → remove, no probe.
        let later = d.check_out.with_timezone(&Utc) + chrono::Duration::hours(1);
        assert_eq!(
            sync_check(&d, &rec, later),
            SyncCheck::Remove { probe: None }
        );
        let cancelled = desired("t", "K", &reservation(ReservationStatus::Cancelled), &s).unwrap();
        assert_eq!(
            sync_check(&cancelled, &rec, now),
            SyncCheck::Remove {
                probe: Some(d.check_out)
            }
        );
        let mut out = rec.clone();
        record_done(&mut out, &d, &Op::CheckOut, None);
        assert_eq!(sync_check(&cancelled, &out, now), SyncCheck::InSync);
        assert!(matches!(
            sync_check(&d, &out, now),
            SyncCheck::Unrepairable(_)
        ));
        assert_eq!(
            plan_recreate(&mobile).unwrap(),
            vec![
                Op::CreateBooking {
                    encoder: "0".into(),
                    key_count: 0
                },
                Op::IssueMobileKey(mobile.mobile.clone().unwrap())
            ]
        );
    }

    #[test]
    fn a_resent_mobile_key_cancels_the_possibly_sent_one_first() {
        let m = MobileTarget {
            room: "101".into(),
            surname: "Doe".into(),
            phone: "+31612345678".into(),
        };
        let mut ops = vec![
            Op::CreateBooking {
                encoder: NO_CARD_ENCODER.into(),
                key_count: 0,
            },
            Op::IssueMobileKey(m.clone()),
        ];
        cancel_before_resend(&mut ops);
        assert_eq!(ops[1], Op::CancelMobileKey(m.clone()));
        assert_eq!(ops[2], Op::IssueMobileKey(m.clone()));
        assert_eq!(ops.len(), 3);
        // Already cancelling that target (a changed key): no second cancel.
        let mut ops = vec![
            Op::CancelMobileKey(m.clone()),
            Op::IssueMobileKey(m.clone()),
        ];
        cancel_before_resend(&mut ops);
        assert_eq!(ops.len(), 2);
        // Nothing to resend: unchanged.
        let mut ops = vec![Op::ExtendCheckOut];
        cancel_before_resend(&mut ops);
        assert_eq!(ops, vec![Op::ExtendCheckOut]);
    }

    /// H3: a create (or mobile key) sent by an attempt that never recorded its outcome still
    /// gets checked out (and the key cancelled) when the reservation ends, and the sync
    /// probes it; once the outcome is recorded, nothing stays in doubt.
    #[test]
    fn an_ending_checks_out_a_booking_a_crashed_attempt_may_have_made() {
        let s = settings();
        let r = reservation(ReservationStatus::Confirmed);
        let mut r_mobile = r.clone();
        r_mobile.mobile_key = true;
        let d = desired("t", "k", &r_mobile, &s).unwrap();
        let m = d.mobile.clone().unwrap();
        let ops = plan_reservation(&d, &LockRecord::default()).unwrap();
        let mut rec = LockRecord::default();
        assert!(note_in_doubt(&mut rec, &ops));
        assert!(!note_in_doubt(&mut rec, &ops), "noted once");
        assert!(rec.booking_in_doubt && rec.mobile_keys_in_doubt == vec![m.clone()]);
        assert!(!rec.live() && rec.maybe_live());

        // The attempt died: the cancellation sees only the note.
        let cancelled = desired("t", "k", &reservation(ReservationStatus::Cancelled), &s).unwrap();
        assert_eq!(
            plan_reservation(&cancelled, &rec).unwrap(),
            vec![Op::CancelMobileKey(m.clone()), Op::CheckOut]
        );
        let now = DateTime::parse_from_rfc3339("2030-04-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            sync_check(&cancelled, &rec, now),
            SyncCheck::Remove {
                probe: Some(cancelled.check_out)
            }
        );
        for op in plan_reservation(&cancelled, &rec).unwrap() {
            record_done(&mut rec, &cancelled, &op, None);
        }
        assert!(!rec.maybe_live() && rec.mobile_keys_in_doubt.is_empty());
        assert_eq!(sync_check(&cancelled, &rec, now), SyncCheck::InSync);

        // Recorded success clears the note: an ordinary live booking.
        let mut ok = LockRecord::default();
        note_in_doubt(&mut ok, &ops);
        for op in &ops {
            record_done(&mut ok, &d, op, None);
        }
        assert!(ok.live() && !ok.booking_in_doubt && ok.mobile_keys_in_doubt.is_empty());
        assert_eq!(ok.mobile_key, Some(m));
        // A plain stay never noted anything: its cancellation calls nothing.
        assert_eq!(
            plan_reservation(&cancelled, &LockRecord::default()).unwrap(),
            vec![]
        );
    }
    fn key(room: &str) -> MobileTarget {
        MobileTarget {
            room: room.into(),
            surname: "Doe".into(),
            phone: "+31612345678".into(),
        }
    }

    /// A confirmed stay in room 101 with a mobile key, created and recorded; the settings,
    /// the reservation and its record.
    fn booked_with_mobile_key() -> (DormakabaSettings, Reservation, LockRecord) {
        let s = settings();
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let d = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        for op in plan_reservation(&d, &rec).unwrap() {
            record_done(&mut rec, &d, &op, None);
        }
        (s, r, rec)
    }

    /// Issue 20, seed 7: a room change with a mobile key cancels the old room's key while
    /// the booking still holds that room, then moves the booking, then sends the new key.
    #[test]
    fn a_room_change_cancels_the_old_rooms_key_before_moving_the_booking() {
        let (s, r, rec) = booked_with_mobile_key();
        assert_eq!(rec.mobile_key, Some(key("101")));
        let mut moved = r.clone();
        moved.rooms = vec!["201".into()];
        let d2 = desired("t", "k", &moved, &s).unwrap();
        let ops = plan_reservation(&d2, &rec).unwrap();
        assert_eq!(
            ops,
            vec![
                Op::CancelMobileKey(key("101")),
                Op::ChangeAccess {
                    encoder: "0".into(),
                    key_count: 0
                },
                Op::IssueMobileKey(key("201")),
            ]
        );
        // Recorded after the move, before the key: a failure sending it repeats only that.
        let steps = steps(&ops);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].len(), 2);
        // A redelivery after a crash that recorded the move: the key in doubt is cancelled
        // at the new room right before it is sent again; nothing at the old room.
        let mut after_move = rec.clone();
        note_in_doubt(&mut after_move, &ops);
        for op in &ops[..2] {
            record_done(&mut after_move, &d2, op, None);
        }
        let mut again = plan_reservation(&d2, &after_move).unwrap();
        cancel_before_resend(&mut again);
        assert_eq!(
            again,
            vec![
                Op::CancelMobileKey(key("201")),
                Op::IssueMobileKey(key("201"))
            ]
        );
        // A key in doubt at a room the booking leaves is cancelled before the move too.
        let mut doubt = rec.clone();
        doubt.mobile_key = None;
        doubt.mobile_keys_in_doubt = vec![key("101")];
        assert_eq!(
            plan_reservation(&d2, &doubt).unwrap()[0],
            Op::CancelMobileKey(key("101"))
        );
    }

    /// Issue 20, convergence seed 622: a room move's cancel of the old room's key and the
    /// move itself land, the worker dies before recording them. The retry, and a
    /// cancellation's check-out, cancel that key again; the lock system refuses it
    /// (`InvalidWSParameter`: the room left the reservation). As a key in doubt (noted before
    /// the cancel was sent) the refusal means it is gone, so neither is dead-lettered and the
    /// booking is checked out.
    #[test]
    fn a_lost_room_move_does_not_strand_the_old_rooms_key() {
        let (s, r, mut rec) = booked_with_mobile_key();
        let mut moved = r.clone();
        moved.rooms = vec!["201".into()];
        let d2 = desired("t", "k", &moved, &s).unwrap();
        let ops = plan_reservation(&d2, &rec).unwrap();
        assert_eq!(ops[0], Op::CancelMobileKey(key("101")));
        note_in_doubt(&mut rec, &ops);
        assert!(
            note_changes_in_doubt(&mut rec, &ops),
            "stored before the calls"
        );
        assert_eq!(rec.mobile_key, None);
        assert!(rec.mobile_keys_in_doubt.contains(&key("101")));
        // The worker dies here; the cancel and the move reached the lock system.
        let refused = fault("InvalidWSParameter");
        let retry = plan_reservation(&d2, &rec).unwrap();
        assert_eq!(retry[0], Op::CancelMobileKey(key("101")));
        assert!(cancel_refused_is_done(&rec, &key("101"), &refused));
        let cancelled = desired("t", "k", &reservation(ReservationStatus::Cancelled), &s).unwrap();
        let ending = plan_reservation(&cancelled, &rec).unwrap();
        assert!(
            ending.contains(&Op::CancelMobileKey(key("101"))),
            "{ending:?}"
        );
        assert_eq!(ending.last(), Some(&Op::CheckOut));
        // A recorded key keeps no benefit of the doubt.
        let mut recorded = rec.clone();
        recorded.mobile_keys_in_doubt.clear();
        recorded.mobile_key = Some(key("101"));
        assert!(!cancel_refused_is_done(&recorded, &key("101"), &refused));
    }

    /// Issue 20: a create an earlier attempt may have made is probed, never simply repeated.
    /// Convergence seed 8: a create crashed during its call, then the stay changed rooms and
    /// dropped the mobile key. The booking the crashed attempt may have made is probed and
    /// brought to the desired rooms (or registered), never left with the old ones; the sync
    /// agrees.
    #[test]
    fn a_change_whose_answer_was_lost_is_asserted_again_by_a_revision_back_to_the_record() {
        let d1 = desired(
            "t",
            "k",
            &reservation(ReservationStatus::Confirmed),
            &settings(),
        )
        .unwrap();
        let mut rec = LockRecord::default();
        let create = Op::CreateBooking {
            encoder: "1".into(),
            key_count: 1,
        };
        record_done(&mut rec, &d1, &create, Some("100001".into()));
        assert_eq!(plan_reservation(&d1, &rec).unwrap(), vec![]);
        // Revision 2 moves the stay; its ChangeKeyAccess is sent, the answer lost.
        let mut d2 = d1.clone();
        d2.check_in += chrono::Duration::days(2);
        d2.check_out += chrono::Duration::days(4);
        let ops = plan_reservation(&d2, &rec).unwrap();
        assert!(
            ops.iter().any(|o| matches!(o, Op::ChangeAccess { .. })),
            "{ops:?}"
        );
        assert!(
            note_changes_in_doubt(&mut rec, &ops),
            "stored before the call"
        );
        // Revision 3 moves it back to what the record held before revision 2: the lock
        // system may hold revision 2's dates, so the access is asserted again.
        let ops = plan_reservation(&d1, &rec).unwrap();
        assert!(
            ops.iter().any(|o| matches!(o, Op::ChangeAccess { .. })),
            "{ops:?}"
        );
        // The same for a check-out extension.
        for op in &ops {
            record_done(&mut rec, &d1, op, None);
        }
        let mut d4 = d1.clone();
        d4.check_out += chrono::Duration::days(1);
        let ops = plan_reservation(&d4, &rec).unwrap();
        assert_eq!(ops, vec![Op::ExtendCheckOut]);
        assert!(note_changes_in_doubt(&mut rec, &ops));
        assert_eq!(
            plan_reservation(&d1, &rec).unwrap(),
            vec![Op::ExtendCheckOut]
        );
        assert!(!note_changes_in_doubt(&mut rec, &ops), "noted once");
    }

    #[test]
    fn a_booking_in_doubt_follows_the_stay_when_no_mobile_key_is_wanted_any_more() {
        let s = settings();
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let first = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        assert!(note_in_doubt(
            &mut rec,
            &plan_reservation(&first, &LockRecord::default()).unwrap()
        ));
        r.mobile_key = false;
        r.status = ReservationStatus::CheckedIn;
        let now_wanted = desired("t", "k", &r, &s).unwrap();
        let ops = plan_reservation(&now_wanted, &rec).unwrap();
        assert!(
            ops.iter()
                .any(|op| matches!(op, Op::CreateUnlessExists { key_count: 0, .. })),
            "{ops:?}"
        );
        assert!(ops.contains(&Op::CancelMobileKey(first.mobile.clone().unwrap())));
        let now = "2030-04-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            sync_check(&now_wanted, &rec, now),
            SyncCheck::Apply { create: true }
        );
        // Nothing in doubt and no key wanted: still nothing to register.
        assert!(
            plan_reservation(&now_wanted, &LockRecord::default())
                .unwrap()
                .is_empty()
        );
    }

    /// Convergence seed 1039: a create crashed unrecorded (in doubt), the stay ended and the
    /// check-out found the booking (so its id is spent), then the stay was reopened with a
    /// mobile key. The plan must refuse as documented (`Reopen`), not send a
    /// `CreateNewBooking` the lock system refuses with `ReservationCheckedOut`, which
    /// dead-lettered the event with an undocumented reason.
    #[test]
    fn a_stay_reopened_after_its_booking_in_doubt_was_checked_out_is_refused_as_documented() {
        let s = settings();
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let first = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        let plan = plan_reservation(&first, &rec).unwrap();
        note_in_doubt(&mut rec, &plan);
        r.status = ReservationStatus::CheckedOut;
        let ended = desired("t", "k", &r, &s).unwrap();
        let ops = plan_reservation(&ended, &rec).unwrap();
        assert_eq!(ops.last(), Some(&Op::CheckOut), "{ops:?}");
        for op in &ops {
            record_ending(&mut rec, op);
        }
        r.status = ReservationStatus::CheckedIn;
        let reopened = desired("t", "k", &r, &s).unwrap();
        assert_eq!(
            plan_reservation(&reopened, &rec),
            Err(PlanError::Reopen(reopened.reservation_id.clone()))
        );
        let now = "2030-04-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(matches!(
            sync_check(&reopened, &rec, now),
            SyncCheck::Unrepairable(_)
        ));
        // The check-out found nothing under the id: the reopened stay registers afresh.
        let mut nothing = LockRecord::default();
        let plan = plan_reservation(&first, &nothing).unwrap();
        note_in_doubt(&mut nothing, &plan);
        record_not_found(&mut nothing);
        let ops = plan_reservation(&reopened, &nothing).unwrap();
        assert!(matches!(ops[0], Op::CreateBooking { .. }), "{ops:?}");
    }

    #[test]
    fn a_booking_in_doubt_is_probed_before_it_is_created_again() {
        let s = settings();
        let mut r = reservation(ReservationStatus::Confirmed);
        r.mobile_key = true;
        let d = desired("t", "k", &r, &s).unwrap();
        let mut rec = LockRecord::default();
        let first = plan_reservation(&d, &rec).unwrap();
        assert!(matches!(first[0], Op::CreateBooking { .. }));
        note_in_doubt(&mut rec, &first);
        let ops = plan_reservation(&d, &rec).unwrap();
        let probe = Op::CreateUnlessExists {
            encoder: "0".into(),
            key_count: 0,
            earlier_attempt_encoded: false,
        };
        assert_eq!(
            ops,
            vec![
                probe.clone(),
                // The key in doubt is the wanted one: cancelled right before it is re-sent.
                Op::CancelMobileKey(key("101")),
                Op::IssueMobileKey(key("101")),
            ]
        );
        // Not found → created; found → changed to the desired access, no second booking.
        assert_eq!(
            create_after_probe(&probe, false),
            Some(Op::CreateBooking {
                encoder: "0".into(),
                key_count: 0
            })
        );
        assert_eq!(
            create_after_probe(&probe, true),
            Some(Op::ChangeAccess {
                encoder: "0".into(),
                key_count: 0
            })
        );
        // An interrupted key request's own create: found means its cards exist.
        let mut kr = vec![Op::CreateBooking {
            encoder: "1".into(),
            key_count: 2,
        }];
        probe_before_create(&mut kr, true);
        assert_eq!(create_after_probe(&kr[0], true), None);
        assert_eq!(
            create_after_probe(&kr[0], false),
            Some(Op::CreateBooking {
                encoder: "1".into(),
                key_count: 2
            })
        );
        // The probe found it: live, in doubt no more.
        record_found(&mut rec, &d);
        assert!(rec.live() && !rec.booking_in_doubt);
        assert!(!rec.access_matches(&d), "rooms unknown: changed next");
    }
}

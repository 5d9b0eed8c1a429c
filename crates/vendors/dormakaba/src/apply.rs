//! Runs planned operations against the lock system, recording each success in the
//! [`LockRecord`] as it goes so a failure part-way leaves an accurate record.

use crate::client::{SoapClient, SoapError};
use crate::desired::{Desired, LockRecord, Op, booking_request, record_done};

/// What a run of operations produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecReport {
    /// Cards encoded by these calls (0 when the lock system answered a repeated create, or a
    /// probe found the booking an earlier attempt of the same request made).
    pub cards: u32,
    /// Encoder used for cards.
    pub encoder: Option<String>,
    /// A mobile key was sent.
    pub mobile_sent: bool,
    /// The lock system said the app matched no guest: the key reached no phone.
    pub mobile_undelivered: bool,
    /// `CreateNewBooking` found the booking already there (a retry after a crash).
    pub already_booked: bool,
    /// Operation names, in order (for logs and tests).
    pub operations: Vec<&'static str>,
}

/// A failure part-way: the error plus what had already succeeded.
#[derive(Debug)]
pub struct ExecFailure {
    /// The failing call.
    pub error: SoapError,
    /// Calls done before it.
    pub done: ExecReport,
    /// The planned operation that failed.
    pub op: Op,
}

impl ExecReport {
    /// Adds what a later run of operations produced.
    pub fn absorb(&mut self, later: ExecReport) {
        self.cards += later.cards;
        self.encoder = later.encoder.or(self.encoder.take());
        self.mobile_sent |= later.mobile_sent;
        self.mobile_undelivered |= later.mobile_undelivered;
        self.already_booked |= later.already_booked;
        self.operations.extend(later.operations);
    }
}

pub async fn execute(
    client: &SoapClient,
    d: &Desired,
    rec: &mut LockRecord,
    ops: &[Op],
    key_size: u32,
) -> Result<ExecReport, ExecFailure> {
    let mut report = ExecReport::default();
    for planned in ops {
        // A create an earlier attempt may have made: probe, then create or change.
        let resolved;
        let op = if let Op::CreateUnlessExists { .. } = planned {
            let found = match probe(client, d).await {
                Ok(found) => found,
                Err(error) => {
                    return Err(ExecFailure {
                        error: spent_id(rec, d, error),
                        done: report,
                        op: planned.clone(),
                    });
                }
            };
            report.operations.push(if found {
                "ExtendCheckOut (probe: booking exists)"
            } else {
                "ExtendCheckOut (probe: no booking)"
            });
            if found {
                crate::desired::record_found(rec, d);
            }
            match crate::desired::create_after_probe(planned, found) {
                Some(op) => {
                    resolved = op;
                    &resolved
                }
                None => {
                    // This request's own earlier attempt created it, cards and all.
                    report.already_booked = true;
                    record_done(rec, d, planned, None);
                    continue;
                }
            }
        } else {
            planned
        };
        let answer = run_one(client, d, rec, op, key_size).await;
        // A check-out that finds nothing under our id leaves the id unspent.
        let nothing_there = matches!(op, Op::CheckOut)
            && matches!(&answer, Err(e) if crate::desired::is_not_found(e));
        let result = match answer {
            // Ending access the lock system no longer has (checked out or deleted by hand at
            // the front desk) is done already.
            Err(e) if crate::desired::is_gone(&e) => match op {
                Op::CheckOut => Ok(("CheckOutGuest (already gone)", None, String::new())),
                Op::CancelMobileKey(_) => Ok((
                    "CancelGuestsMobileAccessToRoom (already gone)",
                    None,
                    String::new(),
                )),
                _ => Err(e),
            },
            Err(e) if matches!(op, Op::CancelMobileKey(m) if crate::desired::cancel_refused_is_done(rec, m, &e)) =>
            {
                tracing::warn!(error = %e, reservation_id = %d.reservation_id,
                    "mobile key in doubt at a room not on the reservation: never sent");
                Ok((
                    "CancelGuestsMobileAccessToRoom (room not on the reservation)",
                    None,
                    String::new(),
                ))
            }
            other => other,
        };
        match result {
            Ok((name, tx, message)) => {
                report.operations.push(name);
                match op {
                    Op::CreateBooking { encoder, key_count }
                    | Op::CreateUnlessExists {
                        encoder, key_count, ..
                    } => {
                        // The lock system answers an existing ReservationID without encoding.
                        if message.eq_ignore_ascii_case("Booking already exists") {
                            report.already_booked = true;
                        } else if *key_count > 0 {
                            report.cards += key_count;
                            report.encoder = Some(encoder.clone());
                        }
                    }
                    Op::ChangeAccess { encoder, key_count }
                    | Op::Duplicate { encoder, key_count }
                        if *key_count > 0 =>
                    {
                        report.cards += key_count;
                        report.encoder = Some(encoder.clone());
                    }
                    Op::IssueMobileKey(_) => {
                        report.mobile_sent = true;
                        report.mobile_undelivered |= mobile_not_delivered(&message);
                    }
                    _ => {}
                }
                // After an interrupted first attempt the cards were encoded then and never
                // recorded: counting the op's cards once here is still right.
                if nothing_there {
                    crate::desired::record_not_found(rec);
                } else {
                    record_done(rec, d, op, tx);
                }
            }
            Err(error) => {
                return Err(ExecFailure {
                    error: spent_id(rec, d, error),
                    done: report,
                    op: planned.clone(),
                });
            }
        }
    }
    Ok(report)
}

/// A `ReservationCheckedOut` answer to anything but an ending: our id is spent at the lock
/// system (checked out, perhaps after a create whose answer was lost), so the stay cannot
/// have access again under it. Recorded ([`crate::desired::record_checked_out`]) and turned
/// into the documented refusal, so neither this attempt nor the next plans a create the lock
/// system refuses; any other error is returned as it is.
fn spent_id(rec: &mut LockRecord, d: &Desired, error: SoapError) -> SoapError {
    if !crate::desired::is_checked_out(&error) {
        return error;
    }
    crate::desired::record_checked_out(rec);
    SoapError::Plan(crate::desired::PlanError::Reopen(d.reservation_id.clone()))
}

/// Whether an `IssueMobileKey` answer says the BlueSky app matched no guest (surname and
/// phone): the lock system accepted the request but no phone got the key.
pub fn mobile_not_delivered(message: &str) -> bool {
    message.to_ascii_lowercase().contains("not delivered")
}

/// Whether the lock system holds a live booking for the reservation: `ExtendCheckOut` with the
/// desired check-out (the reconciler's probe; it changes nothing but the check-out, which is
/// wanted anyway). `ReservationNotFound` / `ReservationCheckedOut`: no live booking.
async fn probe(client: &SoapClient, d: &Desired) -> Result<bool, SoapError> {
    match client
        .extend_check_out(&d.reservation_id, &d.check_out)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => crate::desired::probe_refusal(&e).ok_or(e),
    }
}

async fn run_one(
    client: &SoapClient,
    d: &Desired,
    rec: &LockRecord,
    op: &Op,
    key_size: u32,
) -> Result<(&'static str, Option<String>, String), SoapError> {
    let rid = &d.reservation_id;
    let bad_plan = |e: crate::desired::PlanError| SoapError::Config(e.to_string());
    let r = match op {
        Op::CreateBooking { encoder, key_count }
        | Op::CreateUnlessExists {
            encoder, key_count, ..
        } => {
            let b = booking_request(d, encoder, *key_count, key_size).map_err(bad_plan)?;
            ("CreateNewBooking", client.create_new_booking(&b).await?)
        }
        Op::ChangeAccess { encoder, key_count } => {
            let b = booking_request(d, encoder, *key_count, key_size).map_err(bad_plan)?;
            ("ChangeKeyAccess", client.change_key_access(&b).await?)
        }
        Op::Duplicate { encoder, key_count } => {
            let name = rec.guest_name.as_deref().unwrap_or(&d.guest_name);
            (
                "MakeDuplicateKey",
                client
                    .make_duplicate_key(rid, name, encoder, *key_count, key_size)
                    .await?,
            )
        }
        Op::ExtendCheckOut => (
            "ExtendCheckOut",
            client.extend_check_out(rid, &d.check_out).await?,
        ),
        Op::IssueMobileKey(m) => (
            "IssueMobileKey",
            client
                .issue_mobile_key(rid, &m.room, &m.surname, &m.phone)
                .await?,
        ),
        Op::CancelMobileKey(m) => (
            "CancelGuestsMobileAccessToRoom",
            client.cancel_mobile_access(rid, &m.room, &m.phone).await?,
        ),
        Op::CheckOut => ("CheckOutGuest", client.check_out_guest(rid).await?),
    };
    Ok((r.0, r.1.transaction_no, r.1.message))
}

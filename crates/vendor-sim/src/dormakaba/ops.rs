//! The Messenger PMS operations and their rules.

use super::Product;
use super::soap::Outcome;
use super::xml::Element;
use crate::state::SimState;

/// Operations the simulator implements.
pub(crate) const OPERATIONS: [&str; 9] = [
    "HelloWorldTest",
    "CreateNewBooking",
    "AddSharedGuest",
    "MakeDuplicateKey",
    "ChangeKeyAccess",
    "CheckOutGuest",
    "ExtendCheckOut",
    "CancelGuestsMobileAccessToRoom",
    "IssueMobileKey",
];

/// Request fields per operation (for the WSDL).
pub(crate) fn fields(op: &str) -> &'static [&'static str] {
    match op {
        _ => &[],
    }
}

/// Runs one operation.
pub(crate) fn run(
    _st: &SimState,
    _product: Product,
    _op: &str,
    _auth: Option<&Element>,
    _req: &Element,
) -> Outcome {
    Outcome::fault("InvalidWSParameter", "not implemented yet")
}

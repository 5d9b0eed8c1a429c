//! accessctl's documented exit codes (`accessctl --help`, docs/runbooks/README.md): an error
//! that should end the process with something other than 1 carries its code as an [`Exit`].

/// Done.
pub const OK: u8 = 0;
/// Failed: refused by the API, unreachable, invalid input or file.
pub const FAILED: u8 = 1;
/// Wrong usage (clap's own code for an unknown command or flag).
pub const USAGE: u8 = 2;
/// `sync run` without `--wait`: the connection already had an active run; none was queued.
pub const NOT_QUEUED: u8 = 3;
/// Done, but the outcome is bad: a waited-for sync run failed or was partial, or `status`
/// found problems.
pub const UNHEALTHY: u8 = 4;

/// An error with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// Process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl Exit {
    /// An error ending the process with `code`.
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.into(),
        })
    }
}

/// The exit code for an error returned by [`crate::run`].
pub fn code_of(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Exit>().map_or(FAILED, |x| x.code)
}

//! How a step's outcome maps onto the exit codes of docs/INTERFACES.md (0, 1, 2, 75).

use std::fmt;

/// Why a run failed; decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Bad data, verification failed, a local fault: exit 1.
    Operational,
    /// The upstream source could not be reached or answered with an error (connection refused,
    /// DNS, time-out, HTTP 5xx or another error status): exit 1, like `Operational`, but recorded
    /// as such (`error_class` `upstream` in `--json`, detail `upstream` in the ledger row), so a
    /// deploy's health check does not blame the release for it.
    Upstream,
    /// Bad flags, bad environment, a path that cannot be used as configured: exit 2.
    Usage,
    /// The step's lock is held by another run, or a lock stayed held past its wait budget: exit 75.
    Busy,
}

impl FailureClass {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Operational | FailureClass::Upstream => EXIT_FAILURE,
            FailureClass::Usage => EXIT_USAGE,
            FailureClass::Busy => EXIT_BUSY,
        }
    }

    /// The name of the class in `--json` (`error_class`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Operational => "operational",
            FailureClass::Upstream => "upstream",
            FailureClass::Usage => "usage",
            FailureClass::Busy => "busy",
        }
    }
}

pub const EXIT_SUCCESS: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// `EX_TEMPFAIL` from sysexits.h: try again later.
pub const EXIT_BUSY: u8 = 75;

/// A failed run: the error chain plus its class.
pub struct StepError {
    pub class: FailureClass,
    pub error: anyhow::Error,
}

impl StepError {
    pub fn new(class: FailureClass, error: impl Into<anyhow::Error>) -> Self {
        StepError {
            class,
            error: error.into(),
        }
    }

    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureClass::Usage, error)
    }

    pub fn busy(error: impl Into<anyhow::Error>) -> Self {
        Self::new(FailureClass::Busy, error)
    }

    /// The whole chain on one line, `outer: inner: root`, as operators read it in logs and JSON.
    pub fn message(&self) -> String {
        format!("{:#}", self.error)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.class, self.error)
    }
}

impl<E: Into<anyhow::Error>> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::new(FailureClass::Operational, error)
    }
}

/// Classifies an error at the point where its meaning is known.
pub trait ResultExt<T> {
    fn or_usage(self) -> Result<T, StepError>;
    fn or_busy(self) -> Result<T, StepError>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn or_usage(self) -> Result<T, StepError> {
        self.map_err(StepError::usage)
    }

    fn or_busy(self) -> Result<T, StepError> {
        self.map_err(StepError::busy)
    }
}

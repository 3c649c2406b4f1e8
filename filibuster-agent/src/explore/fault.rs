use std::fmt;

use serde::{Deserialize, Serialize};

/// A fault the agent can enact on one call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "code")]
pub enum Fault {
    /// The caller's connect fails with ECONNREFUSED (the call's connection
    /// was new).
    ConnectionRefused,
    /// The caller's connection is reset (the call reused a connection).
    ConnectionReset,
    /// The call is held until the caller gives up.
    Timeout,
    /// The callee answers with this HTTP status.
    HttpStatus(u16),
}

impl Fault {
    /// Whether a call that ended with `outcome` on its own, with no fault
    /// injected, looked to its caller the same as this fault.
    pub fn matches_organic(&self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Fault::HttpStatus(code), Outcome::Status(seen)) => code == seen,
            (Fault::ConnectionRefused | Fault::ConnectionReset, Outcome::ConnectionError) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ConnectionRefused => f.write_str("connection refused"),
            Fault::ConnectionReset => f.write_str("connection reset"),
            Fault::Timeout => f.write_str("timeout"),
            Fault::HttpStatus(code) => write!(f, "HTTP {code}"),
        }
    }
}

/// How a call ended, as its caller saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum Outcome {
    /// Still in flight when the execution ended.
    Unfinished,
    /// The callee answered with this status.
    Status(u16),
    /// The connection to the callee failed on its own.
    ConnectionError,
    /// Filibuster injected this fault.
    Injected(Fault),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Unfinished => f.write_str("unfinished"),
            Outcome::Status(code) => write!(f, "{code}"),
            Outcome::ConnectionError => f.write_str("connection error"),
            Outcome::Injected(fault) => write!(f, "injected {fault}"),
        }
    }
}

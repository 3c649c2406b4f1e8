use std::fmt;

use serde::{Deserialize, Serialize};

use super::Protocol;

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
    /// The callee answers a gRPC call with this status code, as a
    /// trailers-only response.
    GrpcStatus(u8),
    /// The HTTP/2 stream is reset (RST_STREAM); the connection and its
    /// other streams carry on.
    StreamReset,
    /// The call is forwarded this many milliseconds late (a TCP
    /// connection: its bytes start flowing that late), and answered as the
    /// callee answers: a slow dependency, within or past its caller's
    /// patience.
    Delay(u32),
    /// The callee's answer is cut after its head: the caller gets the
    /// status and headers, then its connection (HTTP/2: its stream) ends
    /// before the body does.
    Truncated,
}

impl Fault {
    /// A connection error on a call of `protocol`: a refusal when the call
    /// opens its connection; on a reused one, a reset, of the stream alone
    /// where the connection carries others.
    pub fn connection_error(protocol: Protocol, fresh_connection: bool) -> Self {
        match protocol {
            _ if fresh_connection => Fault::ConnectionRefused,
            Protocol::Http2 | Protocol::Grpc => Fault::StreamReset,
            Protocol::Http | Protocol::Tcp => Fault::ConnectionReset,
        }
    }

    /// Whether this fails the connection (or the stream) rather than
    /// answering.
    pub fn is_connection_error(&self) -> bool {
        self.kind() == FaultKind::ConnectionError
    }

    /// How a caller meets this fault: what its code can tell apart.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::ConnectionRefused | Fault::ConnectionReset | Fault::StreamReset => {
                FaultKind::ConnectionError
            }
            Fault::HttpStatus(_) | Fault::GrpcStatus(_) => FaultKind::Status,
            Fault::Truncated => FaultKind::Cut,
            Fault::Delay(_) => FaultKind::Delay,
            Fault::Timeout => FaultKind::Timeout,
        }
    }

    /// Over as soon as it is enacted: everything but a timeout or a delay,
    /// which spend the caller's time.
    pub fn is_fast(&self) -> bool {
        !matches!(self.kind(), FaultKind::Timeout | FaultKind::Delay)
    }

    /// Whether the call still reaches its callee (a delay, a truncated
    /// answer): the calls the callee makes for it are made for it.
    pub fn reaches_callee(&self) -> bool {
        matches!(self, Fault::Delay(_) | Fault::Truncated)
    }

    /// Whether the caller gets the callee's own answer (a delay): the
    /// call's outcome is the callee's, not the fault.
    pub fn answered_by_callee(&self) -> bool {
        matches!(self, Fault::Delay(_))
    }

    /// Whether a call that ended with `outcome` on its own, with no fault
    /// injected, looked to its caller the same as this fault.
    pub fn matches_organic(&self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Fault::HttpStatus(code), Outcome::Status(seen)) => code == seen,
            (Fault::GrpcStatus(code), Outcome::Grpc(seen)) => code == seen,
            (fault, Outcome::ConnectionError) => fault.is_connection_error(),
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
            Fault::GrpcStatus(code) => write!(f, "gRPC {}", grpc_code_name(*code)),
            Fault::StreamReset => f.write_str("stream reset"),
            Fault::Delay(ms) => write!(f, "delay {ms} ms"),
            Fault::Truncated => f.write_str("truncated response"),
        }
    }
}

/// How a caller meets a fault: an error raised by its client, an answer,
/// or a wait (ordered as the guided search tries them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    ConnectionError,
    Status,
    /// An answer whose body never ends well.
    Cut,
    /// Cheaper than a timeout: over before the caller gives up, when it
    /// does not.
    Delay,
    Timeout,
}

/// How a call ended, as its caller saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum Outcome {
    /// Still in flight when the execution ended.
    Unfinished,
    /// The callee answered with this HTTP status.
    Status(u16),
    /// The callee answered a gRPC call with this status code (0: OK).
    Grpc(u8),
    /// A connection of an unknown protocol was passed through.
    Connected,
    /// The connection to the callee failed on its own.
    ConnectionError,
    /// The caller gave up (hung up) before the callee answered.
    Abandoned,
    /// Filibuster injected this fault.
    Injected(Fault),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Unfinished => f.write_str("unfinished"),
            Outcome::Status(code) => write!(f, "{code}"),
            Outcome::Grpc(code) => f.write_str(grpc_code_name(*code)),
            Outcome::Connected => f.write_str("connected"),
            Outcome::ConnectionError => f.write_str("connection error"),
            Outcome::Abandoned => f.write_str("caller gave up"),
            Outcome::Injected(fault) => write!(f, "injected {fault}"),
        }
    }
}

/// gRPC's status codes by number (the index), as its specification names
/// them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub const GRPC_DEADLINE_EXCEEDED: u8 = 4;

fn grpc_code_name(code: u8) -> &'static str {
    GRPC_CODES
        .get(usize::from(code))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// The code gRPC names `name` ("UNAVAILABLE").
pub fn grpc_code(name: &str) -> Option<u8> {
    GRPC_CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| u8::try_from(i).ok())
}

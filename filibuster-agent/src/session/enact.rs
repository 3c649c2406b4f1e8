//! How a planned fault is enacted: the one place that decides it. The
//! search plans faults in the callers' terms (what the caller meets);
//! whether the kernel or the proxy makes it happen, and how, is decided
//! here and nowhere else.

use crate::explore::{Fault, Protocol};

/// What the proxy does with a request it admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enactment {
    /// No fault: forward it, and record how it ends.
    Forward,
    /// Answer in the callee's place with this HTTP status.
    HttpStatus(u16),
    /// Answer in the callee's place with this gRPC status, trailers-only.
    GrpcStatus(u8),
    /// Forward it, and cut the answer after its head.
    Truncate,
    /// Forward it this late.
    Delay(std::time::Duration),
    /// Hold it until its caller gives up or its execution ends.
    Hold,
    /// Reset its HTTP/2 stream; the connection's other streams carry on.
    ResetStream,
    /// Reset the connection that carries it.
    ResetConnection,
}

/// Whether the kernel enacts `fault` itself, at the connect of the call it
/// is planned on (armed when the execution begins).
pub(super) fn refused_in_kernel(fault: &Fault) -> bool {
    *fault == Fault::ConnectionRefused
}

/// The fault a call of `protocol` actually meets when `planned` reaches
/// the proxy. A refusal only does when the kernel could not refuse the
/// connect: the call came on a pooled connection (or on one opened before
/// the refusal was armed), so that connection is failed instead.
pub(super) fn enacted(planned: Fault, protocol: Protocol) -> Fault {
    match planned {
        Fault::ConnectionRefused => Fault::connection_error(protocol, false),
        fault => fault,
    }
}

impl Enactment {
    /// How the proxy enacts `fault`, one [`enacted`] says the call meets.
    pub(super) fn of(fault: Option<&Fault>) -> Self {
        match fault {
            None => Self::Forward,
            Some(Fault::HttpStatus(code)) => Self::HttpStatus(*code),
            Some(Fault::GrpcStatus(code)) => Self::GrpcStatus(*code),
            Some(Fault::Timeout) => Self::Hold,
            Some(Fault::Truncated) => Self::Truncate,
            Some(Fault::Delay(ms)) => Self::Delay(std::time::Duration::from_millis(u64::from(*ms))),
            Some(Fault::StreamReset) => Self::ResetStream,
            Some(Fault::ConnectionReset | Fault::ConnectionRefused) => Self::ResetConnection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reaching_the_proxy_fails_what_carries_the_call() {
        let enact = |protocol| Enactment::of(Some(&enacted(Fault::ConnectionRefused, protocol)));
        assert_eq!(enact(Protocol::Http), Enactment::ResetConnection);
        assert_eq!(enact(Protocol::Tcp), Enactment::ResetConnection);
        assert_eq!(enact(Protocol::Http2), Enactment::ResetStream);
        assert_eq!(enact(Protocol::Grpc), Enactment::ResetStream);
        assert!(refused_in_kernel(&Fault::ConnectionRefused));
        assert!(!refused_in_kernel(&Fault::ConnectionReset));
    }

    #[test]
    fn answers_and_holds_are_the_proxys() {
        let enact = |fault: Fault| Enactment::of(Some(&enacted(fault, Protocol::Grpc)));
        assert_eq!(enact(Fault::GrpcStatus(14)), Enactment::GrpcStatus(14));
        assert_eq!(enact(Fault::HttpStatus(503)), Enactment::HttpStatus(503));
        assert_eq!(enact(Fault::Timeout), Enactment::Hold);
        assert_eq!(
            enact(Fault::Delay(800)),
            Enactment::Delay(std::time::Duration::from_millis(800))
        );
        assert_eq!(Enactment::of(None), Enactment::Forward);
    }
}

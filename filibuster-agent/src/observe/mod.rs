//! Calls read off direct connections the kernel observes: HTTP/1.1 from
//! the heads of segments ([`http1`]), HTTP/2 from the frames the kernel's
//! walk reports ([`http2`]).

pub mod http1;
pub mod http2;

/// The trace id of a W3C `traceparent` value (`00-<trace id>-<span
/// id>-<flags>`): the same along a request's whole path through services
/// that propagate it.
pub fn trace_id(value: &[u8]) -> Option<&str> {
    let trace = std::str::from_utf8(value).ok()?.split('-').nth(1)?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

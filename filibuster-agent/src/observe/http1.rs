//! HTTP/1.1 calls read off a direct connection: the kernel's `heads_out`
//! and `heads_in` programs report the first KiB of every segment that
//! could open a request or a response, and a [`Tracker`] per connection
//! turns them into requests and statuses.
//!
//! Without pipelining (no HTTP/1.1 client pipelines by default), a
//! connection alternates request head, response head: a segment out while
//! a response is awaited belongs to the request's body, one in while none
//! is awaited to the response's body. So bodies need no parsing (chunked
//! ones included), which the kernel could not do on segment heads anyway.

use httparse::{EMPTY_HEADER, Request, Response};

use super::trace_id;

/// How many headers a head may have for its trace id to be found.
const MAX_HEADERS: usize = 64;

/// What a segment told about the connection's calls, borrowed from the
/// segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A request's line, sent.
    Request {
        /// Its method.
        method: &'a str,
        /// Its target: the path and query.
        target: &'a str,
        /// The W3C trace id of its `traceparent` header.
        trace: Option<&'a str>,
    },
    /// The final status of the request awaiting one (1xx are skipped).
    Response(u16),
}

/// One observed connection's position in its exchange.
#[derive(Debug, Default)]
pub struct Tracker {
    awaiting_response: bool,
    /// The last sequence number seen each way (out, in): a retransmitted
    /// segment is reported again and must not count twice.
    last_seq: [Option<u32>; 2],
}

impl Tracker {
    /// A segment sent (`out`) or received on the caller's socket, starting
    /// at TCP sequence number `seq` with payload `head` (its first bytes).
    pub fn segment<'a>(&mut self, out: bool, seq: u32, head: &'a [u8]) -> Option<Seen<'a>> {
        let last = &mut self.last_seq[usize::from(!out)];
        if last.is_some_and(|last| (seq.wrapping_sub(last) as i32) <= 0) {
            return None;
        }
        *last = Some(seq);
        if out == self.awaiting_response {
            return None; // a body
        }
        let seen = if out { request(head) } else { response(head) }?;
        if matches!(seen, Seen::Response(status) if status < 200) {
            return None;
        }
        self.awaiting_response = out;
        Some(seen)
    }
}

fn request(head: &[u8]) -> Option<Seen<'_>> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut request = Request::new(&mut headers);
    // A head longer than the kernel copied parses partially, and one with
    // more headers than there is room for stops at the room's end: either
    // way its request line is whole.
    match request.parse(head) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {}
        Err(_) => return None,
    }
    let trace = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("traceparent"))
        .and_then(|h| trace_id(h.value));
    Some(Seen::Request {
        method: request.method?,
        target: request.path?.split('?').next()?,
        trace,
    })
}

fn response(head: &[u8]) -> Option<Seen<'_>> {
    // Only the status line matters: with no room for headers, httparse
    // stops after it (reporting too many headers) with the code filled in.
    let mut response = Response::new(&mut []);
    match response.parse(head) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) => response.code.map(Seen::Response),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn get(path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: bar\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n"
        )
        .into_bytes()
    }

    fn seen_request(path: &str) -> Option<Seen<'_>> {
        Some(Seen::Request {
            method: "GET",
            target: path,
            trace: Some(TRACE),
        })
    }

    #[test]
    fn requests_and_responses_alternate() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.segment(true, 1, &get("/a?x=1")), seen_request("/a"));
        assert_eq!(
            tracker.segment(false, 1, b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Some(Seen::Response(503))
        );
        assert_eq!(tracker.segment(true, 100, &get("/b")), seen_request("/b"));
        assert_eq!(
            tracker.segment(false, 50, b"HTTP/1.1 200 OK\r\n"),
            Some(Seen::Response(200))
        );
    }

    #[test]
    fn bodies_that_look_like_heads_are_skipped() {
        let mut tracker = Tracker::default();
        tracker.segment(
            true,
            1,
            b"POST /upload HTTP/1.1\r\nContent-Length: 9000\r\n\r\n",
        );
        // The request's body, then the response's, starting like heads.
        assert_eq!(tracker.segment(true, 60, &get("/not-a-call")), None);
        assert_eq!(
            tracker.segment(false, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
            Some(Seen::Response(200))
        );
        assert_eq!(tracker.segment(false, 20, b"HTTP/1.1 500 in a body"), None);
    }

    #[test]
    fn interim_responses_and_retransmissions_are_skipped() {
        let mut tracker = Tracker::default();
        tracker.segment(true, u32::MAX - 10, &get("/a"));
        assert_eq!(tracker.segment(true, u32::MAX - 10, &get("/a")), None);
        assert_eq!(
            tracker.segment(false, 7, b"HTTP/1.1 100 Continue\r\n\r\n"),
            None
        );
        assert_eq!(
            tracker.segment(false, 40, b"HTTP/1.1 201 Created\r\n\r\n"),
            Some(Seen::Response(201))
        );
        assert_eq!(
            tracker.segment(false, 40, b"HTTP/1.1 201 Created\r\n\r\n"),
            None
        );
        // Sequence numbers wrap.
        assert_eq!(tracker.segment(true, 5, &get("/b")), seen_request("/b"));
    }

    /// A GET of `path` without a trace, as seen.
    fn untraced(path: &str) -> Option<Seen<'_>> {
        Some(Seen::Request {
            method: "GET",
            target: path,
            trace: None,
        })
    }

    /// A head: its first line, then `count` headers.
    fn with_headers(first_line: &str, count: usize) -> Vec<u8> {
        let mut head = format!("{first_line}\r\n").into_bytes();
        for n in 0..count {
            head.extend_from_slice(format!("x-header-{n}: {n}\r\n").as_bytes());
        }
        head
    }

    #[test]
    fn a_head_cut_short_still_names_its_call() {
        let mut head = b"GET /long HTTP/1.1\r\nHost: bar\r\n".to_vec();
        head.resize(1024, b'x');
        let mut tracker = Tracker::default();
        assert_eq!(tracker.segment(true, 1, &head), untraced("/long"));
    }

    #[test]
    fn a_request_with_more_headers_than_room_is_still_a_call() {
        let mut head = with_headers("GET /crowded HTTP/1.1", MAX_HEADERS + 10);
        head.extend_from_slice(b"\r\n");
        let mut tracker = Tracker::default();
        assert_eq!(tracker.segment(true, 1, &head), untraced("/crowded"));
    }

    #[test]
    fn a_response_is_read_off_its_status_line_whatever_follows() {
        let mut tracker = Tracker::default();
        tracker.segment(true, 1, &get("/a"));
        let head = with_headers("HTTP/1.1 502 Bad Gateway", 100);
        assert_eq!(tracker.segment(false, 1, &head), Some(Seen::Response(502)));
    }

    #[test]
    fn garbage_is_not_a_call() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.segment(true, 1, b"HELLO WORLD\r\n"), None);
        assert_eq!(tracker.segment(false, 1, b"HTTP/1.1 200 OK\r\n"), None);
    }
}

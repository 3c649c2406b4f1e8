//! Which protocol a caller speaks, told from its first bytes without
//! consuming them (the connection is then handed on whole).
//!
//! Written by hand: the rule is three lines, and the libraries that serve
//! each protocol assume they were told which one it is.

use std::time::Duration;

use tokio::{net::TcpStream, time::Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Http1,
    /// HTTP/2 with prior knowledge (gRPC's way of speaking cleartext).
    Http2,
    /// Anything else: a protocol the proxy passes through.
    Opaque,
    /// Nothing sent yet: a protocol where the server speaks first, or a
    /// caller slow to start one the proxy may speak.
    Silent,
}

/// How long a caller that has sent nothing is waited for before its
/// connection is taken as one of a server-first protocol (MySQL, SMTP).
const SILENCE: Duration = Duration::from_millis(100);

/// HTTP methods are short upper-case tokens; allow WebDAV's longer ones.
const LONGEST_METHOD: usize = 15;

pub async fn wire(stream: &TcpStream) -> Wire {
    let deadline = Instant::now() + SILENCE;
    let mut first = [0u8; LONGEST_METHOD + 1];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Wire::Silent,
        };
        if let Some(wire) = classify(&first[..seen]) {
            return wire;
        }
        // A first segment too short to tell: rare, clients write a request
        // line or preface in one go. Peek again once more has arrived,
        // until the deadline: a caller that stalls (or closed) after a
        // byte or three of what could be a method is passed through.
        if Instant::now() >= deadline {
            return Wire::Opaque;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `None`: these bytes could start either way.
pub(crate) fn classify(bytes: &[u8]) -> Option<Wire> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let compared = bytes.len().min(PREFACE.len());
    if bytes[..compared] == PREFACE[..compared] && compared >= 4 {
        return Some(Wire::Http2);
    }
    let token = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match bytes.get(token) {
        Some(b' ') if token > 0 && bytes[..token] != *b"PRI" => Some(Wire::Http1),
        None if token < LONGEST_METHOD => None,
        _ => Some(Wire::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_that_stalls_after_one_byte_is_given_up_on_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut caller = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        caller.write_all(b"G").await.unwrap();
        drop(caller);
        // Before: peeked every millisecond for the rest of the run.
        let wire = tokio::time::timeout(10 * SILENCE, wire(&accepted)).await;
        assert_eq!(wire, Ok(Wire::Opaque), "it returns");
    }

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Wire::Http1));
        assert_eq!(classify(b"PROPFIND /x"), Some(Wire::Http1));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Wire::Http2)
        );
        // Redis, PostgreSQL's startup message, TLS.
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Some(Wire::Opaque));
        assert_eq!(classify(&[0, 0, 0, 8, 4, 210, 22, 47]), Some(Wire::Opaque));
        assert_eq!(classify(&[22, 3, 1, 2, 0]), Some(Wire::Opaque));
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Wire::Opaque));
        // Too short to tell yet.
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"PR"), None);
        assert_eq!(classify(b"ABCDEFGHIJKLMNOP"), Some(Wire::Opaque));
    }
}

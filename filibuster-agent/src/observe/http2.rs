//! HTTP/2 calls read off a direct connection (h2c by prior knowledge, as
//! gRPC speaks it): the kernel walks the connection's frames and reports
//! the payloads of those that carry header blocks and stream and
//! connection ends, in parts of at most a few hundred bytes; a [`Tracker`]
//! per connection puts each frame back together, decodes header blocks
//! with one HPACK decoder per direction (each side's table changes only
//! with the blocks that side sends, so every block must be decoded, in
//! order, whatever it carries), and says what the frames tell about calls.
//!
//! The decoder is httlib-hpack's, whose Huffman decoding walks a
//! precomputed table: loona-hpack (the maintained fork of `hpack`) builds
//! a hash map per string it decodes, which was more than half of the
//! agent's time under load (measured with perf on the h2c bench).

use filibuster_common::{H2_CONTINUATION, H2_GOAWAY, H2_HEADERS, H2_PUSH_PROMISE, H2_RST_STREAM};
use httlib_hpack::Decoder;

use super::trace_id;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The largest header block put together from CONTINUATION frames: past
/// it the connection is given up on (lost), so that a service sending
/// CONTINUATIONs without end cannot grow the agent's memory without end.
/// hyper, on the proxied path, refuses header lists past 16 KiB.
const MAX_HEADER_BLOCK: usize = 64 << 10;

/// The largest HPACK dynamic table a size update may ask for: 16 times
/// HTTP/2's default, more than any client here uses; a larger one loses
/// the connection rather than hold up to 4 GiB per direction.
const MAX_DYNAMIC_TABLE: u32 = 64 << 10;

/// The most a header block may decode to (names and values), and the most
/// fields it may hold: a one-byte reference to a large table entry,
/// repeated, would otherwise make a 64 KiB block decode to gigabytes.
/// hyper, on the proxied path, refuses header lists past 16 KiB.
const MAX_DECODED: usize = 64 << 10;
const MAX_FIELDS: usize = 1000;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Part of a frame's payload, as the kernel reported it.
#[derive(Clone, Copy, Debug)]
pub struct FramePart<'a> {
    /// The frame's type.
    pub kind: u8,
    /// The frame's flags.
    pub flags: u8,
    /// The stream it is on.
    pub stream: u32,
    /// The whole frame's payload length.
    pub frame_len: u32,
    /// Where in the frame's payload `bytes` start.
    pub offset: u32,
    /// The payload bytes reported, from `offset`.
    pub bytes: &'a [u8],
}

/// What a frame told about the connection's calls.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A request's headers, sent: a call on `stream`.
    Request {
        /// The stream it opens.
        stream: u32,
        /// Its `:method`.
        method: String,
        /// Its `:path`.
        path: String,
        /// Its content type is gRPC's.
        grpc: bool,
        /// The W3C trace id of its `traceparent` header.
        trace: Option<String>,
    },
    /// A final response's headers (1xx are skipped), received; a gRPC
    /// answer without a body carries its status here.
    Response {
        /// The stream it answers.
        stream: u32,
        /// Its `:status`.
        status: u16,
        /// Its `grpc-status`, in a trailers-only answer.
        grpc_status: Option<u8>,
    },
    /// Trailers, received: where a gRPC answer with a body carries its
    /// status.
    Trailers {
        /// The stream it ends.
        stream: u32,
        /// Its `grpc-status`.
        grpc_status: Option<u8>,
    },
    /// A stream reset, by the caller (`sent`) or the callee.
    Reset {
        /// The stream reset.
        stream: u32,
        /// Reset by the caller.
        sent: bool,
    },
    /// The connection is going away, by the caller's word (`sent`) or the
    /// callee's: streams above `last_stream` will not be answered.
    GoingAway {
        /// The last stream that may still be answered.
        last_stream: u32,
        /// Said by the caller.
        sent: bool,
    },
}

/// The tracker lost its place: a part is missing (the ring buffer had no
/// room for it) or a header block does not decode. The connection's
/// header tables can no longer be followed.
#[derive(Debug, PartialEq, Eq)]
pub struct Lost;

/// One observed connection's two directions.
#[derive(Default)]
pub struct Tracker {
    /// Sent by the caller, received by it.
    sides: [Side; 2],
}

struct Side {
    decoder: Decoder<'static>,
    /// A block being decoded (the decoder consumes its input), and the
    /// field decoded from it last: kept for their room.
    input: Vec<u8>,
    field: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// The payload of a frame reported in parts, so far.
    frame: Vec<u8>,
    /// A header block continued in CONTINUATION frames, so far.
    block: Option<Block>,
}

struct Block {
    stream: u32,
    /// A PUSH_PROMISE's block, decoded only to keep the table in step.
    promise: bool,
    end_stream: bool,
    bytes: Vec<u8>,
}

impl Tracker {
    /// A part of a frame sent (`sent`) or received on the caller's socket.
    pub fn frame(&mut self, sent: bool, part: &FramePart<'_>) -> Result<Option<Seen>, Lost> {
        let side = &mut self.sides[usize::from(!sent)];
        let end = part.offset as usize + part.bytes.len();
        // Most frames come whole: read where they lie.
        if part.offset == 0 && end == part.frame_len as usize {
            return side.complete(sent, part, part.bytes);
        }
        if part.offset as usize != side.frame.len() || end > part.frame_len as usize {
            return Err(Lost);
        }
        side.frame.extend_from_slice(part.bytes);
        if end < part.frame_len as usize {
            return Ok(None);
        }
        let frame = std::mem::take(&mut side.frame);
        let seen = side.complete(sent, part, &frame);
        // Its room is kept for the next frame in parts.
        side.frame = frame;
        side.frame.clear();
        seen
    }
}

impl Default for Side {
    fn default() -> Self {
        let mut decoder = Decoder::default();
        // The table starts at HTTP/2's default size, as the encoder's does;
        // a size update beyond it was allowed by a setting the callee (or
        // the caller) sent, which is for them to enforce, up to a bound of
        // ours.
        decoder.set_max_dynamic_size(MAX_DYNAMIC_TABLE);
        Self {
            decoder,
            input: Vec::new(),
            // One at a time: the decoder fills what room there is.
            field: Vec::with_capacity(1),
            frame: Vec::new(),
            block: None,
        }
    }
}

impl Side {
    /// A whole frame, its payload `payload`.
    fn complete(
        &mut self,
        sent: bool,
        part: &FramePart<'_>,
        payload: &[u8],
    ) -> Result<Option<Seen>, Lost> {
        let stream = part.stream;
        match part.kind {
            H2_HEADERS | H2_PUSH_PROMISE => {
                if self.block.is_some() {
                    return Err(Lost);
                }
                let promise = part.kind == H2_PUSH_PROMISE;
                let fragment = fragment(payload, part.flags, promise).ok_or(Lost)?;
                let block = Block {
                    stream,
                    promise,
                    end_stream: part.flags & END_STREAM != 0,
                    bytes: Vec::new(),
                };
                if part.flags & END_HEADERS != 0 {
                    return self.decode(sent, &block, fragment);
                }
                self.block = Some(Block {
                    bytes: fragment.to_vec(),
                    ..block
                });
                Ok(None)
            }
            H2_CONTINUATION => {
                let block = self.block.as_mut().ok_or(Lost)?;
                if block.stream != stream {
                    return Err(Lost);
                }
                if block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                    self.block = None;
                    return Err(Lost);
                }
                block.bytes.extend_from_slice(payload);
                if part.flags & END_HEADERS == 0 {
                    return Ok(None);
                }
                let mut block = self.block.take().ok_or(Lost)?;
                let bytes = std::mem::take(&mut block.bytes);
                self.decode(sent, &block, &bytes)
            }
            H2_RST_STREAM => Ok(Some(Seen::Reset { stream, sent })),
            H2_GOAWAY => {
                let last_stream = u32::from_be_bytes(*payload.first_chunk().ok_or(Lost)?);
                Ok(Some(Seen::GoingAway {
                    last_stream: last_stream & 0x7fff_ffff,
                    sent,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Decodes a whole header block, which every block must be for the
    /// table to stay in step, and reads off what matters of it.
    fn decode(&mut self, sent: bool, block: &Block, bytes: &[u8]) -> Result<Option<Seen>, Lost> {
        if !complete_block(bytes) {
            return Err(Lost);
        }
        self.input.clear();
        self.input.extend_from_slice(bytes);
        let mut fields = Fields::default();
        let (mut decoded, mut count) = (0, 0);
        while !self.input.is_empty() {
            let left = self.input.len();
            self.field.clear();
            self.decoder
                .decode_exact(&mut self.input, &mut self.field)
                .map_err(|_| Lost)?;
            if self.input.len() == left {
                return Err(Lost);
            }
            for (name, value, _) in &self.field {
                decoded += name.len() + value.len();
                count += 1;
                if decoded > MAX_DECODED || count > MAX_FIELDS {
                    return Err(Lost);
                }
                fields.take(name, value);
            }
        }
        if block.promise {
            return Ok(None);
        }
        let stream = block.stream;
        if sent {
            // A request's headers; a request's trailers carry no method.
            let (Some(method), Some(path)) = (fields.method, fields.path) else {
                return Ok(None);
            };
            let path = match path.split_once('?') {
                Some((path, _)) => path.to_string(),
                None => path,
            };
            return Ok(Some(Seen::Request {
                stream,
                method,
                path,
                grpc: fields.grpc,
                trace: fields.trace,
            }));
        }
        Ok(match fields.status {
            Some(status) if status < 200 => None,
            Some(status) => Some(Seen::Response {
                stream,
                status,
                grpc_status: fields.grpc_status,
            }),
            None if block.end_stream => Some(Seen::Trailers {
                stream,
                grpc_status: fields.grpc_status,
            }),
            None => None,
        })
    }
}

/// Whether every field representation in header block `block` is whole
/// (RFC 7541 section 6): httlib-hpack reads past the end of a truncated one
/// (a panic, found by the fuzzer), which a service's malformed traffic
/// must not cause. Integers are kept to four bytes after their prefix, as
/// the decoder keeps them.
fn complete_block(block: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&first) = block.get(at) {
        // Indexed, literal with indexing, size update, literal without.
        let (prefix, literal) = if first & 0x80 != 0 {
            (7, false)
        } else if first & 0x40 != 0 {
            (6, true)
        } else if first & 0x20 != 0 {
            (5, false)
        } else {
            (4, true)
        };
        let Some((index, next)) = integer(block, at, prefix) else {
            return false;
        };
        at = next;
        if literal {
            // A new name, then the value; or the value of an indexed name.
            let name = if index == 0 {
                string(block, at)
            } else {
                Some(at)
            };
            match name.and_then(|at| string(block, at)) {
                Some(next) => at = next,
                None => return false,
            }
        }
    }
    true
}

/// The integer at `at` with a `prefix`-bit prefix, and where it ends.
fn integer(block: &[u8], at: usize, prefix: u8) -> Option<(u32, usize)> {
    let mask = (1u32 << prefix) - 1;
    let mut value = u32::from(*block.get(at)?) & mask;
    let mut at = at + 1;
    if value < mask {
        return Some((value, at));
    }
    for shift in [0, 7, 14, 21] {
        let byte = *block.get(at)?;
        at += 1;
        value += u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

/// Where the string at `at` ends, if it is whole.
fn string(block: &[u8], at: usize) -> Option<usize> {
    let (len, at) = integer(block, at, 7)?;
    let end = at.checked_add(len as usize)?;
    (end <= block.len()).then_some(end)
}

/// The header block fragment of a HEADERS or PUSH_PROMISE payload: without
/// its padding, priority or promised stream id.
fn fragment(payload: &[u8], flags: u8, promise: bool) -> Option<&[u8]> {
    let mut fragment = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = fragment.split_first()?;
        fragment = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
    }
    let skipped = if promise {
        4
    } else if flags & PRIORITY != 0 {
        5
    } else {
        0
    };
    fragment.get(skipped..)
}

/// The fields of a header block that name a call or its end.
#[derive(Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    grpc: bool,
    grpc_status: Option<u8>,
    trace: Option<String>,
}

impl Fields {
    fn take(&mut self, name: &[u8], value: &[u8]) {
        let text = || String::from_utf8_lossy(value).into_owned();
        let number = || std::str::from_utf8(value).ok();
        match name {
            b":method" => self.method = Some(text()),
            b":path" => self.path = Some(text()),
            b":status" => self.status = number().and_then(|n| n.parse().ok()),
            b"content-type" => self.grpc = value.starts_with(b"application/grpc"),
            b"grpc-status" => self.grpc_status = number().and_then(|n| n.parse().ok()),
            b"traceparent" => self.trace = trace_id(value).map(str::to_string),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use httlib_hpack::Encoder;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// One side's encoder and the frames it sends.
    struct Peer(Encoder<'static>);

    impl Peer {
        fn new() -> Self {
            Self(Encoder::default())
        }

        /// Encodes `headers` as clients do: Huffman strings, new fields
        /// added to the table, known ones referred to by index.
        fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
            let flags = Encoder::HUFFMAN_NAME
                | Encoder::HUFFMAN_VALUE
                | Encoder::WITH_INDEXING
                | Encoder::BEST_FORMAT;
            let mut block = Vec::new();
            for (name, value) in headers {
                let field = (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags);
                self.0.encode(field, &mut block).expect("encodes");
            }
            block
        }
    }

    fn whole(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> FramePart<'_> {
        FramePart {
            kind,
            flags,
            stream,
            frame_len: payload.len() as u32,
            offset: 0,
            bytes: payload,
        }
    }

    fn grpc_request(peer: &mut Peer, path: &str) -> Vec<u8> {
        let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
        peer.block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "bar:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("traceparent", &traceparent),
        ])
    }

    fn request(stream: u32, path: &str) -> Seen {
        Seen::Request {
            stream,
            method: "POST".into(),
            path: path.into(),
            grpc: true,
            trace: Some(TRACE.into()),
        }
    }

    #[test]
    fn a_grpc_call_is_its_request_headers_then_its_trailers() {
        let (mut client, mut server) = (Peer::new(), Peer::new());
        let mut tracker = Tracker::default();
        for stream in [1, 3] {
            // The second request reuses the first's table entries.
            let block = grpc_request(&mut client, "/shop.Cart/Add");
            let part = whole(H2_HEADERS, END_HEADERS, stream, &block);
            assert_eq!(
                tracker.frame(true, &part),
                Ok(Some(request(stream, "/shop.Cart/Add")))
            );
            let block = server.block(&[(":status", "200"), ("content-type", "application/grpc")]);
            let part = whole(H2_HEADERS, END_HEADERS, stream, &block);
            assert_eq!(
                tracker.frame(false, &part),
                Ok(Some(Seen::Response {
                    stream,
                    status: 200,
                    grpc_status: None
                }))
            );
            let block = server.block(&[("grpc-status", "14"), ("grpc-message", "down")]);
            let part = whole(H2_HEADERS, END_HEADERS | END_STREAM, stream, &block);
            assert_eq!(
                tracker.frame(false, &part),
                Ok(Some(Seen::Trailers {
                    stream,
                    grpc_status: Some(14)
                }))
            );
        }
    }

    #[test]
    fn a_trailers_only_answer_carries_its_status_in_the_headers() {
        let mut server = Peer::new();
        let mut tracker = Tracker::default();
        let block = server.block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
        ]);
        let part = whole(H2_HEADERS, END_HEADERS | END_STREAM, 7, &block);
        assert_eq!(
            tracker.frame(false, &part),
            Ok(Some(Seen::Response {
                stream: 7,
                status: 200,
                grpc_status: Some(5)
            }))
        );
    }

    #[test]
    fn frames_in_parts_and_blocks_in_continuations_are_put_together() {
        let mut client = Peer::new();
        let mut tracker = Tracker::default();
        let block = grpc_request(&mut client, "/a.B/C?x=1");
        let (first, rest) = block.split_at(10);
        // HEADERS padded and with a priority, reported in two parts.
        let mut payload = vec![3];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(first);
        payload.extend_from_slice(&[0; 3]);
        let flags = PADDED | PRIORITY;
        let frame_len = payload.len() as u32;
        let (a, b) = payload.split_at(4);
        let part = |offset: u32, bytes| FramePart {
            kind: H2_HEADERS,
            flags,
            stream: 1,
            frame_len,
            offset,
            bytes,
        };
        assert_eq!(tracker.frame(true, &part(0, a)), Ok(None));
        assert_eq!(tracker.frame(true, &part(4, b)), Ok(None));
        let continuation = whole(H2_CONTINUATION, END_HEADERS, 1, rest);
        assert_eq!(
            tracker.frame(true, &continuation),
            Ok(Some(request(1, "/a.B/C")))
        );
    }

    #[test]
    fn continuations_without_end_and_huge_tables_lose_the_connection() {
        let mut tracker = Tracker::default();
        let mut client = Peer::new();
        let block = grpc_request(&mut client, "/a.B/C");
        assert_eq!(
            tracker.frame(true, &whole(H2_HEADERS, 0, 1, &block)),
            Ok(None)
        );
        let filler = vec![0x80 | 0x02; 16 << 10];
        let mut lost = false;
        for _ in 0..8 {
            if tracker.frame(true, &whole(H2_CONTINUATION, 0, 1, &filler)) == Err(Lost) {
                lost = true;
                break;
            }
        }
        assert!(lost, "a block past MAX_HEADER_BLOCK is given up on");
        // A dynamic table size update to 256 MiB (0x3f, then the rest in
        // four 7-bit groups, the most the decoder reads) does not decode.
        let mut tracker = Tracker::default();
        let update = [0x3f, 0xe1, 0xff, 0xff, 0x7f, 0x82];
        assert_eq!(
            tracker.frame(true, &whole(H2_HEADERS, END_HEADERS, 3, &update)),
            Err(Lost)
        );
    }

    #[test]
    fn a_small_block_that_decodes_to_a_huge_header_list_loses_the_connection() {
        // A 4,000-byte value put in the dynamic table (a literal with
        // incremental indexing, new name "x"), then referenced (index 62,
        // the table's first entry: one byte) 16,000 times: 20 KB on the
        // wire, 64 MB decoded.
        let mut block = vec![0x40, 0x01, b'x', 0x7f];
        let mut length = 4000 - 127;
        while length >= 128 {
            block.push(0x80 | (length % 128) as u8);
            length /= 128;
        }
        block.push(length as u8);
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0x80 | 62, 16_000));
        let mut tracker = Tracker::default();
        assert_eq!(
            tracker.frame(true, &whole(H2_HEADERS, END_HEADERS, 1, &block)),
            Err(Lost)
        );
        // Its dynamic table entry alone (one field, 4 KB) decodes.
        let mut tracker = Tracker::default();
        assert_eq!(
            tracker.frame(
                true,
                &whole(H2_HEADERS, END_HEADERS, 1, &block[..block.len() - 16_000])
            ),
            Ok(None)
        );
    }

    #[test]
    fn resets_and_goaways_end_streams_both_ways() {
        let mut tracker = Tracker::default();
        let cancel = whole(H2_RST_STREAM, 0, 5, &[0, 0, 0, 8]);
        assert_eq!(
            tracker.frame(true, &cancel),
            Ok(Some(Seen::Reset {
                stream: 5,
                sent: true
            }))
        );
        let goaway = whole(H2_GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]);
        assert_eq!(
            tracker.frame(false, &goaway),
            Ok(Some(Seen::GoingAway {
                last_stream: 3,
                sent: false
            }))
        );
    }

    #[test]
    fn a_missing_part_or_a_block_that_does_not_decode_loses_the_place() {
        let mut tracker = Tracker::default();
        let part = FramePart {
            kind: H2_HEADERS,
            flags: END_HEADERS,
            stream: 1,
            frame_len: 600,
            offset: 512,
            bytes: &[0; 88],
        };
        assert_eq!(tracker.frame(true, &part), Err(Lost));
        // An index past both tables.
        let part = whole(H2_HEADERS, END_HEADERS, 1, &[0xff, 0x7f]);
        assert_eq!(tracker.frame(false, &part), Err(Lost));
        // A literal whose value is cut short.
        let part = whole(H2_HEADERS, END_HEADERS, 3, &[0x40, 0x01, b'a', 0x05, b'b']);
        assert_eq!(Tracker::default().frame(false, &part), Err(Lost));
        let orphan = whole(H2_CONTINUATION, END_HEADERS, 1, &[0x82]);
        assert_eq!(Tracker::default().frame(true, &orphan), Err(Lost));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut server = Peer::new();
        let mut tracker = Tracker::default();
        let block = server.block(&[(":status", "100")]);
        let part = whole(H2_HEADERS, END_HEADERS, 1, &block);
        assert_eq!(tracker.frame(false, &part), Ok(None));
    }
}

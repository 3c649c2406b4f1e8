//! The session's bookkeeping without root: the model kernel stands where
//! the programs would be, and the tests drive the session as the proxy
//! and the kernel do.

use std::{net::SocketAddr, path::Path, sync::Arc};

use filibuster_common::{
    ACTION_DIRECT, ACTION_ESTABLISHED, ACTION_LOST, ACTION_OBSERVED, ACTION_OBSERVED_HTTP2,
    ACTION_REFUSED, ConnectAttempt, ConnectEvent, ConnectKey, H2_HEADERS, H2_RST_STREAM,
};

use super::{
    model::{Event, ModelEvents, ModelKernel},
    *,
};
use crate::explore::{Explorer, Fault, Options, Outcome};

const FOO: u16 = 5000;
const BAR: u16 = 5001;
const DB: u16 = 6379;
/// `foo`'s cgroup in cell `n` is `FOO_CGROUP + n`.
const FOO_CGROUP: u64 = 100;
const TEST_CGROUP: u64 = 200;

/// A session with `cells` copies of foo, bar and db (each cell's
/// namespace its own) and of the test, with the model kernel under it.
struct Harness {
    session: Arc<Session>,
    kernel: ModelKernel,
    events: ModelEvents,
    netns: Arc<NetNs>,
    /// Each cell's namespace cookie (cell 0's is the real `netns`).
    cookies: Vec<u64>,
    explorer: Explorer,
}

impl Harness {
    fn new(cells: usize) -> Self {
        let netns = Arc::new(NetNs::own().expect("own network namespace"));
        let cookies: Vec<u64> = (0..cells as u64).map(|n| netns.cookie() + n).collect();
        let services = cookies
            .iter()
            .flat_map(|&netns| {
                [("foo", FOO), ("bar", BAR), ("db", DB)].map(|(name, port)| ServiceAddress {
                    name: name.into(),
                    port,
                    netns,
                    addresses: Vec::new(),
                })
            })
            .collect();
        let (kernel, events) = (ModelKernel::default(), ModelEvents::default());
        let session = Arc::new(Session::new(
            kernel.clone(),
            events.clone(),
            services,
            FaultSpace::default(),
            std::slice::from_ref(&netns),
            cookies.clone(),
        ));
        for cell in 0..cells {
            session.add_caller(
                cell,
                FOO_CGROUP + cell as u64,
                Path::new("/nonexistent"),
                "foo",
            );
            session.add_caller(
                cell,
                TEST_CGROUP + cell as u64,
                Path::new("/nonexistent"),
                "test",
            );
        }
        Self {
            session,
            kernel,
            events,
            netns,
            cookies,
            explorer: Explorer::new(Options::default()),
        }
    }

    fn push(&self, event: Event) {
        self.events.0.lock().unwrap().push_back(event);
    }

    /// The kernel reports `action` on a connect of `cgroup` to `port`
    /// (its `ordinal`-th) from socket `socket`, in `cell`.
    fn connect(&self, cell: usize, cgroup: u64, port: u16, ordinal: u32, socket: u64, action: u32) {
        self.push(Event::Connect(ConnectEvent {
            attempt: attempt(cgroup, port, ordinal),
            netns: self.cookies[cell],
            socket,
            pid: 1,
            tid: 1,
            action,
            _pad: 0,
            at_ns: 0,
        }));
    }

    /// A connection `caller` in `cell` made to `port` through the proxy,
    /// from local `peer_port`.
    fn connection(&self, cell: usize, caller: &str, port: u16, peer_port: u16) -> Connection {
        let destination = address(port);
        let cgroup = match caller {
            "test" => TEST_CGROUP,
            _ => FOO_CGROUP,
        } + cell as u64;
        Connection {
            cell,
            caller: caller.into(),
            callee: callee(
                &self.session.lock().services,
                destination,
                self.cookies[cell],
            ),
            destination,
            peer: address(peer_port),
            listener_port: 15001,
            netns: self.netns.clone(),
            attempt: attempt(cgroup, port, 1),
            number: 1,
        }
    }

    /// The test asks foo, in `cell`, on its connection from `peer_port`:
    /// foo serves that request until it is finished.
    fn test_asks_foo(&self, cell: usize, peer_port: u16) -> CallHandle {
        let to_foo = self.connection(cell, "test", FOO, peer_port);
        let admission = self
            .session
            .admit(&to_foo, &request("/", true, Some(peer_port)));
        admission.call.expect("an execution runs")
    }

    /// Runs the next execution the search hands out in `cell`, `run`
    /// driving it, and returns it finished.
    fn run(&mut self, cell: usize, run: impl FnOnce(&Self)) -> Execution {
        let execution = self.explorer.next_execution().expect("an execution");
        self.session.begin(cell, execution).unwrap();
        run(self);
        self.session.end(cell).expect("running")
    }
}

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn attempt(cgroup: u64, port: u16, ordinal: u32) -> ConnectAttempt {
    ConnectAttempt {
        key: ConnectKey {
            cgroup_id: cgroup,
            destination: Destination(address(port)).to_kernel(),
            _pad: 0,
        },
        ordinal,
        _pad: 0,
    }
}

fn request(target: &str, first_on_connection: bool, upstream_port: Option<u16>) -> CallRequest<'_> {
    CallRequest {
        protocol: Protocol::Http,
        method: "GET",
        target,
        trace: None,
        first_on_connection,
        upstream_port: UpstreamPort::Fixed(upstream_port),
        learned: None,
    }
}

#[test]
fn a_refusal_is_armed_in_its_own_cell_with_the_connect_the_kernel_saw() {
    let mut harness = Harness::new(2);
    // Fault-free: foo's direct connect to db, serving the test, is a call.
    let first = harness.run(0, |h| {
        h.test_asks_foo(0, 41000);
        h.connect(0, FOO_CGROUP, DB, 1, 7, ACTION_DIRECT);
        h.connect(0, FOO_CGROUP, DB, 1, 7, ACTION_ESTABLISHED);
    });
    let call = &first.calls()[1];
    assert_eq!(
        (call.site.caller.as_str(), call.site.callee.as_str()),
        ("foo", "db")
    );
    assert_eq!(call.outcome, Outcome::Connected);
    assert_eq!(call.connect_ordinal, Some(1));
    harness.explorer.finish(first, true);

    // The refusal planned on it, run in cell 1: armed on cell 1's cgroup
    // of foo alone, and the kernel's refusal there is the planned call.
    let second = harness.run(1, |h| {
        let maps = h.kernel.maps();
        let (cgroups, refusals, proxied) = maps.begun.last().unwrap();
        assert_eq!(cgroups.len(), 2);
        assert!(cgroups.contains(&(FOO_CGROUP + 1)) && cgroups.contains(&(TEST_CGROUP + 1)));
        assert_eq!(refusals, &[attempt(FOO_CGROUP + 1, DB, 1)]);
        assert_eq!(proxied, &[attempt(FOO_CGROUP + 1, DB, 1).key]);
        drop(maps);
        // Cell 0 runs nothing: its connects are nobody's calls.
        h.connect(0, FOO_CGROUP, DB, 1, 8, ACTION_DIRECT);
        h.test_asks_foo(1, 41000);
        h.connect(1, FOO_CGROUP + 1, DB, 1, 9, ACTION_REFUSED);
        assert!(h.session.fault_injected(1, Some("db")));
        assert!(!h.session.fault_injected(0, None));
    });
    assert_eq!(second.calls().len(), 2);
    assert_eq!(second.calls()[1].injected, Some(Fault::ConnectionRefused));
}

#[test]
fn a_refusal_planned_on_a_call_that_came_pooled_resets_its_connection() {
    let mut harness = Harness::new(1);
    let to_bar = harness.connection(0, "foo", BAR, 40000);
    let first = harness.run(0, |h| {
        h.test_asks_foo(0, 41000);
        let admission = h.session.admit(&to_bar, &request("/items", true, None));
        assert_eq!(admission.enactment, Enactment::Forward);
        h.session
            .carry(admission.call.unwrap())
            .finish(Outcome::Status(200));
    });
    harness.explorer.finish(first, true);
    // Bugs first: the refusal of that call comes next. This time the call
    // reuses a connection, so the kernel cannot refuse it.
    let second = harness.run(0, |h| {
        let armed = attempt(FOO_CGROUP, BAR, 1);
        assert_eq!(h.kernel.maps().begun.last().unwrap().1, [armed]);
        h.test_asks_foo(0, 41000);
        let admission = h.session.admit(&to_bar, &request("/items", false, None));
        assert_eq!(admission.enactment, Enactment::ResetConnection);
        // Disarmed, so that the caller's reconnect goes through.
        assert_eq!(h.kernel.maps().disarmed, [armed]);
    });
    let call = &second.calls()[1];
    assert_eq!(call.injected, Some(Fault::ConnectionRefused));
    assert_eq!(call.outcome, Outcome::Injected(Fault::ConnectionReset));
}

#[test]
fn a_call_belongs_to_the_request_its_thread_is_serving() {
    for (serving, parent) in [(41001, 0), (41002, 1)] {
        let mut harness = Harness::new(1);
        let (first, second) = (
            harness.connection(0, "test", FOO, 41001),
            harness.connection(0, "test", FOO, 41002),
        );
        let to_bar = harness.connection(0, "foo", BAR, 42000);
        let execution = harness.run(0, |h| {
            // foo serves two requests at once, each read off its own
            // connection from the agent; its thread 9 last read `serving`.
            for (connection, port) in [(&first, 41001), (&second, 41002)] {
                let request = request("/", true, Some(port));
                h.session.admit(connection, &request);
            }
            let mut maps = h.kernel.maps();
            maps.senders.insert((42000, 15001), 9);
            maps.reads.insert((9, FOO), serving);
            drop(maps);
            h.session.admit(&to_bar, &request("/items", true, None));
        });
        let call = &execution.calls()[2];
        assert_eq!(call.site.callee, "bar");
        assert_eq!(call.parent.map(CallId::position), Some(parent));
    }
}

#[test]
fn calls_are_read_off_an_observed_connection() {
    let mut harness = Harness::new(1);
    let local = address(43000);
    let execution = harness.run(0, |h| {
        h.connect(0, FOO_CGROUP, BAR, 1, 11, ACTION_OBSERVED);
        let head = |seq, egress, text: &str| Event::Head {
            socket: 11,
            local,
            seq,
            egress,
            bytes: text.as_bytes().to_vec(),
        };
        h.push(head(
            1000,
            true,
            "GET /items?page=2 HTTP/1.1\r\nHost: bar\r\n\r\n",
        ));
        h.push(head(
            5000,
            false,
            "HTTP/1.1 503 Service Unavailable\r\n\r\n",
        ));
        // A retransmission of the request is not a second call.
        h.push(head(
            1000,
            true,
            "GET /items?page=2 HTTP/1.1\r\nHost: bar\r\n\r\n",
        ));
        h.session.absorb();
        assert_eq!(h.session.observed_calls(), 1);
    });
    let [call] = execution.calls() else {
        panic!("one call, not {:?}", execution.calls());
    };
    assert_eq!(
        (call.site.caller.as_str(), call.site.callee.as_str()),
        ("foo", "bar")
    );
    assert_eq!(call.site.target, "/items");
    assert_eq!(call.outcome, Outcome::Status(503));
}

#[test]
fn an_execution_that_lost_kernel_events_says_so() {
    let mut harness = Harness::new(1);
    harness.kernel.maps().dropped = 5;
    // Events lost before the execution are not its own.
    let quiet = harness.run(0, |h| {
        h.test_asks_foo(0, 41000);
        h.connect(0, FOO_CGROUP, DB, 1, 7, ACTION_DIRECT);
    });
    assert_eq!(harness.explorer.finish(quiet, true).lost_events, 0);
    let flooded = harness.run(0, |h| h.kernel.maps().dropped += 3);
    assert_eq!(harness.explorer.finish(flooded, true).lost_events, 3);
}

#[test]
fn calls_a_service_makes_on_its_own_are_watched_not_failed() {
    let mut harness = Harness::new(1);
    let to_db = |h: &Harness, socket| h.connect(0, FOO_CGROUP, DB, 1, socket, ACTION_DIRECT);
    let first = harness.run(0, |h| {
        // Serving nothing: a health check of db, say.
        to_db(h, 1);
        // Serving the test, from a thread that never read its request:
        // the same site, so the same health check.
        h.test_asks_foo(0, 41000);
        to_db(h, 2);
        h.session.absorb();
        // From the thread that read it (the kernel says so): the request's.
        h.kernel.maps().reads.insert((1, FOO), 41000);
        to_db(h, 3);
    });
    let parents: Vec<Option<usize>> = first
        .calls()
        .iter()
        .map(|c| c.parent.map(CallId::position))
        .collect();
    assert_eq!(parents, [None, None, None, Some(1)]);
    let request_call = first.calls()[3].index.clone();
    harness.explorer.finish(first, true);
    // Only the request's call is failed, every way there is.
    while let Some(next) = harness.explorer.next_execution() {
        let planned: Vec<_> = next.plan().faults().map(|f| f.index.clone()).collect();
        assert_eq!(planned, std::slice::from_ref(&request_call));
        harness.explorer.finish(next, true);
    }
}

/// One side's HPACK encoder, as an HTTP/2 peer's.
struct Hpack(httlib_hpack::Encoder<'static>);

impl Hpack {
    fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let flags = httlib_hpack::Encoder::HUFFMAN_VALUE
            | httlib_hpack::Encoder::WITH_INDEXING
            | httlib_hpack::Encoder::BEST_FORMAT;
        let mut block = Vec::new();
        for (name, value) in headers {
            let field = (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags);
            self.0.encode(field, &mut block).expect("encodes");
        }
        block
    }
}

#[test]
fn grpc_calls_are_read_off_an_observed_http2_connection() {
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    let mut harness = Harness::new(1);
    let local = address(43000);
    let (mut client, mut server) = (
        Hpack(httlib_hpack::Encoder::default()),
        Hpack(httlib_hpack::Encoder::default()),
    );
    let frame = |egress, kind, flags, stream, payload| Event::Frame {
        socket: 11,
        local,
        egress,
        kind,
        flags,
        stream,
        payload,
    };
    let execution = harness.run(0, |h| {
        h.connect(0, FOO_CGROUP, BAR, 1, 11, ACTION_OBSERVED_HTTP2);
        for (stream, method) in [(1, "Add"), (3, "Empty")] {
            let path = format!("/shop.Cart/{method}");
            let request = client.block(&[
                (":method", "POST"),
                (":path", &path),
                ("content-type", "application/grpc"),
            ]);
            h.push(frame(true, H2_HEADERS, END_HEADERS, stream, request));
        }
        // Stream 1: answered, its status in the trailers.
        let headers = server.block(&[(":status", "200"), ("content-type", "application/grpc")]);
        h.push(frame(false, H2_HEADERS, END_HEADERS, 1, headers));
        let trailers = server.block(&[("grpc-status", "14")]);
        let ended = END_HEADERS | END_STREAM;
        h.push(frame(false, H2_HEADERS, ended, 1, trailers));
        // Stream 3: given up on by the caller (a deadline).
        h.push(frame(true, H2_RST_STREAM, 0, 3, vec![0, 0, 0, 8]));
        h.session.absorb();
        assert_eq!(h.session.observed_calls(), 2);
        // Lost (the kernel's walk gave up) with no call awaited: destroyed,
        // nothing more read off it.
        h.connect(0, FOO_CGROUP, BAR, 1, 11, ACTION_LOST);
        let request = client.block(&[(":method", "POST"), (":path", "/shop.Cart/Late")]);
        h.push(frame(true, H2_HEADERS, END_HEADERS, 5, request));
        h.session.absorb();
        assert_eq!(h.session.observed_calls(), 2);
    });
    let summary: Vec<(&str, &str, &Outcome)> = execution
        .calls()
        .iter()
        .map(|c| (c.site.callee.as_str(), c.site.target.as_str(), &c.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            ("bar", "/shop.Cart/Add", &Outcome::Grpc(14)),
            ("bar", "/shop.Cart/Empty", &Outcome::Abandoned),
        ]
    );
    assert!(
        execution
            .calls()
            .iter()
            .all(|c| c.site.protocol == Protocol::Grpc)
    );
}

//! The proxy on real loopback sockets, without root: the model kernel
//! stands where the programs would be (it hands the proxy the redirected
//! connection's destination), a hyper server is the callee and a hyper
//! client the caller. What is checked is what a call costs the other
//! connections' calls: its trips to the session's one lock.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use filibuster_common::{ConnectAttempt, ConnectKey};
use http_body_util::{BodyExt, Empty};
use hyper::{
    HeaderMap, Request, Response,
    body::{Body, Frame},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::http;
use crate::{
    config::TEST_CALLER,
    ebpf::Destination,
    explore::{
        CallSite, Execution, ExecutionIndex, Explorer, Fault, FaultSpace, Options, Outcome, Plan,
        PlannedFault, Protocol,
    },
    netns::NetNs,
    session::{
        Connection, ServiceAddress, Session,
        model::{ModelEvents, ModelKernel},
    },
};

/// The caller's managed cgroup.
const CALLER_CGROUP: u64 = 300;

/// A path the HTTP/1.1 callee never answers.
const HANG: &str = "/hang";

/// How the callee answers.
#[derive(Clone, Copy)]
enum Callee {
    Http1,
    /// gRPC over HTTP/2: a message, then the status in trailers.
    Grpc,
}

/// A session running one execution in which the test calls `callee`
/// through the proxy.
struct Rig {
    session: Arc<Session>,
    kernel: ModelKernel,
    netns: Arc<NetNs>,
    callee: SocketAddr,
    listener: TcpListener,
}

impl Rig {
    async fn new(callee: Callee) -> Self {
        Self::with_faults(callee, Vec::new()).await
    }

    /// As `new`, the execution injecting `fault` on the test's first
    /// `method target` call of `protocol`.
    async fn faulted(
        callee: Callee,
        protocol: Protocol,
        method: &str,
        target: &str,
        fault: Fault,
    ) -> Self {
        let site = CallSite {
            caller: TEST_CALLER.into(),
            callee: "callee".into(),
            protocol,
            method: method.into(),
            target: target.into(),
        };
        let index = ExecutionIndex::default().child(site.hash(), 1);
        Self::with_faults(callee, vec![PlannedFault { index, site, fault }]).await
    }

    /// The execution injecting `faults` (none: the search's first).
    async fn with_faults(callee: Callee, faults: Vec<PlannedFault>) -> Self {
        let netns = Arc::new(NetNs::own().expect("own network namespace"));
        let address = serve_callee(callee).await;
        let kernel = ModelKernel::default();
        let session = Arc::new(Session::new(
            kernel.clone(),
            ModelEvents::default(),
            vec![ServiceAddress {
                name: "callee".into(),
                port: address.port(),
                netns: netns.cookie(),
                addresses: Vec::new(),
            }],
            FaultSpace::default(),
            std::slice::from_ref(&netns),
            vec![netns.cookie()],
        ));
        session.add_caller(0, CALLER_CGROUP, Path::new("/nonexistent"), TEST_CALLER);
        let mut explorer = match faults.is_empty() {
            true => Explorer::new(Options::default()),
            false => Explorer::replay(Plan::replay(faults)),
        };
        let execution = explorer.next_execution().expect("the first execution");
        session.begin(0, execution).expect("begin");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self {
            session,
            kernel,
            netns,
            callee: address,
            listener,
        }
    }

    /// The caller connects to the callee: the kernel redirects the
    /// connection to the proxy's listener, which accepts it. Returns the
    /// caller's end and the proxy's.
    async fn connect(&self) -> (TcpStream, TcpStream, Connection) {
        let caller = TcpStream::connect(self.listener.local_addr().unwrap())
            .await
            .unwrap();
        let attempt = ConnectAttempt {
            key: ConnectKey {
                cgroup_id: CALLER_CGROUP,
                destination: Destination(self.callee).to_kernel(),
                _pad: 0,
            },
            ordinal: 1,
            _pad: 0,
        };
        let peer = caller.local_addr().unwrap();
        self.kernel
            .maps()
            .redirects
            .insert((self.netns.cookie(), peer.port()), attempt);
        let (accepted, peer) = self.listener.accept().await.unwrap();
        let port = self.listener.local_addr().unwrap().port();
        let connection = self
            .session
            .accept(&self.netns, port, peer)
            .expect("a redirected connection");
        (caller, accepted, connection)
    }

    fn end(&self) -> Execution {
        self.session.end(0).expect("running")
    }
}

/// Waits for the proxy's tasks to make `done` true.
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("not in 10 s: {what}"));
}

/// Starts the callee on a loopback port.
async fn serve_callee(callee: Callee) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let io = TokioIo::new(stream);
            match callee {
                Callee::Http1 => {
                    let answer = service_fn(|request: Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == HANG {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let served = hyper::server::conn::http1::Builder::new();
                    tokio::spawn(async move { served.serve_connection(io, answer).await });
                }
                Callee::Grpc => {
                    let answer = service_fn(|_: Request<hyper::body::Incoming>| async {
                        let mut response = Response::new(GrpcBody::ok());
                        response
                            .headers_mut()
                            .insert("content-type", "application/grpc".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    });
                    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    tokio::spawn(async move { served.serve_connection(io, answer).await });
                }
            }
        }
    });
    address
}

/// A gRPC answer's body: one empty message, then `grpc-status: 0`.
struct GrpcBody(VecDeque<Frame<Bytes>>);

impl GrpcBody {
    fn ok() -> Self {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        Self(VecDeque::from([
            Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])),
            Frame::trailers(trailers),
        ]))
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// The session's lock acquisitions each of `calls` calls on one HTTP/1.1
/// connection took, the connection's acceptance first.
async fn http1_trips(calls: usize) -> (Vec<usize>, Execution) {
    let rig = Rig::new(Callee::Http1).await;
    let before = rig.session.locks();
    let (caller, accepted, connection) = rig.connect().await;
    let mut trips = vec![rig.session.locks() - before];
    tokio::spawn(http::serve_http1(accepted, connection, rig.session.clone()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(caller))
        .await
        .unwrap();
    tokio::spawn(connection);
    for _ in 0..calls {
        let before = rig.session.locks();
        let request = Request::get(format!("http://{}/items", rig.callee))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        trips.push(rig.session.locks() - before);
    }
    (trips, rig.end())
}

#[tokio::test]
async fn a_proxied_http1_call_takes_the_session_lock_once_in_and_once_out() {
    let (trips, execution) = http1_trips(3).await;
    eprintln!("lock trips: accept, then per call: {trips:?}");
    let outcomes: Vec<&Outcome> = execution.calls().iter().map(|c| &c.outcome).collect();
    assert_eq!(outcomes, [&Outcome::Status(200); 3]);
    assert_eq!(trips, [1, 2, 2, 2]);
}

#[tokio::test]
async fn a_proxied_grpc_call_records_its_trailers_status_in_one_trip_out() {
    let rig = Rig::new(Callee::Grpc).await;
    let before = rig.session.locks();
    let (caller, accepted, connection) = rig.connect().await;
    let accepted_at = rig.session.locks();
    let served = tokio::spawn(http::serve_http2(accepted, connection, rig.session.clone()));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(caller))
            .await
            .unwrap();
    tokio::spawn(connection);
    // The connection is registered among those an execution may end.
    until("the connection registered", || {
        rig.session.locks() > accepted_at
    })
    .await;
    let mut trips = vec![rig.session.locks() - before];
    for _ in 0..3 {
        let before = rig.session.locks();
        let request = Request::post(format!("http://{}/shop.Cart/Add", rig.callee))
            .header("content-type", "application/grpc")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let trailers = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .trailers()
            .cloned();
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        trips.push(rig.session.locks() - before);
    }
    let before = rig.session.locks();
    drop(sender);
    served.await.unwrap();
    trips.push(rig.session.locks() - before);
    eprintln!("lock trips: accept and register, per call, unregister: {trips:?}");
    let execution = rig.end();
    let outcomes: Vec<&Outcome> = execution.calls().iter().map(|c| &c.outcome).collect();
    assert_eq!(outcomes, [&Outcome::Grpc(0); 3]);
    assert_eq!(trips, [2, 2, 2, 2, 1]);
}

#[tokio::test]
async fn a_call_its_caller_hangs_up_on_is_abandoned() {
    let rig = Rig::new(Callee::Http1).await;
    let (caller, accepted, connection) = rig.connect().await;
    tokio::spawn(http::serve_http1(accepted, connection, rig.session.clone()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(caller))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}{HANG}", rig.callee))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let admitted = rig.session.locks() + 1;
    let waiting = tokio::spawn(async move { sender.send_request(request).await });
    until("the call admitted", || rig.session.locks() >= admitted).await;
    // The caller gives up: its connection closes under the waiting call.
    waiting.abort();
    connection.abort();
    until("the call ended", || rig.session.locks() > admitted).await;
    let execution = rig.end();
    assert_eq!(execution.calls().len(), 1);
    assert_eq!(execution.calls()[0].outcome, Outcome::Abandoned);
}

#[tokio::test]
async fn a_delayed_http2_stream_is_forwarded_that_late_and_a_concurrent_one_is_not() {
    const DELAY: std::time::Duration = std::time::Duration::from_millis(300);
    let rig = Rig::faulted(
        Callee::Grpc,
        Protocol::Grpc,
        "POST",
        "/shop.Cart/Slow",
        Fault::Delay(DELAY.as_millis() as u32),
    )
    .await;
    let (caller, accepted, connection) = rig.connect().await;
    tokio::spawn(http::serve_http2(accepted, connection, rig.session.clone()));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(caller))
            .await
            .unwrap();
    tokio::spawn(connection);
    let call = |path: &'static str| {
        let mut sender = sender.clone();
        let callee = rig.callee;
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            let request = Request::post(format!("http://{callee}{path}"))
                .header("content-type", "application/grpc")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap();
            assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
            began.elapsed()
        })
    };
    // Both streams open at once on the one connection.
    let (delayed, other) = (call("/shop.Cart/Slow"), call("/shop.Cart/Add"));
    let other = other.await.unwrap();
    let delayed = delayed.await.unwrap();
    assert!(delayed >= DELAY, "forwarded after {delayed:?}");
    assert!(
        other < delayed,
        "the other stream waited: {other:?} against {delayed:?}"
    );
    let execution = rig.end();
    let outcomes: Vec<&Outcome> = execution.calls().iter().map(|c| &c.outcome).collect();
    // The delayed call is answered by the callee: its own status.
    assert_eq!(outcomes, [&Outcome::Grpc(0); 2]);
}

#[tokio::test]
async fn a_truncated_answer_reaches_the_caller_as_its_head_then_an_error() {
    let rig = Rig::faulted(
        Callee::Http1,
        Protocol::Http,
        "GET",
        "/cut",
        Fault::Truncated,
    )
    .await;
    let (caller, accepted, connection) = rig.connect().await;
    tokio::spawn(http::serve_http1(accepted, connection, rig.session.clone()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(caller))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/cut", rig.callee))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("the head arrives");
    assert_eq!(response.status(), 200, "the callee's own status");
    assert!(
        response.into_body().collect().await.is_err(),
        "the body never ends well"
    );
    let execution = rig.end();
    assert_eq!(execution.calls().len(), 1);
    assert_eq!(
        execution.calls()[0].outcome,
        Outcome::Injected(Fault::Truncated)
    );
}

#[tokio::test]
async fn a_connection_reset_reaches_the_caller_as_a_reset_not_a_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rig = Rig::faulted(
        Callee::Http1,
        Protocol::Http,
        "GET",
        "/reset",
        Fault::ConnectionReset,
    )
    .await;
    let (mut caller, accepted, connection) = rig.connect().await;
    tokio::spawn(http::serve_http1(accepted, connection, rig.session.clone()));
    caller
        .write_all(b"GET /reset HTTP/1.1\r\nhost: callee\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = caller.read_to_end(&mut answer).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

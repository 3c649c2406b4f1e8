//! The transparent proxy: every connection a managed process makes arrives
//! here (the kernel redirected it); each HTTP/1.1 request on it is a call,
//! which is either forwarded to its original destination or failed.
//!
//! Each caller connection gets its own upstream connection, opened with
//! the first forwarded request and reused after, so the callee sees the
//! same connection pattern as without Filibuster.

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd, BorrowedFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    client::conn::http1::SendRequest,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, net::TcpStream, sync::Mutex};
use tracing::debug;

use crate::{
    explore::{Fault, Outcome},
    session::{Connection, Session},
};

type Body = BoxBody<Bytes, hyper::Error>;
type Error = std::io::Error;

/// Header on every response the agent made up, so a person reading a
/// service's logs can tell an injected failure from a real one.
pub const INJECTED_HEADER: &str = "x-filibuster-injected";

/// Accepts redirected connections until the task is dropped.
pub async fn serve(listener: TcpListener, session: Arc<Session>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Some(connection) = session.accept(peer) else {
            // Not redirected by our programs: nobody should connect here.
            debug!(%peer, "dropping a connection the kernel did not redirect");
            continue;
        };
        tokio::spawn(serve_connection(stream, connection, session.clone()));
    }
}

async fn serve_connection(stream: TcpStream, connection: Connection, session: Arc<Session>) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let caller = Arc::new(CallerConnection {
        connection,
        session,
        fd,
        upstream: Mutex::new(None),
        used: AtomicBool::new(false),
    });
    let service = service_fn(move |request| {
        let caller = caller.clone();
        async move { caller.handle(request).await }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        debug!("caller connection ended: {e}");
    }
}

struct CallerConnection {
    connection: Connection,
    session: Arc<Session>,
    /// The caller's socket, for resetting it.
    fd: RawFd,
    upstream: Mutex<Option<SendRequest<Incoming>>>,
    used: AtomicBool,
}

impl CallerConnection {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, Error> {
        let first = !self.used.swap(true, Ordering::Relaxed);
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.path())
            .to_string();
        let admission =
            self.session
                .admit(&self.connection, request.method().as_str(), &target, first);
        match (admission.fault, admission.call) {
            (Some(Fault::HttpStatus(code)), _) => Ok(injected_status(code)),
            (Some(Fault::Timeout), Some((execution, _))) => {
                self.session.hold(execution).await;
                Err(Error::other("held until the execution ended"))
            }
            (Some(_), _) => {
                // Refusals happen in the kernel; a call on a reused
                // connection is failed by resetting that connection.
                self.reset();
                Err(Error::other("connection reset by fault injection"))
            }
            (None, call) => {
                let result = self.forward(request).await;
                if let Some(call) = call {
                    let outcome = match &result {
                        Ok(response) => Outcome::Status(response.status().as_u16()),
                        Err(_) => Outcome::ConnectionError,
                    };
                    self.session
                        .finish_call(call, &self.connection.callee, outcome);
                }
                result.inspect_err(|_| self.reset())
            }
        }
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Response<Body>, Error> {
        let mut upstream = self.upstream.lock().await;
        let sender = match upstream.as_mut() {
            Some(sender) if !sender.is_closed() => sender,
            _ => upstream.insert(connect(self.connection.destination).await?),
        };
        sender.ready().await.map_err(Error::other)?;
        let response = sender.send_request(request).await.map_err(Error::other)?;
        Ok(response.map(BodyExt::boxed))
    }

    /// Makes the kernel answer the caller's next packet with RST.
    fn reset(&self) {
        // SAFETY: the socket stays open while hyper serves the connection,
        // and this runs inside that service.
        let socket = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Linger, &linger);
    }
}

async fn connect(destination: SocketAddr) -> Result<SendRequest<Incoming>, Error> {
    let stream = TcpStream::connect(destination).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!("upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

fn injected_status(code: u16) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = format!("{status} (injected by filibuster)\n");
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(INJECTED_HEADER, HeaderValue::from_static("1"));
    response
}

//! HTTP/1.1 and HTTP/2 calls: the caller's connection is served by hyper
//! (HTTP/2 through h2, so header compression state stays consistent on
//! each side), every request or stream is admitted as a call, then either
//! failed here or forwarded on the caller connection's own upstream
//! connection.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU16, Ordering},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::{Frame, Incoming},
    client::conn::{http1, http2},
    header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, UPGRADE},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpStream, sync::Mutex};
use tracing::debug;

use super::reset;
use crate::{
    ebpf::Speaks,
    explore::{Outcome, Protocol},
    session::{Call, CallRequest, Carried, Connection, Enactment, Session, UpstreamPort},
};

type Body = BoxBody<Bytes, BoxError>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Error = std::io::Error;

/// Headers an HTTP/1.1 request or response may have through the proxy.
/// hyper's default (100) would answer a call with more 431 when proxied,
/// where the same call observed directly goes through: servers limit a
/// head's size, not its number of headers.
const MAX_HEADERS: usize = 1000;

/// Header on every response the agent made up, so a person reading a
/// service's logs can tell an injected failure from a real one.
pub const INJECTED_HEADER: &str = "x-filibuster-injected";

pub async fn serve_http1(stream: TcpStream, connection: Connection, session: Arc<Session>) {
    let stream = Resettable::new(stream);
    let caller = CallerConnection::new(&stream, connection, session, Upstream::http1());
    let result = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), caller.service())
        .await;
    if let Err(e) = result {
        debug!("caller connection ended: {e}");
    }
}

/// Serves an HTTP/2 connection until it ends, or until an execution plans
/// no fault on its caller and destination: then it is closed gracefully
/// (GOAWAY, the streams under way finishing), so that the caller's next
/// connection goes directly, observed by the kernel.
pub async fn serve_http2(stream: TcpStream, connection: Connection, session: Arc<Session>) {
    let registry = session.clone();
    let mut carried = registry.carrying(Carried::Observable, connection.attempt.key);
    let stream = Resettable::new(stream);
    let caller = CallerConnection::new(&stream, connection, session, Upstream::http2());
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), caller.service());
    tokio::pin!(served);
    let result = tokio::select! {
        result = &mut served => result,
        _ = &mut carried.end => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        debug!("caller connection ended: {e}");
    }
}

/// The connection to the callee that carries a caller connection's calls.
enum Upstream {
    /// One request at a time: the lock is held for each exchange.
    Http1(Mutex<Option<http1::SendRequest<Incoming>>>),
    /// Streams run side by side on one connection.
    Http2(Mutex<Option<http2::SendRequest<Incoming>>>),
}

impl Upstream {
    fn http1() -> Self {
        Self::Http1(Mutex::new(None))
    }

    fn http2() -> Self {
        Self::Http2(Mutex::new(None))
    }
}

struct CallerConnection {
    connection: Connection,
    session: Arc<Session>,
    /// Set to have the caller's socket reset when it closes.
    reset: Arc<AtomicBool>,
    upstream: Upstream,
    /// The agent's port on the upstream connection (0: none yet).
    upstream_port: Arc<AtomicU16>,
    used: AtomicBool,
}

impl CallerConnection {
    fn new(
        stream: &Resettable,
        connection: Connection,
        session: Arc<Session>,
        upstream: Upstream,
    ) -> Arc<Self> {
        Arc::new(Self {
            connection,
            session,
            reset: stream.reset.clone(),
            upstream,
            upstream_port: Arc::default(),
            used: AtomicBool::new(false),
        })
    }

    fn service(
        self: Arc<Self>,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Error,
        Future = impl Future<Output = Result<Response<Body>, Error>> + Send,
    > + Clone {
        service_fn(move |request| {
            let caller = self.clone();
            async move { caller.handle(request).await }
        })
    }

    fn protocol(&self, request: &Request<Incoming>) -> Protocol {
        let grpc = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        match &self.upstream {
            Upstream::Http1(_) => Protocol::Http,
            Upstream::Http2(_) if grpc => Protocol::Grpc,
            Upstream::Http2(_) => Protocol::Http2,
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, Error> {
        let first = !self.used.swap(true, Ordering::Relaxed);
        let protocol = self.protocol(&request);
        // Plain HTTP/1.1 (no upgrade to another protocol on the way), or
        // HTTP/2 by prior knowledge: the kernel can read the calls off
        // later connections there itself.
        let learned = match &self.upstream {
            _ if !first => None,
            Upstream::Http1(_) if !request.headers().contains_key(UPGRADE) => Some(Speaks::Http1),
            Upstream::Http2(_) => Some(Speaks::Http2),
            Upstream::Http1(_) => None,
        };
        let admission = self.session.admit(
            &self.connection,
            &CallRequest {
                protocol,
                method: request.method().as_str(),
                target: request.uri().path(),
                trace: trace_id(request.headers()),
                first_on_connection: first,
                upstream_port: UpstreamPort::Shared(self.upstream_port.clone()),
                learned,
            },
        );
        match (admission.enactment, admission.call) {
            (Enactment::HttpStatus(code), _) => Ok(injected_status(code)),
            (Enactment::GrpcStatus(code), _) => Ok(injected_grpc_status(code)),
            // Only a call of a running execution has a fault to enact.
            (Enactment::Hold, call) => {
                if let Some(call) = call {
                    self.session.carry(call).hold().await;
                }
                Err(Error::other("held until the execution ended"))
            }
            // hyper answers a failed HTTP/2 stream with RST_STREAM.
            (Enactment::ResetStream, _) => Err(Error::other("stream reset by fault injection")),
            (Enactment::ResetConnection, _) => {
                self.reset();
                Err(Error::other("connection reset by fault injection"))
            }
            (Enactment::Truncate, call) => {
                let call = call.map(|call| self.session.carry(call));
                let result = self.forward(request).await;
                if let Some(call) = call {
                    // Its outcome stays the fault's: the caller never got
                    // the answer whole.
                    call.finish(Outcome::ConnectionError);
                }
                result.map(cut).inspect_err(|_| self.reset())
            }
            (enactment @ (Enactment::Forward | Enactment::Delay(_)), call) => {
                // Dropped while it waits (its caller hung up): abandoned.
                let call = call.map(|call| self.session.carry(call));
                if let Enactment::Delay(delay) = enactment {
                    tokio::time::sleep(delay).await;
                }
                let result = self.forward(request).await;
                let Some(call) = call else {
                    return result
                        .map(|response| response.map(boxed))
                        .inspect_err(|_| self.reset());
                };
                match result {
                    Ok(response) => Ok(finish(call, protocol, response)),
                    Err(e) => {
                        call.finish(Outcome::ConnectionError);
                        self.reset();
                        Err(e)
                    }
                }
            }
        }
    }

    async fn forward(&self, mut request: Request<Incoming>) -> Result<Response<Incoming>, Error> {
        match &self.upstream {
            Upstream::Http1(upstream) => {
                decline_h2c_upgrade(&mut request);
                let mut upstream = upstream.lock().await;
                let sender = match upstream.as_mut() {
                    Some(sender) if !sender.is_closed() => sender,
                    _ => {
                        let stream = self.connect_upstream().await?;
                        let (sender, connection) = http1::Builder::new()
                            .preserve_header_case(true)
                            .max_headers(MAX_HEADERS)
                            .handshake(TokioIo::new(stream))
                            .await
                            .map_err(Error::other)?;
                        tokio::spawn(connection);
                        upstream.insert(sender)
                    }
                };
                sender.ready().await.map_err(Error::other)?;
                sender.send_request(request).await.map_err(Error::other)
            }
            Upstream::Http2(upstream) => {
                let mut sender = {
                    let mut upstream = upstream.lock().await;
                    match upstream.as_ref() {
                        Some(sender) if !sender.is_closed() => sender.clone(),
                        _ => {
                            let stream = self.connect_upstream().await?;
                            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                                .handshake(TokioIo::new(stream))
                                .await
                                .map_err(Error::other)?;
                            tokio::spawn(connection);
                            upstream.insert(sender).clone()
                        }
                    }
                };
                sender.ready().await.map_err(Error::other)?;
                sender.send_request(request).await.map_err(Error::other)
            }
        }
    }

    /// Opens the upstream connection; the calls on it, admitted before it
    /// existed, learn its port before the callee can read them.
    async fn connect_upstream(&self) -> Result<TcpStream, Error> {
        let stream = self
            .connection
            .netns
            .connect(self.connection.destination)
            .await?;
        let port = stream.local_addr()?.port();
        self.upstream_port.store(port, Ordering::Relaxed);
        Ok(stream)
    }

    /// The caller's connection ends with a reset when hyper closes it
    /// (which the error this goes with makes it do, for HTTP/1.1).
    fn reset(&self) {
        self.reset.store(true, Ordering::Relaxed);
    }
}

/// The caller's socket as hyper serves it, reset instead of closed when a
/// call asked for that. The socket itself decides at its close, so a
/// request that outlives its connection (an HTTP/2 stream's task) cannot
/// touch a descriptor number the kernel has handed to another socket.
/// By hand: tokio has no close hook on a stream.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Resettable {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            reset: Arc::default(),
        }
    }
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            reset(&self.stream);
        }
    }
}

impl tokio::io::AsyncRead for Resettable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Resettable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Records how a forwarded call ended: at its response headers, or for a
/// gRPC call with a body, at the trailers that follow it.
fn finish(mut call: Call, protocol: Protocol, response: Response<Incoming>) -> Response<Body> {
    // A trailers-only gRPC answer has its status in the headers; one with
    // a body, in the trailers that follow it.
    let grpc = match protocol {
        Protocol::Grpc => Some(grpc_status(response.headers())),
        _ => None,
    };
    let outcome = match grpc {
        Some(Some(code)) => Outcome::Grpc(code),
        _ => Outcome::Status(response.status().as_u16()),
    };
    if grpc != Some(None) {
        call.finish(outcome);
        return response.map(boxed);
    }
    // The headers' status stands if no trailers come.
    call.answered(outcome);
    let mut call = Some(call);
    response.map(|body| {
        body.map_frame(move |frame| {
            if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                && let Some(call) = call.take()
            {
                call.finish(Outcome::Grpc(code));
            }
            frame
        })
        .map_err(Into::into)
        .boxed()
    })
}

/// A body from the callee as the proxy answers with it.
fn boxed(body: Incoming) -> Body {
    body.map_err(Into::into).boxed()
}

/// `response` with its body cut: the caller gets its head, then an error
/// where the body would be (HTTP/1.1: its connection ends; HTTP/2: its
/// stream is reset).
fn cut(response: Response<Incoming>) -> Response<Body> {
    response.map(|_| Cut { head_sent: false }.boxed())
}

/// A body that fails where it would begin, once the head before it is on
/// its way. By hand: http-body-util's bodies all end well.
struct Cut {
    head_sent: bool,
}

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Not ready at first: hyper flushes the head while it waits.
        if !self.head_sent {
            self.head_sent = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Some(Err("response cut by fault injection".into())))
    }
}

/// An HTTP/1.1 request asking to upgrade to cleartext HTTP/2 (`Upgrade:
/// h2c`) is forwarded without the offer, as RFC 9113 lets a server
/// decline it: the exchange stays HTTP/1.1 and its requests stay calls.
fn decline_h2c_upgrade(request: &mut Request<Incoming>) {
    let headers = request.headers_mut();
    if headers
        .get(UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"h2c"))
    {
        headers.remove(UPGRADE);
        headers.remove("http2-settings");
        headers.remove(CONNECTION);
    }
}

fn trace_id(headers: &HeaderMap) -> Option<&str> {
    crate::observe::trace_id(headers.get("traceparent")?.as_bytes())
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
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
    // As a rate limiter answers: a client that honours it waits a second.
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A trailers-only gRPC response: one HEADERS frame that ends the stream.
fn injected_grpc_status(code: u8) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("injected by filibuster"),
    );
    headers.insert(INJECTED_HEADER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_429_says_when_to_retry_as_rate_limiters_do() {
        let limited = injected_status(429);
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[RETRY_AFTER], "1");
        assert_eq!(limited.headers()[INJECTED_HEADER], "1");
        assert!(!injected_status(503).headers().contains_key(RETRY_AFTER));
    }
}

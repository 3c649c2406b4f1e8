//! The transparent proxy: every connection a managed process makes arrives
//! here (the kernel redirected it). What the caller sends first tells how
//! to treat it: HTTP/1.1 and HTTP/2 are spoken on both sides, each request
//! or stream being a call ([`http`]); anything else is passed through as
//! bytes, the connection being the call ([`tcp`]). A destination seen
//! speaking such an opaque protocol is then connected to directly (the
//! kernel reports those connects as the calls), except where a fault
//! planned on one needs the proxy.
//!
//! Each caller connection gets its own upstream connection, so the callee
//! sees the same connection pattern as without Filibuster.

mod http;
mod sniff;
mod tcp;

use std::{os::fd::AsFd, sync::Arc};

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

pub use http::INJECTED_HEADER;
use sniff::Wire;

use crate::{
    netns::NetNs,
    session::{Connection, Session},
};

/// Accepts the connections redirected to `listener`, which lives in
/// `netns`, until the task is dropped.
pub async fn serve(listener: TcpListener, netns: Arc<NetNs>, session: Arc<Session>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Some(connection) = session.accept(&netns, peer) else {
            // Not redirected by our programs: nobody should connect here.
            debug!(%peer, "dropping a connection the kernel did not redirect");
            continue;
        };
        tokio::spawn(serve_connection(stream, connection, session.clone()));
    }
}

async fn serve_connection(stream: TcpStream, connection: Connection, session: Arc<Session>) {
    let _ = stream.set_nodelay(true);
    match sniff::wire(&stream).await {
        Wire::Http1 => http::serve_http1(stream, connection, session).await,
        Wire::Http2 => http::serve_http2(stream, connection, session).await,
        Wire::Opaque => {
            session.connect_directly(&connection);
            tcp::pass_through(stream, connection, session).await
        }
        // Not learned: a slow HTTP caller would make HTTP look opaque.
        Wire::Silent => tcp::pass_through(stream, connection, session).await,
    }
}

/// Makes the kernel answer the peer's next packet on `socket` with RST.
fn reset(socket: impl AsFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Linger, &linger);
}

//! The transparent proxy: every connection a managed process makes arrives
//! here (the kernel redirected it). What the caller sends first tells how
//! to treat it: HTTP/1.1 and HTTP/2 are spoken on both sides, each request
//! or stream being a call ([`http`]); anything else is passed through as
//! bytes, the connection being the call ([`tcp`]). A destination seen
//! speaking such an opaque protocol is then connected to directly (the
//! kernel reports those connects as the calls), and so is one seen
//! speaking plain HTTP/1.1 (the kernel reports the heads of its requests
//! and responses), except where a fault planned on one needs the proxy.
//!
//! Each caller connection gets its own upstream connection, so the callee
//! sees the same connection pattern as without Filibuster.
//!
//! The proxy runs on one thread per core, each with a single-threaded
//! runtime and its own copy of every listener (`SO_REUSEPORT`), as nginx
//! runs a worker per core: a connection, its upstream connection and its
//! HTTP/2 streams stay on the thread that accepted it, so a request never
//! wakes a second thread to carry it on, while a busy run still uses every
//! core.

mod http;
mod idle;
pub(crate) mod sniff;
mod tcp;
#[cfg(test)]
mod tests;

use std::{
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use tracing::debug;

use idle::Idle;
use sniff::Wire;

use crate::{
    accept,
    ebpf::Speaks,
    netns::NetNs,
    session::{Connection, Session},
};

/// How many proxy threads to run: one per core.
pub fn thread_count() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// How long calls still going through the proxy when it stops (the kernel
/// sends it no more connections by then) get to finish before their
/// connections close: an attached service, serving on after the run, must
/// not see one of its calls cut.
const DRAIN: Duration = Duration::from_secs(2);

/// Connections a proxy thread is serving; one is counted for as long as
/// its guard lives.
#[derive(Clone, Default)]
struct Serving(Arc<AtomicUsize>);

struct ServingGuard(Arc<AtomicUsize>);

impl Serving {
    fn enter(&self) -> ServingGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ServingGuard(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A listener for one proxy thread, in the namespace it lives in.
pub type ThreadListener = (std::net::TcpListener, Arc<NetNs>);

/// The proxy's threads; dropping this stops them and closes their
/// listeners and connections, once the calls in flight have finished (or
/// [`DRAIN`] has passed).
pub struct Threads(Vec<(oneshot::Sender<()>, JoinHandle<()>)>);

impl Threads {
    /// Starts one thread per set of listeners. With `drain`, stopping
    /// waits for the connections being served to end first (at most
    /// [`DRAIN`]): for attached services, which serve on after the run (a
    /// launched one is ended before the proxy stops, its connections with
    /// it).
    pub fn start(
        listeners: Vec<Vec<ThreadListener>>,
        session: &Arc<Session>,
        drain: bool,
    ) -> Result<Self> {
        let mut threads = Vec::new();
        for (n, listeners) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a proxy thread's runtime")?;
            let session = session.clone();
            let (stop, stopped) = oneshot::channel();
            let thread = thread::Builder::new()
                .name(format!("proxy-{n}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let serving = Serving::default();
                        let idle = Idle::default();
                        for (listener, netns) in listeners {
                            match TcpListener::from_std(listener) {
                                Ok(listener) => {
                                    let (serving, idle) = (serving.clone(), idle.clone());
                                    let session = session.clone();
                                    tokio::spawn(serve(listener, netns, session, serving, idle));
                                }
                                Err(e) => debug!("a proxy listener is lost: {e}"),
                            }
                        }
                        let _ = stopped.await;
                        idle.evict_all();
                        let deadline = tokio::time::Instant::now() + DRAIN;
                        while drain && serving.count() > 0 && tokio::time::Instant::now() < deadline
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    });
                    // Dropping the runtime drops every connection it serves.
                })
                .context("cannot start a proxy thread")?;
            threads.push((stop, thread));
        }
        Ok(Self(threads))
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        for (stop, thread) in self.0.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// Accepts the connections redirected to `listener`, which lives in
/// `netns`, until the task is dropped.
async fn serve(
    listener: TcpListener,
    netns: Arc<NetNs>,
    session: Arc<Session>,
    serving: Serving,
    idle: Idle,
) {
    let Ok(port) = listener.local_addr().map(|a| a.port()) else {
        return;
    };
    loop {
        let (stream, peer) = accept::next(&listener, || idle.evict_oldest()).await;
        let Some(connection) = session.accept(&netns, port, peer) else {
            // Not redirected by our programs: nobody should connect here.
            debug!(%peer, "dropping a connection the kernel did not redirect");
            continue;
        };
        let guard = serving.enter();
        let (session, idle) = (session.clone(), idle.clone());
        tokio::spawn(async move {
            serve_connection(stream, connection, session, &idle).await;
            drop(guard);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    connection: Connection,
    session: Arc<Session>,
    idle: &Idle,
) {
    let _ = stream.set_nodelay(true);
    let mut wire = sniff::wire(&stream).await;
    let mut upstream = None;
    if wire == Wire::Silent {
        match tcp::first_to_speak(&stream, &connection, idle).await {
            // The caller now has bytes to tell its protocol by.
            tcp::FirstToSpeak::Caller(open) => {
                wire = sniff::wire(&stream).await;
                upstream = Some(open);
            }
            tcp::FirstToSpeak::Callee(open) => upstream = Some(open),
            // Neither spoke: no call was made on it.
            tcp::FirstToSpeak::Neither => return,
            // Passed through, which tries again and records the failure.
            tcp::FirstToSpeak::Unreachable => {}
        }
    }
    match wire {
        // The HTTP proxy opens its own upstream connection when a request
        // needs one; one opened while the caller was silent is closed.
        Wire::Http1 => {
            drop(upstream);
            http::serve_http1(stream, connection, session).await
        }
        Wire::Http2 => {
            drop(upstream);
            http::serve_http2(stream, connection, session).await
        }
        Wire::Opaque => {
            let learned = Some(Speaks::Opaque);
            tcp::pass_through(stream, upstream, connection, session, learned).await
        }
        // The callee spoke first (MySQL's greeting, SMTP's banner). Not
        // learned: a caller slow to start HTTP would make HTTP look opaque.
        Wire::Silent => tcp::pass_through(stream, upstream, connection, session, None).await,
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

//! Accepting connections on the agent's listeners without spinning: an
//! accept that fails (out of descriptors, EMFILE, under a flood of idle
//! connections) is retried after a pause, not at once in a loop that would
//! take a core and starve everything else of the agent.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// How long to wait before accepting again after a failure.
const BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`. When the process is out of
/// descriptors, `exhausted` is called before the pause: a chance to close
/// connections that can go.
pub async fn next(listener: &TcpListener, exhausted: impl Fn()) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                if out_of_descriptors(&e) {
                    exhausted();
                }
                if e.kind() != io::ErrorKind::ConnectionAborted {
                    warn!("cannot accept a connection ({e}): retrying shortly");
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
}

/// Whether `error` says the process (EMFILE) or the system (ENFILE) has no
/// descriptor left.
pub fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Raises this process's limit on open descriptors to the most it may
/// have: every proxied call holds two, a flood of idle connections many.
pub fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

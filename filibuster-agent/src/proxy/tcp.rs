//! Connections of protocols the proxy does not speak (a database, a
//! cache): each is one call, faultable only as a connection, and otherwise
//! passed through byte for byte.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, copy_bidirectional},
    net::TcpStream,
};
use tracing::debug;

use super::{idle::Idle, reset};
use crate::{
    accept,
    ebpf::Speaks,
    explore::{Outcome, Protocol},
    session::{CallRequest, Carried, Connection, Enactment, Session, UpstreamPort},
};

/// Who spoke first on a connection whose caller was silent at first.
pub enum FirstToSpeak {
    /// The caller: it opened its connection ahead of its first request (a
    /// warmed pool, a client connected at startup). With the callee's
    /// connection, open.
    Caller(TcpStream),
    /// The callee: a protocol where the server speaks first.
    Callee(TcpStream),
    /// Either side closed the connection before anything was said.
    Neither,
    /// The callee could not be connected to.
    Unreachable,
}

/// Connects to the callee of a caller that has sent nothing yet, so that
/// a server-first protocol can begin, and waits for either side to speak.
/// Until one does, nothing is a call: a pool of idle connections adds
/// none to the execution. Out of descriptors, the oldest idle connections
/// are closed, this one included when its turn comes.
pub async fn first_to_speak(
    stream: &TcpStream,
    connection: &Connection,
    idle: &Idle,
) -> FirstToSpeak {
    let upstream = match connection.netns.connect(connection.destination).await {
        Ok(upstream) => upstream,
        // Out of descriptors: room is made, and this connection, on which
        // nothing was said, is closed too.
        Err(e) if accept::out_of_descriptors(&e) => {
            idle.evict_oldest();
            return FirstToSpeak::Neither;
        }
        Err(_) => return FirstToSpeak::Unreachable,
    };
    let (mut caller, mut callee) = ([0u8; 1], [0u8; 1]);
    let mut guard = idle.enter();
    tokio::select! {
        said = stream.peek(&mut caller) => match said {
            Ok(1..) => FirstToSpeak::Caller(upstream),
            _ => FirstToSpeak::Neither,
        },
        said = upstream.peek(&mut callee) => match said {
            Ok(1..) => FirstToSpeak::Callee(upstream),
            _ => FirstToSpeak::Neither,
        },
        _ = &mut guard.evicted => FirstToSpeak::Neither,
    }
}

/// Passes `stream` through to its destination, over `upstream` if it is
/// already open, as one call; `learned`, what the caller's first bytes
/// showed the destination speaks.
pub async fn pass_through(
    mut stream: TcpStream,
    upstream: Option<TcpStream>,
    connection: Connection,
    session: Arc<Session>,
    learned: Option<Speaks>,
) {
    let request = CallRequest {
        protocol: Protocol::Tcp,
        method: "",
        target: "",
        trace: None,
        first_on_connection: true,
        upstream_port: UpstreamPort::Fixed(None),
        learned,
    };
    let admission = session.admit(&connection, &request);
    match (admission.enactment, admission.call) {
        // Held until the caller gives up on it (or the execution ends).
        (Enactment::Hold, Some(call)) => tokio::select! {
            () = session.carry(call).hold() => {}
            () = hung_up(&mut stream) => {}
        },
        (enactment @ (Enactment::Forward | Enactment::Delay(_)), call) => {
            let call = call.map(|call| session.carry(call));
            if let Enactment::Delay(delay) = enactment {
                tokio::time::sleep(delay).await;
            }
            let upstream = match upstream {
                Some(open) => Ok(open),
                None => connection.netns.connect(connection.destination).await,
            };
            match upstream {
                Ok(mut upstream) => {
                    if let Some(call) = call {
                        call.finish(Outcome::Connected);
                    }
                    // Reset when an execution plans a fault on its pair: a
                    // pool would otherwise carry the planned call past it.
                    let key = connection.attempt.key;
                    let mut carried = session.carrying(Carried::PassedThrough, key);
                    tokio::select! {
                        ended = copy_bidirectional(&mut stream, &mut upstream) => {
                            if let Err(e) = ended {
                                debug!("passed-through connection ended: {e}");
                            }
                        }
                        _ = &mut carried.end => reset(&stream),
                    }
                }
                Err(e) => {
                    debug!("cannot reach {}: {e}", connection.destination);
                    if let Some(call) = call {
                        call.finish(Outcome::ConnectionError);
                    }
                    reset(&stream);
                }
            }
        }
        // A connection has no status to answer with: anything else
        // planned on one resets it.
        (_, _) => reset(&stream),
    }
}

/// Reads (and drops) what the caller sends until it closes the connection.
async fn hung_up(stream: &mut TcpStream) {
    let mut discarded = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut discarded).await {}
}

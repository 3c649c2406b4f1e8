//! Connections of protocols the proxy does not speak (a database, a
//! cache): each is one call, faultable only as a connection, and otherwise
//! passed through byte for byte.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, copy_bidirectional},
    net::TcpStream,
};
use tracing::debug;

use super::reset;
use crate::{
    explore::{Outcome, Protocol},
    session::{CallRequest, Connection, Enactment, Session},
};

pub async fn pass_through(mut stream: TcpStream, connection: Connection, session: Arc<Session>) {
    let request = CallRequest {
        protocol: Protocol::Tcp,
        method: "",
        target: "",
        trace: None,
        first_on_connection: true,
        upstream_port: None,
    };
    let admission = session.admit(&connection, &request);
    match (admission.enactment, admission.call) {
        // Held until the caller gives up on it (or the execution ends).
        (Enactment::Hold, Some(call)) => tokio::select! {
            () = session.hold(call) => {}
            () = hung_up(&mut stream) => {}
        },
        (Enactment::Forward, call) => {
            match connection.netns.connect(connection.destination).await {
                Ok(mut upstream) => {
                    if let Some(call) = call {
                        session.finish_call(call, Outcome::Connected);
                    }
                    if let Err(e) = copy_bidirectional(&mut stream, &mut upstream).await {
                        debug!("passed-through connection ended: {e}");
                    }
                }
                Err(e) => {
                    debug!("cannot reach {}: {e}", connection.destination);
                    if let Some(call) = call {
                        session.finish_call(call, Outcome::ConnectionError);
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

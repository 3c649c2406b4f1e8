//! A closed-loop load generator: N connections, each sending its next
//! request as soon as the last was answered, for a fixed time. Speaks
//! HTTP/1.1 keep-alive, cleartext HTTP/2 (one stream at a time per
//! connection) or raw TCP (a message, then its echo). Writes requests per
//! second and latency percentiles as JSON.
//!
//! Our own rather than wrk and h2load, so that the same binary runs inside
//! the test cgroup under Filibuster and outside it, measures every wire the
//! same way, and needs nothing installed.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response,
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Clone, Copy, ValueEnum)]
enum Wire {
    Http1,
    H2c,
    Tcp,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    address: SocketAddr,
    #[arg(long, value_enum, default_value_t = Wire::Http1)]
    wire: Wire,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Request body size; 0 sends GETs (over TCP, a 16-byte message).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long)]
    out: PathBuf,
    /// Processes (a proxy's) whose CPU time while the load runs is reported
    /// per request.
    #[arg(long)]
    cpu_of: Vec<u32>,
}

/// The CPU time, in clock ticks, that processes have used so far (all of
/// their threads).
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    let mut ticks = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which may hold spaces: utime and
        // stime are the 14th and 15th of the line.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        for field in fields.get(11..13).unwrap_or_default() {
            ticks += field.parse::<u64>()?;
        }
    }
    Ok(ticks)
}

/// HTTP/1.1 names the server in `host`, HTTP/2 in the URI's authority.
fn request(wire: Wire, address: SocketAddr, body: &Bytes) -> Result<Request<Full<Bytes>>> {
    let builder = Request::builder().method(if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    });
    let builder = match wire {
        Wire::H2c => builder.uri(format!("http://{address}/")),
        _ => builder.uri("/").header("host", address.to_string()),
    };
    Ok(builder.body(Full::new(body.clone()))?)
}

/// One HTTP connection's sending side, either version.
enum HttpSender {
    Http1(http1::SendRequest<Full<Bytes>>),
    H2c(http2::SendRequest<Full<Bytes>>),
}

impl HttpSender {
    async fn handshake(wire: Wire, stream: TcpStream) -> Result<Self> {
        let io = TokioIo::new(stream);
        Ok(match wire {
            Wire::H2c => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(connection);
                Self::H2c(sender)
            }
            _ => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Self::Http1(sender)
            }
        })
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        match self {
            Self::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Self::H2c(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }
}

/// Latencies in microseconds of one connection's requests: at least one,
/// then more until `until`.
async fn drive(wire: Wire, address: SocketAddr, body: Bytes, until: Instant) -> Result<Vec<u64>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::new();
    match wire {
        Wire::Http1 | Wire::H2c => {
            let mut sender = HttpSender::handshake(wire, stream).await?;
            loop {
                let request = request(wire, address, &body)?;
                let started = Instant::now();
                let response = sender.send(request).await?;
                response.into_body().collect().await?;
                latencies.push(started.elapsed().as_micros() as u64);
                if Instant::now() >= until {
                    break;
                }
            }
        }
        Wire::Tcp => {
            // A first byte no HTTP request starts with, so the proxy takes
            // the connection for an opaque protocol at once.
            let mut message = vec![b'x'; body.len().max(16)];
            message[0] = b'*';
            let mut echoed = vec![0; message.len()];
            let mut stream = stream;
            loop {
                let started = Instant::now();
                stream.write_all(&message).await?;
                stream.read_exact(&mut echoed).await?;
                if echoed != message {
                    bail!("the echo differs from what was sent");
                }
                latencies.push(started.elapsed().as_micros() as u64);
                if Instant::now() >= until {
                    break;
                }
            }
        }
    }
    Ok(latencies)
}

/// One thread, as wrk with `-t1`: the load takes at most one core, leaving
/// the rest to the server and the proxy on small machines, and its
/// latencies carry no cross-thread wake-ups of its own.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    // One exchange on a connection of its own first, untimed, as a test's
    // first call would: under Filibuster, it shows the agent what the
    // destination speaks, which decides how later connections go there.
    drive(args.wire, args.address, body.clone(), Instant::now()).await?;
    let ticks_before = cpu_ticks(&args.cpu_of)?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(drive(args.wire, args.address, body.clone(), until)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = cpu_ticks(&args.cpu_of)? - ticks_before;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let result = json!({
        "requests": latencies.len(),
        "rps": latencies.len() as f64 / elapsed,
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "cpu_us_per_request": (!args.cpu_of.is_empty())
            .then(|| ticks as f64 / ticks_per_second * 1e6 / latencies.len() as f64),
    });
    std::fs::write(&args.out, result.to_string())?;
    Ok(())
}

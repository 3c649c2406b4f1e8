//! A closed-loop HTTP/1.1 load generator: N keep-alive connections, each
//! sending its next request as soon as the last was answered, for a fixed
//! time. Writes requests per second and latency percentiles as JSON.
//!
//! Our own rather than wrk, so that the same binary runs inside the test
//! cgroup under Filibuster and outside it, and measures the same way.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    address: SocketAddr,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Request body size; 0 sends GETs.
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long)]
    out: PathBuf,
}

/// Latencies in microseconds of one connection's requests.
async fn drive(address: SocketAddr, body: Bytes, until: Instant) -> Result<Vec<u64>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = Request::builder()
            .method(if body.is_empty() {
                Method::GET
            } else {
                Method::POST
            })
            .uri("/")
            .header("host", address.to_string())
            .body(Full::new(body.clone()))?;
        sender.ready().await?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        response.into_body().collect().await?;
        latencies.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(drive(args.address, body.clone(), until)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let result = json!({
        "requests": latencies.len(),
        "rps": latencies.len() as f64 / elapsed,
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
    });
    std::fs::write(&args.out, result.to_string())?;
    Ok(())
}

//! The Rust gRPC client of `cargo xtask bench --only reconnect`: a tonic
//! channel making unary calls to `bench/grpc/server.py`, its connection
//! destroyed (`ss -K`, the `SOCK_DESTROY` Filibuster uses) before every
//! fifth call, then left idle for a millisecond (as between two
//! executions) or, every other time, called at once. Writes what the
//! Python and Node.js clients beside it write: each call's latency in µs,
//! whether it failed, and how it came (0 as usual, 1 after a destroy and a
//! pause, 2 at once after a destroy).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::{Buf, BufMut, Bytes};
use clap::Parser;
use tonic::{
    Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Endpoint,
};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long)]
    calls: usize,
}

/// Messages as bytes: the echo service needs no schema.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", args.port))?.connect_lazy();
    let mut client = tonic::client::Grpc::new(channel);
    let mut calls = Vec::new();
    for n in 0..args.calls {
        let how = if n == 0 || n % 5 != 0 {
            0
        } else {
            1 + (n / 5) % 2
        };
        if how > 0 {
            destroy(args.port)?;
        }
        if how == 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        client.ready().await.context("channel not ready")?;
        let started = Instant::now();
        let path = "/bench.Echo/Echo".parse().expect("a path");
        let answer = client
            .unary::<Bytes, Bytes, _>(Request::new(Bytes::from_static(b"ping")), path, Raw)
            .await;
        let micros = started.elapsed().as_micros() as u64;
        calls.push(serde_json::json!([micros, answer.is_err(), how]));
    }
    println!("{}", serde_json::Value::Array(calls));
    Ok(())
}

/// Destroys this process's connections to `port`, as the agent does.
fn destroy(port: u16) -> Result<()> {
    let status = Command::new("ss")
        .args(["-K", "dst", "127.0.0.1", "dport", "=", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run ss")?;
    anyhow::ensure!(status.success(), "ss -K failed: {status}");
    Ok(())
}

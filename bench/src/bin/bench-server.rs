//! A fast local server: over HTTP (HTTP/1.1 and cleartext HTTP/2, told
//! apart by hyper) it answers every request with a short body once it has
//! read the request's body; with `--echo` it sends back every byte it reads.

use std::{convert::Infallible, net::Ipv4Addr};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    port: u16,
    /// Echo raw bytes instead of speaking HTTP.
    #[arg(long)]
    echo: bool,
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let read = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len());
    Ok(Response::new(Full::new(Bytes::from(format!(
        "read {}\n",
        read.unwrap_or(0)
    )))))
}

async fn serve_http(stream: TcpStream) {
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service_fn(answer))
        .await;
}

async fn echo(mut stream: TcpStream) {
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        if args.echo {
            tokio::spawn(echo(stream));
        } else {
            tokio::spawn(serve_http(stream));
        }
    }
}

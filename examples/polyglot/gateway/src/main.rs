//! gateway, the polyglot example's Rust service: `GET /checkout/{user}`
//! asks cart (Node.js) for the user's cart over a pooled keep-alive
//! connection, retrying once when the connection fails, and answers the
//! checkout: 200 with a total, or 503 when cart cannot be had.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const PORT: u16 = 5000;
const CART: &str = "http://127.0.0.1:5001";
/// How long gateway waits for cart (which waits 0.3 s for inventory).
const CART_TIMEOUT: Duration = Duration::from_millis(600);

type Pool = Client<HttpConnector, Empty<Bytes>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], PORT))).await?;
    eprintln!("gateway listening on {PORT}");
    let pool: Pool = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = listener.accept().await?;
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| checkout(pool.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn checkout(
    pool: Pool,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(user) = request.uri().path().strip_prefix("/checkout/") else {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such route"}),
        ));
    };
    let cart = match fetch_cart(&pool, user).await {
        Some(cart) => cart,
        None => {
            return Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "cart is unavailable"}),
            ));
        }
    };
    let Some(items) = cart["items"].as_array() else {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "cart answered without items"}),
        ));
    };
    let total: u64 = items.iter().filter_map(|i| i["quantity"].as_u64()).sum();
    Ok(reply(
        StatusCode::OK,
        json!({"user": user, "items": items, "total": total}),
    ))
}

/// The user's cart, or `None` when cart failed or answered an error. A
/// connection error (a pooled connection reset, say) is retried once.
async fn fetch_cart(pool: &Pool, user: &str) -> Option<Value> {
    let uri: hyper::Uri = format!("{CART}/cart/{user}").parse().ok()?;
    for _attempt in 0..2 {
        let response = match tokio::time::timeout(CART_TIMEOUT, pool.get(uri.clone())).await {
            Err(_timeout) => return None,
            Ok(Err(_connection_error)) => continue,
            Ok(Ok(response)) => response,
        };
        if response.status() != StatusCode::OK {
            return None;
        }
        let body = tokio::time::timeout(CART_TIMEOUT, response.into_body().collect())
            .await
            .ok()?
            .ok()?;
        return serde_json::from_slice(&body.to_bytes()).ok();
    }
    None
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

//! The control API on loopback, compatible with the original Filibuster
//! server's assertion endpoints, so tests written for it run unchanged:
//!
//! - `GET /filibuster/fault-injected` → `{"result": bool}`
//! - `GET /filibuster/fault-injected/<service>` → `{"result": bool}`
//! - `GET /health-check` → `{"status": "OK"}`
//!
//! It only answers questions; nothing here changes the run.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::session::Session;

pub async fn serve(listener: TcpListener, session: Arc<Session>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let session = session.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let session = session.clone();
                async move { Ok::<_, Infallible>(answer(&session, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(session: &Session, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "only GET is served"}),
        );
    }
    let path = request.uri().path();
    match path.trim_end_matches('/') {
        "/health-check" => reply(StatusCode::OK, json!({"status": "OK"})),
        "/filibuster/fault-injected" => reply(
            StatusCode::OK,
            json!({"result": session.fault_injected(None)}),
        ),
        other => match other.strip_prefix("/filibuster/fault-injected/") {
            Some(service) if !service.contains('/') => reply(
                StatusCode::OK,
                json!({"result": session.fault_injected(Some(service))}),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no endpoint {path}")}),
            ),
        },
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

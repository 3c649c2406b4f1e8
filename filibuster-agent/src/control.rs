//! The control API on loopback.
//!
//! Questions, compatible with the original Filibuster server's assertion
//! endpoints so tests written for it run unchanged:
//!
//! - `GET /filibuster/fault-injected` → `{"result": bool}`
//! - `GET /filibuster/fault-injected/<service>` → `{"result": bool}`
//! - `GET /health-check` → `{"status": "OK"}`
//!
//! The test-loop protocol, for a test process that stays up across
//! executions (README, "Test-loop protocol"). Both calls carry the run's
//! token (`FILIBUSTER_TOKEN`) in `x-filibuster-token`; nothing without it
//! changes the run.
//!
//! - `GET /filibuster/loop/next` waits until the next execution has begun
//!   and answers `{"execution": n}`, or `{"done": true}` when the search is
//!   over.
//! - `POST /filibuster/loop/result` with `{"execution": n, "passed": bool,
//!   "output": "..."}` reports how the test body did.
//!
//! Setup, with the same token, for a test to say which of its requests
//! are not under test (Python: `with filibuster.setup(): ...`):
//!
//! - `POST /filibuster/setup/begin`: the test's requests from now on, and
//!   what is done serving them, are setup: never failed.
//! - `POST /filibuster/setup/end`: they are under test again (as at the
//!   start of every execution).

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, watch},
    task::AbortHandle,
};

use crate::{accept, netns::NetNs, session::Session, sockdiag};

/// What the looping test process is to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Wait,
    Run(usize),
    Done,
}

/// A looping test process's report on one execution.
#[derive(Debug, Deserialize)]
pub struct LoopResult {
    pub execution: usize,
    pub passed: bool,
    #[serde(default)]
    pub output: String,
}

/// The runner's side of the test-loop protocol and the control API's, for
/// one cell: its control API answers for the execution that cell runs.
pub struct TestLoop {
    cell: usize,
    token: String,
    turn: watch::Sender<Turn>,
    /// The last execution handed to a test process.
    handed: Mutex<usize>,
    results: mpsc::UnboundedSender<LoopResult>,
}

impl TestLoop {
    pub fn new(cell: usize, token: String) -> (Arc<Self>, mpsc::UnboundedReceiver<LoopResult>) {
        let (results, received) = mpsc::unbounded_channel();
        let test_loop = Self {
            cell,
            token,
            turn: watch::channel(Turn::Wait).0,
            handed: Mutex::new(0),
            results,
        };
        (Arc::new(test_loop), received)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn set_turn(&self, turn: Turn) {
        self.turn.send_replace(turn);
    }

    /// The last execution a test process asked for and got.
    pub fn handed(&self) -> usize {
        *self.handed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn next(&self) -> serde_json::Value {
        let mut turn = self.turn.subscribe();
        let handed = self.handed();
        let turn = *turn
            .wait_for(|t| match t {
                Turn::Run(n) => *n > handed,
                Turn::Done => true,
                Turn::Wait => false,
            })
            .await
            .expect("the sender lives in self");
        match turn {
            Turn::Run(n) => {
                *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = n;
                json!({"execution": n})
            }
            _ => json!({"done": true}),
        }
    }
}

/// Connections the control API holds at once: a test makes a few. Past
/// that, the oldest connection that has not sent anything yet is closed to
/// make room, so a flood of idle connections can neither take the agent's
/// descriptors nor keep a test's question from being answered.
const MAX_CONNECTIONS: usize = 256;
/// A connection that has not sent a request head by then is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that has sent nothing yet: the first to go when the
/// control API is full.
struct Idle {
    spoke: Arc<AtomicBool>,
    task: AbortHandle,
}

/// Serves the control API on `listener`, in `netns`, to the run's own
/// processes only: its tests, services and their cells. Anyone else on
/// the host is told no and closed on, before taking a slot: what the run
/// is failing is the run's business, and a flood from outside cannot
/// crowd the tests out.
pub async fn serve(
    listener: TcpListener,
    netns: Arc<NetNs>,
    session: Arc<Session>,
    test_loop: Arc<TestLoop>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut idle: VecDeque<Idle> = VecDeque::new();
    loop {
        let (stream, peer) = accept::next(&listener, || {}).await;
        let ours = stream.local_addr().is_ok_and(|local| {
            netns
                .enter(|| sockdiag::cgroup_of(peer, local))
                .is_ok_and(|cgroup| session.is_ours(cgroup))
        });
        if !ours {
            tokio::spawn(refuse(stream));
            continue;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                idle.retain(|i| !i.spoke.load(Ordering::Relaxed) && !i.task.is_finished());
                // Every slot held by a connection in use: this one is closed.
                let Some(oldest) = idle.pop_front() else {
                    continue;
                };
                oldest.task.abort();
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    continue;
                };
                slot
            }
        };
        let session = session.clone();
        let test_loop = test_loop.clone();
        let spoke = Arc::new(AtomicBool::new(false));
        let spoken = spoke.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            // Nothing but the first bytes mark a connection as in use.
            let mut first = [0u8; 1];
            if !matches!(stream.peek(&mut first).await, Ok(1..)) {
                return;
            }
            spoken.store(true, Ordering::Relaxed);
            let service = service_fn(move |request| {
                let session = session.clone();
                let test_loop = test_loop.clone();
                async move { Ok::<_, Infallible>(answer(&session, &test_loop, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        idle.push_back(Idle {
            spoke,
            task: task.abort_handle(),
        });
        if idle.len() > 2 * MAX_CONNECTIONS {
            idle.retain(|i| !i.spoke.load(Ordering::Relaxed) && !i.task.is_finished());
        }
    }
}

async fn answer(
    session: &Session,
    test_loop: &TestLoop,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().trim_end_matches('/').to_string();
    if path.starts_with("/filibuster/loop/") || path.starts_with("/filibuster/setup/") {
        let token = request.headers().get("x-filibuster-token");
        if token.is_none_or(|t| t.as_bytes() != test_loop.token.as_bytes()) {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"error": "the test loop and setup need this run's token in x-filibuster-token (FILIBUSTER_TOKEN)"}),
            );
        }
        return match (request.method(), path.as_str()) {
            (&Method::GET, "/filibuster/loop/next") => {
                reply(StatusCode::OK, test_loop.next().await)
            }
            (&Method::POST, "/filibuster/loop/result") => take_result(test_loop, request).await,
            (&Method::POST, "/filibuster/setup/begin" | "/filibuster/setup/end") => {
                let setting_up = path.ends_with("/begin");
                session.test_in_setup(test_loop.cell, setting_up);
                reply(StatusCode::OK, json!({"setup": setting_up}))
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no endpoint {} {path}", request.method())}),
            ),
        };
    }
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "only GET is served"}),
        );
    }
    match path.as_str() {
        "/health-check" => reply(StatusCode::OK, json!({"status": "OK"})),
        "/filibuster/fault-injected" => reply(
            StatusCode::OK,
            json!({"result": session.fault_injected(test_loop.cell, None)}),
        ),
        other => match other.strip_prefix("/filibuster/fault-injected/") {
            Some(service) if !service.contains('/') => reply(
                StatusCode::OK,
                json!({"result": session.fault_injected(test_loop.cell, Some(service))}),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no endpoint {path}")}),
            ),
        },
    }
}

/// Tells a process outside the run that the control API is not for it.
/// Written by hand: one fixed answer, then the connection is closed.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str =
        r#"{"error": "this control API answers the run's own tests and services only"}"#;
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}

/// Test output beyond this is cut: it only goes into reports.
const MAX_RESULT_BYTES: usize = 1 << 20;

async fn take_result(test_loop: &TestLoop, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_RESULT_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let result: LoopResult = match serde_json::from_slice(&body) {
        Ok(result) => result,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("expected {{\"execution\": n, \"passed\": bool, \"output\": \"...\"}}: {e}")}),
            );
        }
    };
    let handed = test_loop.handed();
    if result.execution != handed {
        return reply(
            StatusCode::CONFLICT,
            json!({"error": format!("execution {} is not the one running ({handed})", result.execution)}),
        );
    }
    let _ = test_loop.results.send(result);
    reply(StatusCode::OK, json!({}))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

//! Reconnects: how gRPC clients take their connection being destroyed
//! (`SOCK_DESTROY`, as the agent destroys an observed connection that a
//! planned fault needs, or whose frames it lost): grpcio, @grpc/grpc-js
//! and tonic, each one channel making unary calls to a grpcio server, its
//! connection destroyed (`ss -K`) before every fifth call. A client that
//! backed off before reconnecting would show it in the first call after a
//! destroy, and carry it into the next execution. That call comes after a
//! millisecond's pause (the agent destroys connections as an execution
//! begins, the test's request has yet to reach the caller), or, every
//! other time, at once: a client that has not yet seen its connection go
//! may send the call on it.

use std::{fmt::Write as _, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Background, Bench, median, wait_listening};

const PORT: u16 = 5106;
const CALLS: usize = 200;

impl Bench {
    pub(super) fn reconnect(&self, table: &mut String) -> Result<()> {
        let grpc = self.root.join("bench/grpc");
        let server = Command::new("python3")
            .arg(grpc.join("server.py"))
            .arg(PORT.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start the gRPC echo server")?;
        let _server = Background(server);
        wait_listening(PORT)?;
        let (port, calls) = (PORT.to_string(), CALLS.to_string());
        let mut python = Command::new("python3");
        python.arg(grpc.join("client.py")).args([&port, &calls]);
        let mut node = Command::new("node");
        // The polyglot example's packages, which `cargo xtask setup`
        // installs, hold @grpc/grpc-js.
        node.arg(grpc.join("client.js")).args([&port, &calls]).env(
            "NODE_PATH",
            self.root.join("examples/polyglot/cart/node_modules"),
        );
        let mut rust = Command::new(self.bin.join("bench-grpc-client"));
        rust.args(["--port", &port, "--calls", &calls]);
        writeln!(
            table,
            "## Reconnects ({CALLS} unary calls per client on one channel, its connection destroyed before every fifth)\n\n\
             | client | call p50 µs | next call, 1 ms after its connection was destroyed: p50 / max µs, failed | next call, at once: p50 / max µs, failed |\n\
             |---|---|---|---|"
        )?;
        for (client, command) in [
            ("grpcio (Python)", &mut python),
            ("@grpc/grpc-js (Node.js)", &mut node),
            ("tonic (Rust)", &mut rust),
        ] {
            let output = command
                .output()
                .with_context(|| format!("cannot run the {client} client"))?;
            if !output.status.success() {
                bail!(
                    "the {client} client failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let calls: Vec<(f64, bool, u64)> = serde_json::from_slice::<Vec<Value>>(&output.stdout)
                .with_context(|| format!("the {client} client's output"))?
                .iter()
                .filter_map(|call| Some((call[0].as_f64()?, call[1].as_bool()?, call[2].as_u64()?)))
                .collect();
            // p50 / max and failures of the calls that came `how`.
            let figures = |how: u64| {
                let came: Vec<&(f64, bool, u64)> = calls.iter().filter(|c| c.2 == how).collect();
                let slowest = came.iter().map(|c| c.0).fold(0.0, f64::max);
                let failed = came.iter().filter(|c| c.1).count();
                let p50 = median(came.iter().map(|c| c.0));
                format!("{p50:.0} / {slowest:.0}, {failed} of {}", came.len())
            };
            let usual = median(calls.iter().filter(|c| c.2 == 0).map(|c| c.0));
            writeln!(
                table,
                "| {client} | {usual:.0} | {} | {} |",
                figures(1),
                figures(2)
            )?;
        }
        writeln!(table)?;
        Ok(())
    }
}

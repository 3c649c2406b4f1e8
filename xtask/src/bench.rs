//! `cargo xtask bench`: every figure measured in the same run, side by
//! side, printed as one Markdown table (and saved with `--save`).
//!
//! 1. Interception: the same load (bench-load) against the same server
//!    (bench-server), direct, through nginx as a reverse proxy, and through
//!    Filibuster with no fault scheduled (the load is the functional test).
//! 2. Exploration: whole runs of the examples, the test per process and in
//!    a loop, with Filibuster's own share of the time.
//! 3. The agent's footprint, from its report.
//! 4. Cells: the same explorations with 1, 4 and 8 executions side by side.
//! 5. Reconnects: gRPC clients whose connection is destroyed ([`reconnect`]).
//! 6. Source analysis on a generated 100,000-line tree ([`analysis`]).

mod analysis;
mod reconnect;

use std::{
    fmt::Write as _,
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{apt_install, output, run};

const SERVER_PORT: u16 = 5100;
const ECHO_PORT: u16 = 5104;
const CONTROL_PORT: u16 = 5105;
const LOAD_SECONDS: &str = "1";
/// Each cell is measured this many times, direct, nginx and Filibuster in
/// turn. A shared machine's speed drifts by several times within minutes,
/// so each round's proxies are compared with that round's direct figures
/// (their ratios and differences) and the table reports the medians of
/// those.
const ROUNDS: usize = 5;
/// Where nginx proxies each wire from.
const NGINX_HTTP1_PORT: u16 = 5101;
const NGINX_H2C_PORT: u16 = 5102;
const NGINX_TCP_PORT: u16 = 5103;

/// Which parts of the table to measure.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Interception,
    /// Whole runs, and the agent's footprint in one of them.
    Exploration,
    /// Whole runs with executions side by side in cells.
    Cells,
    /// The guided search beside Filibuster's, on every example.
    Search,
    /// gRPC clients (grpcio, grpc-js, tonic) whose connection is destroyed.
    Reconnect,
    /// `filibuster analyze` on a generated 100,000-line services tree.
    Analysis,
}

pub fn run_all(root: &Path, sections: &[Section], wires: &[Wire], save: bool) -> Result<()> {
    apt_install(&["nginx", "libnginx-mod-stream"])?;
    run(Command::new("cargo")
        .args(["build", "--release", "--package", "filibuster-agent"])
        .args(["--package", "filibuster-bench"])
        .current_dir(root))?;
    let work = std::env::temp_dir().join("filibuster-bench");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/release"),
        work,
    };
    let all = sections.is_empty();
    let mut table = String::new();
    if all || sections.contains(&Section::Interception) {
        let wires = if wires.is_empty() {
            &Wire::ALL[..]
        } else {
            wires
        };
        bench.interception(wires, &mut table)?;
    }
    if all || sections.contains(&Section::Exploration) {
        let footprint = bench.exploration(&mut table)?;
        bench.footprint(&footprint, &mut table)?;
    }
    if all || sections.contains(&Section::Cells) {
        bench.cells(&mut table)?;
    }
    if all || sections.contains(&Section::Search) {
        bench.search(&mut table)?;
    }
    if all || sections.contains(&Section::Reconnect) {
        bench.reconnect(&mut table)?;
    }
    if all || sections.contains(&Section::Analysis) {
        bench.analysis(&mut table)?;
    }
    println!("\n{table}");
    if save {
        let date = output(Command::new("date").arg("+%F"))?;
        let path = root.join(format!("bench/results/{}.md", date.trim()));
        fs::create_dir_all(path.parent().expect("a directory"))?;
        fs::write(&path, &table)?;
        println!("saved to {}", path.display());
    }
    Ok(())
}

/// The exit code of `timeout` when it stopped the command.
const TIMED_OUT: i32 = 124;

/// What the load speaks, and so which server and which nginx listener it
/// is measured against.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    Http1,
    H2c,
    Tcp,
}

impl Wire {
    const ALL: [Wire; 3] = [Wire::Http1, Wire::H2c, Wire::Tcp];

    fn label(self) -> &'static str {
        match self {
            Wire::Http1 => "HTTP/1.1",
            Wire::H2c => "h2c",
            Wire::Tcp => "TCP",
        }
    }

    fn load_flag(self) -> &'static str {
        match self {
            Wire::Http1 => "http1",
            Wire::H2c => "h2c",
            Wire::Tcp => "tcp",
        }
    }

    fn server_port(self) -> u16 {
        match self {
            Wire::Http1 | Wire::H2c => SERVER_PORT,
            Wire::Tcp => ECHO_PORT,
        }
    }

    fn nginx_port(self) -> u16 {
        match self {
            Wire::Http1 => NGINX_HTTP1_PORT,
            Wire::H2c => NGINX_H2C_PORT,
            Wire::Tcp => NGINX_TCP_PORT,
        }
    }

    /// How the server is declared: the echo server as the opaque protocol
    /// it speaks, so its connects go to it directly.
    fn declared_protocol(self) -> &'static str {
        match self {
            Wire::Http1 | Wire::H2c => "",
            Wire::Tcp => "protocol = \"tcp\"\n",
        }
    }

    fn server_args(self) -> String {
        match self {
            Wire::Http1 | Wire::H2c => format!("--port {SERVER_PORT}"),
            Wire::Tcp => format!("--port {ECHO_PORT} --echo"),
        }
    }
}

struct Bench {
    root: PathBuf,
    bin: PathBuf,
    work: PathBuf,
}

#[derive(Clone, Copy)]
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    /// The proxy's CPU time per request (none direct).
    cpu_us: Option<f64>,
}

/// The processes whose parent is `pid` (nginx's workers).
fn children(pid: u32) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let child = entry.ok()?.file_name().into_string().ok()?;
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // The parent is the second field after the command name.
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (parent == pid.to_string()).then_some(child)
        })
        .collect()
}

/// The median of some figures.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A child process ended when dropped: asked with SIGTERM, so that nginx's
/// master takes its workers with it.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after 10s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn ratio(value: f64, base: f64) -> String {
    format!("{:.2}×", value / base)
}

/// An example of the exploration table, run per process and looping.
struct Example<'a> {
    name: &'a str,
    config: &'a Path,
    /// Flags to run its test once per execution.
    per_process: &'a [&'a str],
    /// How it loops, and the flags for that.
    looping: (&'a str, &'a [&'a str]),
}

/// What one row of the interception table measures.
#[derive(Clone, Copy)]
struct Cell {
    wire: Wire,
    connections: usize,
    /// Request body bytes (0: an empty GET, over TCP a 16-byte message).
    body: usize,
}

/// One row of the interception table: each round's figures, direct, nginx
/// and Filibuster.
struct Row {
    cell: Cell,
    rounds: Vec<[Load; 3]>,
}

type Figure = fn(&Load) -> f64;
const RPS: Figure = |load| load.rps;
const P50: Figure = |load| load.p50;
const P99: Figure = |load| load.p99;
const CPU: Figure = |load| load.cpu_us.unwrap_or(f64::NAN);

const DIRECT: usize = 0;
const NGINX: usize = 1;
const FILIBUSTER: usize = 2;

impl Row {
    fn body_label(&self) -> String {
        match self.cell.body {
            0 => "small".into(),
            bytes => format!("{} KiB", bytes / 1024),
        }
    }

    fn absolute(&self, path: usize, figure: Figure) -> f64 {
        median(self.rounds.iter().map(|round| figure(&round[path])))
    }

    /// What `path` adds to the direct figure, round by round.
    fn added(&self, path: usize, figure: Figure) -> f64 {
        median(
            self.rounds
                .iter()
                .map(|round| figure(&round[path]) - figure(&round[DIRECT])),
        )
    }

    /// `path`'s throughput as a share of direct, round by round.
    fn share(&self, path: usize) -> f64 {
        median(
            self.rounds
                .iter()
                .map(|round| round[path].rps / round[DIRECT].rps),
        )
    }

    fn table_line(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} | {:.0} ({:.2}×) | {:.0} ({:.2}×) | {:.0} / {:.0} | {:+.0} / {:+.0} | {:+.0} / {:+.0} | {:.1} / {:.1} ({:.2}×) |",
            self.cell.wire.label(),
            self.cell.connections,
            self.body_label(),
            self.absolute(DIRECT, RPS),
            self.absolute(NGINX, RPS),
            self.share(NGINX),
            self.absolute(FILIBUSTER, RPS),
            self.share(FILIBUSTER),
            self.absolute(DIRECT, P50),
            self.absolute(DIRECT, P99),
            self.added(NGINX, P50),
            self.added(NGINX, P99),
            self.added(FILIBUSTER, P50),
            self.added(FILIBUSTER, P99),
            self.absolute(NGINX, CPU),
            self.absolute(FILIBUSTER, CPU),
            self.absolute(FILIBUSTER, CPU) / self.absolute(NGINX, CPU),
        )
    }

    /// How far this row is from the targets, if it misses any.
    fn misses(&self) -> Vec<String> {
        let added = self.added(FILIBUSTER, P50);
        let nginx_added = self.added(NGINX, P50);
        let mut misses = Vec::new();
        if added > 20.0 {
            misses.push(format!(
                "added p50 {added:.0} µs is {:.0} µs over 20",
                added - 20.0
            ));
        }
        if added >= nginx_added {
            misses.push(format!(
                "added p50 {added:.0} µs is {:.0} µs over nginx's",
                added - nginx_added
            ));
        }
        let share = self.share(FILIBUSTER);
        if self.cell.connections == 64 && share < 0.8 {
            misses.push(format!(
                "throughput {share:.2}× direct is {:.0} points under 0.80×",
                100.0 * (0.8 - share)
            ));
        }
        misses
    }
}

impl Bench {
    /// The load, as a shell command; `cpu_of` names the proxy processes
    /// whose CPU time it reports (shell words: `$PPID` is the agent when
    /// the agent runs it).
    fn load_command(&self, cell: Cell, port: u16, cpu_of: &[String]) -> String {
        let Cell {
            wire,
            connections,
            body,
        } = cell;
        let cpu_of: String = cpu_of
            .iter()
            .map(|pid| format!(" --cpu-of {pid}"))
            .collect();
        format!(
            "{} --wire {} --address 127.0.0.1:{port} --connections {connections} --body-bytes {body} --seconds {LOAD_SECONDS} --out {}{cpu_of}",
            self.bin.join("bench-load").display(),
            wire.load_flag(),
            self.work.join("load.json").display()
        )
    }

    /// The HTTP server and the echo server.
    fn servers(&self) -> Result<[Background; 2]> {
        let start = |wire: Wire| -> Result<Background> {
            let child = Command::new(self.bin.join("bench-server"))
                .args(wire.server_args().split(' '))
                .spawn()
                .context("cannot start bench-server")?;
            let server = Background(child);
            wait_listening(wire.server_port())?;
            Ok(server)
        };
        Ok([start(Wire::Http1)?, start(Wire::Tcp)?])
    }

    fn read_load(&self) -> Result<Load> {
        let text = fs::read_to_string(self.work.join("load.json"))?;
        let json: Value = serde_json::from_str(&text)?;
        let number = |key: &str| json[key].as_f64().context("a load figure");
        Ok(Load {
            rps: number("rps")?,
            p50: number("p50_us")?,
            p99: number("p99_us")?,
            cpu_us: json["cpu_us_per_request"].as_f64(),
        })
    }

    fn load_direct(&self, cell: Cell, port: u16, cpu_of: &[String]) -> Result<Load> {
        let command = self.load_command(cell, port, cpu_of);
        run(Command::new("sh").args(["-c", &command]))?;
        self.read_load()
    }

    /// nginx as a reverse proxy for each wire: HTTP/1.1 to a keep-alive
    /// upstream pool, h2c to an HTTP/2 upstream (its gRPC proxy is the one
    /// that speaks HTTP/2 upstream), TCP through its stream module.
    fn nginx(&self) -> Result<Background> {
        let conf = self.work.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;
                 daemon off;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx.log;
                 events {{ worker_connections 4096; }}
                 http {{
  access_log off;
  keepalive_requests 10000000;
  http2_max_requests 10000000;
  client_body_buffer_size 128k;
  client_body_temp_path {work};
  proxy_temp_path {work};
                 upstream server {{ server 127.0.0.1:{SERVER_PORT}; keepalive 128; }}
                 server {{ listen 127.0.0.1:{NGINX_HTTP1_PORT}; location / {{ proxy_pass http://server; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}
                 server {{ listen 127.0.0.1:{NGINX_H2C_PORT} http2; location / {{ grpc_pass grpc://server; }} }}
}}
                 stream {{ server {{ listen 127.0.0.1:{NGINX_TCP_PORT}; proxy_pass 127.0.0.1:{ECHO_PORT}; }} }}
",
                work = self.work.display()
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let nginx = Background(child);
        for wire in Wire::ALL {
            wait_listening(wire.nginx_port())?;
        }
        Ok(nginx)
    }

    /// The load as the functional test of a one-service run.
    fn load_through_filibuster(&self, cell: Cell) -> Result<Load> {
        let config = self.work.join("interception.toml");
        let wire = cell.wire;
        let port = wire.server_port();
        fs::write(
            &config,
            format!(
                "[test]\ncommand = \"{}\"\n[services.server]\ncommand = \"{} {}\"\nport = {port}\n{}",
                self.load_command(cell, port, &["$PPID".into()]),
                self.bin.join("bench-server").display(),
                wire.server_args(),
                wire.declared_protocol(),
            ),
        )?;
        self.filibuster(&config, &["--only-initial-execution"])?;
        self.read_load()
    }

    /// Runs `filibuster test`, which must pass; returns its JSON report.
    fn filibuster(&self, config: &Path, flags: &[&str]) -> Result<Value> {
        self.filibuster_ending(config, flags, None, &[0])
    }

    /// Runs `filibuster test`, stopped (SIGTERM) after `limit` if given,
    /// which must exit with one of `codes`; returns its JSON report.
    fn filibuster_ending(
        &self,
        config: &Path,
        flags: &[&str],
        limit: Option<Duration>,
        codes: &[i32],
    ) -> Result<Value> {
        let report = self.work.join("report.json");
        let mut command = match limit {
            Some(limit) => {
                let mut timeout = Command::new("timeout");
                timeout.arg(format!("{}", limit.as_secs()));
                timeout.arg(self.bin.join("filibuster"));
                timeout
            }
            None => Command::new(self.bin.join("filibuster")),
        };
        let log = self.work.join("filibuster.log");
        let status = command
            .arg("test")
            .arg("--config")
            .arg(config)
            .arg("--report-json")
            .arg(&report)
            .args(["--control-port", &CONTROL_PORT.to_string()])
            .args(flags)
            // The exploration table is the search one execution at a time;
            // the cells table says how many.
            .args(
                ["--cells", "1"]
                    .iter()
                    .filter(|_| !flags.contains(&"--cells")),
            )
            .current_dir(&self.work)
            .stderr(fs::File::create(&log)?)
            .status()
            .context("cannot start filibuster")?;
        let stopped = limit.is_some() && status.code() == Some(TIMED_OUT);
        if stopped {
            // A stopped agent writes no report: how far it got is in the
            // last progress line, "execution N (S scheduled, P pruned ...".
            let text = fs::read_to_string(&log)?;
            let executions = text
                .lines()
                .filter_map(|line| line.strip_prefix("filibuster: execution "))
                .filter_map(|rest| rest.split_once(" (")?.0.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            return Ok(serde_json::json!({
                "result": "stopped",
                "executions": executions,
                "elapsed_seconds": limit.map_or(0.0, |limit| limit.as_secs_f64()),
            }));
        }
        if !stopped && !status.code().is_some_and(|code| codes.contains(&code)) {
            bail!(
                "filibuster test --config {} {flags:?} failed: {status}",
                config.display()
            );
        }
        Ok(serde_json::from_str(&fs::read_to_string(&report)?)?)
    }

    /// One cell: its rounds, direct, nginx and Filibuster in turn.
    fn measure(&self, cell: Cell) -> Result<Row> {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let (direct, nginx) = {
                let _servers = self.servers()?;
                let direct = self.load_direct(cell, cell.wire.server_port(), &[])?;
                let nginx_master = self.nginx()?;
                let workers = children(nginx_master.0.id());
                let nginx = self.load_direct(cell, cell.wire.nginx_port(), &workers)?;
                (direct, nginx)
            };
            let filibuster = self.load_through_filibuster(cell)?;
            rounds.push([direct, nginx, filibuster]);
        }
        Ok(Row { cell, rounds })
    }

    fn interception(&self, wires: &[Wire], table: &mut String) -> Result<()> {
        writeln!(
            table,
            "## Interception ({ROUNDS} rounds of {LOAD_SECONDS} s per cell, no fault scheduled)\n\n\
             Small: an empty GET over HTTP, a 16-byte message over TCP. HTTP/2 runs one stream at a time per connection. \
             Each round measures direct, nginx and Filibuster in turn; ratios and added latencies are the medians of each round's \
             against that round's direct figures, absolute figures the medians of the rounds'. The TCP server is declared `protocol = \"tcp\"`. \
             Proxy CPU is the CPU time nginx's workers, or the whole agent (kernel programs' time in other processes not included), used per request while the load ran: \
             steadier than throughput on a shared machine. At 64 connections the load is closed-loop, so p50 ≈ 64 ÷ req/s: \
             the added p50 there restates the throughput ratio.\n\n\
             | wire | conns | body | direct req/s | nginx req/s | filibuster req/s | direct p50 / p99 µs | nginx added p50 / p99 µs | filibuster added p50 / p99 µs | proxy CPU µs/req: nginx / filibuster |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        )?;
        let mut rows = Vec::new();
        for &wire in wires {
            for connections in [1, 64] {
                for body in [0, 64 * 1024] {
                    let row = self.measure(Cell {
                        wire,
                        connections,
                        body,
                    })?;
                    writeln!(table, "{}", row.table_line())?;
                    rows.push(row);
                }
            }
        }
        writeln!(
            table,
            "\nTargets: added p50 ≤ 20 µs and below nginx's; filibuster req/s ≥ 0.80× direct at 64 connections."
        )?;
        let misses: Vec<String> = rows
            .iter()
            .filter_map(|row| {
                let misses = row.misses();
                (!misses.is_empty()).then(|| {
                    format!(
                        "- missed, {} {} conns {}: {}",
                        row.cell.wire.label(),
                        row.cell.connections,
                        row.body_label(),
                        misses.join("; ")
                    )
                })
            })
            .collect();
        if misses.is_empty() {
            writeln!(table, "- all met")?;
        } else {
            writeln!(table, "{}", misses.join("\n"))?;
        }
        writeln!(table)?;
        Ok(())
    }

    /// Returns the tutorial run's report, for the footprint.
    fn exploration(&self, table: &mut String) -> Result<Value> {
        writeln!(
            table,
            "## Exploration (whole runs)\n\n\
             | example | test | executions | wall s | startup s | held for timeouts s | exec/s | filibuster's share | filibuster ms/execution |\n\
             |---|---|---|---|---|---|---|---|---|"
        )?;
        let tutorial = self.root.join("examples/tutorial/fixed.toml");
        // The largest exploration among the cinema applications (91
        // executions unreduced).
        let cinema = self.root.join("examples/cinema/cinema-3/filibuster.toml");
        let examples = [
            Example {
                name: "tutorial",
                config: &tutorial,
                per_process: &[],
                looping: ("loop", &["--test-loop"]),
            },
            Example {
                name: "cinema-3",
                config: &cinema,
                per_process: &["--functional-test", "python3 ../functional/test_users.py"],
                looping: ("pytest loop", &[]),
            },
        ];
        let mut speedups = Vec::new();
        let mut tutorial_report = Value::Null;
        for example in &examples {
            for reduction in [&[][..], &["--disable-dynamic-reduction"]] {
                let name = format!(
                    "{}{}",
                    example.name,
                    if reduction.is_empty() {
                        ""
                    } else {
                        " unreduced"
                    }
                );
                // Filibuster's search: the same executions as earlier
                // results (the Search table compares the searches).
                let search = &["--search", "filibuster"][..];
                let per_process_flags = [example.per_process, reduction, search].concat();
                let loop_flags = [example.looping.1, reduction, search].concat();
                // After startup: the run's own time, and the part of it calls
                // were held for injected timeouts.
                let mut spent = Vec::new();
                let modes = [
                    ("per process", per_process_flags),
                    (example.looping.0, loop_flags),
                ];
                for (mode, flags) in modes {
                    let report = self.filibuster(example.config, &flags)?;
                    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
                    let executions = number(&report["executions"]);
                    let wall = number(&report["elapsed_seconds"]);
                    let startup = number(&report["agent"]["ready_seconds"]);
                    let own = number(&report["agent"]["between_executions_seconds"]);
                    let held = number(&report["held_seconds"]);
                    writeln!(
                        table,
                        "| {name} | {mode} | {executions} | {wall:.2} | {startup:.2} | {held:.2} | {:.1} | {:.2}% | {:.3} |",
                        executions / (wall - startup),
                        100.0 * own / (wall - startup),
                        1000.0 * own / executions,
                    )?;
                    spent.push((wall - startup, held));
                    if tutorial_report.is_null() {
                        tutorial_report = report;
                    }
                }
                let [(per_process, per_process_held), (looped, looped_held)] = spent[..] else {
                    unreachable!("two runs per example");
                };
                speedups.push(format!(
                    "{name} {} ({} without the time held for timeouts)",
                    ratio(per_process, looped),
                    ratio(per_process - per_process_held, looped - looped_held)
                ));
            }
        }
        writeln!(
            table,
            "\nPer process ÷ loop, after startup: {}. \
             Held time is the services' own timeouts waiting on injected timeout faults, the same in both modes. \
             Filibuster's share is its own time between executions (search, kernel maps, bookkeeping) over the run after startup.\n\
             Targets: filibuster's share < 5%, < 1 ms per execution in loop mode, loop ≥ 10× faster.\n",
            speedups.join(", "),
        )?;
        Ok(tutorial_report)
    }

    /// Every example with a bug and their fixed versions, with the guided
    /// search and with Filibuster's: executions to the first failure (or
    /// to the end), held time, wall time.
    fn search(&self, table: &mut String) -> Result<()> {
        writeln!(
            table,
            "## Search: guided (the default) beside Filibuster's\n\n\
             | example | search | result | executions | pruned: reduction / equivalent / no impact | held s | held saved s | wall s |\n\
             |---|---|---|---|---|---|---|---|"
        )?;
        let examples: [(&str, &str, &[&str]); 12] = [
            ("tutorial", "tutorial/filibuster.toml", &[]),
            ("tutorial fixed", "tutorial/fixed.toml", &[]),
            ("cinema-3", "cinema/cinema-3/filibuster.toml", &[]),
            ("cinema-6", "cinema/cinema-6/filibuster.toml", &[]),
            ("grpc", "grpc/filibuster.toml", &[]),
            ("grpc fixed", "grpc/fixed.toml", &[]),
            ("polyglot", "polyglot/filibuster.toml", &[]),
            ("polyglot fixed", "polyglot/fixed.toml", &[]),
            ("checkout", "checkout/filibuster.toml", &[]),
            (
                "exports",
                "exports/filibuster.toml",
                &["--execution-timeout", "3"],
            ),
            ("timeouts", "timeouts/filibuster.toml", &[]),
            ("polling", "polling/filibuster.toml", &[]),
        ];
        // Filibuster's search does not end on the polling example: it is
        // stopped, and its row says how far it got.
        let limit = Duration::from_secs(180);
        let mut firsts = Vec::new();
        for (name, config, flags) in examples {
            let config = self.root.join("examples").join(config);
            let mut executions = Vec::new();
            for search in ["guided", "filibuster"] {
                let flags = [flags, &["--search", search]].concat();
                let report = self.filibuster_ending(&config, &flags, Some(limit), &[0, 1])?;
                let number = |v: &Value| v.as_f64().unwrap_or(0.0);
                let pruned = &report["pruned_by"];
                let result = report["result"].as_str().unwrap_or("?");
                writeln!(
                    table,
                    "| {name} | {search} | {result} | {} | {} / {} / {} | {:.1} | {:.1} | {:.1} |",
                    report["executions"],
                    pruned["dynamic_reduction"].as_u64().unwrap_or(0),
                    pruned["equivalent_faults"].as_u64().unwrap_or(0),
                    pruned["no_impact"].as_u64().unwrap_or(0),
                    number(&report["held_seconds"]),
                    number(&report["held_saved_seconds"]),
                    number(&report["elapsed_seconds"]),
                )?;
                // A stopped run had not found it: counted as far as it got.
                let found = matches!(result, "failed" | "stopped");
                executions.push((found, number(&report["executions"])));
            }
            if let [(true, guided), (true, filibusters)] = executions[..] {
                firsts.push(format!("{name} {}", ratio(guided, filibusters)));
            }
        }
        writeln!(
            table,
            "\nExecutions to the first failure, guided ÷ Filibuster's (a stopped run counts as far as it got): {}. \
             Target: at most 0.5×.\n",
            firsts.join(", "),
        )?;
        Ok(())
    }

    /// cinema-3 (short client timeouts, 0.5-1 s) and the timeouts example
    /// with production-like ones (3 s and 2 s), each with 1, 4 and 8 cells.
    fn cells(&self, table: &mut String) -> Result<()> {
        writeln!(
            table,
            "## Cells (executions side by side)\n\n\
             | example | test | cells | executions | beyond sequential | wall s | startup s | held s | services' RSS MiB | wall ÷ 1 cell |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        )?;
        let cinema = self.root.join("examples/cinema/cinema-3/filibuster.toml");
        // Production-like client timeouts: what cells are for (a held call
        // waits out the caller's timeout).
        let timeouts = self.root.join("examples/timeouts/production.toml");
        let runs: [(&str, &Path, &str, &[&str]); 5] = [
            (
                "cinema-3",
                &cinema,
                "per process",
                &["--functional-test", "python3 ../functional/test_users.py"],
            ),
            ("cinema-3", &cinema, "pytest loop", &[]),
            (
                "cinema-3 unreduced",
                &cinema,
                "per process",
                &[
                    "--functional-test",
                    "python3 ../functional/test_users.py",
                    "--disable-dynamic-reduction",
                ],
            ),
            (
                "cinema-3 unreduced",
                &cinema,
                "pytest loop",
                &["--disable-dynamic-reduction"],
            ),
            ("timeouts 3 s / 2 s", &timeouts, "per process", &[]),
        ];
        let mut misses = Vec::new();
        for (name, config, mode, flags) in runs {
            let mut one_cell = 0.0;
            for cells in ["1", "4", "8", "auto"] {
                let report = self.filibuster(
                    config,
                    &[flags, &["--cells", cells, "--search", "filibuster"]].concat(),
                )?;
                let number = |v: &Value| v.as_f64().unwrap_or(0.0);
                let wall = number(&report["elapsed_seconds"]);
                if cells == "1" {
                    one_cell = wall;
                }
                let cells = match cells {
                    "auto" => format!("auto ({})", report["cells"]),
                    n => n.to_string(),
                };
                writeln!(
                    table,
                    "| {name} | {mode} | {cells} | {} | {} | {wall:.2} | {:.2} | {:.2} | {:.0} | {} |",
                    report["executions"],
                    report["beyond_sequential"],
                    number(&report["agent"]["ready_seconds"]),
                    number(&report["held_seconds"]),
                    number(&report["services_rss_kib"]) / 1024.0,
                    ratio(wall, one_cell),
                )?;
                if cells == "8" && name == "cinema-3" && wall > 0.3 * one_cell {
                    misses.push(format!(
                        "missed, cinema-3 {mode}: 8 cells take {} of 1 cell's wall time, target 0.30×",
                        ratio(wall, one_cell)
                    ));
                }
            }
        }
        writeln!(
            table,
            "\nHeld is the time calls were held for timeout faults, summed over cells (it overlaps). \
             Services' RSS: every cell's services and tests at the end of the run. \
             Beyond sequential: executions that ran before results that would have pruned them came back.\n\
             Target: 8 cells ≤ 0.30× the wall time of 1 cell on cinema-3, per process and looping.\n{}\n",
            misses
                .iter()
                .map(|m| format!("- {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        )?;
        self.retry_chain(table)
    }

    /// The shape real applications have that the bundled ones long did
    /// not: a chain whose first hop retries once, with client timeouts
    /// graded by depth. Both searches, one cell, eight and `auto`.
    fn retry_chain(&self, table: &mut String) -> Result<()> {
        writeln!(
            table,
            "### A retry chain with graded timeouts (examples/retry/fixed.toml: test 5 s → users, users 2 s → bookings twice, bookings 0.5 s → movies)\n\n\
             | search | cells | executions | held s | wall s | startup s | wall ÷ 1 cell |\n\
             |---|---|---|---|---|---|---|"
        )?;
        let config = self.root.join("examples/retry/fixed.toml");
        let number = |v: &Value| v.as_f64().unwrap_or(0.0);
        let mut measured = Vec::new();
        for search in ["guided", "filibuster"] {
            let mut one_cell = 0.0;
            for cells in ["1", "8", "auto"] {
                let report = self.filibuster(&config, &["--cells", cells, "--search", search])?;
                let wall = number(&report["elapsed_seconds"]);
                if cells == "1" {
                    one_cell = wall;
                }
                let (executions, held) = (
                    report["executions"].as_u64().unwrap_or(0),
                    number(&report["held_seconds"]),
                );
                writeln!(
                    table,
                    "| {search} | {} | {executions} | {held:.1} | {wall:.2} | {:.2} | {} |",
                    match cells {
                        "auto" => format!("auto ({})", report["cells"]),
                        n => n.to_string(),
                    },
                    number(&report["agent"]["ready_seconds"]),
                    ratio(wall, one_cell),
                )?;
                measured.push((search, cells, executions, held, wall));
            }
        }
        let mut misses = Vec::new();
        let row = |search: &str, cells: &str| {
            measured
                .iter()
                .find(|m| m.0 == search && m.1 == cells)
                .copied()
                .expect("measured")
        };
        for cells in ["1", "8", "auto"] {
            let (guided, theirs) = (row("guided", cells), row("filibuster", cells));
            // Held time is measured: a few milliseconds either way is noise.
            if guided.2 > theirs.2 || guided.3 > theirs.3 + 0.1 {
                misses.push(format!(
                    "missed, {cells} cell(s): guided {} executions and {:.1} s held against Filibuster's {} and {:.1} s",
                    guided.2, guided.3, theirs.2, theirs.3
                ));
            }
        }
        let (one, eight, auto) = (
            row("guided", "1"),
            row("guided", "8"),
            row("guided", "auto"),
        );
        if eight.4 > 0.25 * one.4 {
            misses.push(format!(
                "missed, guided: 8 cells take {} of 1 cell's wall time, target 0.25×",
                ratio(eight.4, one.4)
            ));
        }
        if auto.4 > 1.1 * one.4.min(eight.4) {
            misses.push(format!(
                "missed, guided: auto takes {} of the best fixed count's wall time, target 1.10×",
                ratio(auto.4, one.4.min(eight.4))
            ));
        }
        writeln!(
            table,
            "\nThe run's critical path bounds what cells can do here: the cells' start, the fault-free execution, \
             a held call to bookings (2 s, which shows the retry), then both attempts held (4 s). \
             Targets: guided ≤ Filibuster's executions and held time on every row; 8 cells ≤ 0.25× of 1 cell; auto within 10% of the best fixed count.\n{}\n",
            misses
                .iter()
                .map(|m| format!("- {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        )?;
        Ok(())
    }

    fn footprint(&self, report: &Value, table: &mut String) -> Result<()> {
        let agent = &report["agent"];
        let number = |v: &Value| v.as_f64().unwrap_or(0.0);
        let ready = number(&agent["ready_seconds"]);
        let alone = self.services_alone(&self.root.join("examples/tutorial/fixed.toml"))?;
        writeln!(
            table,
            "## Agent footprint (tutorial, per process)\n\n\
             | peak RSS MiB | CPU s | programs attached s | services ready s | the same services alone s | ready after they listen s |\n\
             |---|---|---|---|---|---|\n\
             | {:.1} | {:.2} | {:.3} | {ready:.3} | {alone:.3} | {:.3} |\n\n\
             The services alone: started as the agent starts them, without it, until all listen (both poll every 20 ms). \
             Targets: peak RSS < 40 MiB; attached and ready within 0.3 s of the services listening.",
            number(&agent["peak_rss_kib"]) / 1024.0,
            number(&agent["cpu_seconds"]),
            number(&agent["attached_seconds"]),
            ready - alone,
        )?;
        Ok(())
    }

    /// How long the services of `config` take to listen when started as
    /// the agent starts them (`sh -c` in the config's directory), but
    /// without it: what its ready time is to be compared with.
    fn services_alone(&self, config: &Path) -> Result<f64> {
        let text = fs::read_to_string(config)?;
        let parsed: toml::Table = text
            .parse()
            .with_context(|| format!("cannot parse {}", config.display()))?;
        let services = parsed
            .get("services")
            .and_then(|s| s.as_table())
            .with_context(|| format!("{} has no [services]", config.display()))?;
        let directory = config.parent().context("a config lives in a directory")?;
        let started = Instant::now();
        let mut running = Vec::new();
        let mut ports = Vec::new();
        for (name, service) in services {
            let field = |key: &str| {
                service
                    .get(key)
                    .with_context(|| format!("[services.{name}] has no {key}"))
            };
            let command = field("command")?.as_str().context("a command")?;
            let port = u16::try_from(field("port")?.as_integer().context("a port")?)?;
            // exec: the service is the child, so that ending it ends it.
            let child = Command::new("sh")
                .arg("-c")
                .arg(format!("exec {command}"))
                .current_dir(directory)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start service {name}"))?;
            running.push(Background(child));
            ports.push(port);
        }
        for port in ports {
            wait_listening(port)?;
        }
        Ok(started.elapsed().as_secs_f64())
    }
}

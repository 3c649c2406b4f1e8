//! `cargo xtask bench`: every figure measured in the same run, side by
//! side, printed as one Markdown table (and saved with `--save`).
//!
//! 1. Interception: the same load (bench-load) against the same server
//!    (bench-server), direct, through nginx as a reverse proxy, and through
//!    Filibuster with no fault scheduled (the load is the functional test).
//! 2. Exploration: whole runs of the examples, the test per process and in
//!    a loop, with Filibuster's own share of the time.
//! 3. The agent's footprint, from its report.

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
const NGINX_PORT: u16 = 5101;
const CONTROL_PORT: u16 = 5105;
const LOAD_SECONDS: &str = "2";

pub fn run_all(root: &Path, save: bool) -> Result<()> {
    apt_install(&["nginx"])?;
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
    let mut table = String::new();
    bench.interception(&mut table)?;
    let footprint = bench.exploration(&mut table)?;
    bench.footprint(&footprint, &mut table)?;
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

impl Bench {
    fn load_command(&self, port: u16, connections: usize, body: usize) -> String {
        format!(
            "{} --address 127.0.0.1:{port} --connections {connections} --body-bytes {body} --seconds {LOAD_SECONDS} --out {}",
            self.bin.join("bench-load").display(),
            self.work.join("load.json").display()
        )
    }

    fn server(&self) -> Result<Background> {
        let child = Command::new(self.bin.join("bench-server"))
            .args(["--port", &SERVER_PORT.to_string()])
            .spawn()
            .context("cannot start bench-server")?;
        let server = Background(child);
        wait_listening(SERVER_PORT)?;
        Ok(server)
    }

    fn read_load(&self) -> Result<Load> {
        let text = fs::read_to_string(self.work.join("load.json"))?;
        let json: Value = serde_json::from_str(&text)?;
        let number = |key: &str| json[key].as_f64().context("a load figure");
        Ok(Load {
            rps: number("rps")?,
            p50: number("p50_us")?,
            p99: number("p99_us")?,
        })
    }

    fn load_direct(&self, port: u16, connections: usize, body: usize) -> Result<Load> {
        run(Command::new("sh").args(["-c", &self.load_command(port, connections, body)]))?;
        self.read_load()
    }

    fn nginx(&self) -> Result<Background> {
        let conf = self.work.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes auto;\npid {work}/nginx.pid;\nerror_log {work}/nginx.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  keepalive_requests 10000000;\n  client_body_buffer_size 128k;\n  client_body_temp_path {work};\n  proxy_temp_path {work};\n\
                 upstream server {{ server 127.0.0.1:{SERVER_PORT}; keepalive 128; }}\n\
                 server {{ listen 127.0.0.1:{NGINX_PORT}; location / {{ proxy_pass http://server; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
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
        wait_listening(NGINX_PORT)?;
        Ok(nginx)
    }

    /// The load as the functional test of a one-service run.
    fn load_through_filibuster(&self, connections: usize, body: usize) -> Result<Load> {
        let config = self.work.join("interception.toml");
        fs::write(
            &config,
            format!(
                "[test]\ncommand = \"{}\"\n[services.server]\ncommand = \"{} --port {SERVER_PORT}\"\nport = {SERVER_PORT}\n",
                self.load_command(SERVER_PORT, connections, body),
                self.bin.join("bench-server").display()
            ),
        )?;
        self.filibuster(&config, &["--only-initial-execution"])?;
        self.read_load()
    }

    /// Runs `filibuster test`; returns its JSON report.
    fn filibuster(&self, config: &Path, flags: &[&str]) -> Result<Value> {
        let report = self.work.join("report.json");
        let status = Command::new(self.bin.join("filibuster"))
            .arg("test")
            .arg("--config")
            .arg(config)
            .arg("--report-json")
            .arg(&report)
            .args(["--control-port", &CONTROL_PORT.to_string()])
            .args(flags)
            .current_dir(&self.work)
            .stderr(Stdio::null())
            .status()
            .context("cannot start filibuster")?;
        if !status.success() {
            bail!(
                "filibuster test --config {} {flags:?} failed: {status}",
                config.display()
            );
        }
        Ok(serde_json::from_str(&fs::read_to_string(&report)?)?)
    }

    fn interception(&self, table: &mut String) -> Result<()> {
        writeln!(
            table,
            "## Interception (HTTP/1.1 keep-alive, {LOAD_SECONDS} s per cell, no fault scheduled)\n\n\
             | conns | body | direct req/s | nginx req/s | filibuster req/s | direct p50 / p99 µs | nginx added p50 / p99 µs | filibuster added p50 / p99 µs |\n\
             |---|---|---|---|---|---|---|---|"
        )?;
        for connections in [1, 64] {
            for body in [0, 64 * 1024] {
                let (direct, nginx) = {
                    let _server = self.server()?;
                    let direct = self.load_direct(SERVER_PORT, connections, body)?;
                    let _nginx = self.nginx()?;
                    (direct, self.load_direct(NGINX_PORT, connections, body)?)
                };
                let filibuster = self.load_through_filibuster(connections, body)?;
                writeln!(
                    table,
                    "| {connections} | {} | {:.0} | {:.0} ({}) | {:.0} ({}) | {:.0} / {:.0} | {:+.0} / {:+.0} | {:+.0} / {:+.0} |",
                    if body == 0 {
                        "GET".into()
                    } else {
                        format!("{} KiB", body / 1024)
                    },
                    direct.rps,
                    nginx.rps,
                    ratio(nginx.rps, direct.rps),
                    filibuster.rps,
                    ratio(filibuster.rps, direct.rps),
                    direct.p50,
                    direct.p99,
                    nginx.p50 - direct.p50,
                    nginx.p99 - direct.p99,
                    filibuster.p50 - direct.p50,
                    filibuster.p99 - direct.p99,
                )?;
            }
        }
        writeln!(
            table,
            "\nTargets: added p50 ≤ 20 µs and below nginx's; filibuster req/s ≥ 0.80× direct at 64 connections. HTTP/2 (h2c) rows are still to come (issue 5).\n"
        )?;
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
        let cinema = self.root.join("examples/cinema/cinema-3/filibuster.toml");
        let per_process_cinema = ["--functional-test", "python3 ../functional/test_users.py"];
        let runs: [(&str, &Path, &str, Vec<&str>); 6] = [
            ("tutorial", &tutorial, "per process", vec![]),
            ("tutorial", &tutorial, "loop", vec!["--test-loop"]),
            (
                "cinema-3",
                &cinema,
                "per process",
                per_process_cinema.to_vec(),
            ),
            ("cinema-3", &cinema, "pytest loop", vec![]),
            ("cinema-3 unreduced", &cinema, "per process", {
                let mut flags = per_process_cinema.to_vec();
                flags.push("--disable-dynamic-reduction");
                flags
            }),
            (
                "cinema-3 unreduced",
                &cinema,
                "pytest loop",
                vec!["--disable-dynamic-reduction"],
            ),
        ];
        let mut walls = Vec::new();
        let mut tutorial_report = Value::Null;
        for (name, config, mode, flags) in runs {
            let report = self.filibuster(config, &flags)?;
            let number = |v: &Value| v.as_f64().unwrap_or(0.0);
            let executions = number(&report["executions"]);
            let wall = number(&report["elapsed_seconds"]);
            let startup = number(&report["agent"]["ready_seconds"]);
            let own = number(&report["agent"]["between_executions_seconds"]);
            writeln!(
                table,
                "| {name} | {mode} | {executions} | {wall:.2} | {startup:.2} | {:.2} | {:.1} | {:.2}% | {:.3} |",
                number(&report["held_seconds"]),
                executions / (wall - startup),
                100.0 * own / (wall - startup),
                1000.0 * own / executions,
            )?;
            walls.push((wall - startup, number(&report["held_seconds"])));
            if tutorial_report.is_null() {
                tutorial_report = report;
            }
        }
        let speedup = |per_process: (f64, f64), looping: (f64, f64)| {
            format!(
                "{} ({} without the time held for timeouts)",
                ratio(per_process.0, looping.0),
                ratio(per_process.0 - per_process.1, looping.0 - looping.1)
            )
        };
        writeln!(
            table,
            "\nPer process ÷ loop, after startup: tutorial {}, cinema-3 {}, cinema-3 unreduced {}. \
             Held time is the services' own timeouts waiting on injected timeout faults, the same in both modes. \
             Filibuster's share is its own time between executions (search, kernel maps, bookkeeping) over the run after startup.\n\
             Targets: filibuster's share < 5%, < 1 ms per execution in loop mode, loop ≥ 10× faster.\n",
            speedup(walls[0], walls[1]),
            speedup(walls[2], walls[3]),
            speedup(walls[4], walls[5]),
        )?;
        Ok(tutorial_report)
    }

    fn footprint(&self, report: &Value, table: &mut String) -> Result<()> {
        let agent = &report["agent"];
        writeln!(
            table,
            "## Agent footprint (tutorial, per process)\n\n\
             | peak RSS MiB | CPU s | programs attached s | services ready s |\n|---|---|---|---|\n\
             | {:.1} | {:.2} | {:.3} | {:.3} |\n\n\
             Targets: peak RSS < 40 MiB; attached and ready within 0.3 s of the services listening.",
            agent["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            agent["cpu_seconds"].as_f64().unwrap_or(0.0),
            agent["attached_seconds"].as_f64().unwrap_or(0.0),
            agent["ready_seconds"].as_f64().unwrap_or(0.0),
        )?;
        Ok(())
    }
}

//! The run's configuration file (`filibuster.toml`).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::explore::{CallPattern, FaultRule, FaultSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    test: Option<TestSection>,
    #[serde(default)]
    services: BTreeMap<String, ServiceSection>,
    #[serde(default)]
    faults: Vec<FaultSection>,
    compose: Option<Compose>,
    analysis: Option<AnalysisSection>,
    #[serde(default)]
    limits: LimitsSection,
}

/// `[limits]`: what each service's processes (each copy, in each cell) and
/// the test's may hold at once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    /// Processes and threads.
    pids: Option<u64>,
    /// Memory, as Docker's `--memory` writes it: "512m", "2g".
    memory: Option<String>,
}

/// The `[limits]` a run applies; `None` where the config leaves the
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub pids: Option<u64>,
    /// In bytes.
    pub memory: Option<u64>,
}

impl TryFrom<LimitsSection> for Limits {
    type Error = anyhow::Error;

    fn try_from(section: LimitsSection) -> Result<Self> {
        if section.pids == Some(0) {
            bail!("[limits] pids = 0 would let no process start: give at least 1");
        }
        let memory = section
            .memory
            .map(|written| {
                memory_bytes(&written).with_context(|| {
                    format!("[limits] memory = \"{written}\" is not a size: write it as \"512m\" or \"2g\"")
                })
            })
            .transpose()?;
        Ok(Self {
            pids: section.pids,
            memory,
        })
    }
}

/// "512m" in bytes: Docker's `--memory` syntax (b, k, m, g, binary), which
/// users already write for their containers. By hand: the size crates
/// read `m` as 10^6.
fn memory_bytes(written: &str) -> Option<u64> {
    let written = written.trim().to_ascii_lowercase();
    let (digits, shift) = match written.as_bytes().last() {
        Some(b'k') => (&written[..written.len() - 1], 10),
        Some(b'm') => (&written[..written.len() - 1], 20),
        Some(b'g') => (&written[..written.len() - 1], 30),
        Some(b'b') => (&written[..written.len() - 1], 0),
        _ => (written.as_str(), 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1 << shift)
        .filter(|&b| b > 0)
}

/// `[analysis]`: read the services' source before the run, so the
/// statuses they can answer become faults (as `filibuster analyze` does).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalysisSection {
    /// The directory holding one subdirectory of source per service.
    services: PathBuf,
}

/// `[compose]`: every running service of a Compose project is attached to,
/// by the service name its containers are labelled with.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// The project's name (`com.docker.compose.project`, which
    /// `docker compose` and `podman-compose` set).
    pub project: String,
    /// The port of a service that listens on more than one (by default:
    /// the one it listens on).
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

/// `[[faults]]`: changes the faults tried on the calls it matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSection {
    /// The callee: a service name or, for calls elsewhere, `host:port` (a glob).
    service: String,
    method: Option<String>,
    path: Option<String>,
    replace: Option<Vec<FaultSpec>>,
    #[serde(default)]
    remove: Vec<FaultSpec>,
    #[serde(default)]
    add: Vec<FaultSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSection {
    command: Option<String>,
    /// The command speaks the test-loop protocol: start it once.
    #[serde(default, rename = "loop")]
    looping: bool,
    /// Run the pytest tests under this path in one pytest process.
    pytest: Option<String>,
    /// The test's requests under test ("POST /checkout/*"); the calls
    /// made while serving the others are setup, never failed.
    #[serde(default)]
    scope: Vec<String>,
    /// Run before every execution, with no fault armed: puts the
    /// services' state back.
    reset: Option<String>,
}

/// How the functional test is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestMode {
    /// A new process per execution; its exit status is the verdict.
    PerExecution,
    /// One process for the run, driven by the test-loop protocol.
    Loop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSpec {
    pub command: String,
    pub mode: TestMode,
    /// Run before every execution (`[test] reset`).
    pub reset: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    command: Option<String>,
    /// Attach to this existing cgroup instead of launching.
    cgroup: Option<PathBuf>,
    /// Attach to this running process's cgroup instead of launching.
    pid: Option<u32>,
    /// Attach to this running container's cgroup (an id, a unique id
    /// prefix, or a Docker or Podman name).
    container: Option<String>,
    port: u16,
    #[serde(default)]
    protocol: ServiceProtocol,
    /// Launch it as this user (by default: the user who ran sudo).
    user: Option<String>,
    /// `"every-execution"`: started anew before each execution.
    restart: Option<Restart>,
}

/// When a launched service is started anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Restart {
    /// Before each execution: for state no `[test] reset` command can
    /// put back.
    EveryExecution,
}

/// What a service speaks, as far as the agent needs to know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    /// Told from each connection's first bytes: HTTP/1.1 and HTTP/2 are
    /// proxied call by call; a destination seen speaking anything else is
    /// connected to directly from then on.
    #[default]
    Auto,
    /// An opaque protocol (a database, a cache, TLS): every connect to it
    /// goes there directly from the start, each one a call, and only those
    /// a fault is planned on pass through the proxy.
    Tcp,
}

/// Where a service comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceSource {
    /// The agent starts it, in a cgroup of its own, and ends it.
    Command(String),
    /// It runs already, in this cgroup: the agent attaches, never ends it.
    Cgroup(PathBuf),
    /// It runs already, as this process: attached through its cgroup.
    Process(u32),
    /// It runs already, as this container: attached through its cgroup.
    Container(String),
}

/// A service of the application under test.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub source: ServiceSource,
    /// Where it listens, in its network namespace: how the agent knows it
    /// is ready, and how calls to it are recognised.
    pub port: u16,
    pub protocol: ServiceProtocol,
    /// For a launched service: the user it runs as, when the config says.
    pub user: Option<String>,
    /// Started anew before each execution (`restart = "every-execution"`).
    pub restart_every_execution: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Commands run from here: the config file's directory.
    pub dir: PathBuf,
    pub test: Option<TestSpec>,
    pub services: Vec<Service>,
    pub fault_rules: Vec<FaultRule>,
    /// A Compose project whose services are attached to, besides
    /// `services` (which win on a shared name).
    pub compose: Option<Compose>,
    /// The services' source tree to analyse before the run (`[analysis]`).
    pub analysis_directory: Option<PathBuf>,
    /// `[test] scope`, as written and as patterns of the test's calls.
    pub scope: Vec<(String, CallPattern)>,
    /// `[limits]`.
    pub limits: Limits,
}

/// A `[test] scope` entry: "METHOD /path" or "/path" (globs as in
/// `[[faults]]`), matched against the test's own calls.
fn scope_pattern(written: &str) -> Result<CallPattern, String> {
    let (method, path) = match written.trim().split_once(char::is_whitespace) {
        Some((method, path)) => (Some(method), path.trim()),
        None => (None, written.trim()),
    };
    if !path.starts_with('/') {
        return Err("give a path as the test requests it, with its method or not: \"POST /checkout/*\" or \"/checkout/**\"".into());
    }
    CallPattern::new("*", method, Some(path))
}

impl TryFrom<TestSection> for TestSpec {
    type Error = anyhow::Error;

    fn try_from(section: TestSection) -> Result<Self> {
        let mode = if section.looping {
            TestMode::Loop
        } else {
            TestMode::PerExecution
        };
        match (section.command, section.pytest) {
            (Some(_), Some(_)) => {
                bail!("[test] has both command and pytest: keep one")
            }
            (None, None) => bail!(
                "[test] needs command = \"...\" (run per execution) or pytest = \"tests/\" (one pytest process for the run)"
            ),
            (Some(command), None) => Ok(Self {
                command,
                mode,
                reset: section.reset,
            }),
            (None, Some(path)) => Ok(Self {
                // The plugin (pytest11 entry point of clients/python) loops.
                command: format!("python3 -m pytest -q -p no:cacheprovider {path}"),
                mode: TestMode::Loop,
                reset: section.reset,
            }),
        }
    }
}

/// The name the functional test's calls are attributed to.
pub const TEST_CALLER: &str = "test";

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .with_context(|| format!("cannot resolve the directory of {}", path.display()))?;
        Self::parse(&text, dir).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub(crate) fn parse(text: &str, dir: PathBuf) -> Result<Self> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start].lines().count().max(1))
                .map(|line| format!("line {line}: "))
                .unwrap_or_default();
            anyhow::anyhow!("{line}{}", e.message().trim())
        })?;
        let mut services = Vec::new();
        for (name, section) in file.services {
            if name == TEST_CALLER {
                bail!(
                    "a service cannot be named `{TEST_CALLER}`: that name is the functional test's"
                );
            }
            if section.port == 0 {
                bail!("[services.{name}].port must be the port the service listens on, not 0");
            }
            let source = match (
                section.command,
                section.cgroup,
                section.pid,
                section.container,
            ) {
                (Some(command), None, None, None) if command.trim().is_empty() => {
                    bail!("[services.{name}].command is empty: give the command that starts it")
                }
                (Some(command), None, None, None) => ServiceSource::Command(command),
                (None, Some(cgroup), None, None) => ServiceSource::Cgroup(cgroup),
                (None, None, Some(pid), None) => ServiceSource::Process(pid),
                (None, None, None, Some(container)) => ServiceSource::Container(container),
                _ => bail!(
                    "[services.{name}] needs exactly one of command (launch it), cgroup, pid or container (attach to it running)"
                ),
            };
            if section.restart.is_some() && !matches!(source, ServiceSource::Command(_)) {
                bail!(
                    "[services.{name}].restart is for services the agent launches (command =); one it attaches to is never restarted by it"
                );
            }
            if section.user.is_some() && !matches!(source, ServiceSource::Command(_)) {
                bail!(
                    "[services.{name}].user is for services the agent launches (command =); one it attaches to runs as whoever started it"
                );
            }
            services.push(Service {
                name,
                source,
                port: section.port,
                protocol: section.protocol,
                user: section.user,
                restart_every_execution: section.restart == Some(Restart::EveryExecution),
            });
        }
        let fault_rules = file
            .faults
            .into_iter()
            .enumerate()
            .map(|(n, section)| {
                let rule = n + 1;
                if section.replace.is_none() && section.remove.is_empty() && section.add.is_empty() {
                    bail!("[[faults]] rule {rule} (service `{}`) changes nothing: give add, remove or replace", section.service);
                }
                let calls = CallPattern::new(
                    &section.service,
                    section.method.as_deref(),
                    section.path.as_deref(),
                )
                .map_err(|e| anyhow::anyhow!("[[faults]] rule {rule}: {e}"))?;
                Ok(FaultRule {
                    calls,
                    replace: section.replace,
                    remove: section.remove,
                    add: section.add,
                })
            })
            .collect::<Result<_>>()?;
        let scope = file
            .test
            .as_ref()
            .map(|t| t.scope.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|written| {
                let pattern = scope_pattern(&written)
                    .map_err(|e| anyhow::anyhow!("[test] scope `{written}`: {e}"))?;
                Ok((written, pattern))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            scope,
            test: file.test.map(TestSpec::try_from).transpose()?,
            services,
            fault_rules,
            compose: file.compose,
            analysis_directory: file.analysis.map(|a| dir.join(a.services)),
            limits: file.limits.try_into()?,
            dir,
        })
    }

    /// The services the agent starts, with their commands.
    pub fn launched(&self) -> impl Iterator<Item = (&Service, &str)> {
        self.services.iter().filter_map(|s| match &s.source {
            ServiceSource::Command(command) => Some((s, command.as_str())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, PathBuf::from("/tmp"))
    }

    #[test]
    fn reads_the_tutorial_config() {
        let config = parse(
            r#"
            [test]
            command = "python3 functional/test.py"
            [services.foo]
            command = "python3 foo.py"
            port = 5000
            [services.bar]
            command = "python3 bar.py"
            port = 5001
            "#,
        )
        .unwrap();
        assert_eq!(
            config.test,
            Some(TestSpec {
                command: "python3 functional/test.py".into(),
                mode: TestMode::PerExecution,
                reset: None,
            })
        );
        assert_eq!(config.services.len(), 2);
        assert_eq!(config.services[0].name, "bar");
        assert_eq!(
            config.services[0].source,
            ServiceSource::Command("python3 bar.py".into())
        );
    }

    #[test]
    fn names_the_line_of_a_mistake() {
        let err =
            parse("[test]\ncommand = \"x\"\n[services.foo]\ncommand = \"y\"\nport = \"5000\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("line 5: "), "{err}");
        assert!(err.contains("u16"), "{err}");
    }

    #[test]
    fn reads_fault_rules_and_names_a_bad_fault() {
        let config = parse(
            "[[faults]]\nservice = \"movies\"\nremove = [502]\n[[faults]]\nservice = \"bookings\"\npath = \"/bookings/*\"\nadd = [404]\n",
        )
        .unwrap();
        assert_eq!(config.fault_rules.len(), 2);
        let err = parse("[[faults]]\nservice = \"movies\"\nadd = [\"timout\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 3: "), "{err}");
        assert!(err.contains("\"connection-error\", \"timeout\""), "{err}");
        let err = parse("[services.a]\ncommand = \"x\"\npid = 1\nport = 1\n").unwrap_err();
        assert!(err.to_string().contains("exactly one of command"), "{err}");
        let err = parse("[[faults]]\nservice = \"movies\"\n").unwrap_err();
        assert!(err.to_string().contains("changes nothing"), "{err}");
    }

    #[test]
    fn reads_a_compose_project() {
        let config = parse("[compose]\nproject = \"shop\"\nports = { cart = 8080 }\n").unwrap();
        let compose = config.compose.unwrap();
        assert_eq!(compose.project, "shop");
        assert_eq!(compose.ports.get("cart"), Some(&8080));
        let err = parse("[compose]\nprojet = \"shop\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `projet`"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_reads_containers() {
        let err = parse("[services.foo]\ncommand = \"y\"\nport = 1\nprot = 2\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `prot`"), "{err}");
        let config = parse("[services.cart]\ncontainer = \"shop-cart\"\nport = 8080\n").unwrap();
        assert_eq!(
            config.services[0].source,
            ServiceSource::Container("shop-cart".into())
        );
        assert_eq!(config.services[0].protocol, ServiceProtocol::Auto);
        let err =
            parse("[services.cart]\ncontainer = \"c\"\nport = 1\nuser = \"x\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("user is for services the agent launches"),
            "{err}"
        );
    }

    #[test]
    fn reads_a_declared_protocol() {
        let config = parse("[services.cache]\ncommand = \"r\"\nport = 6379\nprotocol = \"tcp\"\n");
        assert_eq!(config.unwrap().services[0].protocol, ServiceProtocol::Tcp);
        let err = parse("[services.cache]\ncommand = \"r\"\nport = 6379\nprotocol = \"redis\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4") && err.contains("expected `auto` or `tcp`"),
            "{err}"
        );
    }

    #[test]
    fn scope_and_reset() {
        let config = Config::parse(
            "[test]\ncommand = \"t\"\nscope = [\"POST /checkout/*\", \"/orders/**\"]\nreset = \"r\"\n",
            PathBuf::from("/"),
        )
        .unwrap();
        assert_eq!(config.test.unwrap().reset.as_deref(), Some("r"));
        let written: Vec<&str> = config.scope.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(written, ["POST /checkout/*", "/orders/**"]);
        let err = Config::parse(
            "[test]\ncommand = \"t\"\nscope = [\"checkout\"]\n",
            PathBuf::from("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[test] scope `checkout`: give a path"),
            "{err}"
        );
    }

    #[test]
    fn reads_limits_as_docker_writes_memory_and_names_a_bad_one() {
        let limits = parse("[limits]\npids = 64\nmemory = \"512m\"\n")
            .unwrap()
            .limits;
        assert_eq!(
            limits,
            Limits {
                pids: Some(64),
                memory: Some(512 << 20)
            }
        );
        assert_eq!(parse("").unwrap().limits, Limits::default());
        assert_eq!(memory_bytes("2G"), Some(2 << 30));
        assert_eq!(memory_bytes("1048576"), Some(1 << 20));
        for bad in ["lots", "0m", "-1g", "99999999999g"] {
            let err = parse(&format!("[limits]\nmemory = \"{bad}\"\n")).unwrap_err();
            assert!(
                err.to_string().contains("is not a size: write it as"),
                "{bad}: {err}"
            );
        }
        let err = parse("[limits]\npids = 0\n").unwrap_err().to_string();
        assert!(err.contains("give at least 1"), "{err}");
    }
}

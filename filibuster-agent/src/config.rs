//! The run's configuration file (`filibuster.toml`).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    test: Option<TestSection>,
    #[serde(default)]
    services: BTreeMap<String, ServiceSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSection {
    command: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    command: String,
    port: u16,
}

/// A service the agent launches and manages.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub command: String,
    /// Where it listens: how the agent knows it is ready, and how calls to
    /// it are recognised.
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Commands run from here: the config file's directory.
    pub dir: PathBuf,
    pub test_command: Option<String>,
    pub services: Vec<Service>,
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

    fn parse(text: &str, dir: PathBuf) -> Result<Self> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start].lines().count().max(1))
                .map(|line| format!("line {line}: "))
                .unwrap_or_default();
            anyhow::anyhow!("{line}{}", e.message().trim())
        })?;
        let mut ports = BTreeMap::new();
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
            if let Some(other) = ports.insert(section.port, name.clone()) {
                bail!(
                    "[services.{name}] and [services.{other}] both claim port {}",
                    section.port
                );
            }
            if section.command.trim().is_empty() {
                bail!("[services.{name}].command is empty: give the command that starts it");
            }
            services.push(Service {
                name,
                command: section.command,
                port: section.port,
            });
        }
        Ok(Self {
            dir,
            test_command: file.test.map(|t| t.command),
            services,
        })
    }

    /// The managed service listening on `port`, if any.
    pub fn service_on_port(&self, port: u16) -> Option<&Service> {
        self.services.iter().find(|s| s.port == port)
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
            config.test_command.as_deref(),
            Some("python3 functional/test.py")
        );
        assert_eq!(config.services.len(), 2);
        assert_eq!(config.service_on_port(5001).unwrap().name, "bar");
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
    fn rejects_unknown_keys_and_shared_ports() {
        let err = parse("[services.foo]\ncommand = \"y\"\nport = 1\nprot = 2\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `prot`"), "{err}");
        let err = parse(
            "[services.a]\ncommand = \"y\"\nport = 1\n[services.b]\ncommand = \"z\"\nport = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("both claim port 1"), "{err}");
    }
}

//! `container = "<id or name>"`: finds a running container's cgroup.
//!
//! First through the engines themselves: `podman` and `docker container
//! inspect` give the container's pid, whose cgroup is the container's
//! (rootless Podman's containers too, asked as the user who ran sudo).
//! Where no engine answers (no CLI, no daemon, a Kubernetes node), from
//! how the common runtimes lay cgroups out:
//!
//! - The id (or a unique prefix of it, as `docker ps` shows) is found in
//!   the cgroup tree: `docker-<id>.scope` (Docker, systemd driver),
//!   `docker/<id>` (cgroupfs driver), `libpod-<id>.scope` (Podman),
//!   `cri-containerd-<id>.scope` and `crio-<id>.scope` (Kubernetes nodes:
//!   kind, k3s, kubeadm).
//! - A name is first turned into an id through the engines' own state
//!   files: Docker's `containers/<id>/config.v2.json` and Podman's
//!   `overlay-containers/containers.json`. Kubernetes names pods, not
//!   containers: give a CRI id there (`crictl ps`).

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::{
    account::Account,
    config::{Compose, Service, ServiceProtocol, ServiceSource},
};

/// The labels Compose (`docker compose`, `podman-compose`) puts on the
/// containers it runs.
const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The engines asked, in this order.
const ENGINES: [&str; 2] = ["podman", "docker"];

/// Where a container runs, as its engine or the cgroup tree says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Located {
    /// An engine named its main process.
    Process(u32),
    /// Its cgroup, found by id.
    Cgroup(PathBuf),
}

/// Finds container `reference` (an id, an id prefix or a name): through
/// an engine first, else in the cgroup tree under `mount`. `invoking` is
/// the user who ran sudo, whose rootless containers are theirs to name.
pub(crate) fn locate(mount: &Path, reference: &str, invoking: Option<&Account>) -> Result<Located> {
    match engine_pid(reference, invoking) {
        Some(pid) => Ok(Located::Process(pid)),
        None => cgroup_of(mount, reference).map(Located::Cgroup),
    }
}

/// The running services of Compose project `compose.project`, each as an
/// attached service named by its Compose service name, on the port it
/// listens on.
pub(crate) fn compose_services(
    compose: &Compose,
    invoking: Option<&Account>,
) -> Result<Vec<Service>> {
    let filter = format!("label={PROJECT_LABEL}={}", compose.project);
    // Both engines may be installed, each with its own containers.
    let containers: Vec<(String, String)> = podman_containers(&filter, invoking)
        .into_iter()
        .chain(docker_containers(&filter))
        .flatten()
        .collect();
    if containers.is_empty() {
        bail!(
            "no running container of Compose project `{}` (label {PROJECT_LABEL}={0}): start it (docker compose up -d, podman-compose up -d), or fix [compose].project",
            compose.project
        );
    }
    containers
        .into_iter()
        .map(|(name, id)| {
            let port = match compose.ports.get(&name) {
                Some(&port) => port,
                None => {
                    let Some(pid) = engine_pid(&id, invoking) else {
                        bail!("Compose service `{name}` (container {id}) is not running");
                    };
                    match crate::netns::listening_ports(&pid.to_string()).as_slice() {
                        [port] => *port,
                        [] => bail!(
                            "Compose service `{name}` listens on no TCP port yet: start it first, or give [compose].ports = {{ {name} = <port> }}"
                        ),
                        many => bail!(
                            "Compose service `{name}` listens on ports {many:?}: say which one it serves on with [compose].ports = {{ {name} = <port> }}"
                        ),
                    }
                }
            };
            Ok(Service {
                name,
                source: ServiceSource::Container(id),
                port,
                protocol: ServiceProtocol::Auto,
                user: None,
                restart_every_execution: false,
            })
        })
        .collect()
}

/// (service name, container id) of Podman's containers matching
/// `filter`, as root or else as `invoking` (rootless); `None` when Podman
/// does not answer.
fn podman_containers(filter: &str, invoking: Option<&Account>) -> Option<Vec<(String, String)>> {
    #[derive(Deserialize)]
    struct Listed {
        #[serde(rename = "Id")]
        id: String,
        #[serde(rename = "Labels", default)]
        labels: Option<std::collections::HashMap<String, String>>,
    }
    let users = std::iter::once(None).chain(invoking.map(Some));
    let mut answered = None;
    for user in users {
        let mut command = std::process::Command::new("podman");
        command.args(["ps", "--filter", filter, "--format", "json"]);
        as_user(&mut command, user);
        let Some(output) = run_quietly(&mut command) else {
            continue;
        };
        let listed: Vec<Listed> = serde_json::from_slice(&output).ok()?;
        let found: Vec<(String, String)> = listed
            .into_iter()
            .filter_map(|c| Some((c.labels?.remove(SERVICE_LABEL)?, c.id)))
            .collect();
        if !found.is_empty() {
            return Some(found);
        }
        answered = Some(found);
    }
    answered
}

/// As [`podman_containers`], from Docker (root only).
fn docker_containers(filter: &str) -> Option<Vec<(String, String)>> {
    let mut command = std::process::Command::new("docker");
    command.args([
        "ps",
        "--no-trunc",
        "--filter",
        filter,
        "--format",
        "{{json .}}",
    ]);
    Some(docker_ps_services(&String::from_utf8_lossy(&run_quietly(
        &mut command,
    )?)))
}

/// (service name, id) of each container `docker ps --format '{{json .}}'`
/// listed, one JSON object a line, labels as "key=value,key=value".
fn docker_ps_services(listing: &str) -> Vec<(String, String)> {
    #[derive(Deserialize)]
    struct Listed {
        #[serde(rename = "ID")]
        id: String,
        #[serde(rename = "Labels", default)]
        labels: String,
    }
    listing
        .lines()
        .filter_map(|line| serde_json::from_str::<Listed>(line).ok())
        .filter_map(|c| {
            let service = c
                .labels
                .split(',')
                .find_map(|label| label.strip_prefix(SERVICE_LABEL)?.strip_prefix('='))?
                .to_string();
            Some((service, c.id))
        })
        .collect()
}

/// Runs an engine's CLI as `user` (rootless Podman keeps its state under
/// the user's runtime directory).
fn as_user(command: &mut std::process::Command, user: Option<&Account>) {
    if let Some(user) = user {
        user.apply(command);
        command.env("XDG_RUNTIME_DIR", format!("/run/user/{}", user.uid()));
    }
}

/// The output of `command` when it ran and succeeded (an engine that is
/// not installed, or whose daemon is not running, does not).
fn run_quietly(command: &mut std::process::Command) -> Option<Vec<u8>> {
    command
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| output.stdout)
}

/// The pid of `reference`'s main process, from the first engine that
/// knows it running: as root, then as `invoking` (rootless Podman).
fn engine_pid(reference: &str, invoking: Option<&Account>) -> Option<u32> {
    inspect(reference, invoking, "{{.State.Pid}}", |output| {
        let pid: u32 = String::from_utf8_lossy(output).trim().parse().ok()?;
        // 0: known, not running.
        (pid > 0).then_some(pid)
    })
}

/// Where the engine publishes `reference`'s TCP `port` on the host
/// (`ports: ["127.0.0.1:8080:80"]`, `-p 8080:80`): the addresses a test
/// on the host reaches the container at, through docker-proxy or the
/// engine's NAT. An unspecified host address (every interface) is kept
/// as such.
pub(crate) fn published(reference: &str, port: u16, invoking: Option<&Account>) -> Vec<SocketAddr> {
    inspect(
        reference,
        invoking,
        "{{json .NetworkSettings.Ports}}",
        |output| Some(published_in(output, port)),
    )
    .unwrap_or_default()
}

/// `{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": null}`,
/// as `docker` and `podman container inspect` print a container's ports.
fn published_in(ports: &[u8], port: u16) -> Vec<SocketAddr> {
    #[derive(Deserialize)]
    struct Binding {
        #[serde(rename = "HostIp", default)]
        ip: String,
        #[serde(rename = "HostPort")]
        port: String,
    }
    let Ok(ports) = serde_json::from_slice::<HashMap<String, Option<Vec<Binding>>>>(ports) else {
        return Vec::new();
    };
    ports
        .get(&format!("{port}/tcp"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|binding| {
            let ip = match binding.ip.as_str() {
                "" => IpAddr::from(Ipv4Addr::UNSPECIFIED),
                ip => ip.parse().ok()?,
            };
            Some(SocketAddr::new(ip, binding.port.parse().ok()?))
        })
        .collect()
}

/// What the first engine that knows `reference` (as root, then as
/// `invoking`: rootless Podman) prints for `format`, made into `T`.
fn inspect<T>(
    reference: &str,
    invoking: Option<&Account>,
    format: &str,
    read: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    let users = std::iter::once(None).chain(invoking.map(Some));
    users
        .flat_map(|user| ENGINES.into_iter().map(move |engine| (engine, user)))
        // Rootless containers are Podman's alone.
        .filter(|(engine, user)| user.is_none() || *engine == "podman")
        .find_map(|(engine, user)| {
            let mut command = std::process::Command::new(engine);
            command.args(["container", "inspect", "--format", format, reference]);
            as_user(&mut command, user);
            read(&run_quietly(&mut command)?)
        })
}

/// Where Docker and Podman keep their state, by default.
const DOCKER_ROOT: &str = "/var/lib/docker";
const PODMAN_ROOT: &str = "/var/lib/containers/storage";

/// Prefixes of a container's cgroup directory name, before its id.
const SCOPE_PREFIXES: [&str; 5] = ["docker-", "libpod-", "cri-containerd-", "crio-", ""];

/// How deep container cgroups sit under the mount (Kubernetes: kubepods,
/// QoS class, pod, container).
const MAX_DEPTH: usize = 6;

/// The cgroup of container `reference` (an id, an id prefix or a name),
/// from the engines' state files and the cgroup tree.
fn cgroup_of(mount: &Path, reference: &str) -> Result<PathBuf> {
    let id = id_of_name(Path::new(DOCKER_ROOT), Path::new(PODMAN_ROOT), reference)
        .unwrap_or_else(|| reference.to_string());
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "no engine knows a running container `{reference}` (podman or docker container inspect), nor Docker's or Podman's state files: give its id (crictl ps on a Kubernetes node) or use cgroup = \"...\""
        );
    }
    let mut found = Vec::new();
    find_scopes(mount, &id.to_ascii_lowercase(), 0, &mut found);
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no cgroup of container `{reference}` under {}: is it running? (looked for docker-<id>.scope, libpod-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope and docker/<id>)",
            mount.display()
        ),
        many => bail!(
            "container `{reference}` matches {} cgroups ({}): give more of its id",
            many.len(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn find_scopes(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| names_container(name, id))
        {
            found.push(path);
        } else {
            find_scopes(&path, id, depth + 1, found);
        }
    }
}

/// Whether cgroup directory `name` is that of the container whose id
/// starts with `id`.
fn names_container(name: &str, id: &str) -> bool {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    SCOPE_PREFIXES.iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|full| {
            full.len() == 64 && full.bytes().all(|b| b.is_ascii_hexdigit()) && full.starts_with(id)
        })
    })
}

/// The id of the container named `name`, from Docker's or Podman's state.
fn id_of_name(docker_root: &Path, podman_root: &Path, name: &str) -> Option<String> {
    docker_id(docker_root, name).or_else(|| podman_id(podman_root, name))
}

fn docker_id(root: &Path, name: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct DockerConfig {
        #[serde(rename = "ID")]
        id: String,
        #[serde(rename = "Name")]
        name: String,
    }
    fs::read_dir(root.join("containers"))
        .ok()?
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.path().join("config.v2.json")).ok())
        .filter_map(|text| serde_json::from_str::<DockerConfig>(&text).ok())
        .find(|config| config.name.trim_start_matches('/') == name)
        .map(|config| config.id)
}

fn podman_id(root: &Path, name: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct PodmanContainer {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let text = fs::read_to_string(root.join("overlay-containers/containers.json")).ok()?;
    serde_json::from_str::<Vec<PodmanContainer>>(&text)
        .ok()?
        .into_iter()
        .find(|container| container.names.iter().any(|n| n == name))
        .map(|container| container.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2d3e4f1c2d3e4f1c2d3e4f1c2d3e4f1c2d3e4f1c2d3e4f1c2d3e4f1c2d3e";

    #[test]
    fn recognises_the_runtimes_cgroup_names() {
        for name in [
            format!("docker-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            ID.to_string(),
        ] {
            assert!(names_container(&name, "4f1c2d"), "{name}");
            assert!(!names_container(&name, "4f1c2e"), "{name}");
        }
        assert!(!names_container(
            &format!("libpod-conmon-{ID}.scope"),
            "4f1c"
        ));
        assert!(!names_container("docker-4f1c.scope", "4f1c"));
    }

    #[test]
    fn reads_compose_services_as_the_engines_print_them() {
        let listing = format!(
            "{{\"ID\":\"{ID}\",\"Labels\":\"com.docker.compose.project=shop,com.docker.compose.service=cart,x=y\",\"Names\":\"shop-cart-1\"}}\n\
             {{\"ID\":\"abc\",\"Labels\":\"other=1\"}}\n"
        );
        assert_eq!(
            docker_ps_services(&listing),
            [("cart".to_string(), ID.to_string())]
        );
    }

    #[test]
    fn reads_published_ports_as_the_engines_print_them() {
        let docker = br#"{"5000/tcp":[{"HostIp":"127.0.0.1","HostPort":"5100"},{"HostIp":"::1","HostPort":"5100"}],"53/udp":null,"6000/tcp":null}"#;
        assert_eq!(
            published_in(docker, 5000),
            [
                "127.0.0.1:5100".parse().unwrap(),
                "[::1]:5100".parse().unwrap()
            ]
        );
        assert!(
            published_in(docker, 6000).is_empty(),
            "exposed, not published"
        );
        // Podman leaves the address empty for every interface.
        let podman = br#"{"5000/tcp":[{"HostIp":"","HostPort":"8080"}]}"#;
        assert_eq!(
            published_in(podman, 5000),
            ["0.0.0.0:8080".parse::<SocketAddr>().unwrap()]
        );
        assert!(published_in(b"{}", 5000).is_empty());
        assert!(published_in(b"not json", 5000).is_empty());
    }

    #[test]
    fn finds_ids_by_name_in_docker_and_podman_state() {
        let root =
            std::env::temp_dir().join(format!("filibuster-containers-{}", std::process::id()));
        let docker = root.join("docker");
        let podman = root.join("podman");
        fs::create_dir_all(docker.join("containers").join(ID)).unwrap();
        fs::write(
            docker.join("containers").join(ID).join("config.v2.json"),
            format!(r#"{{"ID":"{ID}","Name":"/shop-cart","State":{{"Running":true}}}}"#),
        )
        .unwrap();
        fs::create_dir_all(podman.join("overlay-containers")).unwrap();
        fs::write(
            podman.join("overlay-containers/containers.json"),
            r#"[{"id":"abc123","names":["ledger"],"image":"x"}]"#,
        )
        .unwrap();
        assert_eq!(
            id_of_name(&docker, &podman, "shop-cart").as_deref(),
            Some(ID)
        );
        assert_eq!(
            id_of_name(&docker, &podman, "ledger").as_deref(),
            Some("abc123")
        );
        assert_eq!(id_of_name(&docker, &podman, "nobody"), None);
        fs::remove_dir_all(root).unwrap();
    }
}

//! `container = "<id or name>"`: finds a running container's cgroup the
//! way the common runtimes lay them out, without talking to any engine.
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
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use serde::Deserialize;

/// Where Docker and Podman keep their state, by default.
const DOCKER_ROOT: &str = "/var/lib/docker";
const PODMAN_ROOT: &str = "/var/lib/containers/storage";

/// Prefixes of a container's cgroup directory name, before its id.
const SCOPE_PREFIXES: [&str; 5] = ["docker-", "libpod-", "cri-containerd-", "crio-", ""];

/// How deep container cgroups sit under the mount (Kubernetes: kubepods,
/// QoS class, pod, container).
const MAX_DEPTH: usize = 6;

/// The cgroup of container `reference` (an id, an id prefix or a name).
pub fn cgroup_of(mount: &Path, reference: &str) -> Result<PathBuf> {
    let id = id_of_name(Path::new(DOCKER_ROOT), Path::new(PODMAN_ROOT), reference)
        .unwrap_or_else(|| reference.to_string());
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "no container named `{reference}` in Docker's or Podman's state: give its id (docker ps --no-trunc, crictl ps) or use cgroup = \"...\""
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

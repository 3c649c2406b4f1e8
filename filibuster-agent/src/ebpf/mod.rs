//! The kernel side: loads `filibuster-ebpf`, attaches it to managed cgroups
//! and talks to it through its maps.
//!
//! Every attachment is a BPF link owned by a file descriptor of this
//! process, so the programs detach when the agent exits, however it exits
//! (SIGKILL included).

use std::{fs::File, net::SocketAddr};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, RawTracePoint, SockOps,
    },
};
use filibuster_common::{
    AF_INET, AF_INET6, CALLEE_HTTP1, CALLEE_HTTP2, CALLEE_OPAQUE, CALLS_ONLY, Callee,
    ConnectAttempt, ConnectKey, ConnectionPorts, Listeners, PeerKey, SERVES, Settings, ThreadPort,
    maps, programs,
};

mod destination;
mod events;
mod log;

pub use destination::Destination;
pub(crate) use events::kernel_instant;
pub use events::{EventSource, Events, Frame, Head, KernelEvent};
pub use log::KernelLog;

use crate::cgroups::Cgroup;

/// What a session asks of the kernel's maps once the programs are
/// attached: a trait so that the session's bookkeeping (arming, cells,
/// attribution) is tested without root, on a model of the maps.
pub trait KernelMaps: Send {
    /// Starts counting the connects of `cgroups` (one cell's callers)
    /// afresh, arms these refusals and sends these callers' connects to
    /// these destinations through the proxy. Other cells' entries stay.
    fn begin_execution(
        &mut self,
        cgroups: &[u64],
        refusals: &[ConnectAttempt],
        proxied: &[ConnectKey],
    ) -> Result<()>;

    /// From now on, connects from network namespace `netns` to
    /// `destination` go straight there, each reported as a call (`Opaque`)
    /// or their sockets observed (`Http1`, `Http2`).
    fn connect_directly(
        &mut self,
        netns: u64,
        destination: SocketAddr,
        speaks: Speaks,
    ) -> Result<()>;

    /// Detaches the connect and peer-name programs from every cgroup: from
    /// now on the services connect to each other directly, as without
    /// the agent. Done before its listeners close, so that no connect of
    /// a live service is sent to a listener that is gone.
    fn detach_connects(&mut self);

    /// Lets the caller's connects through again where a refusal was armed.
    fn disarm(&mut self, attempt: &ConnectAttempt);

    /// The connect that the kernel redirected to the agent's listener in
    /// network namespace `netns` (a cookie) and that arrived from `peer`.
    fn take_redirect(&mut self, netns: u64, peer: SocketAddr) -> Option<ConnectAttempt>;

    /// The thread of a managed process that last sent on its connection
    /// from `local_port` to `remote_port` (for a redirected one, as the
    /// agent sees them: its peer's port and its listener's).
    fn sender(&self, local_port: u16, remote_port: u16) -> Option<u32>;

    /// The peer port of the connection on local `port` that thread `tid`
    /// last read from: for a service's listening port, the inbound
    /// connection whose request the thread is serving.
    fn last_read_peer(&self, tid: u32, port: u16) -> Option<u16>;

    /// Events the ring buffer had no room for since the programs were
    /// loaded: when it grows while an execution runs, some of its calls
    /// may be missing.
    fn dropped_events(&self) -> u64;
}

/// The loaded kernel programs and the maps the agent writes and reads.
pub struct Kernel {
    ebpf: Ebpf,
    settings: Array<MapData, Settings>,
    listeners: HashMap<MapData, u64, Listeners>,
    connect_counts: HashMap<MapData, ConnectKey, u32>,
    refusals: HashMap<MapData, ConnectAttempt, u8>,
    opaque: HashMap<MapData, Callee, u8>,
    proxied: HashMap<MapData, ConnectKey, u8>,
    redirects: HashMap<MapData, PeerKey, ConnectAttempt>,
    managed: HashMap<MapData, u64, u8>,
    senders: HashMap<MapData, ConnectionPorts, u32>,
    reads: HashMap<MapData, ThreadPort, u16>,
    dropped: PerCpuArray<MapData, u64>,
    /// With `--kernel-log`, until the agent takes it to print.
    log: Option<KernelLog>,
}

const SOCK_ADDR_PROGRAMS: [&str; 4] = [
    programs::CONNECT4,
    programs::CONNECT6,
    programs::GETPEERNAME4,
    programs::GETPEERNAME6,
];

const SKB_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    (programs::HEADS_OUT, CgroupSkbAttachType::Egress),
    (programs::HEADS_IN, CgroupSkbAttachType::Ingress),
];

/// What a destination connected to directly speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// A protocol the proxy only passes through: each connect is a call.
    Opaque,
    /// HTTP/1.1: each request read off the caller's socket is a call.
    Http1,
    /// HTTP/2 by prior knowledge: each stream whose request headers are
    /// read off the caller's socket is a call.
    Http2,
}

impl Kernel {
    /// Loads the programs into the kernel (not yet attached anywhere), with
    /// the ring buffer they report through; with `kernel_log`, their own
    /// diagnostics on (see [`Kernel::take_log`]).
    pub fn load(kernel_log: bool) -> Result<(Self, Events)> {
        // The programs read only the stable bpf_sock_addr/bpf_sock_ops
        // context, so they need no CO-RE relocation: skipping the kernel's
        // BTF saves parsing it (about 20 MiB of peak memory).
        let level = log::level(kernel_log);
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(aya_log::LEVEL, &level, true)
            .load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filibuster")))
            .map_err(|e| anyhow!("cannot load the kernel programs ({e}): filibuster needs root (CAP_BPF and CAP_NET_ADMIN)"))?;
        for name in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = program(&mut ebpf, name)?.try_into()?;
            program
                .load()
                .map_err(|e| anyhow!("the kernel rejected program {name}: {e:?}"))?;
        }
        let sock_ops: &mut SockOps = program(&mut ebpf, programs::SOCK_OPS)?.try_into()?;
        sock_ops
            .load()
            .map_err(|e| anyhow!("the kernel rejected program {}: {e:?}", programs::SOCK_OPS))?;
        for (name, _) in SKB_PROGRAMS {
            let program: &mut CgroupSkb = program(&mut ebpf, name)?.try_into()?;
            program
                .load()
                .map_err(|e| anyhow!("the kernel rejected program {name}: {e:?}"))?;
        }
        for (name, tracepoint) in [
            (programs::READS, programs::READS_TRACEPOINT),
            (programs::SENDS, programs::SENDS_TRACEPOINT),
        ] {
            let program: &mut RawTracePoint = program(&mut ebpf, name)?.try_into()?;
            program
                .load()
                .map_err(|e| anyhow!("the kernel rejected program {name}: {e:?}"))?;
            program.attach(tracepoint).map_err(|e| {
                anyhow!(
                    "cannot attach to tracepoint {tracepoint} ({e}): the kernel needs CONFIG_BPF_EVENTS"
                )
            })?;
        }
        let events = Events::new(RingBuf::try_from(take_map(&mut ebpf, maps::EVENTS)?)?);
        let log = kernel_log.then(|| KernelLog::take(&mut ebpf)).transpose()?;
        let kernel = Self {
            settings: Array::try_from(take_map(&mut ebpf, maps::SETTINGS)?)?,
            listeners: HashMap::try_from(take_map(&mut ebpf, maps::LISTENERS)?)?,
            connect_counts: HashMap::try_from(take_map(&mut ebpf, maps::CONNECT_COUNTS)?)?,
            refusals: HashMap::try_from(take_map(&mut ebpf, maps::REFUSALS)?)?,
            opaque: HashMap::try_from(take_map(&mut ebpf, maps::OPAQUE)?)?,
            proxied: HashMap::try_from(take_map(&mut ebpf, maps::PROXIED)?)?,
            redirects: HashMap::try_from(take_map(&mut ebpf, maps::REDIRECTS_BY_PORT)?)?,
            managed: HashMap::try_from(take_map(&mut ebpf, maps::MANAGED)?)?,
            senders: HashMap::try_from(take_map(&mut ebpf, maps::SENDERS)?)?,
            reads: HashMap::try_from(take_map(&mut ebpf, maps::READS)?)?,
            dropped: PerCpuArray::try_from(take_map(&mut ebpf, maps::DROPPED)?)?,
            ebpf,
            log,
        };
        Ok((kernel, events))
    }

    /// The programs' log, when loaded with it on: once.
    pub fn take_log(&mut self) -> Option<KernelLog> {
        self.log.take()
    }

    /// Sets what every program reads first: the control port, the managed cgroups' levels.
    pub fn configure(&mut self, settings: Settings) -> Result<()> {
        self.settings
            .set(0, settings, 0)
            .context("cannot configure the kernel programs")
    }

    /// Redirects the connects of callers in network namespace `netns` (a
    /// cookie) to these listeners, which live in that namespace.
    pub fn add_listeners(&mut self, netns: u64, listeners: Listeners) -> Result<()> {
        self.listeners
            .insert(netns, listeners, 0)
            .context("cannot register a listener with the kernel programs")
    }

    /// Attaches every program to `cgroup`, alongside any other program
    /// already there: a cgroup link is always multi-attach, and the kernel
    /// wants no attach flags with it, hence `Single` (flags 0). Only a
    /// cgroup that `serves_requests` (a service's, not the test's) has its
    /// threads' sends and reads recorded: they tell which request a call
    /// belongs to, and the test serves none.
    pub fn attach(&mut self, cgroup: &Cgroup, serves_requests: bool) -> Result<()> {
        let dir = File::open(cgroup.path())
            .with_context(|| format!("cannot open cgroup {}", cgroup.path().display()))?;
        let attach_error =
            |name: &str, e| anyhow!("cannot attach {name} to {}: {e}", cgroup.path().display());
        for name in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = program(&mut self.ebpf, name)?.try_into()?;
            program
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(|e| attach_error(name, e))?;
        }
        let sock_ops: &mut SockOps = program(&mut self.ebpf, programs::SOCK_OPS)?.try_into()?;
        sock_ops
            .attach(&dir, CgroupAttachMode::Single)
            .map_err(|e| attach_error(programs::SOCK_OPS, e))?;
        for (name, direction) in SKB_PROGRAMS {
            let program: &mut CgroupSkb = program(&mut self.ebpf, name)?.try_into()?;
            program
                .attach(&dir, direction, CgroupAttachMode::Single)
                .map_err(|e| attach_error(name, e))?;
        }
        let kind = if serves_requests { SERVES } else { CALLS_ONLY };
        self.managed
            .insert(cgroup.id(), kind, 0)
            .context("cannot register a managed cgroup with the kernel programs")?;
        Ok(())
    }
}

impl KernelMaps for Kernel {
    fn dropped_events(&self) -> u64 {
        self.dropped
            .get(&0, 0)
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn begin_execution(
        &mut self,
        cgroups: &[u64],
        refusals: &[ConnectAttempt],
        proxied: &[ConnectKey],
    ) -> Result<()> {
        clear(&mut self.connect_counts, |k| cgroups.contains(&k.cgroup_id));
        clear(&mut self.refusals, |a| cgroups.contains(&a.key.cgroup_id));
        clear(&mut self.proxied, |k| cgroups.contains(&k.cgroup_id));
        for attempt in refusals {
            self.refusals
                .insert(attempt, 1, 0)
                .context("cannot arm a connection refusal")?;
        }
        for key in proxied {
            self.proxied
                .insert(key, 1, 0)
                .context("cannot route a connect through the proxy")?;
        }
        Ok(())
    }

    fn connect_directly(
        &mut self,
        netns: u64,
        destination: SocketAddr,
        speaks: Speaks,
    ) -> Result<()> {
        let callee = Callee {
            netns,
            destination: Destination(destination).to_kernel(),
            _pad: 0,
        };
        let kind = match speaks {
            Speaks::Opaque => CALLEE_OPAQUE,
            Speaks::Http1 => CALLEE_HTTP1,
            Speaks::Http2 => CALLEE_HTTP2,
        };
        self.opaque
            .insert(callee, kind, 0)
            .context("cannot mark a destination as connected to directly")
    }

    fn detach_connects(&mut self) {
        for name in SOCK_ADDR_PROGRAMS {
            if let Some(aya::programs::Program::CgroupSockAddr(program)) =
                self.ebpf.program_mut(name)
            {
                let _ = program.unload();
            }
        }
    }

    fn disarm(&mut self, attempt: &ConnectAttempt) {
        let _ = self.refusals.remove(attempt);
    }

    fn take_redirect(&mut self, netns: u64, peer: SocketAddr) -> Option<ConnectAttempt> {
        let key = peer_key(netns, peer);
        let attempt = self.redirects.get(&key, 0).ok()?;
        let _ = self.redirects.remove(&key);
        Some(attempt)
    }

    fn sender(&self, local_port: u16, remote_port: u16) -> Option<u32> {
        let ports = ConnectionPorts {
            local: local_port,
            remote: remote_port,
        };
        self.senders.get(&ports, 0).ok()
    }

    fn last_read_peer(&self, tid: u32, port: u16) -> Option<u16> {
        let key = ThreadPort { tid, port, _pad: 0 };
        self.reads.get(&key, 0).ok()
    }
}

/// How the kernel programs key a redirected connection: by the caller's
/// port, as the agent's listener in `netns` sees it.
fn peer_key(netns: u64, peer: SocketAddr) -> PeerKey {
    PeerKey {
        netns,
        port: peer.port(),
        family: if peer.is_ipv4() { AF_INET } else { AF_INET6 },
        _pad: 0,
    }
}

/// Removes the entries of `map` whose key is `doomed`.
fn clear<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>, doomed: impl Fn(&K) -> bool) {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).filter(doomed).collect();
    for key in keys {
        let _ = map.remove(&key);
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("the kernel object has no program {name}"))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .with_context(|| format!("the kernel object has no map {name}"))
}

//! Experiment: what observing HTTP/1.1 heads in the kernel costs a
//! direct connection, against the same connection unobserved.
use std::{
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use filibuster::{
    cgroups::{RunCgroups, cgroup2_mount},
    ebpf::Kernel,
    observe::{Seen, Tracker},
};
use filibuster_common::HeadEvent;

fn main() -> anyhow::Result<()> {
    let bin = std::env::args().nth(1).expect("bench binaries dir");
    let mount = cgroup2_mount()?;
    let mut cgroups = RunCgroups::create(&mount)?;
    cgroups.add("plain")?;
    cgroups.add("observed")?;
    let mut kernel = Kernel::load()?;
    let mut heads = kernel.observe(cgroups.get("observed").unwrap())?;
    let stop = Arc::new(AtomicBool::new(false));
    let (events, requests, responses) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let drainer = {
        let (stop, events, requests, responses) = (
            stop.clone(),
            events.clone(),
            requests.clone(),
            responses.clone(),
        );
        let mut trackers = std::collections::HashMap::new();
        std::thread::spawn(move || {
            let fd = heads.as_raw_fd();
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                unsafe { libc::poll(&mut pfd, 1, 2) };
                while let Some(item) = heads.next() {
                    let event = unsafe { item.as_ptr().cast::<HeadEvent>().read_unaligned() };
                    events.fetch_add(1, Ordering::Relaxed);
                    let head = &event.head[..usize::from(event.head_len)];
                    let tracker = trackers
                        .entry(event.socket)
                        .or_insert_with(Tracker::default);
                    match tracker.segment(event.egress == 1, event.seq, head) {
                        Some(Seen::Request { .. }) => requests.fetch_add(1, Ordering::Relaxed),
                        Some(Seen::Response(_)) => responses.fetch_add(1, Ordering::Relaxed),
                        None => 0,
                    };
                }
            }
        })
    };
    let mut server = Command::new(format!("{bin}/bench-server"))
        .args(["--port", "5199"])
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    for conns in ["1", "64"] {
        for round in 0..5 {
            for name in ["plain", "observed"] {
                let out = format!("/tmp/observe-{name}.json");
                let mut load = Command::new(format!("{bin}/bench-load"));
                load.args([
                    "--address",
                    "127.0.0.1:5199",
                    "--connections",
                    conns,
                    "--seconds",
                    "1",
                    "--out",
                    &out,
                ]);
                cgroups.get(name).unwrap().start_inside(&mut load)?;
                load.status()?;
                let result = std::fs::read_to_string(&out)?;
                println!("conns {conns} round {round} {name:8} {result}");
            }
        }
    }
    server.kill()?;
    stop.store(true, Ordering::Relaxed);
    drainer.join().unwrap();
    println!(
        "head events {}, requests {}, responses {}",
        events.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
        responses.load(Ordering::Relaxed)
    );
    Ok(())
}

//! Filibuster's kernel programs, attached to every managed cgroup.
//!
//! - `connect4`/`connect6`: count each TCP connect per (caller cgroup,
//!   destination), refuse it with ECONNREFUSED when the agent armed that
//!   attempt, otherwise redirect it to the agent's transparent listener in
//!   the caller's network namespace, remembering the original destination
//!   under the socket cookie. A destination the agent marked opaque (a
//!   protocol its proxy only passes through: a database, a cache, TLS) is
//!   connected to directly instead, and the connect reported as the call,
//!   unless the agent wants this caller's connects there proxied in the
//!   current execution (a fault is planned on one). A destination the
//!   agent learned speaks HTTP/1.1 is connected to directly too, its
//!   caller's socket then observed.
//!   Likewise for HTTP/2 by prior knowledge (h2c, gRPC's cleartext).
//! - `heads_out`/`heads_in` (cgroup_skb, both ways): on an observed HTTP/1.1
//!   socket, report the first KiB of each segment that could open a
//!   request or response, so the agent reads calls off the connection
//!   without carrying its bytes (measured: +4 µs p50 per request against
//!   the proxy's +38 µs). On an observed HTTP/2 socket, walk the frames
//!   across segments, one walk per direction kept in `WALKS`, and report
//!   the payloads of the frames that carry header blocks and stream and
//!   connection ends (`FrameEvent`), never DATA. A walk that
//!   loses its place (a gap in the sequence, more frames in a segment than
//!   it walks, a header block frame larger than it reports) stops
//!   observing the socket and says so; the agent then destroys the
//!   connection, so that its caller reconnects through the proxy.
//! - `established` (sock_ops): once the redirected connection is up, file
//!   the original destination under the client's port and namespace, where
//!   the agent finds it from its accepted socket's peer address; report
//!   whether each direct connect was answered or failed, and when an
//!   observed socket closes.
//! - `getpeername4`/`getpeername6`: show the caller its original peer.
//! - `sends` (raw tracepoint `sock_send_length`, which fires in the sending
//!   thread after every `sendmsg`; services' cgroups only): records the thread
//!   that last sent on each connection, by its two ports, so the agent
//!   knows which thread made a call. A tracepoint rather than an `sk_msg`
//!   program: sk_msg moves every socket it watches onto the kernel's slower
//!   `tcp_bpf` send path (measured: 10-15% of HTTP throughput at 64
//!   connections).
//! - `reads` (raw tracepoint `tcp_rcv_space_adjust`, which fires in the
//!   reading thread each time `tcp_recvmsg` copies data; services' cgroups
//!   only): records, per thread and local port, the peer port of the socket
//!   the thread last read; for a service's listening port, that names the
//!   inbound connection (the agent's upstream one) whose request the thread
//!   is serving. A tracepoint, not a kprobe: kernels built without
//!   CONFIG_KPROBES (this project's CI among them) still have it.
//!
//! Dual-stack sockets connecting to IPv4-mapped addresses count as the
//! IPv4 connects they are.
//!
//! Loopback destinations with no listener are left alone, so a connect
//! fails as it would without Filibuster (`localhost` resolving to `::1`
//! first, while the service only listens on IPv4, keeps working).
#![no_std]
#![no_main]

mod connect;
mod http2;
mod maps;
mod observe;
mod sock_ops;
mod threads;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

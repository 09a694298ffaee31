//! Lossless gateway reloads, the kernel half: every new connection goes to the newest
//! listening socket of a port.
//!
//! Why this exists. Caddy reloads by opening new listening sockets next to the old ones
//! (`SO_REUSEPORT`, one group per port), starting the new server, then shutting the old one
//! down. While both sockets are open the kernel spreads new connections over them by hash, so
//! the old server keeps accepting until the moment it shuts down; and Go's `net/http` (the Go
//! that Caddy 2.11 is built with) closes, without an answer, any connection whose request it
//! reads after shutdown has begun (`if c.server.shuttingDown() { return }` in `conn.serve`).
//! Measured with Caddy 2.11.7 alone: about one dropped request per reload under load.
//!
//! The fix has two halves:
//! - here, a one-instruction classic BPF program on the port's reuseport group, `return 1`:
//!   while two sockets are open (the reload), every new connection goes to the second — the
//!   one the new configuration just opened; with one socket, index 1 does not exist and the
//!   kernel falls back to its hash, i.e. to the only socket;
//! - in `gateway::reload`, the old server is made to wait (`shutdown_delay`) before it shuts
//!   down, so it answers the connections it had already accepted; during that wait it gets no
//!   new ones, because of the program.
//!
//! The program belongs to the group, not to a socket, so it outlives the socket it was attached
//! through. Caddy's own sockets cannot take it (Go 1.24+ listens with MPTCP, whose sockets
//! refuse `SO_ATTACH_REUSEPORT_CBPF`), so we join the group for a moment with a plain TCP
//! socket of our own inside the gateway's network namespace, attach, and close it. A connection
//! that reaches our socket in that instant is handed to Caddy's by the kernel when
//! `net.ipv4.tcp_migrate_req` is on in the gateway (pi-setup sets it where the kernel has it).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

/// The sysctl that hands connections queued on a closing listener to another socket of its
/// group (Linux 5.14+).
pub(crate) const MIGRATE_SYSCTL: &str = "net.ipv4.tcp_migrate_req";

/// Whether this kernel has `net.ipv4.tcp_migrate_req` (a container asking for a sysctl the
/// kernel lacks does not start).
pub(crate) fn kernel_can_migrate_requests() -> bool {
    Path::new("/proc/sys/net/ipv4/tcp_migrate_req").exists()
}

/// The accept queue of the steering socket where connections move on when it closes: Caddy's
/// own (the `net.core.somaxconn` the base overlay sets).
const STEERING_BACKLOG: i32 = 4096;

/// A wildcard TCP listener found in a network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) v6: bool,
    pub(crate) port: u16,
}

/// Wildcard listening TCP sockets in `/proc/<pid>/net/tcp{,6}` (the namespace of `pid`).
pub(crate) fn wildcard_listeners(pid: u32) -> io::Result<Vec<Listener>> {
    let mut found = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let table = match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        found.extend(parse_listeners(&table, v6));
    }
    found.sort_by_key(|l| (l.port, l.v6));
    found.dedup();
    Ok(found)
}

/// The wildcard listeners (state 0A, local address all zeros) of one `/proc/net/tcp*` table.
fn parse_listeners(table: &str, v6: bool) -> Vec<Listener> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            let (addr, port) = local.split_once(':')?;
            (state == "0A" && addr.bytes().all(|b| b == b'0'))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
                .map(|port| Listener { v6, port })
        })
        .collect()
}

/// Attaches the "newest socket wins" program to every wildcard TCP listener of the network
/// namespace of `pid`. Returns the ports it steered.
pub(crate) fn steer_to_newest(pid: u32) -> io::Result<Vec<u16>> {
    let listeners = wildcard_listeners(pid)?;
    if listeners.is_empty() {
        return Ok(Vec::new());
    }
    let netns = File::open(format!("/proc/{pid}/ns/net"))?;
    // setns changes the namespace of the calling thread only: do it on a thread of our own.
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<Vec<u16>> {
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let mut ports = Vec::new();
            for l in &listeners {
                let addr = if l.v6 {
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, l.port))
                } else {
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, l.port))
                };
                attach(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("port {}: {e}", l.port)))?;
                ports.push(l.port);
            }
            Ok(ports)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the steering thread panicked")))
    })
}

/// A listening `SO_REUSEPORT` socket on `addr`: it joins the group of the listeners already
/// there (same address, same kind, same owner).
fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let sock = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&sock, sockopt::ReusePort, &true)?;
    match addr {
        SocketAddr::V4(a) => bind(sock.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            // Go listens dual-stack on a wildcard address; a group only takes its own kind.
            setsockopt(&sock, sockopt::Ipv6V6Only, &false)?;
            bind(sock.as_raw_fd(), &SockaddrIn6::from(a))?;
        }
    }
    listen(&sock, Backlog::new(backlog).map_err(io::Error::from)?)?;
    Ok(sock)
}

/// Joins the reuseport group of the listener on `addr`, attaches the program, and leaves.
///
/// While our socket is open the program sends it every new connection (it is the second in
/// the group). Where the kernel hands queued connections on (`tcp_migrate_req`), its queue is
/// as long as Caddy's, so none is turned away in that instant: with a queue of one, a second
/// connection's SYN was dropped and its client waited a second to send it again (measured in
/// the gateway's namespace while a 0.5 ms socket joined 300 times beside 4 clients: 1 listen
/// overflow and 1 request slower than 0.5 s with a queue of one, none with 4096; 96 and 69
/// connections handed on). Without migration a queued connection would be reset when our
/// socket closes, so there the queue stays at one: a dropped SYN is retried, a reset is not.
fn attach(addr: SocketAddr) -> io::Result<()> {
    let backlog = if kernel_can_migrate_requests() {
        STEERING_BACKLOG
    } else {
        1
    };
    let sock = reuseport_listener(addr, backlog)?;
    // BPF_RET | BPF_K with k = 1: "the socket at index 1", i.e. the second one open.
    let mut program = [nix::libc::sock_filter {
        code: (nix::libc::BPF_RET | nix::libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 1,
    }];
    let fprog = nix::libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    setsockopt(&sock, sockopt::AttachReusePortCbpf, &fprog)?;
    Ok(())
    // `sock` closes here; the program stays with the group.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wildcard_listeners_are_found() {
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3771782 2 0000000049ff0bf2 100 0 0 10 0
   1: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:C99E 06 00000000:00000000 03:000014DB 00000000     0        0 0 3 000000004c8f2572
   2: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3771783 2 0000000049ff0bf2 100 0 0 10 0
";
        assert_eq!(
            parse_listeners(tcp6, true),
            vec![Listener { v6: true, port: 80 }],
            "a time-wait entry and a listener on ::1 are not wildcard listeners"
        );
    }

    /// A non-blocking listener on 127.0.0.1:`port` (0: any) in a reuseport group.
    fn loopback_listener(port: u16) -> std::net::TcpListener {
        let fd = reuseport_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), 64).unwrap();
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true).unwrap();
        l
    }

    /// Connects `n` times to `port`; how many of those `older` and `newer` accepted.
    fn spread(
        n: usize,
        port: u16,
        older: &std::net::TcpListener,
        newer: &std::net::TcpListener,
    ) -> (usize, usize) {
        let (mut to_older, mut to_newer) = (0, 0);
        for _ in 0..n {
            let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            to_older += usize::from(older.accept().is_ok());
            to_newer += usize::from(newer.accept().is_ok());
        }
        (to_older, to_newer)
    }

    #[test]
    fn a_port_with_the_program_sends_new_connections_to_its_second_socket() {
        // Two listeners on one port, as during a reload: once the program is on the group,
        // the second socket gets every new connection and the first none.
        let first = loopback_listener(0);
        let port = first.local_addr().unwrap().port();
        attach(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
        let second = loopback_listener(port);
        assert_eq!(spread(20, port, &first, &second), (0, 20));
    }

    #[test]
    fn without_the_program_both_sockets_get_connections() {
        // The control for the test above: the kernel's hash alone spreads them.
        let first = loopback_listener(0);
        let port = first.local_addr().unwrap().port();
        let second = loopback_listener(port);
        let (to_first, _) = spread(40, port, &first, &second);
        assert!(to_first > 0, "the older socket gets some of 40 by hash");
    }
}

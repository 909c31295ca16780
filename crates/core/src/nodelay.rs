//! TCP_NODELAY on the connections to PostgreSQL. sqlx 0.9.0 opens its TCP sockets with
//! Nagle's algorithm on (a regression, transact-rs/sqlx#4335, fixed upstream after 0.9.0):
//! a message that spans more than one segment holds its last, partial segment until the
//! server acknowledges the others, and a server that delays its ACK (40 ms on Linux) stalls
//! the statement that long. Ingest's multi-row statements pass 64 KiB (one loopback
//! segment) at about twenty deliveries, and on a real network any statement over one
//! segment can stall: measured, ingest at 64 senders went from 915 to 3,962 deliveries/s
//! once the stall was gone (BENCHMARKS.md).
//!
//! sqlx gives no access to its socket, so after each new connection every TCP socket of
//! this process connected to the database's port gets the option (it is idempotent, and
//! right for any request-and-answer protocol). Each socket is reached through a duplicate
//! of its descriptor (`pidfd_getfd`, Linux 5.6+), which needs no unsafe code; a socket
//! option set on the duplicate is set on the socket. Remove with an sqlx release that sets
//! it itself.

use std::io;

/// What [`set_on_connections_to`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sockets {
    /// Connected TCP sockets of this process to the port.
    pub found: usize,
    /// Of those, the ones that had Nagle's algorithm on until now.
    pub set: usize,
}

/// Sets TCP_NODELAY on every connected TCP socket of this process whose peer port is
/// `port`.
#[cfg(target_os = "linux")]
pub fn set_on_connections_to(port: u16) -> io::Result<Sockets> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut sockets = Sockets::default();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        });
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed since it was listed: then there is nothing
        // to set.
        let Ok(socket) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let socket = socket2::SockRef::from(&socket);
        let to_database = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if !to_database {
            continue;
        }
        sockets.found += 1;
        if socket.tcp_nodelay().is_ok_and(|on| !on) {
            socket.set_tcp_nodelay(true)?;
            sockets.set += 1;
        }
    }
    Ok(sockets)
}

/// Elsewhere sqlx's sockets keep their defaults.
#[cfg(not(target_os = "linux"))]
pub fn set_on_connections_to(_port: u16) -> io::Result<Sockets> {
    Ok(Sockets::default())
}

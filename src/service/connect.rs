//! connect: the sockets of connect mode (PortSentry's -tcp/-udp). nftsentry
//! listens on the configured ports itself, IPv4 and IPv6: a TCP client that
//! gets accepted has completed a handshake, so its address is not spoofed;
//! a UDP datagram is only as trustworthy as a stealth probe. Each visitor is
//! handed to the caller, then gets the banner (if any) and, for TCP, is
//! closed.
//!
//! Knows nothing of bans, logs or the table: it owns sockets and reports
//! who came.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
    bind, listen, recvfrom, setsockopt, socket, sockopt,
};

use crate::config::{PortSet, Proto};

/// One bound socket.
struct Listener {
    fd: OwnedFd,
    proto: Proto,
    port: u16,
}

/// Someone who connected (TCP, handshake complete) or sent a datagram (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub src: IpAddr,
    pub proto: Proto,
    pub port: u16,
}

/// What `bind` could not do: one line per port or family, for the log.
pub type Warnings = Vec<String>;

/// Every connect-mode socket.
#[derive(Default)]
pub struct ConnectSockets {
    listeners: Vec<Listener>,
}

/// Where bind failed and why.
enum BindError {
    /// Another program has the port: skip the port on both families.
    InUse,
    /// This family is missing on the host (IPv6 disabled).
    NoFamily(Errno),
    Other(Errno),
}

fn open(proto: Proto, v6: bool, port: u16) -> Result<OwnedFd, BindError> {
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(family, ty, flags, None).map_err(|e| match e {
        Errno::EAFNOSUPPORT => BindError::NoFamily(e),
        e => BindError::Other(e),
    })?;
    if v6 {
        // IPv4 has its own socket: a dual-stack one would fail to bind
        // next to it and would show v4 peers as ::ffff: addresses.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(BindError::Other)?;
    }
    if proto == Proto::Tcp {
        // Lets a restart bind while old connections sit in TIME_WAIT. Not
        // for UDP, where it would let two sockets share the port.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(BindError::Other)?;
    }
    let res = if v6 {
        bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                port,
                0,
                0,
            )),
        )
    } else {
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        )
    };
    res.map_err(|e| match e {
        Errno::EADDRINUSE => BindError::InUse,
        Errno::EADDRNOTAVAIL if v6 => BindError::NoFamily(e),
        e => BindError::Other(e),
    })?;
    if proto == Proto::Tcp {
        listen(&fd, Backlog::MAXCONN).map_err(BindError::Other)?;
    }
    Ok(fd)
}

/// accept4(2) with the peer's address as the kernel recorded it at the
/// handshake: a scanner (nmap -sT) resets at once, and getpeername(2) on
/// a reset connection fails, but accept's address is still the source.
fn accept_from(listener: &OwnedFd) -> Result<(OwnedFd, Option<SockaddrStorage>), Errno> {
    use nix::libc;
    use nix::sys::socket::SockaddrLike;
    // SAFETY: sockaddr_storage is plain data; zeroes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len describe a writable buffer of len bytes.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the kernel wrote len bytes of a socket address into storage.
    let addr = unsafe {
        SockaddrStorage::from_raw(
            (&storage as *const libc::sockaddr_storage).cast(),
            Some(len),
        )
    };
    Ok((conn, addr))
}

fn peer(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(a) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(a.ip()));
    }
    addr.as_sockaddr_in6().map(|a| {
        let ip = a.ip();
        // Not expected with IPV6_V6ONLY, but a mapped address is IPv4.
        match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        }
    })
}

impl ConnectSockets {
    /// Listens on every port of `tcp` and `udp`, IPv4 and IPv6. A port that
    /// another program uses (on either family) is skipped with a warning and
    /// the rest keep working; a host without IPv6 gets IPv4 sockets and one
    /// warning.
    pub fn bind(tcp: &PortSet, udp: &PortSet) -> (ConnectSockets, Warnings) {
        let mut listeners = Vec::new();
        let mut warnings = Vec::new();
        let mut v6_missing: Option<Errno> = None;
        for (proto, ports) in [(Proto::Tcp, tcp), (Proto::Udp, udp)] {
            let name = proto.as_str().to_ascii_uppercase();
            for port in ports.iter() {
                let mut fds = Vec::new();
                let mut skip = None;
                for v6 in [false, true] {
                    if v6 && v6_missing.is_some() {
                        continue;
                    }
                    match open(proto, v6, port) {
                        Ok(fd) => fds.push(fd),
                        Err(BindError::InUse) => {
                            skip = Some(format!(
                                "{name} port {port} is in use by another program: not listening on it"
                            ));
                            break;
                        }
                        Err(BindError::NoFamily(e)) if v6 => v6_missing = Some(e),
                        Err(BindError::NoFamily(e)) | Err(BindError::Other(e)) => {
                            let fam = if v6 { "IPv6" } else { "IPv4" };
                            warnings.push(format!(
                                "cannot listen on {name} port {port} ({fam}): {}",
                                e.desc()
                            ));
                        }
                    }
                }
                match skip {
                    // Dropping the sockets bound so far frees the port.
                    Some(w) => warnings.push(w),
                    None => {
                        listeners.extend(fds.into_iter().map(|fd| Listener { fd, proto, port }))
                    }
                }
            }
        }
        if let Some(e) = v6_missing {
            warnings.push(format!(
                "IPv6 is not available ({}): connect mode listens on IPv4 only",
                e.desc()
            ));
        }
        (ConnectSockets { listeners }, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// The ports actually listened on, per protocol.
    pub fn ports(&self, proto: Proto) -> PortSet {
        PortSet::from_ports(
            self.listeners
                .iter()
                .filter(|l| l.proto == proto)
                .map(|l| l.port),
        )
    }

    /// The descriptors to poll for reading, in index order.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.listeners.iter().map(|l| l.fd.as_fd())
    }

    /// Takes every pending connection or datagram of socket `index` and
    /// hands each to `f`; when `f` returns true a TCP visitor gets
    /// `banner` (a UDP one never: see below).
    /// TCP connections are closed afterwards. Never blocks.
    pub fn serve(&self, index: usize, banner: &[u8], mut f: impl FnMut(&Visit) -> bool) {
        let Some(l) = self.listeners.get(index) else {
            return;
        };
        // A flood stops here after a bounded amount of work per wakeup;
        // poll reports the socket again if more is waiting.
        for _ in 0..256 {
            match l.proto {
                Proto::Tcp => {
                    let (conn, from) = match accept_from(&l.fd) {
                        Ok(c) => c,
                        Err(Errno::EINTR) => continue,
                        // EAGAIN: none left. Others (EMFILE) concern one
                        // connection: leave it for the next poll.
                        Err(_) => return,
                    };
                    let Some(src) = from.as_ref().and_then(peer) else {
                        continue;
                    };
                    let visit = Visit {
                        src,
                        proto: l.proto,
                        port: l.port,
                    };
                    if f(&visit) && !banner.is_empty() {
                        // Best effort: a scanner often resets at once.
                        let _ = nix::sys::socket::send(
                            conn.as_raw_fd(),
                            banner,
                            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                        );
                    }
                    drop(conn);
                }
                Proto::Udp => {
                    let mut buf = [0u8; 1];
                    let from = match recvfrom::<SockaddrStorage>(l.fd.as_raw_fd(), &mut buf) {
                        Ok((_, Some(a))) => a,
                        Ok((_, None)) => continue,
                        Err(Errno::EINTR) => continue,
                        Err(_) => return,
                    };
                    let Some(src) = peer(&from) else { continue };
                    let visit = Visit {
                        src,
                        proto: l.proto,
                        port: l.port,
                    };
                    // No banner over UDP: its source may be forged, and a
                    // reply to it would reflect traffic onto that address.
                    f(&visit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::time::Duration;

    /// A port nobody uses right now on loopback (the kernel picks it).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn wait_readable(s: &ConnectSockets, i: usize) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let fd = s.fds().nth(i).unwrap();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(5000u16)).unwrap();
        assert_eq!(n, 1, "socket {i} never became readable");
    }

    #[test]
    fn tcp_visitor_is_reported_and_gets_the_banner() {
        let port = free_port();
        let (s, warnings) = ConnectSockets::bind(&PortSet::from_ports([port]), &PortSet::default());
        assert!(
            warnings.iter().all(|w| w.contains("IPv6")),
            "unexpected warnings: {warnings:?}"
        );
        assert_eq!(s.ports(Proto::Tcp), PortSet::from_ports([port]));
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        wait_readable(&s, 0);
        let mut seen = Vec::new();
        s.serve(0, b"GO AWAY\n", |v| {
            seen.push(*v);
            true
        });
        assert_eq!(
            seen,
            vec![Visit {
                src: "127.0.0.1".parse().unwrap(),
                proto: Proto::Tcp,
                port
            }]
        );
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "GO AWAY\n", "banner, then the server closed");
        let _ = client.write_all(b"x");
    }

    #[test]
    fn tcp_visitor_refused_by_the_callback_gets_no_banner() {
        let port = free_port();
        let (s, _) = ConnectSockets::bind(&PortSet::from_ports([port]), &PortSet::default());
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        wait_readable(&s, 0);
        let mut n = 0;
        s.serve(0, b"GO AWAY\n", |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "");
    }

    #[test]
    fn udp_visitor_is_reported_and_gets_no_banner() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let (s, _) = ConnectSockets::bind(&PortSet::default(), &PortSet::from_ports([port]));
        assert_eq!(s.ports(Proto::Udp), PortSet::from_ports([port]));
        probe.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        wait_readable(&s, 0);
        let mut seen = Vec::new();
        s.serve(0, b"BANNER", |v| {
            seen.push(*v);
            true
        });
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].proto, Proto::Udp);
        assert_eq!(seen[0].src, "127.0.0.1".parse::<IpAddr>().unwrap());
        // A datagram's source may be forged: no reply is reflected to it.
        probe
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(probe.recv_from(&mut buf).is_err(), "a banner was sent");
    }

    #[test]
    fn a_port_in_use_is_skipped_and_the_rest_work() {
        let taken = TcpListener::bind("0.0.0.0:0").unwrap();
        let used = taken.local_addr().unwrap().port();
        let free = free_port();
        let (s, warnings) =
            ConnectSockets::bind(&PortSet::from_ports([used, free]), &PortSet::default());
        assert!(
            warnings.iter().any(|w| w
                == &format!("TCP port {used} is in use by another program: not listening on it")),
            "{warnings:?}"
        );
        assert_eq!(s.ports(Proto::Tcp), PortSet::from_ports([free]));
    }
}

//! nflog::holder: the error for a group we could not bind, telling a
//! missing CAP_NET_ADMIN from a group another socket holds, and naming that
//! socket's process as far as /proc shows it.
//!
//! Reads /proc and our capabilities only; knows nothing of the socket.

use std::fs;
use std::io;

use netlink_sys::protocols::NETLINK_NETFILTER;
use nix::libc;

use crate::error::{Error, Kind};

/// Maps a failed bind to the error the admin needs. The kernel answers EPERM
/// both without CAP_NET_ADMIN (checked first, by nfnetlink) and when another
/// socket holds the group; our own capability set and the group's line in
/// /proc/net/netfilter/nfnetlink_log tell which.
pub(super) fn bind_error(group: u16, portid: u32, errno: i32) -> Error {
    let os = io::Error::from_raw_os_error(errno);
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(true);
    if errno == libc::EPERM && !privileged {
        return Error::new(
            Kind::Privilege,
            format!("binding NFLOG group {group}: {os}: CAP_NET_ADMIN is needed (run as root)"),
        );
    }
    if errno == libc::EPERM || errno == libc::EBUSY {
        let holder = match group_holder(group).filter(|&h| h != portid) {
            Some(h) => describe_portid(h),
            None => "not visible in /proc/net/netfilter/nfnetlink_log".to_string(),
        };
        return Error::other(format!(
            "NFLOG group {group} is already bound by another socket ({holder}); only one \
             socket may listen on a group: stop that process or choose another nflog_group"
        ));
    }
    if errno == libc::ETIMEDOUT {
        return Error::other(format!(
            "binding NFLOG group {group}: the kernel did not answer"
        ));
    }
    Error::other(format!("binding NFLOG group {group}: {os}"))
}

/// The netns of the calling thread (the daemon may have entered one with
/// setns, which /proc/self/net would not reflect).
fn proc_net(file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .or_else(|_| fs::read_to_string(format!("/proc/self/net/{file}")))
        .ok()
}

/// Port id holding `group`, from "group portid qlen mode range timeout use".
fn group_holder(group: u16) -> Option<u32> {
    parse_holder(&proc_net("netfilter/nfnetlink_log")?, group)
}

pub(super) fn parse_holder(table: &str, group: u16) -> Option<u32> {
    table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let g: u16 = f.next()?.parse().ok()?;
        let port: u32 = f.next()?.parse().ok()?;
        (g == group).then_some(port)
    })
}

/// "netlink port id N, process NAME (pid P)" as far as /proc lets us see:
/// the port id's socket inode from /proc/net/netlink, then the process with
/// that socket open; else the process whose pid equals the port id (the
/// kernel gives a process's first netlink socket its pid).
fn describe_portid(portid: u32) -> String {
    let pid = socket_inode(portid)
        .and_then(pid_with_socket)
        .or_else(|| fs::metadata(format!("/proc/{portid}")).ok().map(|_| portid));
    match pid {
        Some(pid) => {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            let comm = if comm.is_empty() { "?" } else { comm };
            format!("netlink port id {portid}, process {comm} (pid {pid})")
        }
        None => format!("netlink port id {portid}, process not found"),
    }
}

/// /proc/net/netlink: "sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode".
fn socket_inode(portid: u32) -> Option<u64> {
    proc_net("netlink")?.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let proto: i64 = f.get(1)?.parse().ok()?;
        let port: u32 = f.get(2)?.parse().ok()?;
        (proto == NETLINK_NETFILTER as i64 && port == portid).then(|| f.last()?.parse().ok())?
    })
}

fn pid_with_socket(inode: u64) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

//! history: the history file, one line per ban in PortSentry 1.2's format,
//! byte for byte (`WriteBlocked` in portsentry_io.c, $Id: portsentry_io.c,
//! v 1.36 2003/05/23):
//!
//! ```text
//! "%ld - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked\n"
//!  time    month day  year  hour min  sec      name ip     port TCP|UDP
//! ```
//!
//! in local time (`localtime()`), so fail2ban's stock `portsentry` filter
//! and old scripts read it unchanged. Local time comes from the C library's
//! `localtime_r` (through the `libc` bindings that nix re-exports): it reads
//! TZ and /etc/localtime exactly as PortSentry did.
//!
//! Knows nothing of when a ban happens or of host-name lookups.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

/// A local calendar time, as `struct tm` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// `epoch` (seconds since 1970) in the local time zone.
pub fn local_time(epoch: i64) -> Option<LocalTime> {
    // time_t is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    let t: nix::libc::time_t = epoch.try_into().ok()?;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are
    // valid for the call, and localtime_r is thread-safe.
    let tm = unsafe {
        let mut tm: nix::libc::tm = std::mem::zeroed();
        if nix::libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(LocalTime {
        year: tm.tm_year.checked_add(1900)?,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        second: u32::try_from(tm.tm_sec).ok()?,
    })
}

/// One history line, with its newline.
pub fn line(
    epoch: i64,
    t: &LocalTime,
    name: &str,
    ip: IpAddr,
    port: u16,
    protocol: &str,
) -> String {
    let mut addr = String::new();
    crate::logging::push_ip(&mut addr, ip);
    let mut out = String::with_capacity(80 + name.len());
    push_line(&mut out, epoch, t, name, &addr, port, protocol);
    out
}

/// Appends the history line (with its newline) to `out`, `addr` being the
/// address as text: PortSentry's
/// `"%ld - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked\n"`,
/// made without the formatting machinery when the numbers are in range
/// (they always are for a `LocalTime` from `local_time`).
pub fn push_line(
    out: &mut String,
    epoch: i64,
    t: &LocalTime,
    name: &str,
    addr: &str,
    port: u16,
    protocol: &str,
) {
    use crate::logging::push_decimal;
    use std::fmt::Write as _;
    // `%0Nd` of a value: the digits, zero-padded to `width` (at most 4).
    fn padded(out: &mut String, v: i64, width: usize) {
        match u64::try_from(v) {
            Ok(u) if u < 10_000 => {
                let digits = [
                    b'0' + (u / 1000) as u8,
                    b'0' + (u / 100 % 10) as u8,
                    b'0' + (u / 10 % 10) as u8,
                    b'0' + (u % 10) as u8,
                ];
                let len = match u {
                    0..=9 => 1,
                    10..=99 => 2,
                    100..=999 => 3,
                    _ => 4,
                }
                .max(width.min(4));
                let at = 4 - len;
                out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
            }
            _ => {
                let _ = write!(out, "{v:0width$}");
            }
        }
    }
    match u64::try_from(epoch) {
        Ok(e) => push_decimal(out, e),
        Err(_) => {
            let _ = write!(out, "{epoch}");
        }
    }
    out.push_str(" - ");
    padded(out, t.month.into(), 2);
    out.push('/');
    padded(out, t.day.into(), 2);
    out.push('/');
    padded(out, t.year.into(), 4);
    out.push(' ');
    padded(out, t.hour.into(), 2);
    out.push(':');
    padded(out, t.minute.into(), 2);
    out.push(':');
    padded(out, t.second.into(), 2);
    out.push_str(" Host: ");
    out.push_str(name);
    out.push('/');
    out.push_str(addr);
    out.push_str(" Port: ");
    push_decimal(out, port.into());
    out.push(' ');
    out.push_str(protocol);
    out.push_str(" Blocked\n");
}

/// The line for a ban at `epoch`, in this host's time zone.
pub fn line_at(epoch: i64, name: &str, ip: IpAddr, port: u16, protocol: &str) -> String {
    // localtime_r fails only for years beyond i32; UTC is a fair fallback.
    let t = local_time(epoch).unwrap_or_else(|| utc(epoch));
    line(epoch, &t, name, ip, port, protocol)
}

/// `epoch` as UTC calendar time (civil-from-days, proleptic Gregorian).
pub fn utc(epoch: i64) -> LocalTime {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    LocalTime {
        year: year.clamp(i32::MIN.into(), i32::MAX.into()) as i32,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

/// Appends `line` (one line or several, each with its newline) to the
/// history file with one write(2) on an O_APPEND descriptor, so concurrent
/// writers never interleave inside a line. The file is opened for each
/// call (a rotated file is followed): callers give it a burst's lines at
/// once (`service::names`).
/// Creates the file (mode 0640) and its directory if missing. What is found
/// in its place is judged by `files::open_private`: a symbolic link, a hard
/// link or a file of a third user is refused (the error says which), never
/// written through or given away.
pub fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let how = crate::files::Private {
        append: true,
        mode: 0o640,
        make_dir: true,
    };
    let mut f = crate::files::open_private(path, &how)?;
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_portsentry_byte_for_byte() {
        // What PortSentry 1.2's fprintf produces for these values.
        let t = LocalTime {
            year: 2023,
            month: 1,
            day: 5,
            hour: 7,
            minute: 3,
            second: 9,
        };
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            line(1672902189, &t, "192.0.2.2", ip, 1, "TCP"),
            "1672902189 - 01/05/2023 07:03:09 Host: 192.0.2.2/192.0.2.2 Port: 1 TCP Blocked\n"
        );
        let ip6: IpAddr = "2001:db8:1::2".parse().unwrap();
        assert_eq!(
            line(5, &t, "scanner.example.net", ip6, 65535, "UDP"),
            "5 - 01/05/2023 07:03:09 Host: scanner.example.net/2001:db8:1::2 Port: 65535 UDP Blocked\n"
        );
    }

    #[test]
    fn utc_calendar() {
        let at = |e| {
            let t = utc(e);
            (t.year, t.month, t.day, t.hour, t.minute, t.second)
        };
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(at(4_102_444_799), (2099, 12, 31, 23, 59, 59));
    }

    #[test]
    fn local_time_follows_tz() {
        // The test process's zone may be anything: compare with the UTC
        // offset that the C library itself reports for that instant.
        for epoch in [0i64, 1_700_000_000, 1_720_000_000] {
            let local = local_time(epoch).unwrap();
            let t: nix::libc::time_t = epoch as _;
            let offset = unsafe {
                let mut tm: nix::libc::tm = std::mem::zeroed();
                nix::libc::localtime_r(&t, &mut tm);
                tm.tm_gmtoff
            };
            assert_eq!(local, utc(epoch + offset as i64), "{epoch}");
        }
        // A year beyond what struct tm holds is an error, not garbage.
        assert!(local_time(i64::MAX).is_none());
    }

    #[test]
    fn append_adds_whole_lines_and_creates_the_directory() {
        let dir = std::env::temp_dir().join(format!("nftsentry-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("history");
        append(&path, "a\n").unwrap();
        append(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod push_tests {
    use super::*;

    /// The line as `format!` made it before `push_line`.
    fn reference(epoch: i64, t: &LocalTime, name: &str, ip: IpAddr, port: u16, p: &str) -> String {
        format!(
            "{epoch} - {:02}/{:02}/{:04} {:02}:{:02}:{:02} Host: {name}/{ip} Port: {port} {p} Blocked\n",
            t.month, t.day, t.year, t.hour, t.minute, t.second
        )
    }

    #[test]
    fn push_line_is_the_format_byte_for_byte() {
        let ips: [IpAddr; 3] = [
            "192.0.2.2".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
        ];
        let times = [
            utc(0),
            utc(1_700_000_000),
            utc(-1),
            LocalTime {
                year: 7,
                month: 12,
                day: 31,
                hour: 0,
                minute: 9,
                second: 60,
            },
            LocalTime {
                year: 12345,
                month: 123,
                day: 0,
                hour: 100,
                minute: 1000,
                second: 10_000,
            },
            LocalTime {
                year: -42,
                month: 1,
                day: 1,
                hour: 1,
                minute: 1,
                second: 1,
            },
        ];
        let mut out = String::new();
        for epoch in [0, 5, -7, 1_700_000_000, i64::MAX, i64::MIN] {
            for t in &times {
                for ip in ips {
                    for port in [0, 9, 65535] {
                        let want = reference(epoch, t, "scanner.example", ip, port, "UDP");
                        assert_eq!(line(epoch, t, "scanner.example", ip, port, "UDP"), want);
                        out.clear();
                        push_line(
                            &mut out,
                            epoch,
                            t,
                            "scanner.example",
                            &ip.to_string(),
                            port,
                            "UDP",
                        );
                        assert_eq!(out, want);
                    }
                }
            }
        }
    }
}

//! netlink: the framing every netlink reader here shares (nf_tables,
//! rtnetlink, sock_diag): messages of a datagram and attributes of a
//! payload, each length checked against the buffer, so no reader can run
//! past its end or panic on what the kernel (or a fuzzer) sends.
//!
//! Knows nothing of any protocol family.

pub use netlink_packet_core::{
    NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
};

/// struct nlmsghdr.
pub const NLMSG_HDRLEN: usize = 16;

/// One netlink message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub port: u32,
    /// What follows the 16-byte header, up to the message's length.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// The status word of NLMSG_ERROR (0 = ack, else a negative errno) and
    /// of NLMSG_DONE (negative when a dump failed part-way).
    pub fn status(&self) -> Option<i32> {
        Some(i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?))
    }
}

/// The messages of one datagram. A message whose length does not fit, or
/// bytes after the last message too short for a header, end the walk with
/// an error. Messages are 4-byte aligned; the last one may lack its padding.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>, String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let fail = |m: String, buf: &mut &[u8]| {
            *buf = &[];
            Some(Err(m))
        };
        if buf.len() < NLMSG_HDRLEN {
            let n = buf.len();
            return fail(format!("{n} stray bytes after the last message"), &mut buf);
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            let n = buf.len();
            return fail(
                format!("message length {len} with {n} bytes left"),
                &mut buf,
            );
        }
        let m = Message {
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
            port: u32::from_ne_bytes(buf[12..16].try_into().unwrap()),
            payload: &buf[NLMSG_HDRLEN..len],
        };
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some(Ok(m))
    })
}

/// The attributes `(type without flag bits, value)` of an attribute stream.
/// A length that does not fit, or 1 to 3 stray bytes at the end, end the
/// walk with an error.
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        if buf.len() < 4 {
            let n = buf.len();
            buf = &[];
            return Some(Err(format!("{n} stray bytes after the last attribute")));
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            let n = buf.len();
            buf = &[];
            return Some(Err(format!("attribute of length {len} in {n} bytes")));
        }
        let value = &buf[4..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some(Ok((kind, value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut b = (len as u32).to_ne_bytes().to_vec();
        b.extend(kind.to_ne_bytes());
        b.extend(0u16.to_ne_bytes());
        b.extend(seq.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(payload);
        b.resize(len.next_multiple_of(4), 0);
        b
    }

    #[test]
    fn walks_messages_and_their_status() {
        let mut b = msg(20, 1, &[1, 2, 3]);
        b.extend(msg(NLMSG_DONE, 1, &(-5i32).to_ne_bytes()));
        let all: Vec<_> = messages(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].payload, &[1, 2, 3]);
        assert_eq!(all[1].status(), Some(-5));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_never_a_panic() {
        let mut b = msg(20, 1, &[9; 7]);
        b.extend(msg(21, 1, &[8; 13]));
        for n in 0..b.len() {
            let _ = messages(&b[..n]).count();
            let _ = attrs(&b[..n]).count();
        }
        let mut bad = b.clone();
        bad[0] = 200;
        assert!(messages(&bad).next().unwrap().is_err());
        assert!(messages(&[0u8; 5]).next().unwrap().is_err());
    }

    #[test]
    fn attributes_strip_flag_bits() {
        let b = [8, 0, 0x01, 0x80, 1, 2, 3, 4, 5, 0, 2, 0, 9, 0, 0, 0];
        let all: Vec<_> = attrs(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(all, vec![(1, &[1, 2, 3, 4][..]), (2, &[9][..])]);
    }
}

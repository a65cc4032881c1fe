//! The NETLINK_NETFILTER socket for nf_tables: commits batches and reads dumps.
//!
//! A batch is sent in one sendmsg, framed by batch begin (with the ruleset
//! generation id, so the kernel refuses it if the ruleset changed under us) and
//! batch end. Every message asks for an ack. The kernel processes the batch
//! inside sendmsg and queues one ack or error per message, so replies are
//! drained without blocking: since kernel 6.10 a failed batch gets no batch-end
//! ack, and a reader that waits for one hangs.

use std::os::fd::AsFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{GenAttribute, GenMessage, NfTablesMessage};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::errno::Errno;

use super::batch::Batch;
use crate::error::{Error, Kind, Result};
use crate::kernel::netlink::{NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u8 = 16;
const NFNL_MSG_BATCH_END: u8 = 17;
const NFNL_BATCH_GENID: u16 = 1;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// ERESTART: the ruleset generation changed between reading it and the batch.
const ERESTART: i32 = 85;
const RECV_BUF: usize = 256 * 1024;
const RCVBUF_SOCKET: usize = 4 * 1024 * 1024;

/// One reply the kernel gave to a request: its sequence number and error code
/// (0 for an ack) with the extended-ack message, if any.
struct Ack {
    seq: u32,
    code: i32,
    msg: Option<String>,
}

pub struct NftSocket {
    sock: Socket,
    seq: u32,
    sndbuf: usize,
    buf: Vec<u8>,
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc_eperm()) {
        privilege_error(what)
    } else {
        Error::other(format!("{what}: {e}"))
    }
}

fn libc_eperm() -> i32 {
    Errno::EPERM as i32
}

fn privilege_error(what: &str) -> Error {
    Error::new(
        Kind::Privilege,
        format!(
            "{what}: Operation not permitted: CAP_NET_ADMIN is needed (run as root or grant the capability)"
        ),
    )
}

/// The error for a negative errno that the kernel returned for `what`.
fn kernel_error(what: &str, code: i32, ext: Option<&str>) -> Error {
    let errno = Errno::from_raw(code.abs());
    // EPERM is a missing CAP_NET_ADMIN, unless we hold it: then the object
    // is another process's (a table with the owner flag).
    if errno == Errno::EPERM && !holds_net_admin() {
        return privilege_error(what);
    }
    // ENFILE from a set means it holds `size` elements already.
    let desc = if errno == Errno::ENFILE {
        "the set is full (its size is reached)"
    } else {
        errno.desc()
    };
    let mut message = format!("{what}: {desc}");
    if let Some(ext) = ext.filter(|m| !m.is_empty()) {
        message.push_str(&format!(" ({ext})"));
    }
    Error::new(Kind::from_errno(errno as i32), message)
}

/// Whether this thread's effective set has CAP_NET_ADMIN.
fn holds_net_admin() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(false)
}

impl NftSocket {
    pub fn open() -> Result<NftSocket> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| io_err("netlink socket", e))?;
        sock.bind_auto().map_err(|e| io_err("netlink bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| io_err("netlink connect", e))?;
        // Errors come back with the request's header only (not the whole
        // request, which for element lists is large) plus a text from the kernel.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_rx_buf_sz(RCVBUF_SOCKET);
        Ok(NftSocket {
            sock,
            seq: initial_seq(),
            sndbuf: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The current ruleset generation id.
    pub fn generation(&mut self) -> Result<u32> {
        let replies = self.request(
            NetfilterProtoFamily::Unspec,
            NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            NLM_F_REQUEST | NLM_F_ACK,
            "ruleset generation",
        )?;
        for m in replies {
            if let NfTablesMessage::NewGen(g) = m {
                for a in g.attributes {
                    if let GenAttribute::Id(id) = a {
                        return Ok(id);
                    }
                }
            }
        }
        Err(Error::other(
            "ruleset generation: the kernel sent no generation id",
        ))
    }

    /// Applies `batch` atomically. If the ruleset changed between reading its
    /// generation and the commit, tries again (a few times).
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            let genid = self.generation()?;
            match self.commit_once(batch, Some(genid)) {
                Err(CommitError::GenerationChanged) if attempt < 5 => attempt += 1,
                Err(CommitError::GenerationChanged) => {
                    return Err(Error::other(
                        "the ruleset kept changing while the batch was sent; tried 6 times",
                    ));
                }
                Err(CommitError::Failed(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Applies `batch` without checking the ruleset generation: one round
    /// trip. For element changes, which mean the same whatever else changed.
    pub fn commit_unchecked(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.commit_once(batch, None) {
            Ok(()) => Ok(()),
            Err(CommitError::Failed(e)) => Err(e),
            Err(CommitError::GenerationChanged) => Err(Error::other(
                "batch refused: the ruleset generation changed",
            )),
        }
    }

    /// One try: the batch framed and sent in one sendmsg, then the replies
    /// the kernel queued for it checked.
    fn commit_once(
        &mut self,
        batch: &Batch,
        genid: Option<u32>,
    ) -> std::result::Result<(), CommitError> {
        let (out, seqs) = self.frame(batch, genid);
        self.ensure_sndbuf(out.len()).map_err(CommitError::Failed)?;
        self.sock
            .send(&out, 0)
            .map_err(|e| CommitError::Failed(io_err("sending the batch", e)))?;
        let acks = self.drain_acks().map_err(CommitError::Failed)?;
        check_acks(batch, &acks, &seqs)
    }

    /// The batch as one buffer: batch begin (with `genid`, if any), each
    /// message asking for an ack, batch end; with the sequence numbers used.
    fn frame(&mut self, batch: &Batch, genid: Option<u32>) -> (Vec<u8>, BatchSeqs) {
        let begin_seq = self.next_seq();
        let mut frames: Vec<NetlinkMessage<NetfilterMessage>> = Vec::with_capacity(batch.len() + 2);
        let genid_attr = genid.map(|g| {
            netlink_packet_core::DefaultNla::new(NFNL_BATCH_GENID, g.to_be_bytes().to_vec())
        });
        frames.push(control(
            NFNL_MSG_BATCH_BEGIN,
            begin_seq,
            genid_attr.into_iter().collect(),
        ));
        let first_seq = begin_seq.wrapping_add(1);
        for q in &batch.messages {
            let seq = self.next_seq();
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | q.flags;
            header.sequence_number = seq;
            let mut m = NetlinkMessage::new(
                header,
                NetlinkPayload::from(NetfilterMessage::new(
                    NetfilterHeader::new(q.family, 0, 0),
                    q.message.clone(),
                )),
            );
            m.finalize();
            frames.push(m);
        }
        let end_seq = self.next_seq();
        frames.push(control(NFNL_MSG_BATCH_END, end_seq, vec![]));

        let total: usize = frames.iter().map(|f| f.buffer_len()).sum();
        let mut out = vec![0u8; total];
        let mut off = 0;
        for f in &frames {
            let len = f.buffer_len();
            f.serialize(&mut out[off..off + len]);
            off += len;
        }
        let seqs = BatchSeqs {
            begin: begin_seq,
            first: first_seq,
            end: end_seq,
        };
        (out, seqs)
    }

    /// Grows the socket send buffer so the whole batch fits one sendmsg.
    fn ensure_sndbuf(&mut self, len: usize) -> Result<()> {
        let want = len + 64 * 1024;
        if want <= self.sndbuf {
            return Ok(());
        }
        let fd = self.sock.as_fd();
        if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBufForce, &want).is_err()
        {
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &want)
                .map_err(|e| Error::other(format!("netlink send buffer of {want} bytes: {e}")))?;
        }
        self.sndbuf = want;
        Ok(())
    }

    /// Reads every reply already queued, without waiting for more.
    fn drain_acks(&mut self) -> Result<Vec<Ack>> {
        let mut acks = Vec::new();
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], libc_dontwait()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("reading the kernel's replies", e)),
            };
            for_each_message(&self.buf[..n], |h, payload| {
                if h.message_type == NLMSG_ERROR {
                    acks.push(parse_ack(h, payload));
                }
            })?;
        }
        Ok(acks)
    }

    /// Sends one request and collects the nf_tables messages of its answer
    /// (one message, or all the parts of a dump), decoded by the crate.
    /// For large dumps use `request_raw`: the crate's decoder is slow on them.
    pub fn request(
        &mut self,
        family: NetfilterProtoFamily,
        message: NfTablesMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<NfTablesMessage>> {
        let mut out = Vec::new();
        for (h, payload) in self.request_raw(family, message, flags, what)? {
            let m = NetfilterMessage::deserialize(&h, &payload).map_err(|e| {
                Error::other(format!("{what}: cannot decode the kernel's answer: {e}"))
            })?;
            if let netlink_packet_netfilter::NetfilterMessageInner::NfTables(t) = m.inner {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Like `request`, but returns each answer message's header and payload
    /// (starting at the nfgenmsg header) undecoded.
    pub fn request_raw(
        &mut self,
        family: NetfilterProtoFamily,
        message: NfTablesMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RawMessage>> {
        loop {
            let seq = self.next_seq();
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = seq;
            let mut m = NetlinkMessage::new(
                header,
                NetlinkPayload::from(NetfilterMessage::new(
                    NetfilterHeader::new(family, 0, 0),
                    message.clone(),
                )),
            );
            m.finalize();
            let mut out = vec![0u8; m.buffer_len()];
            m.serialize(&mut out);
            self.sock.send(&out, 0).map_err(|e| io_err(what, e))?;
            match self.collect(seq, what)? {
                Some(msgs) => return Ok(msgs),
                None => continue, // dump interrupted by a concurrent change: start over
            }
        }
    }

    /// Reads the answer to `seq` until NLMSG_DONE or an ack. `None` when a
    /// dump was interrupted by a concurrent change.
    fn collect(&mut self, seq: u32, what: &str) -> Result<Option<Vec<RawMessage>>> {
        let mut msgs = Vec::new();
        let mut interrupted = false;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(what, e)),
            };
            let mut finished = false;
            let mut failure: Option<Error> = None;
            for_each_message(&self.buf[..n], |h, payload| {
                if h.sequence_number != seq || finished {
                    return; // a late reply to something earlier
                }
                if h.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match h.message_type {
                    NLMSG_ERROR => {
                        let a = parse_ack(h, payload);
                        if a.code != 0 {
                            failure = Some(kernel_error(what, a.code, a.msg.as_deref()));
                        }
                        finished = true;
                    }
                    NLMSG_DONE => finished = true,
                    _ => msgs.push((*h, payload.to_vec())),
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if finished {
                return Ok(if interrupted { None } else { Some(msgs) });
            }
        }
    }
}

/// The sequence numbers of one framed batch: its begin, its first message
/// and its end.
struct BatchSeqs {
    begin: u32,
    first: u32,
    end: u32,
}

/// The kernel's verdict on a batch from its replies: the generation changed
/// (ERESTART on batch begin), the first message it refused, or fewer acks
/// than messages.
fn check_acks(
    batch: &Batch,
    acks: &[Ack],
    seqs: &BatchSeqs,
) -> std::result::Result<(), CommitError> {
    let (begin_seq, first_seq, end_seq) = (seqs.begin, seqs.first, seqs.end);
    let what = |seq: u32| -> String {
        if seq == begin_seq || seq == end_seq {
            return "batch".to_string();
        }
        let i = seq.wrapping_sub(first_seq) as usize;
        batch
            .messages
            .get(i)
            .map(|q| q.what.clone())
            .unwrap_or_else(|| format!("message {seq}"))
    };
    let mut ok = 0usize;
    for a in acks {
        if a.seq == begin_seq && a.code.abs() == ERESTART {
            return Err(CommitError::GenerationChanged);
        }
    }
    if let Some(a) = acks.iter().find(|a| a.code != 0) {
        return Err(CommitError::Failed(kernel_error(
            &what(a.seq),
            a.code,
            a.msg.as_deref(),
        )));
    }
    for a in acks {
        if a.seq != begin_seq && a.seq != end_seq {
            ok += 1;
        }
    }
    if ok < batch.len() {
        return Err(CommitError::Failed(Error::other(format!(
            "batch of {} messages: the kernel acknowledged only {ok}",
            batch.len()
        ))));
    }
    Ok(())
}

use netlink_packet_core::NetlinkDeserializable;

/// One undecoded answer: its netlink header and payload (from nfgenmsg on).
pub type RawMessage = (NetlinkHeader, Vec<u8>);

enum CommitError {
    GenerationChanged,
    Failed(Error),
}

fn libc_dontwait() -> i32 {
    nix::sys::socket::MsgFlags::MSG_DONTWAIT.bits()
}

/// A starting sequence number that differs between runs, so replies meant
/// for an earlier process on a reused port id are not mistaken for ours.
fn initial_seq() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(1);
    t.wrapping_mul(2654435761)
}

fn control(
    kind: u8,
    seq: u32,
    attributes: Vec<netlink_packet_core::DefaultNla>,
) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            ControlMessage::Other {
                message_type: kind,
                attributes,
            },
        )),
    );
    m.finalize();
    m
}

/// Walks the netlink messages of one datagram (`netlink::messages`), as
/// headers the crate's decoder takes.
fn for_each_message(buf: &[u8], mut f: impl FnMut(&NetlinkHeader, &[u8])) -> Result<()> {
    for m in crate::kernel::netlink::messages(buf) {
        let m = m.map_err(|e| Error::other(format!("malformed netlink reply: {e}")))?;
        let mut h = NetlinkHeader::default();
        h.length = (crate::kernel::netlink::NLMSG_HDRLEN + m.payload.len()) as u32;
        h.message_type = m.kind;
        h.flags = m.flags;
        h.sequence_number = m.seq;
        h.port_number = m.port;
        f(&h, m.payload);
    }
    Ok(())
}

/// An NLMSG_ERROR payload: error code, the request's header (capped acks),
/// then extended-ack attributes when NLM_F_ACK_TLVS is set.
fn parse_ack(h: &NetlinkHeader, payload: &[u8]) -> Ack {
    let code = payload
        .get(..4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
        .unwrap_or(-(Errno::EBADMSG as i32));
    let mut msg = None;
    if h.flags & NLM_F_ACK_TLVS != 0 && payload.len() >= 20 {
        // With NETLINK_CAP_ACK (or on success) only the 16-byte header is echoed.
        let echoed = if h.flags & 0x100 != 0 || code == 0 {
            16
        } else {
            u32::from_ne_bytes(payload[4..8].try_into().unwrap()) as usize
        };
        let tlvs = &payload[4 + echoed.min(payload.len() - 4)..];
        for (kind, v) in crate::kernel::netlink::attrs(tlvs).map_while(|a| a.ok()) {
            if kind == NLMSGERR_ATTR_MSG {
                let v = v.split(|b| *b == 0).next().unwrap_or(v);
                msg = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    let seq = payload
        .get(12..16)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        .unwrap_or(h.sequence_number);
    Ack { seq, code, msg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_parsing_survives_short_payloads() {
        let h = NetlinkHeader::default();
        for n in 0..40 {
            let payload = vec![0xffu8; n];
            let _ = parse_ack(&h, &payload);
            let mut h2 = h;
            h2.flags = NLM_F_ACK_TLVS;
            let _ = parse_ack(&h2, &payload);
        }
    }
}

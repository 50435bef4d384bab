//! The probe's own scheme, as pure logic: Sqes in, answers out. The Redox-only loop (`redox_probe.rs`)
//! reads Sqes from the scheme socket, passes them here, copies each answer's payload into the caller's
//! buffer (mapped into our address space by the kernel) and writes the Cqes back. Keeping the decisions
//! here lets them be unit-tested on any host.
//!
//! Files of the scheme (the path a client opens under `/scheme/<name>/`):
//! - `echo`: a read is answered at once;
//! - `ooo`: reads are held until a batch is complete (`batch_target` reads, or no new read for
//!   `idle_flush_ns`), then answered newest first, i.e. in reverse submission order;
//! - `hang`: a read is never answered, until the kernel cancels it (Sqe `Cancel` carrying the read's tag)
//!   or the probe releases it;
//! - the scheme root (empty path): reads return 0 bytes.
//!
//! A read's answer payload is 16 bytes: the read's offset (the client's request id) as u64 LE, the tag the
//! kernel gave the request as u32 LE, and the answer's sequence number as u32 LE. The client checks that
//! the offset it gets back is its own: that is the end-to-end check that the kernel routed each
//! out-of-order Cqe back to the caller whose Sqe carried that tag.

use std::collections::BTreeMap;

use crate::errno::{Errno, EBADF, EBUSY, EINTR, ENOENT, ENOSYS};
use crate::inflight::{Stats, Tracker};
use crate::sqe::{new_fd_flags, opcode, Cqe, Sqe};

pub const PAYLOAD_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Root,
    Echo,
    Ooo,
    Hang,
}

impl FileKind {
    pub fn from_path(path: &str) -> Option<FileKind> {
        match path.trim_matches('/') {
            "" => Some(FileKind::Root),
            "echo" => Some(FileKind::Echo),
            "ooo" => Some(FileKind::Ooo),
            "hang" => Some(FileKind::Hang),
            _ => None,
        }
    }
}

/// Bytes to copy into the caller's buffer before the Cqe is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub addr: u64,
    pub data: [u8; PAYLOAD_LEN],
    pub len: usize,
}

/// One answer: an optional fill, then the Cqe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub cqe: Cqe,
    pub fill: Option<Fill>,
}

/// Things the probe's cases wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A read on `hang` arrived and is being held.
    HangArrived { tag: u32, at_ns: u64 },
    /// The kernel sent Cancel for `tag`; `known` if that request was still held here.
    CancelSeen { tag: u32, known: bool, at_ns: u64 },
    /// Something the protocol does not allow (duplicate tag, stray bytes, ...).
    Protocol(String),
}

#[derive(Clone, Copy, Debug)]
struct Held {
    kind: FileKind,
    buf_addr: u64,
    buf_len: u64,
    offset: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sqes: u64,
    pub opens: u64,
    pub reads: u64,
    pub writes: u64,
    pub closes: u64,
    pub cancels: u64,
    pub cancels_unknown: u64,
    pub unsupported: u64,
    pub batches: u64,
    pub replies: u64,
}

pub struct Daemon {
    files: BTreeMap<u64, FileKind>,
    next_file: u64,
    held: Tracker<Held>,
    batch: Vec<u32>,
    last_batch_arrival_ns: u64,
    /// Answer the held `ooo` reads once this many are held (set to the number of client threads).
    pub batch_target: usize,
    /// ... or once no new `ooo` read arrived for this long.
    pub idle_flush_ns: u64,
    answer_seq: u32,
    events: Vec<Event>,
    counters: Counters,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new()
    }
}

impl Daemon {
    pub fn new() -> Daemon {
        Daemon {
            files: BTreeMap::new(),
            next_file: 1,
            held: Tracker::new(),
            batch: Vec::new(),
            last_batch_arrival_ns: 0,
            batch_target: 8,
            idle_flush_ns: 20_000_000,
            answer_seq: 0,
            events: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Handle one Sqe. `path` is the path an Open/OpenAt carried (read from our memory by the caller).
    pub fn on_sqe(&mut self, sqe: &Sqe, path: Option<&str>, now_ns: u64) -> Vec<Reply> {
        self.counters.sqes += 1;
        let mut replies = Vec::new();
        match sqe.opcode {
            opcode::OPEN | opcode::OPEN_AT => {
                self.counters.opens += 1;
                match path.and_then(FileKind::from_path) {
                    Some(kind) => {
                        let number = self.next_file;
                        self.next_file += 1;
                        self.files.insert(number, kind);
                        replies.push(self.plain(Cqe::respond_open(sqe.tag, number, new_fd_flags::POSITIONED)));
                    }
                    None => replies.push(self.answer(sqe.tag, Err(Errno(ENOENT)))),
                }
            }
            opcode::READ => {
                self.counters.reads += 1;
                let (file, buf_addr, buf_len, offset) = sqe.rw_args();
                match self.files.get(&file).copied() {
                    None => replies.push(self.answer(sqe.tag, Err(Errno(EBADF)))),
                    Some(FileKind::Root) => replies.push(self.answer(sqe.tag, Ok(0))),
                    Some(FileKind::Echo) => {
                        let held = Held { kind: FileKind::Echo, buf_addr, buf_len, offset };
                        replies.push(self.payload_reply(sqe.tag, &held));
                    }
                    Some(kind @ (FileKind::Ooo | FileKind::Hang)) => {
                        let held = Held { kind, buf_addr, buf_len, offset };
                        if let Err(err) = self.held.submit(sqe.tag, now_ns, held) {
                            self.events.push(Event::Protocol(err.to_string()));
                            replies.push(self.answer(sqe.tag, Err(Errno(EBUSY))));
                        } else if kind == FileKind::Hang {
                            self.events.push(Event::HangArrived { tag: sqe.tag, at_ns: now_ns });
                        } else {
                            self.batch.push(sqe.tag);
                            self.last_batch_arrival_ns = now_ns;
                            if self.batch.len() >= self.batch_target.max(1) {
                                replies.extend(self.flush(now_ns));
                            }
                        }
                    }
                }
            }
            opcode::WRITE => {
                self.counters.writes += 1;
                let (file, _, len, _) = sqe.rw_args();
                match self.files.get(&file) {
                    Some(FileKind::Echo) => replies.push(self.answer(sqe.tag, Ok(len))),
                    _ => replies.push(self.answer(sqe.tag, Err(Errno(EBADF)))),
                }
            }
            opcode::FSYNC | opcode::FSIZE => {
                let known = self.files.contains_key(&sqe.args[0]);
                let result = if known { Ok(0) } else { Err(Errno(EBADF)) };
                replies.push(self.answer(sqe.tag, result));
            }
            opcode::CANCEL => {
                // One-way: the answer goes to the cancelled request (same tag), never to the Cancel.
                self.counters.cancels += 1;
                match self.held.cancel(sqe.tag) {
                    Ok(_) => {
                        self.batch.retain(|&t| t != sqe.tag);
                        self.events.push(Event::CancelSeen { tag: sqe.tag, known: true, at_ns: now_ns });
                        replies.push(self.answer(sqe.tag, Err(Errno(EINTR))));
                    }
                    Err(_) => {
                        // Already answered (a race the protocol allows): nothing to do.
                        self.counters.cancels_unknown += 1;
                        self.events.push(Event::CancelSeen { tag: sqe.tag, known: false, at_ns: now_ns });
                    }
                }
            }
            opcode::CLOSE_MSG => {
                self.counters.closes += 1;
                self.files.remove(&sqe.args[0]);
            }
            opcode::CLOSE => {
                self.counters.closes += 1;
                let result = if self.files.remove(&sqe.args[0]).is_some() { Ok(0) } else { Err(Errno(EBADF)) };
                if !sqe.is_oneway() {
                    replies.push(self.answer(sqe.tag, result));
                }
            }
            _ => {
                self.counters.unsupported += 1;
                if !sqe.is_oneway() {
                    replies.push(self.answer(sqe.tag, Err(Errno(ENOSYS))));
                }
            }
        }
        replies
    }

    /// Call when the socket had nothing to read: answers a partial batch that went idle.
    pub fn on_idle(&mut self, now_ns: u64) -> Vec<Reply> {
        if !self.batch.is_empty() && now_ns.saturating_sub(self.last_batch_arrival_ns) >= self.idle_flush_ns {
            self.flush(now_ns)
        } else {
            Vec::new()
        }
    }

    /// Answer every held `ooo` read, newest first.
    pub fn flush(&mut self, now_ns: u64) -> Vec<Reply> {
        let tags: Vec<u32> = self.batch.drain(..).rev().collect();
        if tags.is_empty() {
            return Vec::new();
        }
        self.counters.batches += 1;
        let mut replies = Vec::with_capacity(tags.len());
        for tag in tags {
            match self.held.complete(tag, now_ns) {
                Ok(done) => replies.push(self.payload_reply(tag, &done.payload)),
                Err(err) => self.events.push(Event::Protocol(err.to_string())),
            }
        }
        replies
    }

    /// Answer every held `hang` read with `result` (used when no Cancel comes).
    pub fn release_hangs(&mut self, result: Result<u64, Errno>, now_ns: u64) -> Vec<Reply> {
        let tags: Vec<u32> = self
            .held
            .in_flight()
            .into_iter()
            .filter(|&t| matches!(self.held.get(t), Some(h) if h.kind == FileKind::Hang))
            .collect();
        let mut replies = Vec::new();
        for tag in tags {
            if self.held.complete(tag, now_ns).is_ok() {
                replies.push(self.answer(tag, result));
            }
        }
        replies
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// In-flight statistics of the held (`ooo`, `hang`) reads.
    pub fn held_stats(&self) -> Stats {
        self.held.stats()
    }
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    fn answer(&mut self, tag: u32, result: Result<u64, Errno>) -> Reply {
        self.plain(Cqe::respond(tag, result))
    }

    fn plain(&mut self, cqe: Cqe) -> Reply {
        self.counters.replies += 1;
        Reply { cqe, fill: None }
    }

    fn payload_reply(&mut self, tag: u32, held: &Held) -> Reply {
        let data = encode_payload(held.offset, tag, self.answer_seq);
        self.answer_seq = self.answer_seq.wrapping_add(1);
        let len = (held.buf_len as usize).min(PAYLOAD_LEN);
        self.counters.replies += 1;
        Reply {
            cqe: Cqe::respond(tag, Ok(len as u64)),
            fill: if len > 0 { Some(Fill { addr: held.buf_addr, data, len }) } else { None },
        }
    }
}

pub fn encode_payload(offset: u64, tag: u32, seq: u32) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[0..8].copy_from_slice(&offset.to_le_bytes());
    out[8..12].copy_from_slice(&tag.to_le_bytes());
    out[12..16].copy_from_slice(&seq.to_le_bytes());
    out
}

/// (offset, tag, answer sequence number) from a read's payload.
pub fn decode_payload(bytes: &[u8; PAYLOAD_LEN]) -> (u64, u32, u32) {
    let mut off = [0u8; 8];
    off.copy_from_slice(&bytes[0..8]);
    (
        u64::from_le_bytes(off),
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::{EINTR, EIO};
    use crate::sqe::{sqe_flags, CqeOpcode};

    fn open(d: &mut Daemon, tag: u32, path: &str) -> u64 {
        let sqe = Sqe { opcode: opcode::OPEN, tag, args: [0x1000, path.len() as u64, 0, 0, 0, 0], ..Sqe::default() };
        let r = d.on_sqe(&sqe, Some(path), 0);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cqe.extra_raw[0], new_fd_flags::POSITIONED);
        r[0].cqe.decoded_result().unwrap()
    }

    fn read(file: u64, tag: u32, offset: u64) -> Sqe {
        Sqe { opcode: opcode::READ, tag, args: [file, 0x20_0000 + tag as u64 * 16, 16, offset, 0, 0], ..Sqe::default() }
    }

    #[test]
    fn open_paths() {
        let mut d = Daemon::new();
        let a = open(&mut d, 1, "echo");
        let b = open(&mut d, 2, "/ooo/");
        assert_ne!(a, b);
        let r = d.on_sqe(&Sqe { opcode: opcode::OPEN_AT, tag: 3, ..Sqe::default() }, Some("nope"), 0);
        assert_eq!(r[0].cqe.decoded_result(), Err(Errno(ENOENT)));
        assert_eq!(d.open_files(), 2);
        // CloseMsg is one-way: no answer.
        let r = d.on_sqe(
            &Sqe {
                opcode: opcode::CLOSE_MSG,
                sqe_flags: sqe_flags::ONEWAY,
                args: [a, 0, 0, 0, 0, 0],
                ..Sqe::default()
            },
            None,
            0,
        );
        assert!(r.is_empty());
        assert_eq!(d.open_files(), 1);
    }

    #[test]
    fn echo_answers_at_once_with_payload() {
        let mut d = Daemon::new();
        let f = open(&mut d, 1, "echo");
        let r = d.on_sqe(&read(f, 9, 777), None, 5);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cqe.tag, 9);
        assert_eq!(r[0].cqe.decoded_result(), Ok(16));
        let fill = r[0].fill.unwrap();
        assert_eq!(fill.addr, 0x20_0000 + 9 * 16);
        assert_eq!(decode_payload(&fill.data), (777, 9, 0));
    }

    #[test]
    fn ooo_batch_answers_in_reverse() {
        let mut d = Daemon::new();
        d.batch_target = 4;
        let f = open(&mut d, 100, "ooo");
        for tag in 0..3 {
            assert!(d.on_sqe(&read(f, tag, 1000 + tag as u64), None, tag as u64).is_empty());
        }
        let r = d.on_sqe(&read(f, 3, 1003), None, 10);
        let tags: Vec<u32> = r.iter().map(|x| x.cqe.tag).collect();
        assert_eq!(tags, [3, 2, 1, 0]);
        for reply in &r {
            let (offset, tag, _) = decode_payload(&reply.fill.unwrap().data);
            assert_eq!(offset, 1000 + tag as u64);
        }
        let s = d.held_stats();
        assert_eq!((s.completed, s.out_of_order, s.max_in_flight), (4, 3, 4));
        assert_eq!(d.counters().batches, 1);
    }

    #[test]
    fn ooo_partial_batch_flushes_when_idle() {
        let mut d = Daemon::new();
        d.batch_target = 8;
        d.idle_flush_ns = 1000;
        let f = open(&mut d, 1, "ooo");
        d.on_sqe(&read(f, 1, 1), None, 100);
        d.on_sqe(&read(f, 2, 2), None, 200);
        assert!(d.on_idle(500).is_empty());
        let r = d.on_idle(1200);
        assert_eq!(r.iter().map(|x| x.cqe.tag).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(d.held_count(), 0);
    }

    #[test]
    fn duplicate_tag_is_reported_and_refused() {
        let mut d = Daemon::new();
        let f = open(&mut d, 1, "ooo");
        d.on_sqe(&read(f, 5, 1), None, 0);
        let r = d.on_sqe(&read(f, 5, 2), None, 0);
        assert_eq!(r[0].cqe.decoded_result(), Err(Errno(EBUSY)));
        assert!(matches!(d.take_events()[..], [Event::Protocol(_)]));
    }

    #[test]
    fn cancel_answers_the_cancelled_tag_with_eintr() {
        let mut d = Daemon::new();
        let f = open(&mut d, 1, "hang");
        assert!(d.on_sqe(&read(f, 42, 0), None, 10).is_empty());
        assert_eq!(d.take_events(), [Event::HangArrived { tag: 42, at_ns: 10 }]);
        let cancel = Sqe { opcode: opcode::CANCEL, sqe_flags: sqe_flags::ONEWAY, tag: 42, ..Sqe::default() };
        let r = d.on_sqe(&cancel, None, 50);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cqe.tag, 42);
        assert_eq!(r[0].cqe.opcode(), Some(CqeOpcode::RespondRegular));
        assert_eq!(r[0].cqe.decoded_result(), Err(Errno(EINTR)));
        assert_eq!(d.take_events(), [Event::CancelSeen { tag: 42, known: true, at_ns: 50 }]);
        // A second Cancel for the same (now answered) tag is a no-op.
        assert!(d.on_sqe(&cancel, None, 60).is_empty());
        assert_eq!(d.counters().cancels_unknown, 1);
        assert_eq!(d.held_stats().cancelled, 1);
    }

    #[test]
    fn cancel_of_a_batched_read_removes_it_from_the_batch() {
        let mut d = Daemon::new();
        d.batch_target = 3;
        let f = open(&mut d, 1, "ooo");
        d.on_sqe(&read(f, 1, 1), None, 0);
        d.on_sqe(&read(f, 2, 2), None, 0);
        let cancel = Sqe { opcode: opcode::CANCEL, sqe_flags: sqe_flags::ONEWAY, tag: 1, ..Sqe::default() };
        assert_eq!(d.on_sqe(&cancel, None, 1)[0].cqe.tag, 1);
        assert_eq!(d.flush(2).iter().map(|r| r.cqe.tag).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn release_hangs_and_other_opcodes() {
        let mut d = Daemon::new();
        let h = open(&mut d, 1, "hang");
        d.on_sqe(&read(h, 7, 0), None, 0);
        let r = d.release_hangs(Err(Errno(EIO)), 5);
        assert_eq!((r.len(), r[0].cqe.tag, r[0].cqe.decoded_result()), (1, 7, Err(Errno(EIO))));
        // Unknown file, unsupported opcode, one-way unsupported opcode, close.
        assert_eq!(d.on_sqe(&read(999, 8, 0), None, 0)[0].cqe.decoded_result(), Err(Errno(EBADF)));
        let fstat = Sqe { opcode: opcode::FSTAT, tag: 9, ..Sqe::default() };
        assert_eq!(d.on_sqe(&fstat, None, 0)[0].cqe.decoded_result(), Err(Errno(ENOSYS)));
        let oneway = Sqe { opcode: opcode::MSYNC, sqe_flags: sqe_flags::ONEWAY, ..Sqe::default() };
        assert!(d.on_sqe(&oneway, None, 0).is_empty());
        let close = Sqe { opcode: opcode::CLOSE, tag: 10, args: [h, 0, 0, 0, 0, 0], ..Sqe::default() };
        assert_eq!(d.on_sqe(&close, None, 0)[0].cqe.decoded_result(), Ok(0));
        let root = open(&mut d, 11, "");
        assert_eq!(d.on_sqe(&read(root, 12, 0), None, 0)[0].cqe.decoded_result(), Ok(0));
    }

    #[test]
    fn short_buffers_get_short_payloads() {
        let mut d = Daemon::new();
        let f = open(&mut d, 1, "echo");
        let mut sqe = read(f, 3, 5);
        sqe.args[2] = 4;
        let r = d.on_sqe(&sqe, None, 0);
        assert_eq!(r[0].cqe.decoded_result(), Ok(4));
        assert_eq!(r[0].fill.unwrap().len, 4);
        sqe.args[2] = 0;
        let r = d.on_sqe(&sqe, None, 0);
        assert_eq!((r[0].cqe.decoded_result(), r[0].fill), (Ok(0), None));
    }
}

//! Redox scheme protocol v2: the submission (`Sqe`, 64 bytes) and completion (`Cqe`, 16 bytes) entries a
//! scheme daemon reads from and writes to its scheme socket.
//!
//! Layouts, opcode numbers and flag bits are facts from redox-os/syscall `src/schemev2.rs` (the crate's
//! 0.9.x line, checked against its history: Open/Rmdir/Unlink = 0/1/2 were dropped from the enum on
//! 2025-12-27, commit 208cf4b, when the kernel stopped sending them; kernels before that send them).
//! How the kernel fills the arguments is from redox-os/kernel `src/scheme/user.rs` (`kopen`, `kreadoff`,
//! `kwriteoff`, `close`, the cancellation path in `call_extended_inner`).
//!
//! The structs are `#[repr(C)]` so their in-memory layout is the wire layout on a little-endian machine,
//! but encoding and decoding here never transmute: `to_bytes`/`from_bytes` spell out every field in
//! little-endian order, so the code is correct (and testable) on any host.

use crate::errno::{demux, mux, Errno};

/// Submission queue entry: a request the kernel hands to a scheme.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    pub opcode: u8,
    pub sqe_flags: u8,
    pub _rsvd: u16,
    pub tag: u32,
    pub args: [u64; 6],
    pub caller: u64,
}

/// Completion queue entry: a scheme's answer (or a scheme-to-kernel message such as an fevent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    /// Bits 2:0 are the `CqeOpcode` (the 2025 kernels mask only bits 1:0).
    pub flags: u8,
    /// Opcode-specific extra bits; for an open/dup answer, byte 0 holds `NewFdFlags`.
    pub extra_raw: [u8; 3],
    pub tag: u32,
    pub result: u64,
}

pub const SQE_SIZE: usize = 64;
pub const CQE_SIZE: usize = 16;

const _: () = assert!(core::mem::size_of::<Sqe>() == SQE_SIZE);
const _: () = assert!(core::mem::size_of::<Cqe>() == CQE_SIZE);
const _: () = assert!(core::mem::align_of::<Sqe>() == 8);
const _: () = assert!(core::mem::align_of::<Cqe>() == 8);

/// Sqe opcodes (redox-os/syscall `src/schemev2.rs`, `enum Opcode`). Argument layouts as the kernel fills
/// them (redox-os/kernel `src/scheme/user.rs`); `args[5]` of a call carries `uid | gid << 32`.
pub mod opcode {
    /// path_ptr, path_len (utf8), flags. Kernels before 2025-12 only; newer ones send `OPEN_AT`.
    pub const OPEN: u8 = 0;
    /// path_ptr, path_len. Kernels before 2025-12 only.
    pub const RMDIR: u8 = 1;
    /// path_ptr, path_len. Kernels before 2025-12 only.
    pub const UNLINK: u8 = 2;
    /// handle. Sent (and awaited) only to schemes that did not ask for one-way close messages.
    pub const CLOSE: u8 = 3;
    /// old handle, buf_ptr, buf_len.
    pub const DUP: u8 = 4;
    /// handle, buf_ptr, buf_len, offset, flags.
    pub const READ: u8 = 5;
    /// handle, buf_ptr, buf_len, offset, flags.
    pub const WRITE: u8 = 6;
    /// handle.
    pub const FSIZE: u8 = 7;
    pub const FCHMOD: u8 = 8;
    pub const FCHOWN: u8 = 9;
    pub const FCNTL: u8 = 10;
    /// handle, requested event mask.
    pub const FEVENT: u8 = 11;
    pub const SENDFD: u8 = 12;
    pub const FPATH: u8 = 13;
    pub const FRENAME: u8 = 14;
    pub const FSTAT: u8 = 15;
    pub const FSTATVFS: u8 = 16;
    /// handle.
    pub const FSYNC: u8 = 17;
    pub const FTRUNCATE: u8 = 18;
    pub const FUTIMENS: u8 = 19;
    pub const MMAP_PREP: u8 = 20;
    pub const REQUEST_MMAP: u8 = 21;
    pub const MREMAP: u8 = 22;
    pub const MUNMAP: u8 = 23;
    pub const MSYNC: u8 = 24;
    /// One-way; `tag` is the tag of the request being cancelled.
    pub const CANCEL: u8 = 25;
    pub const GETDENTS: u8 = 26;
    /// One-way; handle in args[0]. Sent instead of CLOSE when the scheme asked for it (O_EXLOCK at creation).
    pub const CLOSE_MSG: u8 = 27;
    pub const CALL: u8 = 28;
    /// dir handle, path_ptr, path_len, flags.
    pub const OPEN_AT: u8 = 29;
    pub const FLINK: u8 = 30;
    pub const RECVFD: u8 = 31;
    pub const UNLINK_AT: u8 = 32;
    pub const STD_FS_CALL: u8 = 33;
    pub const DETACH: u8 = 34;

    /// The highest opcode this probe knows a name for.
    pub const MAX_KNOWN: u8 = DETACH;

    /// Name of an opcode, as in the syscall crate's enum.
    pub fn name(op: u8) -> &'static str {
        const NAMES: [&str; 35] = [
            "Open",
            "Rmdir",
            "Unlink",
            "Close",
            "Dup",
            "Read",
            "Write",
            "Fsize",
            "Fchmod",
            "Fchown",
            "Fcntl",
            "Fevent",
            "Sendfd",
            "Fpath",
            "Frename",
            "Fstat",
            "Fstatvfs",
            "Fsync",
            "Ftruncate",
            "Futimens",
            "MmapPrep",
            "RequestMmap",
            "Mremap",
            "Munmap",
            "Msync",
            "Cancel",
            "Getdents",
            "CloseMsg",
            "Call",
            "OpenAt",
            "Flink",
            "Recvfd",
            "UnlinkAt",
            "StdFsCall",
            "Detach",
        ];
        NAMES.get(op as usize).copied().unwrap_or("Unknown")
    }
}

/// `Sqe::sqe_flags` bits (redox-os/syscall `src/schemev2.rs`, `SqeFlags`).
pub mod sqe_flags {
    /// The message expects no answer (Cancel and CloseMsg are sent this way).
    pub const ONEWAY: u8 = 1;
    /// args[0]/args[1] point at a buffer of handle ids.
    pub const MULTIPLE_IDS: u8 = 1 << 1;
}

/// `Cqe::extra_raw[0]` bits of an open/dup answer (redox-os/syscall `src/schemev2.rs`, `NewFdFlags`).
pub mod new_fd_flags {
    /// The new file description is positioned: the kernel keeps its offset and passes it in Read/Write.
    pub const POSITIONED: u8 = 1;
}

/// What a Cqe is (redox-os/syscall `src/schemev2.rs`, `enum CqeOpcode`), encoded in `Cqe::flags` bits 2:0.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqeOpcode {
    /// An answer: `result` is a value or a negated errno.
    RespondRegular = 0,
    /// An answer that hands the caller one of the scheme's own file descriptors (`result` = that fd).
    RespondWithFd = 1,
    /// Not an answer: tells the kernel handle `result` has events `tag` (no request tag involved).
    SendFevent = 2,
    /// Takes the file description the request carried (e.g. sendfd) into the scheme's file table.
    ObtainFd = 3,
    /// Newer kernels: like RespondWithFd for several fds.
    RespondWithMultipleFds = 4,
    /// Newer kernels: answer and ask for a Detach message later.
    RespondAndNotifyOnDetach = 5,
}

impl CqeOpcode {
    pub const MASK: u8 = 0b111;

    pub fn from_flags(flags: u8) -> Option<CqeOpcode> {
        Some(match flags & Self::MASK {
            0 => CqeOpcode::RespondRegular,
            1 => CqeOpcode::RespondWithFd,
            2 => CqeOpcode::SendFevent,
            3 => CqeOpcode::ObtainFd,
            4 => CqeOpcode::RespondWithMultipleFds,
            5 => CqeOpcode::RespondAndNotifyOnDetach,
            _ => return None,
        })
    }
}

impl Sqe {
    /// Little-endian wire bytes.
    pub fn to_bytes(&self) -> [u8; SQE_SIZE] {
        let mut out = [0u8; SQE_SIZE];
        out[0] = self.opcode;
        out[1] = self.sqe_flags;
        out[2..4].copy_from_slice(&self._rsvd.to_le_bytes());
        out[4..8].copy_from_slice(&self.tag.to_le_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        out[56..64].copy_from_slice(&self.caller.to_le_bytes());
        out
    }

    /// From little-endian wire bytes.
    pub fn from_bytes(bytes: &[u8; SQE_SIZE]) -> Sqe {
        let mut args = [0u64; 6];
        for (i, arg) in args.iter_mut().enumerate() {
            *arg = u64_at(bytes, 8 + 8 * i);
        }
        Sqe {
            opcode: bytes[0],
            sqe_flags: bytes[1],
            _rsvd: u16::from_le_bytes([bytes[2], bytes[3]]),
            tag: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            args,
            caller: u64_at(bytes, 56),
        }
    }

    /// From a slice that must hold exactly one Sqe.
    pub fn from_slice(bytes: &[u8]) -> Option<Sqe> {
        let array: &[u8; SQE_SIZE] = bytes.try_into().ok()?;
        Some(Sqe::from_bytes(array))
    }

    pub fn is_oneway(&self) -> bool {
        self.sqe_flags & sqe_flags::ONEWAY != 0
    }

    pub fn opcode_name(&self) -> &'static str {
        opcode::name(self.opcode)
    }

    /// The caller's (uid, gid), which the kernel packs into args[5] of a call as `uid | gid << 32`.
    pub fn uid_gid(&self) -> (u32, u32) {
        (self.args[5] as u32, (self.args[5] >> 32) as u32)
    }

    /// Where the path of an Open (args 0,1) or OpenAt (args 1,2) lies in the scheme's address space.
    pub fn path_arg(&self) -> Option<(u64, u64)> {
        match self.opcode {
            opcode::OPEN | opcode::RMDIR | opcode::UNLINK => Some((self.args[0], self.args[1])),
            opcode::OPEN_AT | opcode::UNLINK_AT => Some((self.args[1], self.args[2])),
            _ => None,
        }
    }

    /// Read/Write arguments: (handle, buffer address, buffer length, offset).
    pub fn rw_args(&self) -> (u64, u64, u64, u64) {
        (self.args[0], self.args[1], self.args[2], self.args[3])
    }
}

impl Cqe {
    /// A regular answer to request `tag`.
    pub fn respond(tag: u32, result: Result<u64, Errno>) -> Cqe {
        Cqe { flags: CqeOpcode::RespondRegular as u8, extra_raw: [0; 3], tag, result: mux(result) }
    }

    /// The answer to an Open/OpenAt/Dup that creates handle `number` in this scheme.
    pub fn respond_open(tag: u32, number: u64, new_fd_flags: u8) -> Cqe {
        Cqe { flags: CqeOpcode::RespondRegular as u8, extra_raw: [new_fd_flags, 0, 0], tag, result: number }
    }

    /// An fevent notification: handle `number` has events `events` (the tag field carries the flags).
    pub fn fevent(number: u64, events: u32) -> Cqe {
        Cqe { flags: CqeOpcode::SendFevent as u8, extra_raw: [0; 3], tag: events, result: number }
    }

    pub fn opcode(&self) -> Option<CqeOpcode> {
        CqeOpcode::from_flags(self.flags)
    }

    /// The result decoded: a value, or the error number it carries.
    pub fn decoded_result(&self) -> Result<u64, Errno> {
        demux(self.result)
    }

    /// The 24-bit "extra" field (little-endian, as the syscall crate's `Cqe::extra` reads it).
    pub fn extra(&self) -> u32 {
        u32::from_le_bytes([self.extra_raw[0], self.extra_raw[1], self.extra_raw[2], 0])
    }

    pub fn to_bytes(&self) -> [u8; CQE_SIZE] {
        let mut out = [0u8; CQE_SIZE];
        out[0] = self.flags;
        out[1..4].copy_from_slice(&self.extra_raw);
        out[4..8].copy_from_slice(&self.tag.to_le_bytes());
        out[8..16].copy_from_slice(&self.result.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8; CQE_SIZE]) -> Cqe {
        Cqe {
            flags: bytes[0],
            extra_raw: [bytes[1], bytes[2], bytes[3]],
            tag: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            result: u64_at(bytes, 8),
        }
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Cqe> {
        let array: &[u8; CQE_SIZE] = bytes.try_into().ok()?;
        Some(Cqe::from_bytes(array))
    }
}

/// Encode several Cqes back to back, as one write() to the scheme socket takes them.
pub fn encode_cqes(cqes: &[Cqe]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cqes.len() * CQE_SIZE);
    for cqe in cqes {
        out.extend_from_slice(&cqe.to_bytes());
    }
    out
}

/// Decode the Sqes a read() from the scheme socket returned; a trailing partial entry is reported as `Err`
/// with the number of stray bytes.
pub fn decode_sqes(bytes: &[u8]) -> Result<Vec<Sqe>, usize> {
    let chunks = bytes.chunks_exact(SQE_SIZE);
    let rest = chunks.remainder().len();
    let sqes = chunks.map(|c| Sqe::from_slice(c).expect("exact chunk")).collect();
    if rest == 0 {
        Ok(sqes)
    } else {
        Err(rest)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::{EINTR, EIO};
    use core::mem::{offset_of, size_of};

    #[test]
    fn sizes() {
        assert_eq!(size_of::<Sqe>(), 64);
        assert_eq!(size_of::<Cqe>(), 16);
    }

    #[test]
    fn sqe_field_offsets() {
        assert_eq!(offset_of!(Sqe, opcode), 0);
        assert_eq!(offset_of!(Sqe, sqe_flags), 1);
        assert_eq!(offset_of!(Sqe, _rsvd), 2);
        assert_eq!(offset_of!(Sqe, tag), 4);
        assert_eq!(offset_of!(Sqe, args), 8);
        assert_eq!(offset_of!(Sqe, caller), 56);
    }

    #[test]
    fn cqe_field_offsets() {
        assert_eq!(offset_of!(Cqe, flags), 0);
        assert_eq!(offset_of!(Cqe, extra_raw), 1);
        assert_eq!(offset_of!(Cqe, tag), 4);
        assert_eq!(offset_of!(Cqe, result), 8);
    }

    #[test]
    fn opcode_numbers_match_schemev2() {
        assert_eq!(opcode::OPEN, 0);
        assert_eq!(opcode::CLOSE, 3);
        assert_eq!(opcode::READ, 5);
        assert_eq!(opcode::WRITE, 6);
        assert_eq!(opcode::FSIZE, 7);
        assert_eq!(opcode::FEVENT, 11);
        assert_eq!(opcode::FSYNC, 17);
        assert_eq!(opcode::MMAP_PREP, 20);
        assert_eq!(opcode::CANCEL, 25);
        assert_eq!(opcode::CLOSE_MSG, 27);
        assert_eq!(opcode::OPEN_AT, 29);
        assert_eq!(opcode::DETACH, 34);
        assert_eq!(opcode::name(opcode::CANCEL), "Cancel");
        assert_eq!(opcode::name(opcode::MMAP_PREP), "MmapPrep");
        assert_eq!(opcode::name(opcode::DETACH), "Detach");
        assert_eq!(opcode::name(200), "Unknown");
    }

    #[test]
    fn sqe_known_bytes() {
        let sqe = Sqe {
            opcode: opcode::READ,
            sqe_flags: sqe_flags::ONEWAY,
            _rsvd: 0xBEEF,
            tag: 0x0403_0201,
            args: [1, 2, 3, 4, 5, 0x0000_0002_0000_0001],
            caller: 0x1122_3344_5566_7788,
        };
        let bytes = sqe.to_bytes();
        assert_eq!(&bytes[0..8], &[5, 1, 0xEF, 0xBE, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[48..56], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[56..64], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(Sqe::from_bytes(&bytes), sqe);
        assert_eq!(sqe.uid_gid(), (1, 2));
        assert!(sqe.is_oneway());
    }

    #[test]
    fn sqe_round_trip_and_native_layout() {
        let sqe = Sqe {
            opcode: opcode::OPEN_AT,
            sqe_flags: 0,
            _rsvd: 7,
            tag: u32::MAX,
            args: [u64::MAX, 0, 0x8000_0000_0000_0000, 42, 0, 9],
            caller: 77,
        };
        assert_eq!(Sqe::from_bytes(&sqe.to_bytes()), sqe);
        // On a little-endian host the explicit encoding equals the in-memory repr(C) layout.
        if cfg!(target_endian = "little") {
            let native: [u8; 64] = unsafe { core::mem::transmute(sqe) };
            assert_eq!(native, sqe.to_bytes());
        }
        assert!(Sqe::from_slice(&[0u8; 63]).is_none());
        assert_eq!(sqe.path_arg(), Some((0, 0x8000_0000_0000_0000)));
    }

    #[test]
    fn cqe_known_bytes_and_error_encoding() {
        let cqe = Cqe::respond(0x11223344, Err(Errno(EIO)));
        let bytes = cqe.to_bytes();
        assert_eq!(bytes, [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(cqe.decoded_result(), Err(Errno(EIO)));
        assert_eq!(cqe.opcode(), Some(CqeOpcode::RespondRegular));
        assert_eq!(Cqe::from_bytes(&bytes), cqe);

        let ok = Cqe::respond(3, Ok(4096));
        assert_eq!(ok.decoded_result(), Ok(4096));
        assert_eq!(&ok.to_bytes()[8..16], &[0, 0x10, 0, 0, 0, 0, 0, 0]);

        let intr = Cqe::respond(9, Err(Errno(EINTR)));
        assert_eq!(intr.result, (-4i64) as u64);
    }

    #[test]
    fn cqe_open_answer_and_extra() {
        let cqe = Cqe::respond_open(5, 12, new_fd_flags::POSITIONED);
        assert_eq!(cqe.to_bytes()[0..4], [0, 1, 0, 0]);
        assert_eq!(cqe.extra(), 1);
        assert_eq!(cqe.decoded_result(), Ok(12));
        let odd = Cqe { flags: 0, extra_raw: [0x01, 0x02, 0x03], tag: 0, result: 0 };
        assert_eq!(odd.extra(), 0x030201);
    }

    #[test]
    fn cqe_opcode_encoding() {
        for (raw, op) in [
            (0u8, CqeOpcode::RespondRegular),
            (1, CqeOpcode::RespondWithFd),
            (2, CqeOpcode::SendFevent),
            (3, CqeOpcode::ObtainFd),
            (4, CqeOpcode::RespondWithMultipleFds),
            (5, CqeOpcode::RespondAndNotifyOnDetach),
        ] {
            assert_eq!(CqeOpcode::from_flags(raw), Some(op));
            assert_eq!(op as u8, raw);
            // Bits above 2:0 do not change the opcode.
            assert_eq!(CqeOpcode::from_flags(raw | 0xF8), Some(op));
        }
        assert_eq!(CqeOpcode::from_flags(6), None);
        let fev = Cqe::fevent(7, 1);
        assert_eq!(fev.opcode(), Some(CqeOpcode::SendFevent));
        assert_eq!((fev.tag, fev.result), (1, 7));
    }

    #[test]
    fn batches() {
        let cqes = [Cqe::respond(1, Ok(0)), Cqe::respond(2, Err(Errno(EIO)))];
        let bytes = encode_cqes(&cqes);
        assert_eq!(bytes.len(), 32);
        assert_eq!(Cqe::from_slice(&bytes[16..32]), Some(cqes[1]));

        let a = Sqe { opcode: opcode::READ, tag: 1, ..Sqe::default() };
        let b = Sqe { opcode: opcode::CANCEL, sqe_flags: sqe_flags::ONEWAY, tag: 1, ..Sqe::default() };
        let mut raw = a.to_bytes().to_vec();
        raw.extend_from_slice(&b.to_bytes());
        assert_eq!(decode_sqes(&raw), Ok(vec![a, b]));
        raw.push(0);
        assert_eq!(decode_sqes(&raw), Err(1));
    }
}

//! Error numbers as Redox numbers them, and the "negative errno in a usize" return convention.
//!
//! Redox uses the Linux numbering. The values below are facts taken from redox-os/syscall `src/error.rs`
//! (note that there EWOULDBLOCK is 41, not an alias of EAGAIN as on Linux).
//!
//! A Redox system call (and a scheme's response, `Cqe::result`) returns a `usize`/`u64`: either the value
//! or the error number negated, `-(errno) as usize` (redox-os/syscall `src/error.rs`, `Error::mux`).
//! `Error::demux` there reads it back by truncating to `i32` and accepting `1 <= errno < 133`; we accept
//! the Linux-style window `1..=4095` on the full 64-bit value, which agrees on everything `mux` produces.

use std::fmt;

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EINTR: i32 = 4;
pub const EIO: i32 = 5;
pub const EBADF: i32 = 9;
pub const EAGAIN: i32 = 11;
pub const EACCES: i32 = 13;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
pub const EISDIR: i32 = 21;
pub const EINVAL: i32 = 22;
pub const ENOSPC: i32 = 28;
pub const ENOLCK: i32 = 37;
pub const ENOSYS: i32 = 38;
pub const EWOULDBLOCK: i32 = 41;
pub const EOVERFLOW: i32 = 75;
pub const EOPNOTSUPP: i32 = 95;
pub const ETIMEDOUT: i32 = 110;

/// The largest error number the "negative errno" window covers.
pub const MAX_ERRNO: u64 = 4095;

/// An error number returned by a system call or carried by a Cqe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Symbolic name of the error numbers this probe meets; "E?" otherwise.
    pub fn name(self) -> &'static str {
        match self.0 {
            EPERM => "EPERM",
            ENOENT => "ENOENT",
            EINTR => "EINTR",
            EIO => "EIO",
            EBADF => "EBADF",
            EAGAIN => "EAGAIN",
            EACCES => "EACCES",
            EBUSY => "EBUSY",
            EEXIST => "EEXIST",
            ENODEV => "ENODEV",
            EISDIR => "EISDIR",
            EINVAL => "EINVAL",
            ENOSPC => "ENOSPC",
            ENOLCK => "ENOLCK",
            ENOSYS => "ENOSYS",
            EWOULDBLOCK => "EWOULDBLOCK",
            EOVERFLOW => "EOVERFLOW",
            EOPNOTSUPP => "EOPNOTSUPP",
            ETIMEDOUT => "ETIMEDOUT",
            _ => "E?",
        }
    }

    /// True for "try again later" (Redox has two numbers for it).
    pub fn is_would_block(self) -> bool {
        self.0 == EAGAIN || self.0 == EWOULDBLOCK
    }

    /// From a `std::io::Error` (its raw OS error, else EIO).
    pub fn from_io(err: &std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(EIO))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Encode a result the Redox way: the value, or the error number negated (two's complement in 64 bits).
pub fn mux(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(value) => value,
        Err(Errno(errno)) => (-(errno as i64)) as u64,
    }
}

/// Decode a raw 64-bit return value: values in the top `MAX_ERRNO` of the range are errors.
pub fn demux(raw: u64) -> Result<u64, Errno> {
    let negated = raw.wrapping_neg();
    if (1..=MAX_ERRNO).contains(&negated) {
        Err(Errno(negated as i32))
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_demux_round_trip() {
        for value in [0u64, 1, 16, 4096, u64::MAX - MAX_ERRNO] {
            assert_eq!(demux(mux(Ok(value))), Ok(value));
        }
        for errno in [EPERM, EINTR, EIO, ENOSYS, EOPNOTSUPP, 4095] {
            assert_eq!(demux(mux(Err(Errno(errno)))), Err(Errno(errno)));
        }
    }

    #[test]
    fn negative_errno_bit_patterns() {
        // -5 as a 64-bit two's complement number, as the kernel hands it back for EIO.
        assert_eq!(mux(Err(Errno(EIO))), 0xFFFF_FFFF_FFFF_FFFB);
        assert_eq!(mux(Err(Errno(EINTR))), 0xFFFF_FFFF_FFFF_FFFC);
        assert_eq!(demux(0xFFFF_FFFF_FFFF_FFFB), Err(Errno(EIO)));
        // Just outside the window: a (huge) value, not an error.
        assert_eq!(demux(u64::MAX - 4095), Ok(u64::MAX - 4095));
        assert_eq!(demux(0), Ok(0));
    }

    #[test]
    fn names_and_display() {
        assert_eq!(Errno(EIO).to_string(), "EIO (5)");
        assert_eq!(Errno(EWOULDBLOCK).name(), "EWOULDBLOCK");
        assert!(Errno(EAGAIN).is_would_block() && Errno(EWOULDBLOCK).is_would_block());
        assert_eq!(Errno(1234).name(), "E?");
    }
}

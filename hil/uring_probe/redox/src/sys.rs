//! Raw Redox system calls, through the probe's own inline-assembly wrappers. Compiled on Redox (and,
//! for `cargo check` only, on other hosts with `--cfg hil_redox_typecheck`; see Cargo.toml).
//!
//! Facts, not code, from redox-os/syscall:
//! - calling convention (`src/arch/x86_64.rs`): `syscall` with the number in rax and arguments in rdi,
//!   rsi, rdx, r10, r8, r9; the result comes back in rax; rcx and r11 are clobbered. On aarch64
//!   (`src/arch/aarch64.rs`): `svc 0`, number in x8, arguments in x0..x5, result in x0.
//! - results: a value, or `-errno` as usize (`src/error.rs`, `Error::mux`/`demux`; see `errno.rs`).
//! - numbers (`src/number.rs`): a class bit field plus an index:
//!   SYS_CLASS_PATH 0x1000_0000, SYS_CLASS_FILE 0x2000_0000, SYS_ARG_SLICE 0x0100_0000,
//!   SYS_ARG_MSLICE 0x0200_0000, SYS_RET_FILE 0x0010_0000.
//! - the kernel side (redox-os/kernel `src/syscall/mod.rs`): SYS_READ2/SYS_WRITE2 take
//!   (fd, buf, len, offset, flags) with flags = usize::MAX meaning "the descriptor's own flags"; relibc's
//!   pread/pwrite call them exactly so (redox-os/relibc `src/platform/redox/mod.rs`).
//!
//! Opening files goes through std (and so relibc) on purpose, not through a raw call here: the raw open
//! ABI changed twice recently. SYS_OPEN (path, len, flags) was removed on 2025-12-27 (syscall 208cf4b);
//! SYS_OPENAT (2025-04 .. 2026-07) was replaced by SYS_OPENAT_INTO, where userspace reserves the fd number
//! in relibc's own file table (syscall 4bb9233, relibc `redox-rt/src/sys.rs`), so a raw open or close
//! behind relibc's back would corrupt that table. Descriptors opened by std are kernel descriptors, so the
//! raw read/write/pread/pwrite/fsync/lseek below work on them. `open_legacy`/`close` are kept for kernels
//! before 2025-12 and for descriptors this module opened itself; the probe does not use them.

use crate::errno::{demux, Errno};

const SYS_CLASS_PATH: usize = 0x1000_0000;
const SYS_CLASS_FILE: usize = 0x2000_0000;
const SYS_ARG_SLICE: usize = 0x0100_0000;
const SYS_ARG_MSLICE: usize = 0x0200_0000;
const SYS_RET_FILE: usize = 0x0010_0000;

pub const SYS_READ: usize = SYS_CLASS_FILE | SYS_ARG_MSLICE | 3;
pub const SYS_WRITE: usize = SYS_CLASS_FILE | SYS_ARG_SLICE | 4;
pub const SYS_CLOSE: usize = SYS_CLASS_FILE | 6;
pub const SYS_LSEEK: usize = SYS_CLASS_FILE | 19;
pub const SYS_READ2: usize = SYS_CLASS_FILE | SYS_ARG_MSLICE | 35;
pub const SYS_WRITE2: usize = SYS_CLASS_FILE | SYS_ARG_SLICE | 45;
pub const SYS_FSYNC: usize = SYS_CLASS_FILE | 118;
pub const SYS_CLOCK_GETTIME: usize = 265;
/// Kernels before 2025-12-27 only.
pub const SYS_OPEN: usize = SYS_CLASS_PATH | SYS_RET_FILE | 5;

const _: () = assert!(SYS_READ == 0x2200_0003);
const _: () = assert!(SYS_WRITE == 0x2100_0004);
const _: () = assert!(SYS_READ2 == 0x2200_0023);
const _: () = assert!(SYS_WRITE2 == 0x2100_002D);
const _: () = assert!(SYS_FSYNC == 0x2000_0076);

/// redox-os/syscall `src/flag.rs`.
pub const CLOCK_REALTIME: usize = 1;
pub const CLOCK_MONOTONIC: usize = 4;

/// redox-os/syscall `src/data.rs`: `#[repr(C)] TimeSpec { tv_sec: i64, tv_nsec: i32 }` (16 bytes with
/// its tail padding, which is spelled out here).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeSpec {
    pub tv_sec: i64,
    pub tv_nsec: i32,
    _pad: u32,
}

const _: () = assert!(core::mem::size_of::<TimeSpec>() == 16);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn raw6(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> usize {
    let mut ret = n;
    core::arch::asm!(
        "syscall",
        inout("rax") ret,
        in("rdi") a,
        in("rsi") b,
        in("rdx") c,
        in("r10") d,
        in("r8") e,
        in("r9") f,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn raw6(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> usize {
    let ret: usize;
    core::arch::asm!(
        "svc 0",
        in("x8") n,
        inlateout("x0") a => ret,
        in("x1") b,
        in("x2") c,
        in("x3") d,
        in("x4") e,
        in("x5") f,
        options(nostack),
    );
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("hil-uring-probe's raw Redox system calls exist for x86_64 and aarch64 only");

/// One system call with up to six arguments (unused ones zero), result decoded.
///
/// # Safety
/// The arguments must be what system call `n` expects; pointers must be valid for the lengths passed.
pub unsafe fn syscall(n: usize, args: [usize; 6]) -> Result<usize, Errno> {
    let raw = raw6(n, args[0], args[1], args[2], args[3], args[4], args[5]);
    demux(raw as u64).map(|v| v as usize)
}

pub fn read(fd: usize, buf: &mut [u8]) -> Result<usize, Errno> {
    unsafe { syscall(SYS_READ, [fd, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0]) }
}

pub fn write(fd: usize, buf: &[u8]) -> Result<usize, Errno> {
    unsafe { syscall(SYS_WRITE, [fd, buf.as_ptr() as usize, buf.len(), 0, 0, 0]) }
}

/// Read at `offset` without moving the descriptor's position (SYS_READ2, flags = the descriptor's own).
pub fn pread(fd: usize, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    unsafe { syscall(SYS_READ2, [fd, buf.as_mut_ptr() as usize, buf.len(), offset as usize, usize::MAX, 0]) }
}

/// Write at `offset` (SYS_WRITE2, flags = the descriptor's own).
pub fn pwrite(fd: usize, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    unsafe { syscall(SYS_WRITE2, [fd, buf.as_ptr() as usize, buf.len(), offset as usize, usize::MAX, 0]) }
}

pub fn fsync(fd: usize) -> Result<(), Errno> {
    unsafe { syscall(SYS_FSYNC, [fd, 0, 0, 0, 0, 0]) }.map(|_| ())
}

/// Move the descriptor's position; whence as in `os::SEEK_*`. Returns the new position.
pub fn lseek(fd: usize, offset: i64, whence: usize) -> Result<u64, Errno> {
    unsafe { syscall(SYS_LSEEK, [fd, offset as usize, whence, 0, 0, 0]) }.map(|v| v as u64)
}

pub fn clock_gettime(clock: usize) -> Result<TimeSpec, Errno> {
    let mut ts = TimeSpec::default();
    unsafe { syscall(SYS_CLOCK_GETTIME, [clock, &mut ts as *mut TimeSpec as usize, 0, 0, 0, 0]) }?;
    Ok(ts)
}

/// Nanoseconds on CLOCK_MONOTONIC (0 if the clock cannot be read, which never happens on a live kernel).
pub fn monotonic_ns() -> u64 {
    match clock_gettime(CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64),
        Err(_) => 0,
    }
}

/// SYS_OPEN (path, len, flags): kernels before 2025-12-27 only; bypasses relibc's file table.
#[allow(dead_code)]
pub fn open_legacy(path: &str, flags: usize) -> Result<usize, Errno> {
    unsafe { syscall(SYS_OPEN, [path.as_ptr() as usize, path.len(), flags, 0, 0, 0]) }
}

/// SYS_CLOSE: only for descriptors opened with `open_legacy` (std closes its own).
#[allow(dead_code)]
pub fn close(fd: usize) -> Result<(), Errno> {
    unsafe { syscall(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]) }.map(|_| ())
}

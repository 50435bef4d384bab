//! hil-uring-probe: the Redox side of hil's io_uring probe.
//!
//! Redox's io_uring-like interface is the scheme protocol v2: a scheme daemon reads 64-byte submission
//! entries (`Sqe`) from its scheme socket and writes 16-byte completion entries (`Cqe`) back, in any order,
//! each naming its request by tag. The probe checks that many requests can be in flight and complete out
//! of order, that the kernel cancels a request by tag, and measures block I/O on the NVMe disk scheme at
//! several queue depths. It prints hil's KTAP-like protocol (`ktap.rs`).
//!
//! Platform independent (and unit-tested on any host): `sqe` (wire format), `errno`, `ktap` (output,
//! percentiles), `inflight` (tag tracker), `daemon` (the probe scheme's decisions), `disk` (block cases on a
//! file descriptor), `watchdog` (per-case time limit), `args`, `os` (raw I/O calls; std-backed off Redox). Redox only: `sys` (inline-asm
//! system calls) and `redox_probe` (the scheme daemon loop, clients, signals, disk discovery); they are
//! also compiled, for `cargo check` only, under `--cfg hil_redox_typecheck` (see Cargo.toml).

pub mod args;
pub mod daemon;
pub mod disk;
pub mod errno;
pub mod inflight;
pub mod ktap;
pub mod os;
pub mod sqe;
pub mod watchdog;

#[cfg(any(target_os = "redox", hil_redox_typecheck))]
pub mod redox_probe;
#[cfg(any(target_os = "redox", hil_redox_typecheck))]
pub mod sys;

//! The probe on Redox: creates its own scheme, serves it from a daemon thread, drives it from client
//! threads, then tests the NVMe disk scheme. Compiled on Redox (type-checked elsewhere with
//! `--cfg hil_redox_typecheck`).
//!
//! How a scheme is created and served (facts from redox-os/kernel `src/scheme/root.rs` as of 2025, the
//! redox-scheme crate's `Socket::create`, redox-os/drivers `storage/driver-block/src/lib.rs`):
//! - A root daemon opens `:NAME` with O_CREAT (legacy path syntax; relibc passes a path whose first
//!   component contains ':' through unchanged). The kernel's root scheme then registers a user scheme
//!   NAME and returns the scheme socket. O_FSYNC selects protocol v2 (Sqe/Cqe instead of the old Packet);
//!   O_EXLOCK asks for one-way CloseMsg messages instead of awaited Close calls; O_NONBLOCK makes an empty
//!   socket read return EAGAIN. Only uid 0 may do this (EACCES).
//! - Clients then open `/scheme/NAME/<path>`. Every call a client makes becomes one Sqe: read() on the
//!   socket returns whole 64-byte Sqes; write() takes whole 16-byte Cqes, in any order, each answering the
//!   request with the same tag. A caller's buffer is mapped into the daemon's address space at the address
//!   in the Sqe until the request is answered.
//! - Cancellation (redox-os/kernel `src/scheme/user.rs`, `call_extended_inner`): when a caller blocked in a
//!   scheme call is woken by a signal, the kernel queues `Sqe { opcode: Cancel, sqe_flags: ONEWAY, tag:
//!   <the pending request's tag> }` and keeps the caller waiting until the scheme answers that tag (only
//!   SIGKILL returns EINTR at once). The scheme is expected to answer the original request, e.g. -EINTR.
//! - In kernels from 2026-01 on (kernel 5ac00f55, "Remove namespace management from the kernel") the root
//!   scheme is gone: a daemon gets a scheme-creation capability (dup with payload "create-scheme", uid 0,
//!   kernel `src/scheme/mod.rs`) and registers the name with the userspace namespace manager
//!   (relibc `redox_register_scheme_to_ns_v0`). The probe does not do that yet: on such a system `setup`
//!   fails with the error the `:NAME` open returned, and the scheme cases are skipped.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::thread::{JoinHandleExt, RawPthread};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::args::Args;
use crate::daemon::{decode_payload, Daemon, Event, Reply, PAYLOAD_LEN};
use crate::disk;
use crate::errno::{Errno, EINTR, EIO, ENOLCK, ETIMEDOUT};
use crate::ktap::{iops, Latency, Metric, Outcome, Writer};
use crate::sqe::{decode_sqes, encode_cqes, CQE_SIZE, SQE_SIZE};
use crate::sys;
use crate::watchdog::Watchdog;

// Open flags as relibc numbers them for Redox (redox-os/relibc `src/header/bits_open-flags/redox.rs`;
// the same values as redox-os/syscall `src/flag.rs`).
const O_NONBLOCK: i32 = 0x0004_0000;
const O_EXLOCK: i32 = 0x0020_0000;
const O_FSYNC: i32 = 0x0080_0000;
const O_DIRECTORY: i32 = 0x1000_0000;
// redox-os/relibc `src/header/signal/redox.rs` (Linux numbering).
const SIGUSR1: c_int = 10;

const FEATURE_SCHEME: u64 = 0x1;
const FEATURE_ROUND_TRIP: u64 = 0x2;
const FEATURE_SIGNAL: u64 = 0x4;
const FEATURE_NVME: u64 = 0x8;

const HEARTBEAT_NS: u64 = 1_000_000_000;

fn now() -> u64 {
    sys::monotonic_ns()
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------------------
// Signals (for the cancel case): relibc's C entry points, declared here instead of using the libc crate.

/// relibc's `struct sigaction` on 64-bit Redox: handler, flags, restorer, mask (32 bytes). `sa_flags` is a
/// `c_ulong` in 2025 relibc and a `c_int` plus padding in 2026 relibc; with flags 0 both read the same.
#[repr(C)]
struct SigAction {
    sa_handler: Option<extern "C" fn(c_int)>,
    sa_flags: u64,
    sa_restorer: usize,
    sa_mask: u64,
}

extern "C" {
    fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn pthread_kill(thread: RawPthread, sig: c_int) -> c_int;
}

static SIGNALS_SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigusr1(_sig: c_int) {
    SIGNALS_SEEN.fetch_add(1, Ordering::Relaxed);
}

/// A SIGUSR1 handler without SA_RESTART, so an interrupted call returns EINTR.
fn install_sigusr1() -> bool {
    let act = SigAction { sa_handler: Some(on_sigusr1), sa_flags: 0, sa_restorer: 0, sa_mask: 0 };
    let mut old = SigAction { sa_handler: None, sa_flags: 0, sa_restorer: 0, sa_mask: 0 };
    unsafe { sigaction(SIGUSR1, &act, &mut old) == 0 }
}

// ---------------------------------------------------------------------------------------------------
// The probe's scheme.

struct Scheme {
    name: String,
    _socket: File,
    daemon: Arc<Mutex<Daemon>>,
    release: Arc<Mutex<Option<Result<u64, Errno>>>>,
    stop: Arc<AtomicBool>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Scheme {
    fn create(name: &str) -> Result<Scheme, String> {
        let socket = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(O_FSYNC | O_EXLOCK | O_NONBLOCK)
            .open(format!(":{name}"))
            .map_err(|e| {
                let errno = Errno::from_io(&e);
                let hint = match errno.0 {
                    crate::errno::EACCES => " (creating a scheme needs uid 0)",
                    crate::errno::ENOENT | crate::errno::ENODEV | crate::errno::EINVAL => {
                        " (no root scheme: a kernel from 2026 on registers schemes through the namespace manager)"
                    }
                    _ => "",
                };
                format!("open(\":{name}\", O_CREAT|O_FSYNC|O_EXLOCK) returned -{} ({}){hint}", errno.0, errno.name())
            })?;
        let fd = socket.as_raw_fd() as usize;
        let daemon = Arc::new(Mutex::new(Daemon::new()));
        let release = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = channel();
        let thread = {
            let (daemon, release, stop) = (daemon.clone(), release.clone(), stop.clone());
            thread::Builder::new()
                .name("scheme-daemon".into())
                .spawn(move || serve(fd, daemon, release, stop, tx))
                .map_err(|e| format!("could not start the daemon thread: {e}"))?
        };
        Ok(Scheme { name: name.to_string(), _socket: socket, daemon, release, stop, events, thread: Some(thread) })
    }

    fn path(&self, file: &str) -> String {
        format!("/scheme/{}/{file}", self.name)
    }

    fn drain_events(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Wait up to `timeout_ns` for an event `pick` accepts; other events are dropped.
    fn wait_event<T>(&self, timeout_ns: u64, mut pick: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let deadline = now() + timeout_ns;
        loop {
            let left = deadline.saturating_sub(now());
            if left == 0 {
                return None;
            }
            match self.events.recv_timeout(Duration::from_nanos(left)) {
                Ok(ev) => {
                    if let Some(found) = pick(&ev) {
                        return Some(found);
                    }
                    if let Event::Protocol(text) = ev {
                        eprintln!("hil-uring-probe: scheme protocol: {text}");
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn release_hangs(&self, result: Result<u64, Errno>) {
        *self.release.lock().unwrap() = Some(result);
    }

    fn stop(&mut self) -> Option<String> {
        self.stop.store(true, Ordering::Release);
        let handle = self.thread.take()?;
        let deadline = now() + 2_000_000_000;
        while !handle.is_finished() && now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        if !handle.is_finished() {
            return Some("the daemon thread did not stop".into());
        }
        match handle.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the daemon thread panicked".into()),
        }
    }
}

/// The daemon loop: read Sqes, let `Daemon` decide, copy payloads into callers' buffers, write Cqes.
fn serve(
    fd: usize,
    daemon: Arc<Mutex<Daemon>>,
    release: Arc<Mutex<Option<Result<u64, Errno>>>>,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) -> Result<(), String> {
    let mut buf = vec![0u8; SQE_SIZE * 64];
    while !stop.load(Ordering::Acquire) {
        let mut replies = Vec::new();
        if let Some(result) = release.lock().unwrap().take() {
            replies.extend(daemon.lock().unwrap().release_hangs(result, now()));
        }
        let mut idle = false;
        match sys::read(fd, &mut buf) {
            Ok(0) => return Ok(()), // the scheme was unmounted
            Ok(n) => {
                let sqes = match decode_sqes(&buf[..n]) {
                    Ok(sqes) => sqes,
                    Err(stray) => {
                        let _ = tx.send(Event::Protocol(format!("read returned {n} bytes, {stray} past whole Sqes")));
                        decode_sqes(&buf[..n - stray]).unwrap_or_default()
                    }
                };
                let mut d = daemon.lock().unwrap();
                let at = now();
                for sqe in &sqes {
                    // SAFETY: for Open/OpenAt the kernel mapped the path into our address space at this
                    // address for the duration of the request.
                    let path = sqe.path_arg().map(|(addr, len)| unsafe { user_str(addr, len) });
                    replies.extend(d.on_sqe(sqe, path.as_deref(), at));
                }
            }
            Err(e) if e.is_would_block() => {
                replies.extend(daemon.lock().unwrap().on_idle(now()));
                idle = true;
            }
            Err(e) if e.0 == EINTR => {}
            Err(e) => return Err(format!("read from the scheme socket returned -{} ({})", e.0, e.name())),
        }
        for refused in deliver(fd, &replies)? {
            let _ = tx.send(Event::Protocol(refused));
        }
        for event in daemon.lock().unwrap().take_events() {
            let _ = tx.send(event);
        }
        if idle && replies.is_empty() {
            thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

/// Read a path the kernel mapped into our address space.
unsafe fn user_str(addr: u64, len: u64) -> String {
    if addr == 0 || len == 0 || len > 4096 {
        return String::new();
    }
    let bytes = std::slice::from_raw_parts(addr as *const u8, len as usize);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copy each reply's payload into the caller's buffer, then write all Cqes (as few writes as the kernel
/// takes). Returns descriptions of Cqes the kernel refused.
fn deliver(fd: usize, replies: &[Reply]) -> Result<Vec<String>, String> {
    if replies.is_empty() {
        return Ok(Vec::new());
    }
    for reply in replies {
        if let Some(fill) = reply.fill {
            // SAFETY: the kernel mapped the caller's buffer (at least `fill.len` bytes, see Daemon) at
            // this address until the request is answered, which happens only after this copy.
            unsafe { std::ptr::copy_nonoverlapping(fill.data.as_ptr(), fill.addr as *mut u8, fill.len) };
        }
    }
    let cqes: Vec<_> = replies.iter().map(|r| r.cqe).collect();
    let bytes = encode_cqes(&cqes);
    let mut refused = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match sys::write(fd, &bytes[at..]) {
            Ok(0) => return Err("the scheme socket took no Cqe".into()),
            Ok(n) => at += n - n % CQE_SIZE,
            Err(e) if e.0 == EINTR => {}
            Err(e) if e.is_would_block() => thread::sleep(Duration::from_micros(100)),
            Err(e) => {
                let tag = cqes[at / CQE_SIZE].tag;
                refused.push(format!("the kernel refused the Cqe for tag {tag}: -{} ({})", e.0, e.name()));
                at += CQE_SIZE;
            }
        }
    }
    Ok(refused)
}

/// Run `f` on its own thread; `None` if it does not finish within `timeout_ns` (the thread is left behind).
fn with_timeout<T: Send + 'static>(timeout_ns: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = channel();
    thread::Builder::new()
        .name("timed".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(Duration::from_nanos(timeout_ns)).ok()
}

fn open_err(path: &str, e: &std::io::Error) -> String {
    let errno = Errno::from_io(e);
    format!("open {path} returned -{} ({})", errno.0, errno.name())
}

// ---------------------------------------------------------------------------------------------------
// Cases.

fn case_setup(scheme: &Result<Scheme, String>, features: &mut u64) -> Outcome {
    let scheme = match scheme {
        Ok(s) => s,
        Err(reason) => return Outcome::fail(reason.clone()),
    };
    *features |= FEATURE_SCHEME;
    let path = scheme.path("echo");
    let started = now();
    let round_trip = with_timeout(5_000_000_000, move || -> Result<(), String> {
        let file = File::open(&path).map_err(|e| open_err(&path, &e))?;
        let mut buf = [0u8; PAYLOAD_LEN];
        let id = 0x00C0_FFEE;
        match sys::pread(file.as_raw_fd() as usize, &mut buf, id) {
            Ok(PAYLOAD_LEN) if decode_payload(&buf).0 == id => Ok(()),
            Ok(n) => Err(format!("read on {path} returned {n} bytes {:?}", decode_payload(&buf))),
            Err(e) => Err(format!("read on {path} returned -{} ({})", e.0, e.name())),
        }
    });
    let elapsed = now() - started;
    let mut outcome = match round_trip {
        Some(Ok(())) => {
            *features |= FEATURE_ROUND_TRIP;
            Outcome::pass()
        }
        Some(Err(reason)) => Outcome::fail(reason),
        None => Outcome::fail(format!("open+read of {} got no answer within 5 s", scheme.path("echo"))),
    };
    outcome.push(Metric::float("round_trip_us", us(elapsed), "us"));
    outcome
}

struct ClientReport {
    latencies: Vec<u64>,
    errors: Vec<String>,
}

fn case_out_of_order(w: &mut Writer<std::io::Stdout>, scheme: &Scheme, clients: usize, ops: u64) -> Outcome {
    let clients = clients.max(2);
    let per_client = (ops / clients as u64).max(2);
    let total = per_client * clients as u64;
    let before = {
        let mut d = scheme.daemon.lock().unwrap();
        d.batch_target = clients;
        (d.held_stats(), d.counters())
    };
    let progress = Arc::new(AtomicU64::new(0));
    let started = now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let path = scheme.path("ooo");
        let progress = progress.clone();
        let spawned = thread::Builder::new().name(format!("ooo-client-{c}")).stack_size(256 * 1024).spawn(
            move || -> ClientReport {
                let mut report = ClientReport { latencies: Vec::new(), errors: Vec::new() };
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        report.errors.push(open_err(&path, &e));
                        return report;
                    }
                };
                let fd = file.as_raw_fd() as usize;
                for k in 0..per_client {
                    let id = ((c as u64) << 32) | k;
                    let mut buf = [0u8; PAYLOAD_LEN];
                    let t0 = now();
                    let result = sys::pread(fd, &mut buf, id);
                    report.latencies.push(now() - t0);
                    match result {
                        Ok(PAYLOAD_LEN) => {
                            let (echoed, tag, _) = decode_payload(&buf);
                            if echoed != id {
                                report.errors.push(format!(
                                    "request {id:#x} got the answer for request {echoed:#x} (tag {tag})"
                                ));
                            }
                        }
                        Ok(n) => report.errors.push(format!("request {id:#x}: read returned {n} bytes")),
                        Err(e) => {
                            report.errors.push(format!("request {id:#x}: read returned -{} ({})", e.0, e.name()));
                            break;
                        }
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                report
            },
        );
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => return Outcome::fail(format!("could not start client thread {c}: {e}")),
        }
    }

    // No deadline here: the watchdog bounds the case.
    let mut last_beat = now();
    while handles.iter().any(|h| !h.is_finished()) {
        thread::sleep(Duration::from_millis(5));
        if now() - last_beat >= HEARTBEAT_NS {
            let _ = w.heartbeat("scheme_out_of_order", progress.load(Ordering::Relaxed));
            last_beat = now();
        }
    }
    let elapsed = now() - started;

    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(r) => {
                latencies.extend(r.latencies);
                errors.extend(r.errors);
            }
            Err(_) => errors.push("a client thread panicked".into()),
        }
    }
    let (after_stats, after_counters) = {
        let d = scheme.daemon.lock().unwrap();
        (d.held_stats(), d.counters())
    };
    let completed = after_stats.completed - before.0.completed;
    let out_of_order = after_stats.out_of_order - before.0.out_of_order;
    let duplicates = after_stats.duplicates - before.0.duplicates;
    let unknown = after_stats.unknown - before.0.unknown;
    let batches = after_counters.batches - before.1.batches;

    let mut outcome = if let Some(first) = errors.first() {
        Outcome::fail(format!("{} errors, first: {first}", errors.len()))
    } else if completed != total {
        Outcome::fail(format!("the daemon answered {completed} of {total} requests"))
    } else if duplicates + unknown > 0 {
        Outcome::fail(format!("{duplicates} duplicate and {unknown} unknown tags"))
    } else if out_of_order == 0 {
        Outcome::fail("no request completed out of order (the batches never held more than one read)")
    } else {
        Outcome::pass()
    };
    outcome.push(Metric::new("out_of_order_completions", out_of_order, "count"));
    outcome.push(Metric::new("max_in_flight", after_stats.max_in_flight, "count"));
    outcome.push(Metric::new("requests", total, "count"));
    outcome.push(Metric::new("clients", clients, "count"));
    outcome.push(Metric::new("batches", batches, "count"));
    outcome.push(Metric::float("iops", iops(completed, elapsed), "ops/s"));
    if let Some(lat) = Latency::from_ns(&latencies) {
        outcome.metrics.extend(lat.metrics(""));
    }
    outcome
}

fn case_cancel(scheme: &Scheme) -> Outcome {
    scheme.drain_events();
    let path = scheme.path("hang");
    let (tx, rx) = channel();
    let client = thread::Builder::new().name("cancel-client".into()).spawn(move || {
        let result = match File::open(&path) {
            Ok(file) => {
                let mut buf = [0u8; PAYLOAD_LEN];
                let r = sys::pread(file.as_raw_fd() as usize, &mut buf, 0xCA9CE1);
                (r.map_err(|e| e.0), now())
            }
            Err(e) => (Err(Errno::from_io(&e).0), now()),
        };
        let _ = tx.send(result);
    });
    let client = match client {
        Ok(h) => h,
        Err(e) => return Outcome::fail(format!("could not start the client thread: {e}")),
    };

    let tag = match scheme.wait_event(5_000_000_000, |ev| match ev {
        Event::HangArrived { tag, .. } => Some(*tag),
        _ => None,
    }) {
        Some(tag) => tag,
        None => {
            if let Ok((Err(errno), _)) = rx.try_recv() {
                return Outcome::fail(format!("the client's open/read failed: -{errno} ({})", Errno(errno).name()));
            }
            return Outcome::fail("the read on `hang` did not reach the daemon within 5 s");
        }
    };

    let signalled = now();
    let rc = unsafe { pthread_kill(client.as_pthread_t(), SIGUSR1) };
    if rc != 0 {
        scheme.release_hangs(Err(Errno(EIO)));
        return Outcome::fail(format!("pthread_kill(SIGUSR1) returned {rc}"));
    }

    let cancel = scheme.wait_event(3_000_000_000, |ev| match ev {
        Event::CancelSeen { tag: t, known, at_ns } if *t == tag => Some((*known, *at_ns)),
        _ => None,
    });
    let mut outcome = match cancel {
        Some((true, at_ns)) => {
            Outcome::pass().with(Metric::float("signal_to_cancel_us", us(at_ns.saturating_sub(signalled)), "us"))
        }
        Some((false, _)) => Outcome::fail(format!("Cancel for tag {tag} arrived after the request was answered")),
        None => {
            scheme.release_hangs(Err(Errno(EIO)));
            Outcome::fail(format!("no Cancel Sqe for tag {tag} within 3 s of SIGUSR1 (the read was released with EIO)"))
        }
    };

    // The client should now return EINTR. If its read was restarted instead, a new read arrives: answer
    // it with 0 bytes so the client finishes.
    let mut restarted = false;
    let client_result = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(result) => break Some(result),
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {
                if now() - signalled > 6_000_000_000 {
                    scheme.release_hangs(Err(Errno(ETIMEDOUT)));
                    break rx.recv_timeout(Duration::from_secs(1)).ok();
                }
                if scheme.daemon.lock().unwrap().held_count() > 0 && cancel.is_some() {
                    restarted = true;
                    scheme.release_hangs(Ok(0));
                }
            }
        }
    };
    if client.is_finished() {
        let _ = client.join();
    }
    match client_result {
        Some((Err(errno), returned)) => {
            outcome.push(Metric::float("elapsed_us", us(returned.saturating_sub(signalled)), "us"));
            if errno != EINTR {
                outcome
                    .fail_with(format!("the interrupted read returned -{errno} ({}), not EINTR", Errno(errno).name()));
            }
        }
        Some((Ok(n), returned)) => {
            outcome.push(Metric::float("elapsed_us", us(returned.saturating_sub(signalled)), "us"));
            if !restarted {
                outcome.fail_with(format!("the cancelled read returned {n} bytes instead of EINTR"));
            }
        }
        None => outcome.fail_with("the client thread never returned"),
    }
    if restarted {
        outcome.note("the interrupted read was restarted (SA_RESTART behaviour) and answered with 0 bytes");
    }
    outcome.note(format!("cancelled tag {tag}; SIGUSR1 handler ran {} times", SIGNALS_SEEN.load(Ordering::Relaxed)));
    outcome
}

// ---------------------------------------------------------------------------------------------------
// The disk.

struct Disk {
    path: String,
    file: File,
    size: u64,
    block_size: u64,
}

enum NoDisk {
    /// Nothing suitable exists: the disk cases are skipped.
    Missing(String),
    /// A disk exists but cannot be used: the disk cases fail.
    Failed(String),
}

fn open_disk_path(path: &str) -> Result<Disk, String> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| {
        let mut text = open_err(path, &e);
        if Errno::from_io(&e).0 == ENOLCK {
            text.push_str(": the disk or one of its partitions is already open (the root filesystem?); give the probe a separate scratch NVMe disk");
        }
        text
    })?;
    let meta = file.metadata().map_err(|e| format!("fstat {path}: {e}"))?;
    let mut size = meta.len();
    if size == 0 {
        size = sys::lseek(file.as_raw_fd() as usize, 0, crate::os::SEEK_END).unwrap_or(0);
    }
    Ok(Disk { path: path.to_string(), file, size, block_size: meta.blksize() })
}

fn find_disk(args: &Args) -> Result<Disk, NoDisk> {
    if let Some(path) = &args.disk {
        return open_disk_path(path).map_err(NoDisk::Failed);
    }
    let names: Vec<String> = match std::fs::read_dir("/scheme") {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => return Err(NoDisk::Failed(format!("cannot list /scheme: {e}"))),
    };
    let schemes = disk::nvme_schemes(&names);
    if schemes.is_empty() {
        return Err(NoDisk::Missing("no NVMe disk scheme (disk.*nvme*) in /scheme".into()));
    }
    let mut problems = Vec::new();
    let mut partitioned = Vec::new();
    for scheme in &schemes {
        let root = format!("/scheme/{scheme}");
        let mut listing = String::new();
        let listed = OpenOptions::new()
            .read(true)
            .custom_flags(O_DIRECTORY)
            .open(&root)
            .and_then(|mut f| f.read_to_string(&mut listing));
        if listed.is_err() || listing.trim().is_empty() {
            listing = "1\n".into();
        }
        for (ns, has_partitions) in disk::namespaces(&listing) {
            let path = format!("{root}/{ns}");
            if has_partitions {
                partitioned.push(path);
                continue;
            }
            match open_disk_path(&path) {
                Ok(d) => return Ok(d),
                Err(e) => problems.push(e),
            }
        }
    }
    if problems.is_empty() {
        Err(NoDisk::Missing(format!(
            "only NVMe namespaces with partitions found ({}); pass --disk to write to one anyway",
            partitioned.join(", ")
        )))
    } else {
        Err(NoDisk::Failed(problems.join("; ")))
    }
}

// ---------------------------------------------------------------------------------------------------

/// Run every case and print the protocol on stdout. Returns the exit status (0: no case failed).
pub fn run(args: &Args) -> i32 {
    let mut names: Vec<String> =
        ["setup", "scheme_out_of_order", "cancel", "nvme_rw"].iter().map(|s| s.to_string()).collect();
    names.extend(args.depths.iter().map(|d| format!("depth_{d}")));

    let mut w = match Writer::start(std::io::stdout(), "hil-uring-probe", "redox", &names) {
        Ok(w) => w,
        Err(_) => return 1,
    };
    let dog = Watchdog::spawn(
        now,
        Duration::from_millis(100),
        Box::new(|lines: &str| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(lines.as_bytes());
            let _ = out.flush();
            std::process::exit(1);
        }),
    );
    let timeout = args.case_timeout_s;
    // Arm before a case runs; `report` disarms, then prints the result.
    macro_rules! report {
        ($name:expr, $outcome:expr) => {{
            let outcome = $outcome;
            dog.disarm();
            let _ = w.case($name, &outcome);
            outcome
        }};
    }

    // The preamble (diagnostics before the first result): what the probe found. Setup's time budget
    // covers finding it.
    dog.arm(1, "setup", timeout);
    let mut features = 0u64;
    if install_sigusr1() {
        features |= FEATURE_SIGNAL;
    }
    let scheme_name = format!("hil-uring-probe-{}", std::process::id());
    let mut scheme = Scheme::create(&scheme_name);
    match &scheme {
        Ok(s) => {
            let _ = w.diag(&format!("scheme /scheme/{}", s.name));
        }
        Err(reason) => {
            let _ = w.diag(&format!("scheme not created: {reason}"));
        }
    }
    let disk = find_disk(args);
    if disk.is_ok() {
        features |= FEATURE_NVME;
    }
    let region = match &disk {
        Ok(d) => Some(disk::plan_region(d.size, d.block_size, args.scratch_offset, args.scratch_len)),
        Err(_) => None,
    };
    let seed = args.seed.unwrap_or_else(|| disk::mix64(now() ^ ((std::process::id() as u64) << 32)));
    match (&disk, &region) {
        (Ok(d), Some(Ok(r))) => {
            let _ = w.diag(&format!(
                "device {} scratch {}+{} seed {seed:#x} ops {} size {} block {}",
                d.path, r.offset, r.len, args.ops, d.size, d.block_size
            ));
        }
        (Ok(d), _) => {
            let _ = w.diag(&format!("device {} size {} block {}", d.path, d.size, d.block_size));
        }
        (Err(NoDisk::Missing(reason)) | Err(NoDisk::Failed(reason)), _) => {
            let _ = w.diag(&format!("device (none): {reason}"));
        }
    }

    dog.arm(w.reported() + 1, "setup", timeout);
    let mut setup = case_setup(&scheme, &mut features);
    setup.push(Metric::hex("features", features, "flags"));
    report!("setup", setup);
    let scheme_ok = features & (FEATURE_SCHEME | FEATURE_ROUND_TRIP) == (FEATURE_SCHEME | FEATURE_ROUND_TRIP);

    dog.arm(w.reported() + 1, "scheme_out_of_order", timeout);
    let outcome = match (&scheme, scheme_ok) {
        (Ok(s), true) => case_out_of_order(&mut w, s, args.clients, args.ops),
        _ => Outcome::skip("setup failed"),
    };
    report!("scheme_out_of_order", outcome);

    dog.arm(w.reported() + 1, "cancel", timeout);
    let outcome = match (&scheme, scheme_ok) {
        (Ok(_), true) if features & FEATURE_SIGNAL == 0 => Outcome::skip("could not install a SIGUSR1 handler"),
        (Ok(s), true) => case_cancel(s),
        _ => Outcome::skip("setup failed"),
    };
    report!("cancel", outcome);

    match (&disk, region) {
        (Ok(d), Some(Ok(region))) => {
            let fd = d.file.as_raw_fd() as usize;
            dog.arm(w.reported() + 1, "nvme_rw", timeout);
            let mut outcome = disk::nvme_rw(fd, region, seed);
            outcome.push(Metric::new("disk_bytes", d.size, "bytes"));
            outcome.push(Metric::new("block_size", d.block_size, "bytes"));
            let written = !outcome.is_fail();
            report!("nvme_rw", outcome);
            for &depth in &args.depths {
                let case = format!("depth_{depth}");
                dog.arm(w.reported() + 1, &case, timeout);
                let outcome = {
                    let mut beat = |n: u64| {
                        let _ = w.heartbeat(&case, n);
                    };
                    let verify = if written { Some(seed) } else { None };
                    disk::depth_case(fd, region, depth, args.ops, verify, HEARTBEAT_NS, &mut beat)
                };
                report!(&case, outcome);
            }
        }
        (Ok(_), Some(Err(reason))) => {
            report!("nvme_rw", Outcome::fail(reason));
            for &depth in &args.depths {
                report!(&format!("depth_{depth}"), Outcome::skip("no scratch region"));
            }
        }
        (Err(NoDisk::Missing(reason)), _) => {
            report!("nvme_rw", Outcome::skip(reason.clone()));
            for &depth in &args.depths {
                report!(&format!("depth_{depth}"), Outcome::skip(reason.clone()));
            }
        }
        (Err(NoDisk::Failed(reason)), _) => {
            report!("nvme_rw", Outcome::fail(reason.clone()));
            for &depth in &args.depths {
                report!(&format!("depth_{depth}"), Outcome::skip("the disk could not be opened"));
            }
        }
        (Ok(_), None) => {
            // Not reached: a region is planned whenever the disk opened.
            report!("nvme_rw", Outcome::fail("no scratch region was planned"));
            for &depth in &args.depths {
                report!(&format!("depth_{depth}"), Outcome::skip("no scratch region"));
            }
        }
    }

    if let Ok(s) = &mut scheme {
        if let Some(problem) = s.stop() {
            let _ = w.diag(&format!("scheme daemon: {problem}"));
        }
    }
    if w.failures() > 0 {
        1
    } else {
        0
    }
}

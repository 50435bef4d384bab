//! Block I/O cases against a disk file descriptor: `nvme_rw` (patterned writes to a scratch region, read
//! back and verified) and `depth_<D>` (D threads, each with one read outstanding; latency percentiles,
//! IOPS, out-of-order completions). Platform independent: they use `os::{pread, pwrite, fsync}`, so they
//! also run on a temp file here. The block pattern is the one hil's `hil/uring_probe/PROTOCOL.md` defines
//! for every guest's probe (so a scratch region written by either probe can be checked the same way).
//!
//! Facts about Redox's disk schemes that shape this (redox-os/drivers `storage/driver-block/src/lib.rs`,
//! `storage/nvmed/src/main.rs`):
//! - nvmed registers one scheme per controller, `disk.<pci function name>-nvme`, e.g.
//!   `/scheme/disk.pci-00-00-04.0-nvme` (the PCI address with `:` replaced by `-`); in it `<nsid>` is a
//!   whole namespace and `<nsid>p<n>` a partition. Opening the scheme root with O_DIRECTORY and reading it
//!   lists them, one per line (getdents is not implemented there).
//! - A read or write must be a whole number of blocks (EINVAL otherwise) and the offset is divided by the
//!   block size (an unaligned offset is silently rounded down), so every transfer here is block aligned.
//! - Only one handle may be open on a whole namespace, and none while one of its partitions is open
//!   (ENOLCK): the depth threads share one descriptor and use pread; a disk whose partition holds the
//!   mounted root cannot be opened whole.
//! - The scheme answers its requests one after another (driver-block's `tick` has a TODO to spawn a task
//!   per request), so a deeper queue raises latency more than IOPS on the Redox versions read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::errno::{Errno, ENOSYS, EOPNOTSUPP};
use crate::inflight::Tracker;
use crate::ktap::{iops, mib_per_s, Latency, Metric, Outcome};
use crate::os;

/// Bytes at the end of the disk the default scratch region stays clear of (a backup GPT lives there).
pub const END_GUARD: u64 = 1024 * 1024;
/// Transfer size: 4 KiB, or the block size when larger.
pub const MIN_IO: u64 = 4096;

/// The scratch region and transfer size of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
    pub io: u64,
}

impl Region {
    pub fn blocks(&self) -> u64 {
        self.len / self.io
    }
    pub fn block_offset(&self, index: u64) -> u64 {
        self.offset + index * self.io
    }
}

/// Where the scratch region goes. `scratch_offset`: absolute, or negative = from the end of the disk;
/// `None` = ending `END_GUARD` before the end. Offsets and length are aligned to the transfer size.
pub fn plan_region(
    disk_size: u64,
    block_size: u64,
    scratch_offset: Option<i64>,
    scratch_len: u64,
) -> Result<Region, String> {
    let block = if block_size == 0 { 512 } else { block_size };
    let io = MIN_IO.max(block).div_ceil(block) * block;
    let len = scratch_len / io * io;
    if len == 0 {
        return Err(format!("scratch length {scratch_len} is smaller than one {io}-byte transfer"));
    }
    let offset = match scratch_offset {
        Some(off) if off >= 0 => off as u64,
        Some(off) => disk_size
            .checked_sub(off.unsigned_abs())
            .ok_or_else(|| format!("scratch offset {off} is before the start of a {disk_size}-byte disk"))?,
        None => disk_size
            .checked_sub(END_GUARD + len)
            .ok_or_else(|| format!("disk of {disk_size} bytes is too small for a {len}-byte scratch region"))?,
    };
    let offset = offset / io * io;
    if offset + len > disk_size {
        return Err(format!("scratch region {offset}+{len} does not fit the disk ({disk_size} bytes)"));
    }
    Ok(Region { offset, len, io })
}

/// PROTOCOL.md's 64-bit finalizer: `x ^= x >> 31; x *= 0x7fb5d329728ea185; x ^= x >> 27;
/// x *= 0x81dadef4bc2dd44d; x ^= x >> 33` (wrapping).
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 31;
    x = x.wrapping_mul(0x7fb5_d329_728e_a185);
    x ^= x >> 27;
    x = x.wrapping_mul(0x81da_def4_bc2d_d44d);
    x ^= x >> 33;
    x
}

/// Word `i` of block `block` (counted from the start of the scratch region) in a block of `words` words:
/// word 0 is the seed, word 1 the block number, word i >= 2 `mix64(seed ^ (block * words + i))`. Stored
/// little-endian. A block from another run (other seed) or another place (other number) does not verify.
pub fn pattern_word(seed: u64, block: u64, words: u64, i: u64) -> u64 {
    match i {
        0 => seed,
        1 => block,
        _ => mix64(seed ^ block.wrapping_mul(words).wrapping_add(i)),
    }
}

/// Fill `buf` (one transfer, a multiple of 8 bytes) with the pattern of block `block`.
pub fn fill_block(buf: &mut [u8], seed: u64, block: u64) {
    let words = (buf.len() / 8) as u64;
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&pattern_word(seed, block, words, i as u64).to_le_bytes());
    }
}

/// The first byte of `buf` (within the block) that differs from block `block`'s pattern.
pub fn first_bad_byte(buf: &[u8], seed: u64, block: u64) -> Option<usize> {
    let words = (buf.len() / 8) as u64;
    for (i, word) in buf.chunks_exact(8).enumerate() {
        let want = pattern_word(seed, block, words, i as u64).to_le_bytes();
        if let Some(j) = word.iter().zip(want.iter()).position(|(a, b)| a != b) {
            return Some(8 * i + j);
        }
    }
    None
}

/// A mismatch as PROTOCOL.md words it, plus a diagnostic saying which seed and block the data came from.
fn mismatch(buf: &[u8], seed: u64, block: u64, at: u64, bad: usize) -> (String, String) {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    };
    (
        format!("data mismatch in block {block} at offset {} (byte {bad} of the block)", at + bad as u64),
        format!("block {block} holds seed {:#x} block {}; expected seed {seed:#x}", word(0), word(1)),
    )
}

fn io_error(what: &str, result: Result<usize, Errno>, want: u64, at: u64) -> Option<String> {
    match result {
        Ok(n) if n as u64 == want => None,
        Ok(n) => Some(format!("{what} returned {n} of {want} bytes at offset {at}")),
        Err(e) => Some(format!("{what} returned -{} ({}) at offset {at}", e.0, e.name())),
    }
}

/// Write the pattern over the whole region, fsync, read it back and verify.
pub fn nvme_rw(fd: usize, region: Region, seed: u64) -> Outcome {
    let io = region.io as usize;
    let mut buf = vec![0u8; io];
    let mut write_ns = Vec::with_capacity(region.blocks() as usize);
    let mut read_ns = Vec::with_capacity(region.blocks() as usize);
    let mut outcome = Outcome::pass();

    let start = os::monotonic_ns();
    for block in 0..region.blocks() {
        let at = region.block_offset(block);
        fill_block(&mut buf, seed, block);
        let t0 = os::monotonic_ns();
        let result = os::pwrite(fd, &buf, at);
        write_ns.push(os::monotonic_ns() - t0);
        if let Some(reason) = io_error("write", result, region.io, at) {
            return Outcome::fail(reason);
        }
    }
    match os::fsync(fd) {
        Ok(()) => {}
        // A disk scheme without fsync: the data is read back all the same.
        Err(e) if matches!(e.0, ENOSYS | EOPNOTSUPP) => {
            outcome.note(format!("fsync returned -{} ({}); verified without it", e.0, e.name()))
        }
        Err(e) => return Outcome::fail(format!("fsync returned -{} ({})", e.0, e.name())),
    }
    let write_elapsed = os::monotonic_ns() - start;

    let start = os::monotonic_ns();
    for block in 0..region.blocks() {
        let at = region.block_offset(block);
        buf.fill(0);
        let t0 = os::monotonic_ns();
        let result = os::pread(fd, &mut buf, at);
        read_ns.push(os::monotonic_ns() - t0);
        if let Some(reason) = io_error("read", result, region.io, at) {
            return Outcome::fail(reason);
        }
        if let Some(bad) = first_bad_byte(&buf, seed, block) {
            let (reason, detail) = mismatch(&buf, seed, block, at, bad);
            outcome.fail_with(reason);
            outcome.note(detail);
            break;
        }
    }
    let read_elapsed = os::monotonic_ns() - start;

    outcome.push(Metric::new("blocks", region.blocks(), "count"));
    outcome.push(Metric::new("io_size", region.io, "bytes"));
    outcome.push(Metric::float("write_mib_s", mib_per_s(region.len, write_elapsed), "MiB/s"));
    outcome.push(Metric::float("read_mib_s", mib_per_s(region.len, read_elapsed), "MiB/s"));
    if let Some(lat) = Latency::from_ns(&write_ns) {
        outcome.metrics.extend(lat.metrics("write_"));
    }
    if let Some(lat) = Latency::from_ns(&read_ns) {
        outcome.metrics.extend(lat.metrics("read_"));
    }
    outcome
}

/// `depth` threads, each keeping one read of `region.io` bytes outstanding, `ops` reads in all, at
/// pseudo-random blocks of the region. With `verify_seed` (the region holds that seed's pattern), every
/// block read is checked too. Out-of-order completions (a read finishing while an older one is still in
/// flight) are counted with a shared tracker. `heartbeat(done)` is called about every `heartbeat_ns`.
pub fn depth_case(
    fd: usize,
    region: Region,
    depth: usize,
    ops: u64,
    verify_seed: Option<u64>,
    heartbeat_ns: u64,
    heartbeat: &mut dyn FnMut(u64),
) -> Outcome {
    let depth = depth.max(1);
    let done = AtomicU64::new(0);
    let finished = AtomicU64::new(0);
    let first_error: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);
    let tracker: Mutex<Tracker<()>> = Mutex::new(Tracker::new());
    let blocks = region.blocks().max(1);

    let start = os::monotonic_ns();
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(depth);
        for t in 0..depth {
            let share = ops / depth as u64 + u64::from((t as u64) < ops % depth as u64);
            let (done, finished, first_error, tracker) = (&done, &finished, &first_error, &tracker);
            let handle = std::thread::Builder::new().name(format!("depth-{t}")).stack_size(256 * 1024).spawn_scoped(
                scope,
                move || {
                    let mut buf = vec![0u8; region.io as usize];
                    let mut lat = Vec::with_capacity(share as usize);
                    let mut rng = verify_seed.unwrap_or(0x5EED) ^ ((t as u64 + 1) << 32) ^ depth as u64;
                    for _ in 0..share {
                        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        let block = mix64(rng) % blocks;
                        let at = region.block_offset(block);
                        let t0 = os::monotonic_ns();
                        let tag = tracker.lock().unwrap().submit_new(t0, ());
                        let result = os::pread(fd, &mut buf, at);
                        let t1 = os::monotonic_ns();
                        let _ = tracker.lock().unwrap().complete(tag, t1);
                        lat.push(t1 - t0);
                        if let Some(reason) = io_error("read", result, region.io, at) {
                            first_error.lock().unwrap().get_or_insert((reason, None));
                            break;
                        }
                        if let Some(seed) = verify_seed {
                            if let Some(bad) = first_bad_byte(&buf, seed, block) {
                                let (reason, detail) = mismatch(&buf, seed, block, at, bad);
                                first_error.lock().unwrap().get_or_insert((reason, Some(detail)));
                                break;
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    finished.fetch_add(1, Ordering::Release);
                    lat
                },
            );
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    first_error.lock().unwrap().get_or_insert((format!("could not start thread {t}: {e}"), None));
                    finished.fetch_add(1, Ordering::Release);
                }
            }
        }
        let mut last_beat = os::monotonic_ns();
        while finished.load(Ordering::Acquire) < depth as u64 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let now = os::monotonic_ns();
            if now - last_beat >= heartbeat_ns {
                heartbeat(done.load(Ordering::Relaxed));
                last_beat = now;
            }
        }
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = os::monotonic_ns() - start;

    let samples: Vec<u64> = per_thread.into_iter().flatten().collect();
    let completed = done.load(Ordering::Relaxed);
    let stats = tracker.into_inner().unwrap().stats();
    let mut outcome = match first_error.into_inner().unwrap() {
        Some((reason, detail)) => {
            let mut o = Outcome::fail(reason);
            if let Some(detail) = detail {
                o.note(detail);
            }
            o
        }
        None if completed != ops => Outcome::fail(format!("{completed} of {ops} reads completed")),
        None => Outcome::pass(),
    };
    outcome.push(Metric::float("iops", iops(completed, elapsed), "ops/s"));
    if let Some(lat) = Latency::from_ns(&samples) {
        outcome.metrics.extend(lat.metrics(""));
    }
    outcome.push(Metric::new("ooo", stats.out_of_order, "count"));
    outcome.push(Metric::new("max_in_flight", stats.max_in_flight, "count"));
    outcome.push(Metric::new("ops", completed, "count"));
    outcome
}

/// NVMe disk schemes among the names listed in `/scheme`, sorted.
pub fn nvme_schemes(names: &[String]) -> Vec<String> {
    let mut found: Vec<String> =
        names.iter().filter(|n| n.starts_with("disk.") && n.contains("nvme")).cloned().collect();
    found.sort();
    found
}

/// From a disk scheme's root listing ("1\n1p0\n1p1\n2\n"): each whole namespace and whether it has
/// partitions, namespaces without partitions first (a blank scratch disk is the safe choice).
pub fn namespaces(listing: &str) -> Vec<(String, bool)> {
    let entries: Vec<&str> = listing.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out: Vec<(String, bool)> = entries
        .iter()
        .filter(|e| e.chars().all(|c| c.is_ascii_digit()))
        .map(|ns| {
            let prefix = format!("{ns}p");
            (ns.to_string(), entries.iter().any(|e| e.starts_with(&prefix)))
        })
        .collect();
    out.sort_by_key(|(ns, parts)| (*parts, ns.parse::<u64>().unwrap_or(u64::MAX)));
    out
}

#[cfg(all(test, unix, not(any(target_os = "redox", hil_redox_typecheck))))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn temp_disk(len: u64) -> (std::fs::File, std::path::PathBuf) {
        static N: AtomicU64 = AtomicU64::new(0);
        let path =
            std::env::temp_dir().join(format!("hil-disk-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        f.set_len(len).unwrap();
        (f, path)
    }

    #[test]
    fn region_planning() {
        let mib = 1024 * 1024;
        let r = plan_region(64 * mib, 512, None, mib).unwrap();
        assert_eq!(r, Region { offset: 62 * mib, len: mib, io: 4096 });
        assert_eq!(r.blocks(), 256);
        let r = plan_region(64 * mib, 4096, Some(-(8 * mib as i64)), mib).unwrap();
        assert_eq!(r.offset, 56 * mib);
        let r = plan_region(64 * mib, 512, Some(4097), 10_000).unwrap();
        assert_eq!((r.offset, r.len), (4096, 8192));
        let r = plan_region(64 * mib, 8192, Some(0), mib).unwrap();
        assert_eq!(r.io, 8192);
        assert_eq!(plan_region(64 * mib, 0, Some(0), 4096).unwrap().io, 4096);
        assert!(plan_region(mib, 512, None, mib).is_err());
        assert!(plan_region(64 * mib, 512, Some(64 * mib as i64), 4096).is_err());
        assert!(plan_region(64 * mib, 512, Some(-(65 * mib as i64)), 4096).is_err());
        assert!(plan_region(64 * mib, 512, Some(0), 100).is_err());
    }

    #[test]
    fn pattern_is_protocol_md_pattern() {
        // mix64 as PROTOCOL.md defines it, on known inputs (computed by hand from the formula).
        assert_eq!(mix64(0), 0);
        let x: u64 = 1;
        let mut y = x ^ (x >> 31);
        y = y.wrapping_mul(0x7fb5d329728ea185);
        y ^= y >> 27;
        y = y.wrapping_mul(0x81dadef4bc2dd44d);
        y ^= y >> 33;
        assert_eq!(mix64(1), y);
        let mut block = vec![0u8; 4096];
        fill_block(&mut block, 0x35f0_22ed_b381_5085, 3);
        assert_eq!(&block[0..8], &0x35f0_22ed_b381_5085u64.to_le_bytes());
        assert_eq!(&block[8..16], &3u64.to_le_bytes());
        assert_eq!(&block[16..24], &mix64(0x35f0_22ed_b381_5085 ^ (3 * 512 + 2)).to_le_bytes());
        assert_eq!(&block[4088..4096], &mix64(0x35f0_22ed_b381_5085 ^ (3 * 512 + 511)).to_le_bytes());
    }

    #[test]
    fn pattern_detects_wrong_place_and_wrong_run() {
        let mut block = vec![0u8; 4096];
        fill_block(&mut block, 7, 2);
        assert_eq!(first_bad_byte(&block, 7, 2), None);
        assert_eq!(first_bad_byte(&block, 7, 1), Some(8));
        assert_eq!(first_bad_byte(&block, 8, 2), Some(0));
        block[100] ^= 1;
        assert_eq!(first_bad_byte(&block, 7, 2), Some(100));
        let (reason, detail) = mismatch(&block, 7, 2, 8192, 100);
        assert_eq!(reason, "data mismatch in block 2 at offset 8292 (byte 100 of the block)");
        assert_eq!(detail, "block 2 holds seed 0x7 block 2; expected seed 0x7");
    }

    #[test]
    fn nvme_rw_on_a_file() {
        let (f, path) = temp_disk(4 * 1024 * 1024);
        let region = plan_region(4 * 1024 * 1024, 512, None, 256 * 1024).unwrap();
        let out = nvme_rw(f.as_raw_fd() as usize, region, 0x1234);
        assert_eq!(out.status, crate::ktap::Status::Pass, "{out:?}");
        let names: Vec<&str> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        for want in ["blocks", "write_lat_p50_us", "read_lat_p99_us", "read_mib_s", "write_mib_s"] {
            assert!(names.contains(&want), "{names:?}");
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn nvme_rw_reports_a_failing_write() {
        let (f, path) = temp_disk(64 * 1024);
        drop(f);
        let ro = std::fs::OpenOptions::new().read(true).open(&path).unwrap();
        let region = Region { offset: 4096, len: 8192, io: 4096 };
        let out = nvme_rw(ro.as_raw_fd() as usize, region, 1);
        match &out.status {
            crate::ktap::Status::Fail(reason) => {
                assert!(reason.starts_with("write returned -9 (EBADF) at offset 4096"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn depth_cases_on_a_file() {
        let (f, path) = temp_disk(2 * 1024 * 1024);
        let region = plan_region(2 * 1024 * 1024, 512, Some(0), 1024 * 1024).unwrap();
        let fd = f.as_raw_fd() as usize;
        assert_eq!(nvme_rw(fd, region, 99).status, crate::ktap::Status::Pass);
        for depth in [1usize, 8, 32] {
            let mut beats = 0u64;
            let out = depth_case(fd, region, depth, 100, Some(99), 1, &mut |_| beats += 1);
            assert_eq!(out.status, crate::ktap::Status::Pass, "{out:?}");
            let ops = out.metrics.iter().find(|m| m.name == "ops").unwrap();
            assert_eq!(ops.value, "100");
            assert!(out.metrics.iter().any(|m| m.name == "lat_p99_us"));
            assert!(out.metrics.iter().any(|m| m.name == "iops"));
            let max = out.metrics.iter().find(|m| m.name == "max_in_flight").unwrap();
            assert!(max.value.parse::<usize>().unwrap() <= depth);
        }
        // Reading back with the wrong seed is a mismatch with a diagnostic.
        let out = depth_case(fd, region, 2, 10, Some(98), u64::MAX, &mut |_| {});
        match &out.status {
            crate::ktap::Status::Fail(reason) => assert!(reason.starts_with("data mismatch in block "), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(out.diagnostics[0].contains("expected seed 0x62"), "{:?}", out.diagnostics);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn depth_case_reports_the_failing_offset() {
        let (f, path) = temp_disk(64 * 1024);
        // Region past the end of the file: every read is short.
        let region = Region { offset: 1024 * 1024, len: 64 * 1024, io: 4096 };
        let out = depth_case(f.as_raw_fd() as usize, region, 4, 16, None, u64::MAX, &mut |_| {});
        match &out.status {
            crate::ktap::Status::Fail(reason) => {
                assert!(reason.starts_with("read returned 0 of 4096 bytes at offset "), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn scheme_listing() {
        let names: Vec<String> = ["file", "disk.pci-00-00-05.0-nvme", "disk.live", "disk.pci-00-00-04.0-nvme", "debug"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(nvme_schemes(&names), ["disk.pci-00-00-04.0-nvme", "disk.pci-00-00-05.0-nvme"]);
        assert_eq!(namespaces("1\n1p0\n1p1\n2\n\n"), [("2".to_string(), false), ("1".to_string(), true)]);
        assert!(namespaces("").is_empty());
    }
}

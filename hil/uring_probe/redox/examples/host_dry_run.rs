//! A dry run of the probe's platform-independent parts on any host, printing the same protocol the
//! Redox probe prints: the scheme cases are played against the `Daemon` logic with synthetic Sqes (no
//! kernel involved), the disk cases run against a temporary file. hil's tests feed this output to the
//! host parser (hil/probes/ktap.py) to check that the Rust writer and the parser agree.
//!
//! `cargo run --example host_dry_run [-- DIR]` (DIR: where the temporary disk file goes; default the temp dir).

use std::os::fd::AsRawFd;

use hil_uring_probe::daemon::{decode_payload, Daemon, Event};
use hil_uring_probe::disk;
use hil_uring_probe::errno::{Errno, EINTR};
use hil_uring_probe::ktap::{Latency, Metric, Outcome, Writer};
use hil_uring_probe::os::monotonic_ns;
use hil_uring_probe::sqe::{opcode, sqe_flags, Sqe};

fn open(d: &mut Daemon, tag: u32, path: &str) -> u64 {
    let sqe = Sqe { opcode: opcode::OPEN, tag, ..Sqe::default() };
    d.on_sqe(&sqe, Some(path), monotonic_ns())[0].cqe.decoded_result().expect("open")
}

fn read(file: u64, tag: u32, offset: u64) -> Sqe {
    Sqe { opcode: opcode::READ, tag, args: [file, 0x1000 * (tag as u64 + 1), 16, offset, 0, 0], ..Sqe::default() }
}

fn scheme_out_of_order(d: &mut Daemon, clients: usize, rounds: usize) -> Outcome {
    d.batch_target = clients;
    let files: Vec<u64> = (0..clients).map(|c| open(d, c as u32, "ooo")).collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut tag = 100u32;
    for round in 0..rounds {
        let mut submitted = Vec::new();
        let mut replies = Vec::new();
        for (c, &file) in files.iter().enumerate() {
            let id = ((c as u64) << 32) | round as u64;
            submitted.push((tag, id, monotonic_ns()));
            replies.extend(d.on_sqe(&read(file, tag, id), None, monotonic_ns()));
            tag += 1;
        }
        for reply in replies {
            let (echoed, t, _) = decode_payload(&reply.fill.expect("payload").data);
            let (_, id, at) = submitted.iter().find(|(s, _, _)| *s == t).copied().expect("known tag");
            latencies.push(monotonic_ns() - at);
            if echoed != id || reply.cqe.tag != t {
                errors += 1;
            }
        }
    }
    let stats = d.held_stats();
    let mut outcome =
        if errors > 0 { Outcome::fail(format!("{errors} answers went to the wrong request")) } else { Outcome::pass() };
    outcome.push(Metric::new("out_of_order_completions", stats.out_of_order, "count"));
    outcome.push(Metric::new("max_in_flight", stats.max_in_flight, "count"));
    outcome.push(Metric::new("requests", stats.completed, "count"));
    if let Some(lat) = Latency::from_ns(&latencies) {
        outcome.metrics.extend(lat.metrics(""));
    }
    outcome
}

fn cancel(d: &mut Daemon) -> Outcome {
    let file = open(d, 1, "hang");
    let started = monotonic_ns();
    assert!(d.on_sqe(&read(file, 7, 0), None, started).is_empty());
    let cancel = Sqe { opcode: opcode::CANCEL, sqe_flags: sqe_flags::ONEWAY, tag: 7, ..Sqe::default() };
    let replies = d.on_sqe(&cancel, None, monotonic_ns());
    let events = d.take_events();
    let seen = events.iter().any(|e| matches!(e, Event::CancelSeen { tag: 7, known: true, .. }));
    let answered = replies.first().map(|r| (r.cqe.tag, r.cqe.decoded_result()));
    let mut outcome = if seen && answered == Some((7, Err(Errno(EINTR)))) {
        Outcome::pass()
    } else {
        Outcome::fail(format!("cancel answered {answered:?}"))
    };
    outcome.push(Metric::float("elapsed_us", (monotonic_ns() - started) as f64 / 1000.0, "us"));
    outcome.note("cancelled tag 7 (simulated Sqes, no kernel)");
    outcome
}

fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let depths = [1usize, 8];
    let mut names: Vec<String> =
        ["setup", "scheme_out_of_order", "cancel", "nvme_rw"].iter().map(|s| s.to_string()).collect();
    names.extend(depths.iter().map(|d| format!("depth_{d}")));

    let mut w = Writer::start(std::io::stdout(), "hil-uring-probe", "host-dry-run", &names).expect("stdout");
    let path = dir.join(format!("hil-uring-probe-dry-run-{}", std::process::id()));
    let size = 4 * 1024 * 1024;
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("temp disk");
    file.set_len(size).expect("size");
    let region = disk::plan_region(size, 512, None, 256 * 1024).expect("region");
    let seed = 0x35f0_22ed_b381_5085;
    w.diag(&format!("device {} scratch {}+{} seed {seed:#x} ops 64", path.display(), region.offset, region.len))
        .unwrap();

    let mut daemon = Daemon::new();
    w.case("setup", &Outcome::pass().with(Metric::hex("features", 0x3, "flags"))).unwrap();
    w.heartbeat("scheme_out_of_order", 0).unwrap();
    w.case("scheme_out_of_order", &scheme_out_of_order(&mut daemon, 4, 8)).unwrap();
    w.case("cancel", &cancel(&mut daemon)).unwrap();

    let fd = file.as_raw_fd() as usize;
    let rw = disk::nvme_rw(fd, region, seed);
    let verify = if rw.is_fail() { None } else { Some(seed) };
    w.case("nvme_rw", &rw).unwrap();
    for depth in depths {
        let case = format!("depth_{depth}");
        let outcome = {
            let mut beat = |n: u64| {
                let _ = w.heartbeat(&case, n);
            };
            disk::depth_case(fd, region, depth, 64, verify, 0, &mut beat)
        };
        w.case(&case, &outcome).unwrap();
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    std::process::exit(if w.failures() > 0 { 1 } else { 0 });
}

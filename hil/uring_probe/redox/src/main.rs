//! `hil-uring-probe`: on Redox, runs the cases (setup, scheme_out_of_order, cancel, nvme_rw, depth_<D>)
//! and prints hil's probe protocol (hil/uring_probe/PROTOCOL.md); anywhere else prints a valid
//! "skip everything" plan and exits 0. Exit status: 0 every case ok or skipped, 1 a case failed or the
//! probe aborted, 2 a usage error (nothing on stdout then).

use hil_uring_probe::{args, ktap};

fn main() {
    let parsed = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("hil-uring-probe: {message}\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if parsed.help {
        println!("{}", args::USAGE);
        return;
    }
    std::process::exit(run(&parsed));
}

#[cfg(any(target_os = "redox", hil_redox_typecheck))]
fn run(parsed: &args::Args) -> i32 {
    // A panic on the main thread is fatal: say so in the protocol. Panics in worker threads are reported
    // by the case that joins them.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("?").to_string();
        println!("# panic in thread {name}: {}", ktap::clean_text(&info.to_string()));
        if name == "main" {
            println!("# probe aborted");
        }
    }));
    hil_uring_probe::redox_probe::run(parsed)
}

#[cfg(not(any(target_os = "redox", hil_redox_typecheck)))]
fn run(_parsed: &args::Args) -> i32 {
    let reason = format!("not a Redox system ({})", std::env::consts::OS);
    let _ = ktap::Writer::skip_all(std::io::stdout(), &reason);
    0
}

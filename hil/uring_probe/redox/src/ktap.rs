//! hil's probe output protocol (KTAP-like; the Linux probe prints the same shape):
//!
//! ```text
//! KTAP version 1
//! 1..N
//! # probe hil-uring-probe 1 redox
//! ok 1 setup
//! # metric setup.features=0x3 flags
//! not ok 5 depth_8 # read returned -5 at offset 4096
//! # metric depth_8.lat_p50_us=123.4 us
//! ok 9 timeout # SKIP reason
//! ```
//!
//! The full grammar is hil's `hil/uring_probe/PROTOCOL.md` (parsed on the host by `hil/probes/ktap.py`).
//! In short: a `# cases` line may list the case names after the `# probe` line; a case's metric lines and
//! diagnostics follow its result line; `# heartbeat <case> <n>` lines show progress while a long case runs,
//! before its result; `# probe aborted` ends the output after a fatal error. Names and metric keys are
//! `[a-z0-9_]`; reasons and diagnostics are one line without `#`; every metric has a unit (`us`, `ops/s`,
//! `MiB/s`, `count`, `flags`, ...) and a finite value. A system where the probe cannot run prints the plan
//! `1..0 # SKIP <reason>`. Plus the statistics the cases report: nearest-rank percentiles and rates.

use std::fmt::Display;
use std::io::{self, Write};

pub const KTAP_VERSION: u32 = 1;
/// Version of hil's probe protocol (the number on the `# probe` line).
pub const PROTOCOL_VERSION: u32 = 1;

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail(String),
    Skip(String),
}

/// One metric of a case: `# metric <case>.<name>=<value> <unit>` (an empty unit prints as `count`).
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: String,
    pub unit: String,
}

impl Metric {
    pub fn new(name: &str, value: impl Display, unit: &str) -> Metric {
        Metric { name: clean_name(name), value: clean_value(&value.to_string()), unit: clean_value(unit) }
    }
    /// A float with one decimal, the form latencies and rates use.
    pub fn float(name: &str, value: f64, unit: &str) -> Metric {
        Metric::new(name, format_float(value), unit)
    }
    /// A bit mask in hex (`0x3`).
    pub fn hex(name: &str, value: u64, unit: &str) -> Metric {
        Metric::new(name, format!("{value:#x}"), unit)
    }
}

/// The outcome of a case: its status, metrics and diagnostics (printed after the result line).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub metrics: Vec<Metric>,
    pub diagnostics: Vec<String>,
}

impl Outcome {
    pub fn pass() -> Outcome {
        Outcome { status: Status::Pass, metrics: Vec::new(), diagnostics: Vec::new() }
    }
    pub fn fail(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::Fail(reason.into()), metrics: Vec::new(), diagnostics: Vec::new() }
    }
    pub fn skip(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::Skip(reason.into()), metrics: Vec::new(), diagnostics: Vec::new() }
    }
    pub fn with(mut self, metric: Metric) -> Outcome {
        self.metrics.push(metric);
        self
    }
    pub fn push(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }
    pub fn note(&mut self, text: impl Into<String>) {
        self.diagnostics.push(text.into());
    }
    /// Turn a pass into a failure (keeps the metrics); a failure keeps its first reason.
    pub fn fail_with(&mut self, reason: impl Into<String>) {
        if !matches!(self.status, Status::Fail(_)) {
            self.status = Status::Fail(reason.into());
        }
    }
    pub fn is_fail(&self) -> bool {
        matches!(self.status, Status::Fail(_))
    }
}

/// Writes the protocol to `out`, flushing after every line so a host watching a serial console sees each
/// result as soon as it exists.
pub struct Writer<W: Write> {
    out: W,
    planned: usize,
    next: usize,
    failures: usize,
}

impl<W: Write> Writer<W> {
    /// Print the version line, the plan `1..N` (N = number of `cases`), the `# probe` identity line and
    /// the `# cases` line listing the case names in number order.
    pub fn start(mut out: W, probe: &str, platform: &str, cases: &[String]) -> io::Result<Writer<W>> {
        let planned = cases.len();
        writeln!(out, "KTAP version {KTAP_VERSION}")?;
        writeln!(out, "1..{planned}")?;
        writeln!(out, "# probe {} {} {}", clean_word(probe), PROTOCOL_VERSION, clean_word(platform))?;
        if !cases.is_empty() {
            let names: Vec<String> = cases.iter().map(|c| clean_name(c)).collect();
            writeln!(out, "# cases {}", names.join(" "))?;
        }
        out.flush()?;
        Ok(Writer { out, planned, next: 1, failures: 0 })
    }

    /// The whole output of a probe that cannot run here: the version line and `1..0 # SKIP <reason>`.
    pub fn skip_all(mut out: W, reason: &str) -> io::Result<()> {
        writeln!(out, "KTAP version {KTAP_VERSION}")?;
        writeln!(out, "1..0 # SKIP {}", clean_text(reason))?;
        out.flush()
    }

    /// Print a case's result line, then its metric lines. Returns the case number.
    pub fn case(&mut self, name: &str, outcome: &Outcome) -> io::Result<usize> {
        let number = self.next;
        self.next += 1;
        let name = clean_name(name);
        match &outcome.status {
            Status::Pass => writeln!(self.out, "ok {number} {name}")?,
            Status::Fail(reason) => {
                self.failures += 1;
                if reason.is_empty() {
                    writeln!(self.out, "not ok {number} {name}")?
                } else {
                    writeln!(self.out, "not ok {number} {name} # {}", clean_text(reason))?
                }
            }
            Status::Skip(reason) => writeln!(self.out, "ok {number} {name} # SKIP {}", clean_text(reason))?,
        }
        for metric in &outcome.metrics {
            self.metric(&name, metric)?;
        }
        for text in &outcome.diagnostics {
            self.diag(text)?;
        }
        self.out.flush()?;
        Ok(number)
    }

    /// `# metric <case>.<name>=<value> <unit>`; a value that is not a finite number becomes a diagnostic.
    pub fn metric(&mut self, case: &str, metric: &Metric) -> io::Result<()> {
        let unit = if metric.unit.is_empty() { "count" } else { metric.unit.as_str() };
        if !is_number(&metric.value) {
            return self.diag(&format!("metric {}.{} has no numeric value", clean_name(case), metric.name));
        }
        writeln!(self.out, "# metric {}.{}={} {}", clean_name(case), metric.name, metric.value, unit)?;
        self.out.flush()
    }

    /// `# heartbeat <case> <n>`: the case is alive and has done `n` units of work.
    pub fn heartbeat(&mut self, case: &str, n: u64) -> io::Result<()> {
        writeln!(self.out, "# heartbeat {} {n}", clean_name(case))?;
        self.out.flush()
    }

    /// A free-form diagnostic line (`# text`).
    pub fn diag(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "# {}", clean_text(text))?;
        self.out.flush()
    }

    /// `# probe aborted`, after an optional diagnostic with the reason. Nothing should follow.
    pub fn abort(&mut self, reason: &str) -> io::Result<()> {
        if !reason.is_empty() {
            self.diag(reason)?;
        }
        writeln!(self.out, "# probe aborted")?;
        self.out.flush()
    }

    pub fn planned(&self) -> usize {
        self.planned
    }
    /// Cases reported so far.
    pub fn reported(&self) -> usize {
        self.next - 1
    }
    pub fn failures(&self) -> usize {
        self.failures
    }
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Case names and metric keys: lowercase letters, digits and `_`; uppercase is lowered, anything else
/// becomes `_`.
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

/// The single words of the `# probe` line (`hil-uring-probe`, `redox`): no spaces, no `#`.
pub fn clean_word(word: &str) -> String {
    let cleaned: String =
        word.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' }).collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

/// Reasons and diagnostics: one line, no `#` (it would start a directive).
pub fn clean_text(text: &str) -> String {
    text.replace(['\r', '\n', '#'], " ").trim().to_string()
}

fn clean_value(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '=').collect()
}

/// A decimal (`812345`, `123.4`, `-3`) or `0x` hexadecimal number, as the protocol allows for values.
pub fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if let Some(hex) = digits.strip_prefix("0x") {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    match frac {
        None => !whole.is_empty() && all_digits(whole),
        Some(f) => (!whole.is_empty() || !f.is_empty()) && all_digits(whole) && all_digits(f),
    }
}

/// One decimal, no exponent (`123.4`); non-finite values give `nan`/`inf`, which `Writer::metric` turns
/// into a diagnostic instead of a metric line.
pub fn format_float(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else if value.is_nan() {
        "nan".to_string()
    } else {
        "inf".to_string()
    }
}

/// Nearest-rank percentile of `samples` (any order): the smallest sample such that at least `p` percent
/// of the samples are <= it. `p` in (0, 100]; `None` for no samples.
pub fn percentile(samples: &[u64], p: f64) -> Option<u64> {
    if samples.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Some(percentile_sorted(&sorted, p))
}

/// `percentile` on samples already sorted ascending (and non-empty).
pub fn percentile_sorted(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Latency summary of nanosecond samples, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn from_ns(samples: &[u64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let sum: u128 = sorted.iter().map(|&s| s as u128).sum();
        Some(Latency {
            count: sorted.len(),
            p50_us: percentile_sorted(&sorted, 50.0) as f64 / 1000.0,
            p99_us: percentile_sorted(&sorted, 99.0) as f64 / 1000.0,
            max_us: *sorted.last().expect("non-empty") as f64 / 1000.0,
            mean_us: (sum as f64 / sorted.len() as f64) / 1000.0,
        })
    }

    /// `lat_p50_us`, `lat_p99_us`, `lat_max_us` metrics (with `prefix` before `lat_`).
    pub fn metrics(&self, prefix: &str) -> Vec<Metric> {
        vec![
            Metric::float(&format!("{prefix}lat_p50_us"), self.p50_us, "us"),
            Metric::float(&format!("{prefix}lat_p99_us"), self.p99_us, "us"),
            Metric::float(&format!("{prefix}lat_max_us"), self.max_us, "us"),
        ]
    }
}

/// Operations per second for `ops` operations done in `elapsed_ns` nanoseconds (0 when no time passed).
pub fn iops(ops: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        0.0
    } else {
        ops as f64 * 1e9 / elapsed_ns as f64
    }
}

/// Throughput in MiB/s for `bytes` moved in `elapsed_ns`.
pub fn mib_per_s(bytes: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        0.0
    } else {
        bytes as f64 / (1024.0 * 1024.0) * 1e9 / elapsed_ns as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: Vec<u8>) -> String {
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn writer_exact_output() {
        let names: Vec<String> =
            ["setup", "a", "b", "c", "depth_8", "f", "g", "h", "timeout"].iter().map(|s| s.to_string()).collect();
        let mut w = Writer::start(Vec::new(), "hil-uring-probe", "redox", &names).unwrap();
        w.case("setup", &Outcome::pass().with(Metric::hex("features", 0x3, "flags"))).unwrap();
        for name in ["a", "b", "c"] {
            w.case(name, &Outcome::pass()).unwrap();
        }
        w.case(
            "depth_8",
            &Outcome::fail("read returned -5 at offset 4096").with(Metric::float("lat_p50_us", 123.44, "us")),
        )
        .unwrap();
        w.heartbeat("depth_32", 1000).unwrap();
        for name in ["f", "g", "h"] {
            w.case(name, &Outcome::pass()).unwrap();
        }
        w.case("timeout", &Outcome::skip("reason")).unwrap();
        assert_eq!((w.reported(), w.planned(), w.failures()), (9, 9, 1));
        let expected = "\
KTAP version 1
1..9
# probe hil-uring-probe 1 redox
# cases setup a b c depth_8 f g h timeout
ok 1 setup
# metric setup.features=0x3 flags
ok 2 a
ok 3 b
ok 4 c
not ok 5 depth_8 # read returned -5 at offset 4096
# metric depth_8.lat_p50_us=123.4 us
# heartbeat depth_32 1000
ok 6 f
ok 7 g
ok 8 h
ok 9 timeout # SKIP reason
";
        assert_eq!(text(w.into_inner()), expected);
    }

    #[test]
    fn skip_all_and_abort() {
        let mut out = Vec::new();
        Writer::skip_all(&mut out, "not a Redox system").unwrap();
        assert_eq!(text(out), "KTAP version 1\n1..0 # SKIP not a Redox system\n");

        let mut w = Writer::start(Vec::new(), "hil-uring-probe", "redox", &[]).unwrap();
        assert_eq!(w.planned(), 0);
        w.case("setup", &Outcome::fail("")).unwrap();
        w.abort("panic: boom\nsecond line").unwrap();
        let out = text(w.into_inner());
        assert!(out.starts_with("KTAP version 1\n1..0\n# probe hil-uring-probe 1 redox\nnot ok 1 setup\n"), "{out}");
        assert!(out.ends_with("not ok 1 setup\n# panic: boom second line\n# probe aborted\n"), "{out}");
    }

    #[test]
    fn names_values_and_reasons_are_sanitised() {
        let mut w = Writer::start(Vec::new(), "hil uring", "red#ox", &["Bad-Name".to_string()]).unwrap();
        let mut outcome = Outcome::fail("line one\nline #two").with(Metric::new("x Y", "1 2", ""));
        outcome.push(Metric::float("lat", f64::NAN, "us"));
        outcome.note("a note # with a hash");
        w.case("bad name#1", &outcome).unwrap();
        let out = text(w.into_inner());
        assert!(out.contains("# probe hil_uring 1 red_ox\n# cases bad_name\n"), "{out}");
        assert!(out.contains("not ok 1 bad_name_1 # line one line  two\n"), "{out}");
        assert!(out.contains("# metric bad_name_1.x_y=12 count\n"), "{out}");
        assert!(out.contains("# metric bad_name_1.lat has no numeric value\n"), "{out}");
        assert!(out.ends_with("# a note   with a hash\n"), "{out}");
    }

    #[test]
    fn metric_forms() {
        assert_eq!(Metric::float("lat_p50_us", 2.0, "us").value, "2.0");
        assert_eq!(Metric::float("x", 0.04, "us").value, "0.0");
        assert_eq!(Metric::hex("features", 0xF, "flags").value, "0xf");
        assert_eq!(Metric::new("ops", 42u64, "ops").value, "42");
        assert_eq!(format_float(f64::NAN), "nan");
        for good in ["0", "812345", "123.4", "-3", "0x3fff", ".5", "1."] {
            assert!(is_number(good), "{good}");
        }
        for bad in ["", "nan", "inf", "0x", "1.2.3", "12a", "-", "1e3"] {
            assert!(!is_number(bad), "{bad}");
        }
    }

    #[test]
    fn percentiles_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[4, 1, 3, 2], 50.0), Some(2));
        assert_eq!(percentile(&[4, 1, 3, 2], 100.0), Some(4));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 1.0), Some(1));
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99.0), Some(990));
        assert_eq!(percentile(&[1, 2, 3], 0.0), None);
        assert_eq!(percentile(&[1, 2, 3], 101.0), None);
    }

    #[test]
    fn latency_summary() {
        let samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let lat = Latency::from_ns(&samples).unwrap();
        assert_eq!(lat.count, 100);
        assert_eq!(lat.p50_us, 50.0);
        assert_eq!(lat.p99_us, 99.0);
        assert_eq!(lat.max_us, 100.0);
        assert_eq!(lat.mean_us, 50.5);
        let names: Vec<_> = lat.metrics("").into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["lat_p50_us", "lat_p99_us", "lat_max_us"]);
        assert!(Latency::from_ns(&[]).is_none());
    }

    #[test]
    fn rates() {
        assert_eq!(iops(1000, 1_000_000_000), 1000.0);
        assert_eq!(iops(500, 250_000_000), 2000.0);
        assert_eq!(iops(5, 0), 0.0);
        assert_eq!(mib_per_s(1024 * 1024, 500_000_000), 2.0);
    }

    #[test]
    fn outcome_fail_with_keeps_first_reason() {
        let mut o = Outcome::pass().with(Metric::new("n", 1, ""));
        o.fail_with("first");
        o.fail_with("second");
        assert_eq!(o.status, Status::Fail("first".into()));
        assert!(o.is_fail());
        assert_eq!(o.metrics.len(), 1);
    }
}

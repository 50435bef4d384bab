//! Command line: `hil-uring-probe [--disk PATH] [--scratch-offset BYTES] [--scratch-len BYTES] [--ops N]
//! [--depths 1,8,32,64] [--clients N] [--quick] [--seed N] [--case-timeout SECONDS]`.
//!
//! The spellings of the shared probe command line in hil's `hil/uring_probe/PROTOCOL.md` are accepted too
//! (`--device` for `--disk`, `--scratch-size` for `--scratch-len`), so hil can call every guest's probe
//! the same way.

pub const USAGE: &str = "\
usage: hil-uring-probe [--disk PATH] [--scratch-offset BYTES] [--scratch-len BYTES] [--ops N]
                       [--depths 1,8,32,64] [--clients N] [--quick] [--seed N] [--case-timeout SECONDS]
  --disk PATH            disk to test (default: the first NVMe disk scheme, /scheme/disk.*nvme*/<namespace>,
                         taking only a namespace without partitions); also --device PATH
  --scratch-offset BYTES where the scratch region starts; negative counts from the end of the disk
                         (default: the region ends 1 MiB before the end, clear of a backup GPT)
  --scratch-len BYTES    size of the scratch region that nvme_rw overwrites (default 1M); also --scratch-size
  --ops N                reads per depth case and requests in scheme_out_of_order (default 512)
  --depths LIST          queue depths, one case each (default 1,8,32,64)
  --clients N            client threads in scheme_out_of_order (default 16)
  --quick                a fifth of the operations
  --seed N               seed of the block pattern (default: from the clock)
  --case-timeout SECONDS a case running longer is reported as timed out and the probe stops (default 60)
BYTES take an optional K, M or G suffix (powers of 1024).";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub disk: Option<String>,
    pub scratch_offset: Option<i64>,
    pub scratch_len: u64,
    pub ops: u64,
    pub depths: Vec<usize>,
    pub clients: usize,
    pub quick: bool,
    pub seed: Option<u64>,
    pub case_timeout_s: u64,
    pub help: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            disk: None,
            scratch_offset: None,
            scratch_len: 1024 * 1024,
            ops: 512,
            depths: vec![1, 8, 32, 64],
            clients: 16,
            quick: false,
            seed: None,
            case_timeout_s: 60,
            help: false,
        }
    }
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Args, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Args::default();
    let mut it = args.into_iter().map(|s| s.as_ref().to_string());
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            out.help = true;
            continue;
        }
        if flag == "--quick" {
            out.quick = true;
            continue;
        }
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--disk" | "--device" => out.disk = Some(value()?),
            "--scratch-offset" => out.scratch_offset = Some(parse_bytes(&value()?)?),
            "--seed" => out.seed = Some(parse_u64(&flag, &value()?)?),
            "--case-timeout" => out.case_timeout_s = parse_count(&flag, &value()?)? as u64,
            "--scratch-len" | "--scratch-size" => {
                let len = parse_bytes(&value()?)?;
                if len <= 0 {
                    return Err("--scratch-len must be positive".into());
                }
                out.scratch_len = len as u64;
            }
            "--ops" => out.ops = parse_count(&flag, &value()?)? as u64,
            "--depths" => out.depths = parse_depths(&value()?)?,
            "--clients" => out.clients = parse_count(&flag, &value()?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.quick {
        out.ops = (out.ops / 5).max(1);
    }
    Ok(out)
}

/// A decimal or `0x` hexadecimal unsigned number.
pub fn parse_u64(flag: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| format!("{flag} needs a number, not {text:?}"))
}

/// `4096`, `-8M`, `1G`, `64k`: bytes with an optional binary suffix.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let lower = digits.to_ascii_lowercase();
    let lower = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower).to_string();
    let (number, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        _ => (lower.as_str(), 0),
    };
    let n: i64 = number.parse().map_err(|_| format!("not a byte count: {text:?}"))?;
    let n = n.checked_mul(1i64 << shift).ok_or_else(|| format!("byte count too large: {text:?}"))?;
    Ok(if negative { -n } else { n })
}

fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} needs a positive number, not {text:?}")),
    }
}

fn parse_depths(text: &str) -> Result<Vec<usize>, String> {
    let mut depths = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = parse_count("--depths", part)?;
        if d > 1024 {
            return Err(format!("depth {d} is too large (at most 1024 threads)"));
        }
        if !depths.contains(&d) {
            depths.push(d);
        }
    }
    if depths.is_empty() {
        return Err("--depths needs at least one depth".into());
    }
    Ok(depths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = parse(Vec::<String>::new()).unwrap();
        assert_eq!(a, Args::default());
        assert_eq!(a.depths, [1, 8, 32, 64]);
    }

    #[test]
    fn all_flags() {
        let a = parse([
            "--disk",
            "/scheme/disk.pci-00-00-04.0-nvme/1",
            "--scratch-offset",
            "-8M",
            "--ops=100",
            "--depths",
            "1, 4,4,16",
            "--scratch-len",
            "64k",
            "--clients",
            "3",
        ])
        .unwrap();
        assert_eq!(a.disk.as_deref(), Some("/scheme/disk.pci-00-00-04.0-nvme/1"));
        assert_eq!(a.scratch_offset, Some(-8 * 1024 * 1024));
        assert_eq!((a.ops, a.scratch_len, a.clients), (100, 65536, 3));
        assert_eq!(a.depths, [1, 4, 16]);
        assert!(!a.quick && a.seed.is_none() && a.case_timeout_s == 60);
    }

    #[test]
    fn shared_command_line_spellings() {
        let a = parse([
            "--device=/scheme/disk.x/1",
            "--scratch-size",
            "4M",
            "--quick",
            "--ops",
            "5000",
            "--seed",
            "0x35f022edb3815085",
            "--case-timeout",
            "30",
        ])
        .unwrap();
        assert_eq!(a.disk.as_deref(), Some("/scheme/disk.x/1"));
        assert_eq!(a.scratch_len, 4 << 20);
        assert_eq!(a.ops, 1000);
        assert_eq!(a.seed, Some(0x35f0_22ed_b381_5085));
        assert_eq!(a.case_timeout_s, 30);
        assert_eq!(parse(["--quick", "--ops", "3"]).unwrap().ops, 1);
        assert!(parse(["--seed", "x"]).is_err());
        assert!(parse(["--case-timeout", "0"]).is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2MiB"), Ok(2 << 20));
        assert_eq!(parse_bytes("-1m"), Ok(-(1 << 20)));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn errors() {
        assert!(parse(["--ops"]).unwrap_err().contains("needs a value"));
        assert!(parse(["--ops", "0"]).is_err());
        assert!(parse(["--depths", ","]).is_err());
        assert!(parse(["--depths", "4096"]).is_err());
        assert!(parse(["--frobnicate"]).unwrap_err().contains("unknown"));
        assert!(parse(["--scratch-len", "-4k"]).is_err());
        assert!(parse(["--help"]).unwrap().help);
    }
}

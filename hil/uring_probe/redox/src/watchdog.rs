//! The per-case guard hil's probe protocol asks for: a probe never waits forever. Before a case runs the
//! probe arms the watchdog with the case's number, name and time budget; when the budget runs out a
//! watchdog thread reports the case as `not ok N NAME # timed out after S s`, then `# probe aborted`, and
//! the probe ends (exit status 1). Reporting the case's own result first disarms it; the disarm takes
//! the same lock the watchdog holds while it fires, so a case is never reported twice.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Armed {
    pub number: usize,
    pub name: String,
    pub deadline_ns: u64,
    pub seconds: u64,
}

impl Armed {
    /// The lines the watchdog prints when this case runs out of time.
    pub fn expiry_lines(&self) -> String {
        format!("not ok {} {} # timed out after {} s\n# probe aborted\n", self.number, self.name, self.seconds)
    }
}

/// The lines to print if the armed case is past its deadline at `now_ns`.
pub fn expired(armed: Option<&Armed>, now_ns: u64) -> Option<String> {
    armed.filter(|a| now_ns >= a.deadline_ns).map(Armed::expiry_lines)
}

pub struct Watchdog {
    state: Arc<Mutex<Option<Armed>>>,
    clock: fn() -> u64,
}

impl Watchdog {
    /// Start the watchdog thread: every `poll` it checks the armed case; when that case has expired it
    /// calls `fire` with the lines to print, still holding the lock (so the case cannot report meanwhile).
    /// In the probe, `fire` prints and exits the process; if it returns, the watchdog disarms and goes on.
    pub fn spawn(clock: fn() -> u64, poll: Duration, fire: Box<dyn Fn(&str) + Send>) -> Watchdog {
        let state: Arc<Mutex<Option<Armed>>> = Arc::new(Mutex::new(None));
        let watched = state.clone();
        let _ = thread::Builder::new().name("watchdog".into()).stack_size(64 * 1024).spawn(move || loop {
            thread::sleep(poll);
            let mut armed = match watched.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(lines) = expired(armed.as_ref(), clock()) {
                fire(&lines);
                *armed = None;
            }
        });
        Watchdog { state, clock }
    }

    /// Guard case `number` `name` for `seconds` from now.
    pub fn arm(&self, number: usize, name: &str, seconds: u64) {
        let deadline_ns = (self.clock)().saturating_add(seconds.saturating_mul(1_000_000_000));
        *self.lock() = Some(Armed { number, name: name.to_string(), deadline_ns, seconds });
    }

    /// Stop guarding (call before printing the case's result).
    pub fn disarm(&self) {
        *self.lock() = None;
    }

    pub fn armed(&self) -> Option<Armed> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Armed>> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn expiry_text_and_deadline() {
        let armed = Armed { number: 6, name: "depth_8".into(), deadline_ns: 100, seconds: 60 };
        assert_eq!(expired(Some(&armed), 99), None);
        assert_eq!(
            expired(Some(&armed), 100).as_deref(),
            Some("not ok 6 depth_8 # timed out after 60 s\n# probe aborted\n")
        );
        assert_eq!(expired(None, u64::MAX), None);
    }

    fn clock() -> u64 {
        crate::os::monotonic_ns()
    }

    #[test]
    fn fires_once_for_an_expired_case_and_never_after_disarm() {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let dog = Watchdog::spawn(
            clock,
            Duration::from_millis(2),
            Box::new(move |lines: &str| {
                let _ = tx.lock().unwrap().send(lines.to_string());
            }),
        );
        dog.arm(3, "slow", 0);
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(got.starts_with("not ok 3 slow # timed out after 0 s\n"));
        assert_eq!(dog.armed(), None, "disarmed after firing");

        dog.arm(4, "fast", 3600);
        assert_eq!(dog.armed().map(|a| a.number), Some(4));
        dog.disarm();
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}

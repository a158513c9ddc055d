//! `--memory`, `--timeout` and `--fuel`: what a guest may use, and how `run` tells that it
//! hit a limit.
//!
//! - `--memory` caps each linear memory through a `ResourceLimiter`: a `memory.grow` past
//!   it fails (returns -1) as on a full machine, so `malloc` returns NULL and most programs
//!   abort. When a guest that was refused memory then fails, `run` says so.
//! - `--timeout` uses epoch interruption (compiled into every module by the one engine): a
//!   watchdog thread advances the engine's epoch at the deadline, and the guest traps at its
//!   next check.
//! - `--fuel` uses wasmtime's fuel metering, which an engine of its own compiles in.

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Exit status when `--timeout` stopped the guest, as GNU `timeout` reports it.
pub(super) const TIMEOUT_EXIT: u8 = 124;

/// Exit status when the guest used up its `--fuel`: what a shell reports for a process
/// stopped at its CPU-time limit (128 + SIGXCPU), the nearest thing to fuel. Not 125,
/// which Docker and GNU `timeout` use for a failure of their own; and, like 134 for a
/// trap, out of a guest's reach (WASI exit statuses stop at 125).
pub(super) const OUT_OF_FUEL_EXIT: u8 = 152;

/// `--memory`: a size in bytes (`64m`: 64 MiB, as Docker counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySize {
    pub bytes: usize,
    spelled: String,
}

impl FromStr for MemorySize {
    type Err = String;

    /// Digits with an optional unit: `b`, `k`, `m` or `g` (also `kb`, `mib`, … and upper
    /// case), each 1024 times the one before.
    fn from_str(text: &str) -> Result<MemorySize, String> {
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let shift = match unit {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => {
                return Err(format!(
                    "expected a size like 64m (b, k, m or g), not `{text}`"
                ));
            }
        };
        let number: usize = number
            .parse()
            .map_err(|_| format!("expected a size like 64m (b, k, m or g), not `{text}`"))?;
        let bytes = number
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("`{text}` is too large"))?;
        if bytes == 0 {
            return Err("the memory limit must be more than 0".to_owned());
        }
        Ok(MemorySize {
            bytes,
            spelled: text.to_owned(),
        })
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spelled)
    }
}

/// `--timeout`: a duration (`30s`, `500ms`, `2m`, `1h`; a bare number is seconds, as for
/// GNU `timeout`).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeout {
    pub duration: Duration,
    spelled: String,
}

impl FromStr for Timeout {
    type Err = String;

    fn from_str(text: &str) -> Result<Timeout, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "expected a duration like 30s (ms, s, m or h), not `{text}`"
                ));
            }
        };
        let number: f64 = number
            .parse()
            .map_err(|_| format!("expected a duration like 30s (ms, s, m or h), not `{text}`"))?;
        let duration = Duration::try_from_secs_f64(number * seconds_per_unit)
            .map_err(|_| format!("`{text}` is out of range"))?;
        if duration.is_zero() {
            return Err("the timeout must be more than 0".to_owned());
        }
        Ok(Timeout {
            duration,
            spelled: text.to_owned(),
        })
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spelled)
    }
}

/// The limits of one run, as the flags gave them.
#[derive(Debug, Clone, Default)]
pub(super) struct Limits {
    pub memory: Option<MemorySize>,
    pub timeout: Option<Timeout>,
    pub fuel: Option<u64>,
}

pub(super) fn timeout_message(timeout: &Timeout) -> String {
    format!("the guest ran for longer than --timeout {timeout}")
}

pub(super) fn memory_message(memory: &MemorySize) -> String {
    format!("the guest exceeded --memory {memory}")
}

pub(super) fn fuel_message(fuel: u64) -> String {
    format!("the guest ran out of fuel (--fuel {fuel})")
}

/// The store's `ResourceLimiter`: wasmtime's [`StoreLimits`] with `--memory` as its memory
/// size, remembering whether it refused the guest memory so a failure after that can be
/// put down to the limit.
pub(super) struct MemoryLimiter {
    limits: StoreLimits,
    cap: Option<usize>,
    refused: bool,
}

impl MemoryLimiter {
    pub(super) fn new(memory: Option<&MemorySize>) -> MemoryLimiter {
        let mut limits = StoreLimitsBuilder::new();
        if let Some(memory) = memory {
            limits = limits.memory_size(memory.bytes);
        }
        MemoryLimiter {
            limits: limits.build(),
            cap: memory.map(|m| m.bytes),
            refused: false,
        }
    }

    /// Whether a memory grew, or was to be created, past `--memory` and was refused.
    pub(super) fn refused(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed && self.cap.is_some_and(|cap| desired > cap) {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// How long a guest past its deadline may take to reach an epoch check before the watchdog
/// ends the process itself.
const GRACE: Duration = Duration::from_millis(250);

/// Stops a guest that runs past `--timeout`. At the deadline it advances the engine's
/// epoch, and wasm code traps at its next check (a loop's back edge, a function's entry),
/// which `run` reports. A guest blocked in a host call (reading stdin, sleeping) reaches
/// no check: if it has not returned a moment later, the watchdog reports the timeout and
/// ends the process with the same status.
pub(super) struct Watchdog {
    /// Dropped with the watchdog, which wakes the thread to end.
    _returned: mpsc::Sender<()>,
    /// Set when the guest has returned: from then on, `run` says how the guest ended.
    done: Arc<Mutex<bool>>,
}

impl Watchdog {
    pub(super) fn start(engine: &Engine, timeout: &Timeout) -> Watchdog {
        let (returned, waiting) = mpsc::channel::<()>();
        let done = Arc::new(Mutex::new(false));
        let engine = engine.clone();
        let (duration, message) = (timeout.duration, timeout_message(timeout));
        let watching = Arc::clone(&done);
        std::thread::spawn(move || {
            if waiting.recv_timeout(duration) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            engine.increment_epoch();
            if waiting.recv_timeout(GRACE) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            let done = watching.lock().unwrap_or_else(PoisonError::into_inner);
            if !*done {
                eprintln!("error: {message}");
                std::process::exit(TIMEOUT_EXIT.into());
            }
        });
        Watchdog {
            _returned: returned,
            done,
        }
    }
}

/// Dropped when the guest has returned (or trapped): the watchdog ends without a word.
impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_count_in_kibibytes_mebibytes_gibibytes() {
        let bytes = |text: &str| text.parse::<MemorySize>().map(|m| m.bytes);
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("512b"), Ok(512));
        assert_eq!(bytes("64k"), Ok(64 << 10));
        assert_eq!(bytes("64m"), Ok(64 << 20));
        assert_eq!(bytes("64MB"), Ok(64 << 20));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert_eq!(bytes("2g"), Ok(2 << 30));
        assert!(bytes("0m").unwrap_err().contains("more than 0"));
        assert!(bytes("64q").unwrap_err().contains("not `64q`"));
        assert!(bytes("m").is_err());
        assert!(bytes("1.5g").is_err());
        assert_eq!("64M".parse::<MemorySize>().unwrap().to_string(), "64M");
    }

    #[test]
    fn timeouts_take_ms_s_m_h() {
        let duration = |text: &str| text.parse::<Timeout>().map(|t| t.duration);
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration("0s").unwrap_err().contains("more than 0"));
        assert!(duration("5d").unwrap_err().contains("not `5d`"));
        assert!(duration("s").is_err());
        assert_eq!(
            timeout_message(&"30s".parse().unwrap()),
            "the guest ran for longer than --timeout 30s"
        );
    }

    #[test]
    fn the_limiter_remembers_refusing_memory_past_the_cap_only() {
        let mut limiter = MemoryLimiter::new(Some(&"1m".parse().unwrap()));
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!limiter.refused());
        // Past the module's own maximum: refused, but not for --memory.
        assert!(!limiter.memory_growing(0, 1 << 19, Some(1 << 18)).unwrap());
        assert!(!limiter.refused());
        assert!(
            !limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert!(limiter.refused());

        let mut unlimited = MemoryLimiter::new(None);
        assert!(unlimited.memory_growing(0, 1 << 31, None).unwrap());
        assert!(!unlimited.refused());
    }
}

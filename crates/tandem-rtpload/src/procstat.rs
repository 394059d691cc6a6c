//! CPU time and memory of a process (the relay, or this generator) from /proc.

use std::fs;

use crate::sys;

/// A process to sample: a pid, or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// This process (`/proc/self`).
    Own,
    /// Another process by pid.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Own => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// User plus system CPU time of the whole process (all threads), in seconds; `None` if the
    /// process is gone or the file is unreadable.
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = fs::read_to_string(self.path("stat")).ok()?;
        // Fields after the parenthesised command name: state(3) ... utime(14) stime(15).
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some((utime + stime) as f64 / sys::clock_ticks_per_second() as f64)
    }

    /// Resident and proportional set sizes in KiB (`VmRSS` of status, `Pss` of smaps_rollup).
    pub fn memory(self) -> Option<Memory> {
        let status = fs::read_to_string(self.path("status")).ok()?;
        let rss_kib = kib_field(&status, "VmRSS:")?;
        let pss_kib = fs::read_to_string(self.path("smaps_rollup"))
            .ok()
            .and_then(|rollup| kib_field(&rollup, "Pss:"))
            .unwrap_or(0);
        Some(Memory { rss_kib, pss_kib })
    }
}

/// A memory sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Proportional set size, KiB (0 where smaps_rollup is unavailable).
    pub pss_kib: u64,
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    line[name.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_process_is_readable() {
        assert!(Proc::Own.cpu_seconds().unwrap() >= 0.0);
        let mem = Proc::Own.memory().unwrap();
        assert!(mem.rss_kib > 0);
    }

    #[test]
    fn kib_fields() {
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        assert_eq!(kib_field("Pss:  7 kB", "VmRSS:"), None);
    }
}

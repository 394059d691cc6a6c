//! Child processes that are killed by pid when dropped, and waits with deadlines.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often the waits below look at the condition they wait for.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(deadline: Instant, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// A child process owned by a test. Dropping it kills the process by pid (SIGKILL, or for a process
/// group leader such as Kamailio: SIGTERM to the leader, then SIGKILL to its group) and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    own_group: bool,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `command` with stdout/stderr sent to `<log_dir>/<name>.stdout.log` / `.stderr.log` and
    /// stdin closed. With `own_group`, the child leads a new process group (for programs that fork
    /// workers, so that none outlives the test).
    pub fn spawn(
        name: &str,
        mut command: Command,
        log_dir: &Path,
        own_group: bool,
    ) -> Result<ChildGuard> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let stdout_log = log_dir.join(format!("{name}.stdout.log"));
        let stderr_log = log_dir.join(format!("{name}.stderr.log"));
        command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_log)?)
            .stderr(File::create(&stderr_log)?);
        if own_group {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            own_group,
            stdout_log,
            stderr_log,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Name given at spawn (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// File receiving the child's stdout.
    pub fn stdout_log(&self) -> &Path {
        &self.stdout_log
    }

    /// File receiving the child's stderr.
    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// The exit status if the process has ended (reaps it).
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits for the process to end; `None` if it is still running at `deadline`.
    pub fn wait_until(&mut self, deadline: Instant) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Sends a signal by name (`USR1`, `TERM`, `INT`, `KILL`) to this process only.
    pub fn signal(&mut self, signal: &str) -> Result<()> {
        if self.try_status()?.is_some() {
            return Ok(());
        }
        send_signal(signal, &self.pid().to_string())
    }

    /// The last `max_lines` lines of the child's stderr (for failure messages).
    pub fn stderr_tail(&self, max_lines: usize) -> String {
        file_tail(&self.stderr_log, max_lines)
    }

    fn kill_now(&mut self) {
        if !matches!(self.try_status(), Ok(None)) {
            return;
        }
        if self.own_group {
            // the leader stops its workers on SIGTERM; the group kill catches any that linger
            let _ = send_signal("TERM", &self.pid().to_string());
            if let Ok(Some(_)) = self.wait_until(Instant::now() + Duration::from_secs(3)) {
                let _ = send_signal("KILL", &format!("-{}", self.pid()));
                return;
            }
            let _ = send_signal("KILL", &format!("-{}", self.pid()));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// `kill -s SIGNAL TARGET` (TARGET is a pid, or `-PGID` for a process group).
fn send_signal(signal: &str, target: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -s {signal} {target} failed");
    }
    Ok(())
}

/// The last `max_lines` lines of a text file (at most the last 64 KiB are read); empty if unreadable.
pub fn file_tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

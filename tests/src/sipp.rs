//! Running SIPp as a caller (UAC) or as a media server (UAS) and reading its results.
//!
//! Every SIPp runs in its own log folder (its working directory) with `-trace_err -trace_msg
//! -trace_stat -trace_counts -trace_screen -trace_logs`, so after a failure the folder holds the
//! unexpected messages (`*_errors.log`), every message (`*_messages.log`) and the final statistics.

use crate::ports::{free_port, free_port_block, is_free_on};
use crate::process::{file_tail, wait_for, ChildGuard};
use crate::workdir::scenario_path;
use crate::{IpFamily, Transport};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A SIPp command line being put together.
#[derive(Debug, Clone)]
pub struct Sipp {
    role: String,
    scenario: PathBuf,
    remote: Option<SocketAddr>,
    transport: Transport,
    family: IpFamily,
    port: u16,
    media_port: u16,
    calls: Option<u32>,
    rate: Option<u32>,
    limit: Option<u32>,
    service: String,
    timeout: Duration,
    rtp_echo: bool,
    extra: Vec<String>,
}

impl Sipp {
    fn new(role: &str, scenario: &str, remote: Option<SocketAddr>) -> Sipp {
        Sipp {
            role: role.to_owned(),
            scenario: scenario_path(scenario),
            remote,
            transport: Transport::Udp,
            family: remote.map(|r| IpFamily::of(r.ip())).unwrap_or_default(),
            port: free_port(),
            media_port: free_port_block(4),
            calls: None,
            rate: None,
            limit: None,
            service: "100".to_owned(),
            timeout: Duration::from_secs(20),
            rtp_echo: false,
            extra: Vec::new(),
        }
    }

    /// A caller running `scenario` (a file in tests/scenarios) toward `target`. `role` names it in
    /// messages and names its log folder ("caller").
    pub fn uac(role: &str, scenario: &str, target: SocketAddr) -> Sipp {
        Sipp::new(role, scenario, Some(target)).calls(1)
    }

    /// A media server running `scenario`; it takes calls until [`SippProcess::finish`].
    pub fn uas(role: &str, scenario: &str) -> Sipp {
        Sipp::new(role, scenario, None)
    }

    /// Transport (default UDP).
    pub fn transport(mut self, transport: Transport) -> Sipp {
        self.transport = transport;
        self
    }

    /// Loopback address it listens on and puts in its messages and SDP (`-i`, `-mi`). Default: a
    /// caller's is the family of its target, a media server's 127.0.0.1.
    pub fn family(mut self, family: IpFamily) -> Sipp {
        self.family = family;
        self
    }

    /// Local SIP port (default: a free one).
    pub fn port(mut self, port: u16) -> Sipp {
        self.port = port;
        self
    }

    /// Number of calls after which a caller stops (`-m`).
    pub fn calls(mut self, calls: u32) -> Sipp {
        self.calls = Some(calls);
        self
    }

    /// New calls per second (`-r`).
    pub fn rate(mut self, calls_per_second: u32) -> Sipp {
        self.rate = Some(calls_per_second);
        self
    }

    /// Most calls at once (`-l`); 1 makes the calls one after another.
    pub fn limit(mut self, calls: u32) -> Sipp {
        self.limit = Some(calls);
        self
    }

    /// User part of the Request-URI (`-s`, default "100").
    pub fn service(mut self, service: &str) -> Sipp {
        self.service = service.to_owned();
        self
    }

    /// SIPp's own global timeout (`-timeout`); a caller also fails when it is reached.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// Echo RTP received on the media port (`-rtp_echo`).
    pub fn rtp_echo(mut self) -> Sipp {
        self.rtp_echo = true;
        self
    }

    /// Any further SIPp argument.
    pub fn arg(mut self, arg: &str) -> Sipp {
        self.extra.push(arg.to_owned());
        self
    }

    /// The SIP address this SIPp listens on.
    pub fn addr(&self) -> SocketAddr {
        self.family.addr(self.port)
    }

    /// The RTP port of its SDP (`-mp`).
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// The full argument list.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(remote) = self.remote {
            args.push(remote.to_string());
        }
        let control_port = free_port();
        let ip = self.family.loopback().to_string();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));
        push(&["-sf", &self.scenario.to_string_lossy()]);
        push(&["-i", &ip, "-p", &self.port.to_string()]);
        push(&["-mi", &ip, "-mp", &self.media_port.to_string()]);
        push(&["-cp", &control_port.to_string()]);
        push(&["-t", self.transport.sipp_mode(), "-s", &self.service]);
        push(&["-timeout", &format!("{}s", self.timeout.as_secs().max(1))]);
        push(&[
            "-nostdin",
            "-fd",
            "1",
            "-stf",
            "stat.csv",
            "-trace_stat",
            "-trace_counts",
        ]);
        push(&["-trace_err", "-trace_msg", "-trace_screen", "-trace_logs"]);
        if self.remote.is_some() {
            push(&["-timeout_error"]);
        }
        if let Some(calls) = self.calls {
            push(&["-m", &calls.to_string()]);
        }
        if let Some(rate) = self.rate {
            push(&["-r", &rate.to_string()]);
        }
        if let Some(limit) = self.limit {
            push(&["-l", &limit.to_string()]);
        }
        if self.rtp_echo {
            push(&["-rtp_echo"]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts SIPp with its logs in `<dir>/<role>/`. A media server is waited for until it has bound
    /// its SIP port (at most 5 s).
    pub fn spawn(self, dir: &Path) -> Result<SippProcess> {
        let log_dir = dir.join(&self.role);
        std::fs::create_dir_all(&log_dir)?;
        let mut command = Command::new("sipp");
        command.args(self.args()).current_dir(&log_dir);
        let guard = ChildGuard::spawn("sipp", command, &log_dir, false)?;
        let mut process = SippProcess {
            guard,
            role: self.role.clone(),
            scenario: self.scenario_name(),
            log_dir,
            addr: self.addr(),
            media_port: self.media_port,
        };
        if self.remote.is_none() {
            process.wait_listening(Instant::now() + Duration::from_secs(5))?;
        }
        Ok(process)
    }

    fn scenario_name(&self) -> String {
        self.scenario
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A running SIPp.
#[derive(Debug)]
pub struct SippProcess {
    guard: ChildGuard,
    role: String,
    scenario: String,
    log_dir: PathBuf,
    addr: SocketAddr,
    media_port: u16,
}

impl SippProcess {
    /// The SIP address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The RTP port of its SDP.
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// Its log folder.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Its role ("caller", "ms1", ...).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The media address of the SDP in the first message it received whose start line begins with
    /// `start` (e.g. "INVITE", "SIP/2.0 200"), read from its messages log while it runs; see
    /// [`received_media`].
    pub fn received_media(&self, start: &str) -> Option<SocketAddr> {
        received_media(&self.log_dir, start)
    }

    /// Waits until [`SippProcess::received_media`] finds the message (or `deadline`, or SIPp exits).
    pub fn wait_received_media(&mut self, start: &str, deadline: Instant) -> Option<SocketAddr> {
        wait_for(deadline, || {
            let media = self.received_media(start).map(Some);
            media.or_else(|| (!self.guard.is_running()).then_some(None))
        })
        .flatten()
    }

    fn wait_listening(&mut self, deadline: Instant) -> Result<()> {
        let addr = self.addr;
        let bound = wait_for(deadline, || {
            (!is_free_on(addr) || !self.guard.is_running()).then_some(())
        });
        if bound.is_none() || !self.guard.is_running() {
            anyhow::bail!(
                "{} SIPp ({}) did not start listening on {}: {}\nlogs: {}",
                self.role,
                self.scenario,
                self.addr,
                file_tail(self.guard.stdout_log(), 5),
                self.log_dir.display()
            );
        }
        Ok(())
    }

    /// Waits until SIPp exits by itself (a caller after its calls), killing it at `deadline`.
    pub fn wait(mut self, deadline: Instant) -> Result<SippOutcome> {
        let status = self.guard.wait_until(deadline)?;
        let timed_out = status.is_none();
        if timed_out {
            let _ = self.guard.signal("KILL");
            let _ = self
                .guard
                .wait_until(Instant::now() + Duration::from_secs(2));
        }
        Ok(self.outcome(status.and_then(|s| s.code()), timed_out))
    }

    /// Asks SIPp to stop taking new calls and to exit once its calls in progress are over (SIGUSR1),
    /// then waits for it as [`SippProcess::wait`] does. Used for media servers.
    pub fn finish(mut self, deadline: Instant) -> Result<SippOutcome> {
        self.guard.signal("USR1").context("stopping SIPp")?;
        self.wait(deadline)
    }

    fn outcome(&self, exit_code: Option<i32>, timed_out: bool) -> SippOutcome {
        let stats = find_file(&self.log_dir, "stat.csv")
            .and_then(|p| SippStats::parse(&p))
            .unwrap_or_default();
        let counts = find_file(&self.log_dir, "_counts.csv").and_then(|p| MessageCounts::parse(&p));
        SippOutcome {
            role: self.role.clone(),
            scenario: self.scenario.clone(),
            exit_code,
            timed_out,
            stats,
            counts: counts.unwrap_or_default(),
            log_dir: self.log_dir.clone(),
        }
    }
}

/// Cumulative statistics from SIPp's `-trace_stat` file (last line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SippStats {
    /// Calls created (incoming and outgoing).
    pub created: u64,
    /// Calls that ran to the end of the scenario.
    pub successful: u64,
    /// Calls that failed, all reasons.
    pub failed: u64,
    /// Non-zero failure counters by name ("FailedUnexpectedMessage", ...).
    pub failure_kinds: Vec<(String, u64)>,
    /// Messages that matched no call.
    pub out_of_call: u64,
    /// Retransmissions SIPp sent.
    pub retransmissions: u64,
}

impl SippStats {
    /// Parses a `-trace_stat` CSV (`;`-separated; header line, then one line per dump).
    pub fn parse(path: &Path) -> Option<SippStats> {
        let row = last_csv_row(path)?;
        let get = |name: &str| -> u64 {
            row.iter()
                .find(|(h, _)| h == name)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let failure_kinds = row
            .iter()
            .filter(|(h, _)| h.starts_with("Failed") && h.ends_with("(C)") && h != "FailedCall(C)")
            .map(|(h, _)| (h.trim_end_matches("(C)").to_owned(), get(h)))
            .filter(|(_, n)| *n > 0)
            .collect();
        Some(SippStats {
            created: get("TotalCallCreated"),
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
            failure_kinds,
            out_of_call: get("OutOfCallMsgs(C)"),
            retransmissions: get("Retransmissions(C)"),
        })
    }
}

/// Per-message counters from SIPp's `-trace_counts` file (last line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    columns: Vec<(String, u64)>,
}

impl MessageCounts {
    /// Parses a `-trace_counts` CSV: columns such as `1_INVITE_Recv`, `2_180_Sent`.
    pub fn parse(path: &Path) -> Option<MessageCounts> {
        let columns = last_csv_row(path)?
            .into_iter()
            .map(|(h, v)| (h, v.trim().parse().unwrap_or(0)))
            .collect();
        Some(MessageCounts { columns })
    }

    /// The count of the first scenario step that receives `method` (e.g. the initial INVITE).
    pub fn first_received(&self, method: &str) -> u64 {
        let suffix = format!("_{method}_Recv");
        self.columns
            .iter()
            .find(|(name, _)| name.ends_with(&suffix))
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

/// How many INVITEs a media server should have received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invites {
    /// Exactly this many.
    Exactly(u64),
    /// At least this many.
    AtLeast(u64),
}

/// What one SIPp run ended with.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// Its role ("caller", "ms1", ...).
    pub role: String,
    /// Scenario file name.
    pub scenario: String,
    /// Exit code: 0 all calls successful, 1 some failed, 97 stopped by command, 99 no call processed,
    /// 255 fatal error or `-timeout` reached with `-timeout_error`.
    pub exit_code: Option<i32>,
    /// Whether the harness had to kill it at its deadline.
    pub timed_out: bool,
    /// Final statistics.
    pub stats: SippStats,
    /// Final per-message counts.
    pub counts: MessageCounts,
    /// Its log folder.
    pub log_dir: PathBuf,
}

impl SippOutcome {
    /// As [`SippProcess::received_media`], after the run.
    pub fn received_media(&self, start: &str) -> Option<SocketAddr> {
        received_media(&self.log_dir, start)
    }

    /// Ok if a caller placed `calls` calls and all of them succeeded.
    pub fn check_caller(&self, calls: u64) -> std::result::Result<(), String> {
        if !self.timed_out
            && self.exit_code == Some(0)
            && self.stats.successful == calls
            && self.stats.failed == 0
        {
            return Ok(());
        }
        Err(self.describe(&format!("expected {calls} successful call(s)")))
    }

    /// Ok if a media server ended without failed calls and received the expected INVITEs (health
    /// probes are calls of their own there and count as successful calls).
    pub fn check_server(&self, invites: Invites) -> std::result::Result<(), String> {
        let got = self.counts.first_received("INVITE");
        let invites_ok = match invites {
            Invites::Exactly(n) => got == n,
            Invites::AtLeast(n) => got >= n,
        };
        let exit_ok = matches!(self.exit_code, Some(0) | Some(99));
        if !self.timed_out && exit_ok && self.stats.failed == 0 && invites_ok {
            return Ok(());
        }
        Err(self.describe(&format!("expected {invites:?} INVITE(s), got {got}")))
    }

    /// A multi-line account of the run for failure messages: what was expected, the exit code, the
    /// counters, the start of the unexpected-message log and where all logs are.
    pub fn describe(&self, expectation: &str) -> String {
        let mut text = format!(
            "{} SIPp ({}) FAILED: {expectation}; exit code {}{}; calls created {}, successful {}, failed {}",
            self.role,
            self.scenario,
            self.exit_code.map_or("none".to_owned(), |c| c.to_string()),
            if self.timed_out { " (killed at the harness deadline)" } else { "" },
            self.stats.created,
            self.stats.successful,
            self.stats.failed,
        );
        for (kind, n) in &self.stats.failure_kinds {
            let _ = write!(text, ", {kind}={n}");
        }
        if let Some(errors) = find_file(&self.log_dir, "_errors.log") {
            let head: Vec<String> = std::fs::read_to_string(&errors)
                .unwrap_or_default()
                .lines()
                .take(20)
                .map(str::to_owned)
                .collect();
            if !head.is_empty() {
                let _ = write!(
                    text,
                    "\n    first lines of {}:\n      {}",
                    errors.display(),
                    head.join("\n      ")
                );
            }
        }
        let _ = write!(text, "\n    logs: {}", self.log_dir.display());
        text
    }
}

/// The media address (the `c=` address and the `m=audio` port of its SDP) of the first message a
/// SIPp received whose start line begins with `start`, from the messages log (`-trace_msg`) in
/// `log_dir`, which SIPp writes as messages come: blocks of a dashed line, "UDP message received
/// [n] bytes :" (or "sent"), an empty line and the message.
pub fn received_media(log_dir: &Path, start: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(find_file(log_dir, "_messages.log")?).ok()?;
    text.split("\n-----------------------------------------------")
        .filter_map(|block| {
            let (head, message) = block.split_once("\n\n")?;
            if !head.contains("message received") || !message.trim_start().starts_with(start) {
                return None;
            }
            let line = |prefix: &str| {
                message
                    .lines()
                    .find_map(|l| l.trim_end().strip_prefix(prefix).map(str::to_owned))
            };
            let address = line("c=IN IP4 ").or_else(|| line("c=IN IP6 "))?;
            let port = line("m=audio ")?;
            let port = port.split_whitespace().next()?;
            Some(SocketAddr::new(
                address.parse::<IpAddr>().ok()?,
                port.parse().ok()?,
            ))
        })
        .next()
}

/// The last line of one of SIPp's `;`-separated CSV files, paired with the header line's names.
fn last_csv_row(path: &Path) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next()?;
    let last = lines.next_back()?;
    Some(
        header
            .split(';')
            .map(str::to_owned)
            .zip(last.split(';').map(str::to_owned))
            .collect(),
    )
}

/// The first file in `dir` whose name ends with `suffix`.
pub fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().ends_with(suffix))
                .unwrap_or(false)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_line_of_the_stat_and_counts_files() {
        let dir = std::env::temp_dir().join(format!("tandem-sipp-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stat = dir.join("stat.csv");
        std::fs::write(
            &stat,
            "TotalCallCreated;SuccessfulCall(C);FailedCall(C);FailedUnexpectedMessage(C);FailedTcpClosed(C);OutOfCallMsgs(C)\n\
             1;0;0;0;0;0\n3;1;2;2;0;4\n",
        )
        .unwrap();
        let stats = SippStats::parse(&stat).unwrap();
        assert_eq!(
            (
                stats.created,
                stats.successful,
                stats.failed,
                stats.out_of_call
            ),
            (3, 1, 2, 4)
        );
        assert_eq!(
            stats.failure_kinds,
            vec![("FailedUnexpectedMessage".to_owned(), 2)]
        );

        let counts = dir.join("x_counts.csv");
        std::fs::write(
            &counts,
            "CurrentTime;0_OPTIONS_Recv;1_INVITE_Recv;5_INVITE_Recv\nt;0;0;0\nt;7;2;1\n",
        )
        .unwrap();
        let counts = MessageCounts::parse(&counts).unwrap();
        assert_eq!(counts.first_received("INVITE"), 2);
        assert_eq!(counts.first_received("OPTIONS"), 7);
        assert_eq!(counts.first_received("BYE"), 0);

        std::fs::write(
            dir.join("uac_listen_1_messages.log"),
            "----------------------------------------------- 2026-11-21 15:06:53.658311\n\
             UDP message sent (618 bytes):\n\nINVITE sip:100@127.0.0.1:5060 SIP/2.0\nCall-ID: 1\n\n\
             v=0\nc=IN IP4 127.0.0.1\nm=audio 22000 RTP/AVP 8\n\n\
             ----------------------------------------------- 2026-11-21 15:06:53.658434\n\
             UDP message received [320] bytes :\n\nSIP/2.0 180 Ringing\nCall-ID: 1\n\n\
             ----------------------------------------------- 2026-11-21 15:06:53.758434\n\
             UDP message received [520] bytes :\n\nSIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n\
             v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 10000 RTP/AVP 8\r\n\n",
        )
        .unwrap();
        assert_eq!(
            received_media(&dir, "SIP/2.0 200"),
            Some("127.0.0.1:10000".parse().unwrap())
        );
        assert_eq!(received_media(&dir, "INVITE"), None, "sent, not received");
        assert_eq!(received_media(&dir, "SIP/2.0 180"), None, "no SDP");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

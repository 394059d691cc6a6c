//! Command-line arguments (hand-rolled, like `tandem`'s: a handful of options need no parser
//! crate). Global options may stand before or after the command.

use std::ffi::OsString;
use std::time::Duration;

/// Exit code for bad usage (`EX_USAGE` of sysexits.h).
pub const EXIT_USAGE: u8 = 64;
/// Where Tandem's admin gRPC API listens unless `--addr` or `TANDEM_ADMIN` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9091";
/// The environment variable naming the admin address.
pub const ADDR_ENV: &str = "TANDEM_ADMIN";
/// How long a command waits for Tandem unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `help` text.
pub const USAGE: &str = "\
tandemctl: operate a Tandem node through its admin gRPC API

Usage:
  tandemctl [--addr HOST:PORT] [--timeout DURATION] [--json] <command>

Commands:
  status                 role, epoch, peer, replication, calls, draining, last incident
  promote [--force] [--reason TEXT]
                         make this node active (--force: even when its mirror is not synced;
                         --reason: who asks and why, kept in the incident)
  demote [--reason TEXT] make this node standby
  switchover             planned handover of the active role to the peer
  drain on|off           refuse new calls with 503 (on) or accept them again (off)
  calls [--limit N]      established calls (N = 0 or absent: all)
  incidents [--limit N]  role changes and takeovers as timelines, newest first
  help                   this text

Options:
  --addr HOST:PORT       admin gRPC address (default: $TANDEM_ADMIN, else 127.0.0.1:9091)
  --timeout DURATION     wait at most this long for Tandem: 5, 2.5s, 500ms (default 5s)
  --json                 machine-readable output, one JSON document
  --version              print tandemctl's version

Exit codes: 0 done, 1 refused by Tandem, 2 Tandem cannot be reached, 64 usage error.
";

/// What to ask Tandem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `promote [--force] [--reason TEXT]`.
    Promote { force: bool, reason: String },
    /// `demote [--reason TEXT]`.
    Demote { reason: String },
    /// `switchover`.
    Switchover,
    /// `drain on|off`.
    Drain { enable: bool },
    /// `calls [--limit N]`.
    Calls { limit: u32 },
    /// `incidents [--limit N]`.
    Incidents { limit: u32 },
}

/// A whole command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Print usage.
    Help,
    /// Print the version.
    Version,
    /// Ask Tandem something.
    Run(Run),
}

/// A request for Tandem and how to send it and show the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `host:port` of the admin gRPC API.
    pub addr: String,
    /// Bound on connecting and answering.
    pub timeout: Duration,
    /// Print JSON instead of text.
    pub json: bool,
    /// What to ask.
    pub command: Command,
}

/// A command line that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// No command was given.
    #[error("no command given")]
    NoCommand,
    /// A word that is no command of tandemctl.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// An option that is not known, or not known to this command.
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    /// A word after the command that it does not take.
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
    /// An option that takes a value was last.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A value that does not fit its option.
    #[error("{option}: {value:?} is not {expected}")]
    BadValue {
        /// The option (or command) concerned.
        option: &'static str,
        /// What was given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl Invocation {
    /// Parses the arguments after the program name; `env_addr` is `$TANDEM_ADMIN` if set.
    pub fn parse(
        args: impl IntoIterator<Item = OsString>,
        env_addr: Option<String>,
    ) -> Result<Invocation, UsageError> {
        let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
        let mut addr = env_addr.filter(|a| !a.is_empty());
        let mut timeout = DEFAULT_TIMEOUT;
        let mut json = false;
        let mut force = None;
        let mut reason = None;
        let mut limit = None;
        let mut words = Vec::new();
        while let Some(arg) = args.next() {
            let (option, inline) = match arg.split_once('=') {
                Some((option, value)) if option.starts_with("--") => {
                    (option.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &'static str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(UsageError::MissingValue(name))
            };
            match option.as_str() {
                "-h" | "--help" => return Ok(Invocation::Help),
                "-V" | "--version" => return Ok(Invocation::Version),
                "--json" => json = true,
                "--force" => force = Some(arg),
                "--reason" => reason = Some((arg, value("--reason")?)),
                "--addr" => addr = Some(check_addr(value("--addr")?)?),
                "--timeout" => timeout = parse_timeout(&value("--timeout")?)?,
                "--limit" => {
                    let text = value("--limit")?;
                    let n = text.parse().map_err(|_| UsageError::BadValue {
                        option: "--limit",
                        value: text,
                        expected: "a count",
                    })?;
                    limit = Some((arg, n));
                }
                _ if option.starts_with('-') && option.len() > 1 => {
                    return Err(UsageError::UnknownOption(arg));
                }
                _ => words.push(arg),
            }
        }
        let mut words = words.into_iter();
        let name = words.next().ok_or(UsageError::NoCommand)?;
        let command = match name.as_str() {
            "help" => return Ok(Invocation::Help),
            "status" => Command::Status,
            "promote" => Command::Promote {
                force: force.take().is_some(),
                reason: reason.take().map(|(_, text)| text).unwrap_or_default(),
            },
            "demote" => Command::Demote {
                reason: reason.take().map(|(_, text)| text).unwrap_or_default(),
            },
            "switchover" => Command::Switchover,
            "drain" => {
                let switch = words.next().ok_or(UsageError::MissingValue("drain"))?;
                let enable = match switch.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(UsageError::BadValue {
                            option: "drain",
                            value: switch,
                            expected: "on or off",
                        })
                    }
                };
                Command::Drain { enable }
            }
            "calls" | "incidents" => {
                let limit = limit.take().map_or(0, |(_, n)| n);
                if name == "calls" {
                    Command::Calls { limit }
                } else {
                    Command::Incidents { limit }
                }
            }
            _ => return Err(UsageError::UnknownCommand(name)),
        };
        if let Some(extra) = words.next() {
            return Err(UsageError::Unexpected(extra));
        }
        let unused = force
            .or(limit.map(|(option, _)| option))
            .or(reason.map(|(option, _)| option));
        if let Some(option) = unused {
            return Err(UsageError::UnknownOption(option));
        }
        Ok(Invocation::Run(Run {
            addr: addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            timeout,
            json,
            command,
        }))
    }
}

/// Accepts `host:port` (a name, an IPv4 address or a bracketed IPv6 address), optionally written
/// as an `http://` URL.
fn check_addr(addr: String) -> Result<String, UsageError> {
    let bare = addr.strip_prefix("http://").unwrap_or(&addr);
    let valid = bare.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if valid {
        Ok(bare.to_owned())
    } else {
        Err(UsageError::BadValue {
            option: "--addr",
            value: addr,
            expected: "HOST:PORT",
        })
    }
}

/// `5`, `2.5` (seconds), `2.5s` or `500ms`; more than zero.
fn parse_timeout(text: &str) -> Result<Duration, UsageError> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|secs| secs.is_finite() && *secs > 0.0 && *secs < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| UsageError::BadValue {
            option: "--timeout",
            value: text.to_owned(),
            expected: "a duration such as 5, 2.5s or 500ms",
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, UsageError> {
        Invocation::parse(args.iter().map(OsString::from), None)
    }

    fn run(args: &[&str]) -> Run {
        match parse(args).unwrap() {
            Invocation::Run(run) => run,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults_apply_without_options() {
        let status = run(&["status"]);
        assert_eq!(
            status,
            Run {
                addr: DEFAULT_ADDR.into(),
                timeout: DEFAULT_TIMEOUT,
                json: false,
                command: Command::Status,
            }
        );
    }

    #[test]
    fn global_options_go_anywhere_in_both_spellings() {
        let a = run(&["--addr", "10.0.0.5:7000", "calls", "--json", "--limit=5"]);
        let b = run(&["calls", "--limit", "5", "--addr=10.0.0.5:7000", "--json"]);
        assert_eq!(a, b);
        assert_eq!(a.command, Command::Calls { limit: 5 });
        assert!(a.json);
        assert_eq!(
            run(&["--addr", "http://[::1]:9091", "demote"]).addr,
            "[::1]:9091"
        );
    }

    #[test]
    fn the_environment_gives_the_address_unless_an_option_does() {
        let env = Some("tandem-b:9091".to_owned());
        let parse_env =
            |args: &[&str]| Invocation::parse(args.iter().map(OsString::from), env.clone());
        let Ok(Invocation::Run(from_env)) = parse_env(&["status"]) else {
            panic!()
        };
        assert_eq!(from_env.addr, "tandem-b:9091");
        let Ok(Invocation::Run(from_option)) = parse_env(&["--addr", "127.0.0.1:1", "status"])
        else {
            panic!()
        };
        assert_eq!(from_option.addr, "127.0.0.1:1");
    }

    #[test]
    fn every_command() {
        let promote = |force: bool, reason: &str| Command::Promote {
            force,
            reason: reason.to_owned(),
        };
        assert_eq!(run(&["promote"]).command, promote(false, ""));
        assert_eq!(run(&["promote", "--force"]).command, promote(true, ""));
        assert_eq!(
            run(&["promote", "--force", "--reason", "keepalived: MASTER"]).command,
            promote(true, "keepalived: MASTER")
        );
        assert_eq!(
            run(&["--reason=maintenance", "demote"]).command,
            Command::Demote {
                reason: "maintenance".to_owned()
            }
        );
        assert_eq!(run(&["switchover"]).command, Command::Switchover);
        assert_eq!(
            run(&["drain", "on"]).command,
            Command::Drain { enable: true }
        );
        assert_eq!(
            run(&["drain", "off"]).command,
            Command::Drain { enable: false }
        );
        assert_eq!(run(&["incidents"]).command, Command::Incidents { limit: 0 });
        assert_eq!(parse(&["help"]), Ok(Invocation::Help));
        assert_eq!(parse(&["status", "-h"]), Ok(Invocation::Help));
        assert_eq!(parse(&["--version"]), Ok(Invocation::Version));
    }

    #[test]
    fn timeouts_in_seconds_or_milliseconds() {
        assert_eq!(
            run(&["--timeout", "2", "status"]).timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            run(&["--timeout=2.5s", "status"]).timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            run(&["--timeout", "300ms", "status"]).timeout,
            Duration::from_millis(300)
        );
        for bad in ["0", "-1", "soon", "5m", "NaN"] {
            assert!(
                matches!(
                    parse(&["--timeout", bad, "status"]),
                    Err(UsageError::BadValue { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_lines_are_usage_errors() {
        assert_eq!(parse(&[]), Err(UsageError::NoCommand));
        assert_eq!(
            parse(&["reboot"]),
            Err(UsageError::UnknownCommand("reboot".into()))
        );
        assert_eq!(
            parse(&["status", "--verbose"]),
            Err(UsageError::UnknownOption("--verbose".into()))
        );
        assert_eq!(
            parse(&["demote", "--force"]),
            Err(UsageError::UnknownOption("--force".into()))
        );
        assert_eq!(
            parse(&["switchover", "--reason", "x"]),
            Err(UsageError::UnknownOption("--reason".into()))
        );
        assert_eq!(
            parse(&["demote", "--reason"]),
            Err(UsageError::MissingValue("--reason"))
        );
        assert_eq!(
            parse(&["status", "--limit", "3"]),
            Err(UsageError::UnknownOption("--limit".into()))
        );
        assert_eq!(
            parse(&["status", "now"]),
            Err(UsageError::Unexpected("now".into()))
        );
        assert_eq!(parse(&["drain"]), Err(UsageError::MissingValue("drain")));
        assert_eq!(
            parse(&["calls", "--limit"]),
            Err(UsageError::MissingValue("--limit"))
        );
        assert!(matches!(
            parse(&["drain", "maybe"]),
            Err(UsageError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&["calls", "--limit", "-1"]),
            Err(UsageError::BadValue { .. })
        ));
        for addr in ["localhost", ":9091", "host:0", "host:99999", "http://h:1/x"] {
            assert!(
                matches!(
                    parse(&["--addr", addr, "status"]),
                    Err(UsageError::BadValue { .. })
                ),
                "{addr}"
            );
        }
    }
}

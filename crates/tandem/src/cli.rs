//! Command-line arguments (hand-rolled: four options do not need a parser crate).

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit code for bad usage or a bad config (`EX_USAGE` of sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// `--help` text.
pub const USAGE: &str = "\
Tandem: high-availability SIP proxy (B2BUA) in front of Asterisk media servers

Usage:
  tandem [--config FILE]       serve (without --config: the built-in loopback configuration)
  tandem --check-config FILE   check FILE and exit (0 = valid, 64 = invalid)
  tandem --help | --version

Signals: SIGTERM or SIGINT drains (new calls get 503, up to shutdown.grace); a second one stops at once.
Environment: RUST_LOG overrides log.level.
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve, with this config file or the embedded default.
    Run { config: Option<PathBuf> },
    /// Check a config file and exit.
    CheckConfig(PathBuf),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// A command line that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An option that takes a file was last, with no file.
    #[error("{0} needs a FILE")]
    MissingFile(&'static str),
    /// An argument that is no option of tandem.
    #[error("unknown argument {0:?}")]
    Unknown(String),
    /// `--config` and `--check-config`, or one of them twice.
    #[error("give one of --config and --check-config, once")]
    Conflict,
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
        let mut args = args.into_iter();
        let mut command = None;
        while let Some(arg) = args.next() {
            let text = arg.to_string_lossy();
            let (option, inline_value) = match text.split_once('=') {
                Some((option, value)) if option.starts_with("--") => {
                    (option.to_owned(), Some(PathBuf::from(value)))
                }
                _ => (text.clone().into_owned(), None),
            };
            let file_option = match option.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--config" => "--config",
                "--check-config" => "--check-config",
                _ => return Err(UsageError::Unknown(text.into_owned())),
            };
            let file = match inline_value {
                Some(file) => file,
                None => args
                    .next()
                    .map(PathBuf::from)
                    .ok_or(UsageError::MissingFile(file_option))?,
            };
            if command.is_some() {
                return Err(UsageError::Conflict);
            }
            command = Some(match file_option {
                "--config" => Command::Run { config: Some(file) },
                _ => Command::CheckConfig(file),
            });
        }
        Ok(command.unwrap_or(Command::Run { config: None }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        Command::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn no_argument_runs_the_embedded_config() {
        assert_eq!(parse(&[]), Ok(Command::Run { config: None }));
    }

    #[test]
    fn config_file_in_both_spellings() {
        let expected = Command::Run {
            config: Some("/etc/tandem.toml".into()),
        };
        assert_eq!(
            parse(&["--config", "/etc/tandem.toml"]),
            Ok(expected.clone())
        );
        assert_eq!(parse(&["--config=/etc/tandem.toml"]), Ok(expected));
        assert_eq!(
            parse(&["--check-config", "t.toml"]),
            Ok(Command::CheckConfig("t.toml".into()))
        );
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse(&["--config", "x", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn bad_lines_are_usage_errors() {
        assert_eq!(
            parse(&["--config"]),
            Err(UsageError::MissingFile("--config"))
        );
        assert_eq!(
            parse(&["--verbose"]),
            Err(UsageError::Unknown("--verbose".into()))
        );
        assert_eq!(
            parse(&["x.toml"]),
            Err(UsageError::Unknown("x.toml".into()))
        );
        assert_eq!(
            parse(&["--config", "a", "--check-config", "b"]),
            Err(UsageError::Conflict)
        );
    }
}

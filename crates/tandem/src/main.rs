//! `tandem`: parse the command line, load the config, bind, serve until signalled.

use std::path::Path;
use std::process::ExitCode;
use tandem::cli::{Command, EXIT_USAGE, USAGE};
use tandem::config::{Config, ConfigError};
use tandem::BoundListeners;
use tracing::error;

fn main() -> ExitCode {
    let command = match Command::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("tandem: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("tandem {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig(path) => match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(Some(&path), &e),
        },
        Command::Run { config: path } => {
            let loaded = match &path {
                Some(path) => Config::load(path),
                None => Config::embedded_default(),
            };
            match loaded {
                Ok(config) => serve(config),
                Err(e) => config_error(path.as_deref(), &e),
            }
        }
    }
}

fn config_error(path: Option<&Path>, error: &ConfigError) -> ExitCode {
    let source = path.map_or_else(
        || "embedded default config".to_owned(),
        |p| p.display().to_string(),
    );
    eprintln!("tandem: {source}: {error}");
    ExitCode::from(EXIT_USAGE)
}

fn serve(config: Config) -> ExitCode {
    tandem::init_logging(&config.log_level);
    // One thread: the core task owns all call state and is the hot path; transport and admin tasks
    // are light. A single-threaded runtime saves the cross-thread wake-ups a work-stealing
    // scheduler pays per message.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_until_signalled(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "tandem failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve_until_signalled(config: Config) -> anyhow::Result<()> {
    let bound = BoundListeners::bind(&config).await?;
    let shutdown = tandem::signals::drain_on_signal()?;
    tandem::run(bound, config, shutdown).await
}

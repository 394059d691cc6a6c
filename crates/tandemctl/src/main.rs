//! `tandemctl`: the operator's command line for a Tandem node, over its admin gRPC API
//! (`tandem.admin.v1.Admin`). Exit codes: 0 done, 1 refused by Tandem, 2 Tandem cannot be reached,
//! 64 usage error.

mod args;
mod render;

use anyhow::Context as _;
use args::{Command, Invocation, Run, ADDR_ENV, EXIT_USAGE, USAGE};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use tandem_proto::admin::v1 as api;
use tandem_proto::admin::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

/// Tandem answered but refused (a role change it will not make).
const EXIT_REFUSED: u8 = 1;
/// Tandem could not be reached, did not answer in time, or answered with a gRPC error.
const EXIT_UNREACHABLE: u8 = 2;

/// Tandem's answer to one command.
#[derive(Debug)]
enum Reply {
    Status(api::StatusReply),
    Role(api::RoleReply),
    Drain(api::DrainReply),
    Calls(api::ListCallsReply),
    Incidents(api::ListIncidentsReply),
}

fn main() -> ExitCode {
    let env_addr = std::env::var(ADDR_ENV).ok();
    let run = match Invocation::parse(std::env::args_os().skip(1), env_addr) {
        Ok(Invocation::Run(run)) => run,
        Ok(Invocation::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("tandemctl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => return usage_error(&error),
    };
    let endpoint = match Endpoint::from_shared(format!("http://{}", run.addr)) {
        Ok(endpoint) => endpoint.connect_timeout(run.timeout),
        Err(_) => {
            return usage_error(&format!("--addr: {:?} is not HOST:PORT", run.addr));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tandemctl: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ask(endpoint, &run)) {
        Ok(reply) => show(&reply, run.json),
        Err(error) => {
            eprintln!(
                "tandemctl: cannot reach Tandem at {}: {}",
                run.addr,
                causes(&error)
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// The error and its causes, `: `-separated, without the repeats tonic's transport errors have.
fn causes(error: &anyhow::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    for cause in error.chain().map(ToString::to_string) {
        if causes.last() != Some(&cause) {
            causes.push(cause);
        }
    }
    causes.join(": ")
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tandemctl: {error}\n\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

/// Connects and asks, within `run.timeout` in all.
async fn ask(endpoint: Endpoint, run: &Run) -> anyhow::Result<Reply> {
    let timeout = run.timeout;
    let exchange = async {
        let channel = endpoint.connect().await.context("cannot connect")?;
        call(AdminClient::new(channel), run.command.clone(), timeout)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                    anyhow::anyhow!("no answer within {timeout:?} ({})", status.message())
                }
                code => anyhow::anyhow!("gRPC error {code:?}: {}", status.message()),
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {timeout:?}")))
}

async fn call(
    mut client: AdminClient<Channel>,
    command: Command,
    timeout: Duration,
) -> Result<Reply, tonic::Status> {
    Ok(match command {
        Command::Status => Reply::Status(
            client
                .status(with_deadline(api::StatusRequest {}, timeout))
                .await?
                .into_inner(),
        ),
        Command::Promote { force, reason } => Reply::Role(
            client
                .promote(with_deadline(
                    api::PromoteRequest { force, reason },
                    timeout,
                ))
                .await?
                .into_inner(),
        ),
        Command::Demote { reason } => Reply::Role(
            client
                .demote(with_deadline(api::DemoteRequest { reason }, timeout))
                .await?
                .into_inner(),
        ),
        Command::Switchover => Reply::Role(
            client
                .switchover(with_deadline(api::SwitchoverRequest {}, timeout))
                .await?
                .into_inner(),
        ),
        Command::Drain { enable } => Reply::Drain(
            client
                .drain(with_deadline(api::DrainRequest { enable }, timeout))
                .await?
                .into_inner(),
        ),
        Command::Calls { limit } => Reply::Calls(
            client
                .list_calls(with_deadline(api::ListCallsRequest { limit }, timeout))
                .await?
                .into_inner(),
        ),
        Command::Incidents { limit } => Reply::Incidents(
            client
                .list_incidents(with_deadline(api::ListIncidentsRequest { limit }, timeout))
                .await?
                .into_inner(),
        ),
    })
}

/// The deadline travels with the request, so Tandem stops waiting when tandemctl does.
fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Prints the answer (text or JSON on stdout; a refusal's text on stderr) and picks the exit code.
fn show(reply: &Reply, json: bool) -> ExitCode {
    if let Reply::Role(role) = reply {
        if !role.ok {
            if json {
                print_json(&render::role_json(role));
            } else {
                eprint!("tandemctl: refused: {}", render::role_text(role));
            }
            return ExitCode::from(EXIT_REFUSED);
        }
    }
    if json {
        print_json(&match reply {
            Reply::Status(status) => render::status_json(status),
            Reply::Role(role) => render::role_json(role),
            Reply::Drain(drain) => render::drain_json(drain),
            Reply::Calls(calls) => render::calls_json(calls),
            Reply::Incidents(incidents) => render::incidents_json(incidents),
        });
    } else {
        print!(
            "{}",
            match reply {
                Reply::Status(status) => render::status_text(status),
                Reply::Role(role) => render::role_text(role),
                Reply::Drain(drain) => render::drain_text(drain),
                Reply::Calls(calls) => render::calls_text(calls),
                Reply::Incidents(incidents) => render::incidents_text(incidents),
            }
        );
    }
    ExitCode::SUCCESS
}

fn print_json(value: &Value) {
    println!("{value}");
}

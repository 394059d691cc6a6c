//! SIGTERM / SIGINT: the first one starts a graceful drain, a second one ends the process at once.

use std::future::Future;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

/// Exit code after a second signal cut the drain short.
pub const EXIT_FORCED: i32 = 1;

/// Installs the handlers (inside a tokio runtime). The returned future completes at the first
/// SIGTERM or SIGINT; from then on, another one exits the process with [`EXIT_FORCED`].
pub fn drain_on_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = next_signal(&mut terminate, &mut interrupt).await;
        info!(
            signal = name,
            "shutdown requested: draining (send it again to stop at once)"
        );
        tokio::spawn(async move {
            let name = next_signal(&mut terminate, &mut interrupt).await;
            warn!(signal = name, "second signal: stopping at once");
            std::process::exit(EXIT_FORCED);
        });
    })
}

async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

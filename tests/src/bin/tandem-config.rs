//! Prints a Tandem config file made by the test harness's generator (`TandemConfig::to_toml`), so
//! that scripts (benches/sip-load.sh) write the same format as the tests without a second copy.
//!
//! Usage: tandem-config --sip ADDR --admin ADDR --server ADDR[/udp|/tcp] [--server ...]

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use tandem_tests::{TandemConfig, Transport};

fn main() -> Result<()> {
    let mut sip: Option<SocketAddr> = None;
    let mut admin: Option<SocketAddr> = None;
    let mut servers: Vec<(SocketAddr, Transport)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(option) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{option} needs a value"))?;
        match option.as_str() {
            "--sip" => sip = Some(value.parse().context("--sip")?),
            "--admin" => admin = Some(value.parse().context("--admin")?),
            "--server" => {
                let (addr, transport) = value.split_once('/').unwrap_or((&value, "udp"));
                let transport = match transport {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    other => bail!("unknown transport {other}"),
                };
                servers.push((addr.parse().context("--server")?, transport));
            }
            other => bail!("unknown option {other}\nusage: tandem-config --sip ADDR --admin ADDR --server ADDR[/udp|/tcp]..."),
        }
    }
    let transport = servers.first().map_or(Transport::Udp, |s| s.1);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.0).collect();
    let mut config = TandemConfig::new(&addrs, transport);
    for (server, (_, t)) in config.media_servers.iter_mut().zip(&servers) {
        server.transport = *t;
    }
    config.sip = sip.context("--sip is required")?;
    config.admin = admin.context("--admin is required")?;
    print!("{}", config.to_toml());
    Ok(())
}

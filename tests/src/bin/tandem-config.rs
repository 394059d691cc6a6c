//! Prints a Tandem config file made by the test harness's generator (`TandemConfig::to_toml`), so
//! that scripts (benches/sip-load.sh) write the same format as the tests without a second copy.
//!
//! Usage: tandem-config --sip ADDR --admin ADDR [--media-ports MIN-MAX] --server ADDR[/udp|/tcp] [--server ...]
//!
//! The media relay listens on the SIP address's IP, on ports MIN-MAX (default 61000-65399, the
//! span the test harness uses: 2,200 RTP/RTCP pairs, two per audio call, so 1,100 calls at once;
//! a load run with more calls at once needs a wider range).

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use tandem_tests::{TandemConfig, Transport};

fn main() -> Result<()> {
    let mut sip: Option<SocketAddr> = None;
    let mut admin: Option<SocketAddr> = None;
    let mut media_ports = 61_000..=65_399;
    let mut servers: Vec<(SocketAddr, Transport)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(option) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{option} needs a value"))?;
        match option.as_str() {
            "--sip" => sip = Some(value.parse().context("--sip")?),
            "--admin" => admin = Some(value.parse().context("--admin")?),
            "--media-ports" => {
                let (min, max) = value
                    .split_once('-')
                    .context("--media-ports takes MIN-MAX")?;
                media_ports = min.parse().context("--media-ports")?..=max.parse().context("--media-ports")?;
            }
            "--server" => {
                let (addr, transport) = value.split_once('/').unwrap_or((&value, "udp"));
                let transport = match transport {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    other => bail!("unknown transport {other}"),
                };
                servers.push((addr.parse().context("--server")?, transport));
            }
            other => bail!("unknown option {other}\nusage: tandem-config --sip ADDR --admin ADDR [--media-ports MIN-MAX] --server ADDR[/udp|/tcp]..."),
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
    config.media.address = config.sip.ip();
    config.media.ports = media_ports;
    print!("{}", config.to_toml());
    Ok(())
}

//! Command-line options.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

pub const USAGE: &str = "\
tandem-rtpload: RTP load through a relay (Tandem or rtpengine), or straight back to itself

usage: tandem-rtpload --backend none|rtpengine|tandem [options]

  --backend none          no relay: side A sends to side B directly (the generator's own cost)
  --backend rtpengine     calls set up with rtpengine's ng protocol (--ng)
  --backend tandem        calls set up with SIP through Tandem (--sip), the generator answering as
                          the media server on --uas
  --ng ADDR               rtpengine ng listener [127.0.0.1:2223]
  --sip ADDR              Tandem's SIP address [127.0.0.1:5060]
  --uas ADDR              the generator's media-server address [127.0.0.1:5090]
  --local IP              address of the generator's RTP sockets [127.0.0.1]
  --calls N               concurrent calls (streams) [500]
  --rates LIST            per-stream packet rates, each way, one step each [50]
  --duration SECS         seconds per step [10]
  --max-loss PCT          a step losing this much or more ends the run, and so does a step
                          where the generator fell more than 1 % behind (see --keep-going) [0.1]
  --keep-going            run every step even after a lossy or generator-bound one
  --relay-pid PID         sample this relay's CPU (/proc/PID/stat) and memory per step
  --sockets K             RTP sockets per side; streams share them round-robin [2]
  --batch N               packets per sendmmsg, 1..64 [16]
  --tick-us US            sleep when caught up with the schedule [200]
  --payload BYTES         RTP payload bytes (160 = G.711 at 20 ms) [160]
  --setup-rate CPS        calls set up (and torn down) per second [500]
  --drain-ms MS           wait for packets in flight after each step [300]

Prints one SETUP line, one RESULT line per step, one SUMMARY line (highest clean rate and what
ended the stepping: relay, generator or steps) and one TEARDOWN line.";

/// Which relay sets calls up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// No relay.
    None,
    /// rtpengine (ng).
    Rtpengine,
    /// Tandem (SIP).
    Tandem,
}

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: BackendKind,
    pub ng: SocketAddr,
    pub sip: SocketAddr,
    pub uas: SocketAddr,
    pub local: Ipv4Addr,
    pub calls: usize,
    pub rates: Vec<f64>,
    pub duration: Duration,
    pub max_loss_pct: f64,
    pub keep_going: bool,
    pub relay_pid: Option<u32>,
    pub sockets: usize,
    pub batch: usize,
    pub tick: Duration,
    pub payload: usize,
    pub setup_rate: u32,
    pub drain: Duration,
}

impl Options {
    /// Parses `args` (without the program name). `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Options>> {
        let mut o = Options {
            backend: BackendKind::None,
            ng: "127.0.0.1:2223".parse()?,
            sip: "127.0.0.1:5060".parse()?,
            uas: "127.0.0.1:5090".parse()?,
            local: Ipv4Addr::LOCALHOST,
            calls: 500,
            rates: vec![50.0],
            duration: Duration::from_secs(10),
            max_loss_pct: 0.1,
            keep_going: false,
            relay_pid: None,
            sockets: 2,
            batch: 16,
            tick: Duration::from_micros(200),
            payload: 160,
            setup_rate: 500,
            drain: Duration::from_millis(300),
        };
        let mut backend_given = false;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--keep-going" => {
                    o.keep_going = true;
                    continue;
                }
                _ => {}
            }
            let value = args.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
            let bad = || format!("bad value {value:?} for {flag}");
            match flag.as_str() {
                "--backend" => {
                    backend_given = true;
                    o.backend = match value.as_str() {
                        "none" => BackendKind::None,
                        "rtpengine" => BackendKind::Rtpengine,
                        "tandem" => BackendKind::Tandem,
                        _ => bail!(bad()),
                    }
                }
                "--ng" => o.ng = value.parse().with_context(bad)?,
                "--sip" => o.sip = value.parse().with_context(bad)?,
                "--uas" => o.uas = value.parse().with_context(bad)?,
                "--local" => o.local = value.parse().with_context(bad)?,
                "--calls" => o.calls = value.parse().with_context(bad)?,
                "--rates" => {
                    o.rates = value
                        .split(',')
                        .map(|r| r.trim().parse::<f64>())
                        .collect::<Result<_, _>>()
                        .with_context(bad)?
                }
                "--duration" => {
                    o.duration = Duration::try_from_secs_f64(value.parse().with_context(bad)?)
                        .with_context(bad)?
                }
                "--max-loss" => o.max_loss_pct = value.parse().with_context(bad)?,
                "--relay-pid" => o.relay_pid = Some(value.parse().with_context(bad)?),
                "--sockets" => o.sockets = value.parse().with_context(bad)?,
                "--batch" => o.batch = value.parse().with_context(bad)?,
                "--tick-us" => o.tick = Duration::from_micros(value.parse().with_context(bad)?),
                "--payload" => o.payload = value.parse().with_context(bad)?,
                "--setup-rate" => o.setup_rate = value.parse().with_context(bad)?,
                "--drain-ms" => o.drain = Duration::from_millis(value.parse().with_context(bad)?),
                _ => bail!("unknown option {flag}"),
            }
        }
        if !backend_given {
            bail!("--backend is required");
        }
        if o.calls == 0 || o.calls > 100_000 {
            bail!("--calls must be 1..=100000");
        }
        if o.sockets == 0 || o.sockets > 1024 {
            bail!("--sockets must be 1..=1024");
        }
        if o.rates.is_empty() || o.rates.iter().any(|&r| !(r > 0.0 && r <= 10_000.0)) {
            bail!("--rates must be > 0 and <= 10000 packets per second per stream");
        }
        if o.duration.is_zero() || o.duration > Duration::from_secs(600) {
            bail!("--duration must be > 0 and <= 600 seconds");
        }
        if o.payload < crate::blast::MIN_PAYLOAD || o.payload > 400 {
            bail!("--payload must be {}..=400", crate::blast::MIN_PAYLOAD);
        }
        Ok(Some(o))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Options>> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_lists() {
        let o = parse(&[
            "--backend",
            "rtpengine",
            "--rates",
            "50,100, 150",
            "--keep-going",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.backend, BackendKind::Rtpengine);
        assert_eq!(o.rates, vec![50.0, 100.0, 150.0]);
        assert!(o.keep_going);
        assert_eq!(o.calls, 500);
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse(&["--backend", "none", "--calls", "x"]).unwrap_err();
        assert!(e.to_string().contains("--calls"));
        assert!(parse(&["--calls", "5"]).is_err());
        assert!(parse(&["--backend", "none", "--bogus", "1"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}

//! The failover benchmark behind `benches/failover.sh` (root only; see its header for how to run
//! it and what it prints). On a network-namespace topology of its own (the HA tests' harness):
//!
//! 1. Replication lag: `--lag-cps` short calls a second (uac_load.xml, 1 s each) through the
//!    active for `--lag-seconds`, with the standby attached and durability `sync` (the default);
//!    the active's `tandem_replication_ack_latency_seconds` histogram and
//!    `tandem_replication_sync_timeouts_total` are read before and after.
//! 2. Takeover: `--calls` echo calls (ha_bench_echo.xml, `--rate` new calls a second) playing RTP
//!    at `--pps` packets a second each way, echoed by SIPp in `media`; once both nodes count every
//!    call and the caller receives echoed RTP on every call, `kill -9` of the active. tcpdump at the
//!    caller gives each call's echoed RTP (one relay port per call), hence its gap across the kill.
//!
//! Usage: failover-bench [--calls N] [--rate CPS] [--pps N] [--lag-cps N] [--lag-seconds N]
//!                       [--settle S] [--prefix NAME] [--dir PATH]

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tandem_tests::ha_calls::{
    echo_server, ms_after, quantile, secs, EchoCapture, HaPair, MediaGaps,
};
use tandem_tests::netns::{namespaces_left, Detection, NsSipp};
use tandem_tests::{workspace_root, Node, Sipp, Topology};

/// Both nodes' relay ports: 2,500 calls (two RTP/RTCP pairs each).
const RELAY_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;
/// RTP of every echo call after the last call is set up: enough to wait for every call to be seen,
/// kill, take over and hear the calls again (the steady state before the kill, `--settle`, comes
/// on top).
const HOLD_AFTER_SETUP: Duration = Duration::from_secs(13);
/// The histogram read from /metrics.
const ACK_LATENCY: &str = "tandem_replication_ack_latency_seconds";
/// The targets printed against.
const GAP_P99_TARGET_MS: f64 = 300.0;

/// The knobs.
#[derive(Debug, Clone)]
struct Options {
    calls: u32,
    rate: u32,
    pps: u32,
    lag_cps: u32,
    lag_seconds: u32,
    settle: u32,
    prefix: String,
    dir: PathBuf,
}

impl Options {
    fn parse() -> Result<Options> {
        let mut options = Options {
            calls: 1000,
            rate: 100,
            pps: 20,
            lag_cps: 500,
            lag_seconds: 20,
            settle: 2,
            prefix: "fo-bench".to_owned(),
            dir: workspace_root().join("target").join("failover-bench"),
        };
        let mut args = std::env::args().skip(1);
        while let Some(option) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{option} needs a value"))?;
            let number = || -> Result<u32> {
                value
                    .parse()
                    .with_context(|| format!("{option} takes a number"))
            };
            match option.as_str() {
                "--calls" => options.calls = number()?,
                "--rate" => options.rate = number()?,
                "--pps" => options.pps = number()?,
                "--lag-cps" => options.lag_cps = number()?,
                "--lag-seconds" => options.lag_seconds = number()?,
                "--settle" => options.settle = number()?,
                "--prefix" => options.prefix = value,
                "--dir" => options.dir = PathBuf::from(value),
                other => bail!(
                    "unknown option {other}\nusage: failover-bench [--calls N] [--rate CPS] \
                     [--pps N] [--lag-cps N] [--lag-seconds N] [--settle S] [--prefix NAME] \
                     [--dir PATH]"
                ),
            }
        }
        ensure!(
            options.calls > 0 && options.rate > 0,
            "--calls and --rate must be positive"
        );
        ensure!(
            (1..=100).contains(&options.pps),
            "--pps takes 1 to 100 packets a second"
        );
        Ok(options)
    }

    /// How long each echo call plays RTP (and lasts).
    fn hold(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.calls) / f64::from(self.rate))
            + Duration::from_secs(u64::from(self.settle))
            + HOLD_AFTER_SETUP
    }
}

fn main() {
    let outcome = Options::parse().and_then(|options| run(&options));
    if let Err(error) = outcome {
        eprintln!("failover-bench: {error:#}");
        std::process::exit(1);
    }
}

fn run(options: &Options) -> Result<()> {
    ensure!(
        tandem_tests::need_root("failover-bench"),
        "needs root (network namespaces, raw sockets for SIPp's RTP)"
    );
    for tool in ["ip", "arping", "ss", "sipp", "tcpdump"] {
        ensure!(
            tandem_tests::need_tool("failover-bench", tool),
            "{tool} is missing"
        );
    }
    let _ = std::fs::remove_dir_all(&options.dir);
    std::fs::create_dir_all(&options.dir)?;
    let net = Topology::build(&options.prefix)?;
    let outcome = bench(&net, options);
    drop(net);
    let left = namespaces_left(&options.prefix)?;
    ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    outcome
}

fn bench(net: &Topology, options: &Options) -> Result<()> {
    let dir = options.dir.as_path();
    let life = Duration::from_secs(u64::from(options.lag_seconds) + 60) + 2 * options.hold();
    let media = echo_server(net, dir, life)?;
    let mut pair = HaPair::start_with(net, dir, media.addr(), RELAY_PORTS, Detection::Defaults)?;
    net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;
    println!(
        "topology {}: tandem-a active, tandem-b synced standby (durability sync); logs in {}",
        options.prefix,
        dir.display()
    );
    if options.lag_seconds > 0 && options.lag_cps > 0 {
        let lag = replication_lag(net, &mut pair, options)?;
        println!("{lag}");
        pair.wait_calls(0, secs(30))
            .context("the short calls did not all end")?;
    }
    let takeover = takeover(net, &mut pair, options)?;
    println!("{takeover}");
    Ok(())
}

/// The replication-lag phase: short calls at `lag_cps` for `lag_seconds`; the active's ack
/// latency histogram and sync timeouts before and after.
fn replication_lag(net: &Topology, pair: &mut HaPair<'_>, options: &Options) -> Result<String> {
    let calls = options.lag_cps * options.lag_seconds;
    let before = Scrape::take(net, pair)?;
    let vip = SocketAddr::new(net.vip().into(), 5060);
    let sipp = Sipp::uac("lag-caller", "uac_load.xml", vip)
        .calls(calls)
        .rate(options.lag_cps)
        .limit(options.lag_cps * 5)
        .timeout(Duration::from_secs(u64::from(options.lag_seconds) + 20))
        .arg("-buff_size")
        .arg("4194304");
    let started = Instant::now();
    let caller = net.spawn_sipp(Node::Caller, "lag-caller", sipp, &options.dir)?;
    let outcome = caller.wait(secs(u64::from(options.lag_seconds) + 40))?;
    // the last call lasts 1 s after it is placed
    let placing = started.elapsed().as_secs_f64() - 1.0;
    let after = Scrape::take(net, pair)?;
    let standby = pair.status(Node::TandemB)?;
    let latency = after.histogram_since(&before);
    let total = latency.last().map_or(0.0, |(_, n)| *n);
    let failed = if outcome.check_caller(u64::from(calls)).is_ok() {
        "all answered and ended".to_owned()
    } else {
        format!(
            "{} successful, {} failed (SIPp logs in {})",
            outcome.stats.successful,
            outcome.stats.failed,
            outcome.log_dir.display()
        )
    };
    Ok(format!(
        "REPLICATION LAG under {cps} cps ({secs} s, {calls} calls of 1 s, durability sync): {failed}; \
         placed in {placing:.1} s (~{achieved:.0} cps), {retransmissions} SIPp retransmissions\n\
         \x20 ack latency (push on the active -> the standby's cumulative ack), {total:.0} deltas, \
         bucket resolution: p50 {p50}, p99 {p99}\n\
         \x20 sync timeouts: +{timeouts:.0} (answers sent without the standby's ack after the 50 ms \
         sync wait); standby at the end: {role}, synced {synced}",
        cps = options.lag_cps,
        secs = options.lag_seconds,
        achieved = f64::from(calls) / placing.max(0.001),
        retransmissions = outcome.stats.retransmissions,
        p50 = bucket_quantile(&latency, 0.5),
        p99 = bucket_quantile(&latency, 0.99),
        timeouts = after.value("tandem_replication_sync_timeouts_total")
            - before.value("tandem_replication_sync_timeouts_total"),
        role = standby.role,
        synced = standby.synced,
    ))
}

/// The active's /metrics at one moment.
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn take(net: &Topology, pair: &HaPair<'_>) -> Result<Scrape> {
        let text = pair.tandem(Node::TandemA).metrics(net)?;
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Ok(Scrape { samples })
    }

    fn value(&self, name: &str) -> f64 {
        self.samples.get(name).copied().unwrap_or(0.0)
    }

    /// The ack latency buckets counted since `before`: (upper bound in seconds, cumulative
    /// count), +Inf last.
    fn histogram_since(&self, before: &Scrape) -> Vec<(f64, f64)> {
        let prefix = format!("{ACK_LATENCY}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(name, count)| {
                let le = name.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, count - before.value(name)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// The bucket of cumulative `buckets` the `q` quantile falls in, as "<= X ms (bucket W-X ms)".
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> String {
    let total = buckets.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return "- (no delta acknowledged)".to_owned();
    }
    let wanted = (total * q).ceil().max(1.0);
    let mut lower = 0.0;
    for (bound, count) in buckets {
        if *count >= wanted {
            if bound.is_infinite() {
                return format!("> {:.2} ms", lower * 1000.0);
            }
            return format!(
                "<= {:.2} ms (bucket {:.2}-{:.2} ms)",
                bound * 1000.0,
                lower * 1000.0,
                bound * 1000.0
            );
        }
        lower = *bound;
    }
    "-".to_owned()
}

/// The takeover phase: echo calls, `kill -9` of the active, what the standby and the calls show.
/// Nothing polls the nodes from the kill until the calls end (a `tandemctl` every 20 ms would
/// take CPU from the standby while it takes over): the figures come from tandem-b's incident
/// timeline and the capture, read afterwards.
fn takeover(net: &Topology, pair: &mut HaPair<'_>, options: &Options) -> Result<String> {
    let calls = options.calls;
    let (caller, media_port) = echo_calls(net, options)?;
    let capture = EchoCapture::start(net, &options.dir, "echo", media_port)?;
    let setup = Duration::from_secs_f64(f64::from(calls) / f64::from(options.rate));
    pair.wait_calls(
        u64::from(calls),
        Instant::now() + setup + Duration::from_secs(30),
    )?;
    capture.wait_calls(calls as usize, secs(20))?;
    // steady state: every call set up and heard, no SIP, only RTP
    std::thread::sleep(Duration::from_secs(u64::from(options.settle)));

    let kill = pair.kill(Node::TandemA)?;
    let outcome = caller.wait(Instant::now() + options.hold() + Duration::from_secs(40))?;
    let (arrivals, dropped) = capture.stop_counting_drops()?;
    pair.print_incidents("failover-bench", Node::TandemB);
    let incident = match pair.takeover(Node::TandemB) {
        Ok(incident) => incident,
        Err(error) => bail!("{error:#}\n{}", pair.describe()),
    };
    // the killed node's kernel keeps the address; only its process is gone
    let holders = net.vip_holders()?;
    ensure!(
        holders.contains(&Node::TandemB),
        "after the takeover the VIP is on {holders:?}, not on tandem-b"
    );
    let step = |name: &str| {
        incident.step(name).map_or_else(
            || "- (not recorded)".to_owned(),
            |s| format!("+{:.0} ms", ms_after(s.at_unix_ms, kill)),
        )
    };
    let resumed_calls = incident.step("calls-resumed").map_or(0, |s| s.calls);
    let address_ms = incident
        .step("address-taken")
        .map(|s| ms_after(s.at_unix_ms, kill));

    let gaps = MediaGaps::measure(&arrivals, kill);
    let ms = |values: &[f64], q: f64| {
        quantile(values, q).map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"))
    };
    let spread = |values: &[f64]| {
        format!(
            "p50 {}, p99 {}, max {}",
            ms(values, 0.5),
            ms(values, 0.99),
            ms(values, 1.0)
        )
    };
    let ended = outcome.stats.successful;
    let failed = u64::from(calls).saturating_sub(ended);
    let silent = gaps.silent_after_kill.len() as u64;
    let unheard = u64::from(calls).saturating_sub(arrivals.len() as u64);
    // a call is lost if it did not end with BYE answered 200 or its RTP never came back; the
    // two counts may name the same calls, so the larger is a lower bound of their union
    let lost = failed.max(silent + unheard);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let gap_met = quantile(&gaps.across_kill, 0.99).is_some_and(|p| p <= GAP_P99_TARGET_MS);
    Ok(format!(
        "TAKEOVER: kill -9 of the active (tandem-a) with {calls} established calls, RTP {pps} pps \
         each way per call ({relayed} pps through the relay), calls set up at {rate}/s, {settle} s \
         of steady state before the kill\n\
         \x20 detection:               {detected} (tandem-b's incident timeline, from the kill)\n\
         \x20 confirmed, promoted:     {confirmed}, {promoted}\n\
         \x20 address takeover:        {address}; calls resumed {resumed} ({resumed_calls} calls)\n\
         \x20 first echoed RTP after:  {first_after} (per call, at the caller, from the kill); \
         {after_address} from the address takeover\n\
         \x20 media gap per call:      {gap} over {measured} calls  [target p99 <= {target:.0} ms: \
         {gap_verdict}]\n\
         \x20                          (last echoed packet before the kill -> first after; includes \
         up to one {interval} ms packet interval)\n\
         \x20 longest gap per call:    {longest} (anywhere in the call)\n\
         \x20 calls lost:              {lost} of {calls}  [target 0: {lost_verdict}] ({ended} ended \
         with BYE answered 200; {silent} with no RTP after the kill; {unheard} never heard)\n\
         \x20 capture:                 {packets} echoed packets, {dropped} dropped by the kernel",
        pps = options.pps,
        relayed = 2 * u64::from(calls) * u64::from(options.pps),
        rate = options.rate,
        settle = options.settle,
        detected = step("detected"),
        confirmed = step("confirmed"),
        promoted = step("promoted"),
        address = step("address-taken"),
        resumed = step("calls-resumed"),
        first_after = spread(&gaps.resumed_after_kill),
        after_address = address_ms.map_or_else(
            || "-".to_owned(),
            |address| {
                let since: Vec<f64> = gaps.resumed_after_kill.iter().map(|t| t - address).collect();
                format!("p50 {}, p99 {}", ms(&since, 0.5), ms(&since, 0.99))
            }
        ),
        gap = spread(&gaps.across_kill),
        measured = gaps.across_kill.len(),
        target = GAP_P99_TARGET_MS,
        gap_verdict = verdict(gap_met),
        interval = 1000 / options.pps,
        longest = spread(&gaps.longest),
        lost_verdict = verdict(lost == 0),
        packets = arrivals.values().map(Vec::len).sum::<usize>(),
        dropped = dropped.map_or_else(|| "?".to_owned(), |d| d.to_string()),
    ))
}

/// The echo caller: `calls` calls at `rate`, each playing the generated RTP capture for
/// [`Options::hold`] and then hanging up. Returns it and its media port.
fn echo_calls(net: &Topology, options: &Options) -> Result<(NsSipp, u16)> {
    let role = "caller";
    let hold = options.hold();
    write_rtp_capture(
        &options.dir.join(role).join("bench-rtp.pcap"),
        options.pps,
        hold,
    )?;
    let vip = SocketAddr::new(net.vip().into(), 5060);
    let pause_ms = (hold + Duration::from_millis(200)).as_millis().to_string();
    let sipp = Sipp::uac(role, "ha_bench_echo.xml", vip)
        .calls(options.calls)
        .rate(options.rate)
        .limit(options.calls)
        .timeout(2 * hold + Duration::from_secs(30))
        .arg("-d")
        .arg(&pause_ms)
        .arg("-buff_size")
        .arg("4194304");
    let media_port = sipp.media_port();
    Ok((
        net.spawn_sipp(Node::Caller, role, sipp, &options.dir)?,
        media_port,
    ))
}

/// Writes a pcap of PCMA RTP (12-byte header + 160 bytes) at `pps` packets a second for `length`,
/// as SIPp's `play_pcap_audio` reads it (Ethernet, IPv4, UDP; SIPp replaces addresses and ports).
fn write_rtp_capture(path: &Path, pps: u32, length: Duration) -> Result<()> {
    const PAYLOAD: usize = 160;
    let packets = (length.as_secs_f64() * f64::from(pps)).ceil() as u32;
    let interval_us = 1_000_000 / u64::from(pps);
    let mut file = Vec::with_capacity(24 + packets as usize * (16 + 42 + 12 + PAYLOAD));
    // global header: magic, version 2.4, zone, accuracy, snaplen, Ethernet
    for word in [0xa1b2_c3d4_u32, 0x0004_0002, 0, 0, 65_535, 1] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    let udp_len = 8 + 12 + PAYLOAD;
    let ip_len = 20 + udp_len;
    for n in 0..packets {
        let at_us = u64::from(n) * interval_us;
        let frame_len = 14 + ip_len;
        for word in [
            (at_us / 1_000_000) as u32,
            (at_us % 1_000_000) as u32,
            frame_len as u32,
            frame_len as u32,
        ] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        // Ethernet: destination, source, IPv4
        file.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        file.extend_from_slice(&ip);
        // UDP 6000 -> 6000, checksum left to SIPp
        file.extend_from_slice(&6000u16.to_be_bytes());
        file.extend_from_slice(&6000u16.to_be_bytes());
        file.extend_from_slice(&(udp_len as u16).to_be_bytes());
        file.extend_from_slice(&[0, 0]);
        // RTP: version 2, PCMA (marker on the first), sequence, timestamp, SSRC
        let marker = if n == 0 { 0x80 } else { 0 };
        file.extend_from_slice(&[0x80, marker | 8]);
        file.extend_from_slice(&(n as u16).to_be_bytes());
        file.extend_from_slice(&((at_us * 8 / 1000) as u32).to_be_bytes());
        file.extend_from_slice(&0x7a6e_6465_u32.to_be_bytes());
        file.extend_from_slice(&[0xd5; PAYLOAD]); // A-law silence
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, file).with_context(|| format!("writing {}", path.display()))
}

/// The IPv4 header checksum (RFC 791) of `header` with its checksum field zero.
fn ip_checksum(header: &[u8]) -> u16 {
    let sum = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    !(((folded & 0xffff) + (folded >> 16)) as u16)
}

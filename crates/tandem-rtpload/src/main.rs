//! tandem-rtpload: the load generator of `benches/rtp-load.sh`.
//!
//! Sets up N calls through a relay (Tandem over SIP, rtpengine over ng, or none), sends RTP both
//! ways on every call at a per-stream rate for a fixed time per step, and prints machine-readable
//! lines: `SETUP`, one `RESULT` per step (loss, latency percentiles, the generator's and the
//! relay's CPU per packet, the relay's memory), `SUMMARY`, `TEARDOWN`. See `--help`.

mod backend;
mod bencode;
mod blast;
mod cli;
mod histogram;
mod ng;
mod procstat;
mod sdp;
mod sip;
mod sys;

use std::fmt::{Display, Write as _};
use std::net::{SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use backend::{Backend, Direct, Endpoints, SetupOutcome};
use blast::{Blaster, StepPlan, StepReport};
use cli::{BackendKind, Options, USAGE};
use procstat::{Memory, Proc};

/// Extra time allowed for setup and teardown beyond `calls / rate`.
const SIGNALLING_SLACK: Duration = Duration::from_secs(30);
/// Exit code when the backend set calls up but does not relay media.
const EXIT_NOT_RELAYING: u8 = 3;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rtpload: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A `key=value` line.
struct Line(String);

impl Line {
    fn new(kind: &str) -> Line {
        Line(kind.to_string())
    }

    fn kv(&mut self, key: &str, value: impl Display) -> &mut Line {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    fn print(&self) {
        println!("{}", self.0);
    }
}

/// `value` with `decimals` decimals, or `na`.
fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "na".to_string(), |v| format!("{v:.decimals$}"))
}

fn run() -> anyhow::Result<ExitCode> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    sys::set_timer_slack(10_000);
    let sockets = blast::bind_sockets(opts.local, opts.sockets).context("binding RTP sockets")?;
    let addrs = sockets
        .iter()
        .map(|s| match s.local_addr() {
            Ok(SocketAddr::V4(a)) => Ok(a),
            _ => bail!("RTP socket without an IPv4 address"),
        })
        .collect::<anyhow::Result<Vec<SocketAddrV4>>>()?;
    let endpoints: Vec<Endpoints> = (0..opts.calls)
        .map(|s| Endpoints {
            a: addrs[blast::socket_index(s, opts.sockets, false)],
            b: addrs[blast::socket_index(s, opts.sockets, true)],
        })
        .collect();
    let mut backend: Box<dyn Backend> = match opts.backend {
        BackendKind::None => Box::new(Direct::default()),
        BackendKind::Rtpengine => Box::new(ng::Rtpengine::connect(opts.ng, opts.local.into())?),
        BackendKind::Tandem => Box::new(sip::Tandem::bind(opts.sip, opts.uas)?),
    };
    let relay = opts.relay_pid.map(Proc::Pid);
    let mem_before = relay.and_then(Proc::memory);
    let signalling_time =
        Duration::from_secs_f64(opts.calls as f64 / f64::from(opts.setup_rate.max(1)))
            + SIGNALLING_SLACK;

    let setup_start = Instant::now();
    let outcome = backend.setup(&endpoints, opts.setup_rate, setup_start + signalling_time)?;
    let setup_secs = setup_start.elapsed().as_secs_f64();
    let established = outcome.sessions.iter().flatten().count();
    let direct = count_direct(&outcome, &endpoints);
    let mem_setup = relay.and_then(Proc::memory);
    Line::new("SETUP")
        .kv("backend", backend.name())
        .kv("calls", opts.calls)
        .kv("ok", established)
        .kv("failed", opts.calls - established)
        .kv("secs", format!("{setup_secs:.2}"))
        .kv(
            "cps",
            format!("{:.0}", established as f64 / setup_secs.max(1e-9)),
        )
        .kv("retransmits", outcome.retransmits)
        .kv("relay_rss_kib_before", mem_field(mem_before, |m| m.rss_kib))
        .kv("relay_pss_kib_before", mem_field(mem_before, |m| m.pss_kib))
        .kv("relay_rss_kib_after", mem_field(mem_setup, |m| m.rss_kib))
        .kv("relay_pss_kib_after", mem_field(mem_setup, |m| m.pss_kib))
        .print();

    let mut code = ExitCode::SUCCESS;
    if established == 0 {
        eprintln!("rtpload: no call was set up");
        code = ExitCode::FAILURE;
    } else if direct > 0 && opts.backend != BackendKind::None {
        Line::new("NOTE")
            .kv("backend", backend.name())
            .kv("relayed", "no")
            .kv("direct_calls", direct)
            .print();
        eprintln!(
            "rtpload: {direct} of {established} calls kept the generator's own addresses in their \
             SDP: the backend does not anchor media; no RTP sent"
        );
        code = ExitCode::from(EXIT_NOT_RELAYING);
    } else {
        let mut blaster = Blaster::new(sockets, &outcome.sessions, opts.payload);
        run_steps(
            &opts,
            &mut blaster,
            backend.as_mut(),
            relay,
            mem_before,
            established,
        );
    }

    let teardown_start = Instant::now();
    let down = backend.teardown(opts.setup_rate, teardown_start + signalling_time);
    Line::new("TEARDOWN")
        .kv("backend", backend.name())
        .kv("ok", down.ok)
        .kv("failed", down.failed)
        .kv(
            "secs",
            format!("{:.2}", teardown_start.elapsed().as_secs_f64()),
        )
        .print();
    Ok(code)
}

fn count_direct(outcome: &SetupOutcome, endpoints: &[Endpoints]) -> usize {
    outcome
        .sessions
        .iter()
        .zip(endpoints)
        .filter(|(s, e)| s.is_some_and(|s| s.is_direct(e)))
        .count()
}

fn mem_field(mem: Option<Memory>, field: fn(&Memory) -> u64) -> String {
    mem.map_or_else(|| "na".to_string(), |m| field(&m).to_string())
}

/// Runs the steps in order, printing a RESULT line each, then the SUMMARY line.
fn run_steps(
    opts: &Options,
    blaster: &mut Blaster,
    backend: &mut dyn Backend,
    relay: Option<Proc>,
    mem_before: Option<Memory>,
    established: usize,
) {
    let mut best: Option<(f64, f64)> = None; // (pps received, rate)
    let mut limited_by = "steps";
    for (index, &rate) in opts.rates.iter().enumerate() {
        let plan = StepPlan {
            step: (index + 1) as u16,
            rate,
            duration: opts.duration,
            drain: opts.drain,
            batch: opts.batch,
            tick: opts.tick,
        };
        let relay_cpu_before = relay.and_then(Proc::cpu_seconds);
        let gen_cpu_before = Proc::Own.cpu_seconds();
        let wall_start = Instant::now();
        let report = blaster.run_step(&plan, backend);
        let wall = wall_start.elapsed().as_secs_f64();
        let relay_cpu = relay
            .and_then(Proc::cpu_seconds)
            .zip(relay_cpu_before)
            .map(|(after, before)| after - before);
        let gen_cpu = Proc::Own
            .cpu_seconds()
            .zip(gen_cpu_before)
            .map(|(after, before)| after - before);
        let mem = relay.and_then(Proc::memory);
        let loss = report.loss_pct(None);
        let clean = loss < opts.max_loss_pct;
        // Due packets the generator could not send: beyond 1 %, higher steps would measure it.
        let generator_bound = report.behind * 100 > report.sent_total().max(1);
        let secs = report.send_time.as_secs_f64().max(1e-9);
        let pps_recv = report.received_total() as f64 / secs;
        print_result(
            opts,
            blaster,
            backend,
            &plan,
            &report,
            established,
            wall,
            gen_cpu,
            relay_cpu,
            mem,
            mem_before,
        );
        if clean {
            best = Some((pps_recv, rate));
        }
        if !clean || generator_bound {
            limited_by = if clean { "generator" } else { "relay" };
            if !opts.keep_going {
                break;
            }
        }
    }
    Line::new("SUMMARY")
        .kv("backend", backend.name())
        .kv("calls", established)
        .kv("max_clean_pps", opt(best.map(|b| b.0), 0))
        .kv("max_clean_rate", opt(best.map(|b| b.1), 1))
        .kv("limited_by", limited_by)
        .kv("max_loss_pct", opts.max_loss_pct)
        .print();
}

#[allow(clippy::too_many_arguments)]
fn print_result(
    opts: &Options,
    blaster: &Blaster,
    backend: &dyn Backend,
    plan: &StepPlan,
    report: &StepReport,
    established: usize,
    wall: f64,
    gen_cpu: Option<f64>,
    relay_cpu: Option<f64>,
    mem: Option<Memory>,
    mem_before: Option<Memory>,
) {
    let secs = report.send_time.as_secs_f64().max(1e-9);
    let sent = report.sent_total();
    let received = report.received_total();
    let per_packet_us = |cpu: Option<f64>, packets: u64| {
        cpu.filter(|_| packets > 0)
            .map(|c| c * 1e6 / packets as f64)
    };
    let per_call_kib = |field: fn(&Memory) -> u64| {
        mem.zip(mem_before).map(|(after, before)| {
            (field(&after) as f64 - field(&before) as f64) / established.max(1) as f64
        })
    };
    let h = &report.latency;
    Line::new("RESULT")
        .kv("backend", backend.name())
        .kv("calls", established)
        .kv("step", plan.step)
        .kv("rate", plan.rate)
        .kv("bytes", blaster.packet_len())
        .kv("secs", format!("{secs:.2}"))
        .kv(
            "pps_target",
            format!("{:.0}", plan.rate * blaster.flows() as f64),
        )
        .kv("pps_sent", format!("{:.0}", sent as f64 / secs))
        .kv("pps_recv", format!("{:.0}", received as f64 / secs))
        .kv("sent", sent)
        .kv("recv", received)
        .kv("loss_pct", format!("{:.4}", report.loss_pct(None)))
        .kv("loss_ab_pct", format!("{:.4}", report.loss_pct(Some(0))))
        .kv("loss_ba_pct", format!("{:.4}", report.loss_pct(Some(1))))
        .kv("behind", report.behind)
        .kv("send_stalls", report.send_stalls)
        .kv(
            "send_error",
            report
                .send_error
                .map_or_else(|| "none".to_string(), |k| format!("{k:?}")),
        )
        .kv("stale", report.stale)
        .kv("foreign", report.foreign)
        .kv("unstamped", report.unstamped)
        .kv("samples", h.count())
        .kv("p50_us", h.quantile_us(0.50))
        .kv("p90_us", h.quantile_us(0.90))
        .kv("p99_us", h.quantile_us(0.99))
        .kv("p999_us", h.quantile_us(0.999))
        .kv("max_us", h.max_us())
        .kv("gen_cpu_s", opt(gen_cpu, 3))
        .kv("gen_cpu_us_per_pkt", opt(per_packet_us(gen_cpu, sent), 3))
        .kv("relay_cpu_s", opt(relay_cpu, 3))
        .kv("relay_cpu_pct", opt(relay_cpu.map(|c| c * 100.0 / wall), 1))
        .kv(
            "relay_cpu_s_per_kpkt",
            opt(per_packet_us(relay_cpu, received).map(|us| us / 1000.0), 5),
        )
        .kv(
            "relay_cpu_us_per_pkt",
            opt(per_packet_us(relay_cpu, received), 3),
        )
        .kv("relay_rss_kib", mem_field(mem, |m| m.rss_kib))
        .kv("relay_pss_kib", mem_field(mem, |m| m.pss_kib))
        .kv(
            "relay_rss_kib_per_call",
            opt(per_call_kib(|m| m.rss_kib), 2),
        )
        .kv(
            "relay_pss_kib_per_call",
            opt(per_call_kib(|m| m.pss_kib), 2),
        )
        .kv("max_loss_pct", opts.max_loss_pct)
        .print();
}

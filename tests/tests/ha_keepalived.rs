//! Hot standby with keepalived owning the VIP (`ha.vip.owner = "keepalived"`), on the
//! network-namespace topology: the real keepalived (VRRPv3, 200 ms advertisements) in each tandem
//! node, its notify script `scripts/keepalived-notify.sh` calling Tandem's admin API, a SIPp echo
//! server in `media` and SIPp calls from `caller` with RTP through the VIP.
//!
//! keepalived moves the VIP and Tandem follows: tandem-a becomes active only when its keepalived
//! becomes MASTER; `kill -9` of everything on tandem-a (Tandem and keepalived) moves the VIP to
//! tandem-b, whose notify script promotes its Tandem with every call; the calls keep their RTP and
//! end with BYE answered 200, and new calls work. Then tandem-a comes back (Tandem first, then
//! keepalived with the higher priority): keepalived moves the VIP back and the active role follows
//! it, and the incident timelines name keepalived as the reason.
//!
//! Root only (SKIP line otherwise; under `CI=true` a missing keepalived, SIPp or tcpdump fails).
//! Figures go to stderr; only correctness is asserted. Needs the release `tandem` and `tandemctl`.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_tests::keepalived::{keepalived_version, notify_log, tandem_notify, INSTANCE};
use tandem_tests::netns::{namespaces_left, HaOptions, HaStatus, NsSipp, NsTandem, SecondPath};
use tandem_tests::process::{file_tail, wait_for, ChildGuard};
use tandem_tests::sipp::Invites;
use tandem_tests::{
    need_root, need_tool, Keepalived, KeepalivedConfig, Node, Sipp, TandemConfig, TestDir,
    Topology, VrrpState,
};

/// Established calls held across the move of the VIP, each with RTP both ways.
const CALLS: u32 = 30;
/// keepalived's advertisement interval: the backup takes over about 3 intervals after the last.
const ADVERT: Duration = Duration::from_millis(200);
/// keepalived priorities: tandem-a is the preferred master.
const PRIORITY_A: u8 = 150;
const PRIORITY_B: u8 = 100;

fn ready(test: &str) -> bool {
    need_root(test)
        && ["ip", "arping", "ss", "sipp", "tcpdump", "keepalived"]
            .iter()
            .all(|tool| need_tool(test, tool))
}

fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn secs(from_now: u64) -> Instant {
    Instant::now() + Duration::from_secs(from_now)
}

/// The wall clock, Unix seconds (what tcpdump's `-tt` prints).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The two Tandems (keepalived mode) and their keepaliveds.
struct Pair<'n> {
    net: &'n Topology,
    dir: PathBuf,
    /// Both nodes' configs: same media server, same relay port range.
    configs: BTreeMap<&'static str, TandemConfig>,
    tandems: BTreeMap<&'static str, NsTandem>,
    keepaliveds: BTreeMap<&'static str, Keepalived>,
}

impl<'n> Pair<'n> {
    fn new(net: &'n Topology, dir: &Path, server: SocketAddr) -> Pair<'n> {
        let configs = Node::TANDEMS
            .map(|node| {
                let mut config = net.tandem_config(node, &[server]);
                // two pairs per call; the namespaces have the ports to themselves
                config.media.ports = 20000..=20999;
                (node.name(), config)
            })
            .into();
        Pair {
            net,
            dir: dir.to_owned(),
            configs,
            tandems: BTreeMap::new(),
            keepaliveds: BTreeMap::new(),
        }
    }

    /// Starts `node`'s Tandem (logs under `<dir>/<run>/tandem-<node>`; the epoch file stays in
    /// `<dir>/state-<node>` across runs).
    fn launch_tandem(&mut self, node: Node, run: &str) -> Result<()> {
        let ha = HaOptions {
            state_dir: self.dir.join(format!("state-{node}")),
            prefer_active: node == Node::TandemA,
            second_path: SecondPath::ServiceAddress,
        };
        let config = self.configs[node.name()].clone();
        let tandem = self
            .net
            .start_keepalived_tandem(node, config, &ha, &self.dir.join(run))?;
        self.tandems.insert(node.name(), tandem);
        Ok(())
    }

    /// Starts `node`'s keepalived with the notify script that makes its Tandem follow.
    fn launch_keepalived(&mut self, node: Node, priority: u8, run: &str) -> Result<()> {
        let mut config = KeepalivedConfig::new(self.net, node, priority);
        config.advert_interval = ADVERT;
        config.notify = Some(tandem_notify(self.tandem(node), &self.dir)?);
        let keepalived = Keepalived::start(self.net, node, &config, &self.dir.join(run))?;
        self.keepaliveds.insert(node.name(), keepalived);
        Ok(())
    }

    fn tandem(&self, node: Node) -> &NsTandem {
        &self.tandems[node.name()]
    }

    fn keepalived(&mut self, node: Node) -> &mut Keepalived {
        self.keepaliveds.get_mut(node.name()).unwrap()
    }

    /// Waits until `node`'s status satisfies `wanted`.
    fn wait(
        &mut self,
        node: Node,
        deadline: Instant,
        wanted: impl Fn(&HaStatus) -> bool,
    ) -> Result<HaStatus> {
        match self.tandem(node).wait_status(self.net, deadline, wanted) {
            Ok(status) => Ok(status),
            Err(error) => bail!("{error:#}\n{}", self.describe()),
        }
    }

    /// Waits until `active` is active carrying `calls` calls and the other node a synced standby
    /// mirroring them.
    fn wait_roles(&mut self, active: Node, calls: u64, deadline: Instant) -> Result<()> {
        let standby = active.peer().unwrap();
        self.wait(active, deadline, |s| s.is_active() && s.calls == calls)?;
        self.wait(standby, deadline, |s| {
            s.is_synced_standby() && s.calls == calls
        })?;
        Ok(())
    }

    /// Waits until `node`'s Tandem finds the media server up (its health probes leave from the
    /// VIP, so they fail while the node does not hold it).
    fn wait_server_up(&mut self, node: Node, deadline: Instant) -> Result<Duration> {
        let start = Instant::now();
        let up = wait_for(deadline, || {
            let up = self.tandem(node).metric(self.net, "tandem_media_server_up");
            (up.ok().flatten() == Some(1.0)).then_some(())
        });
        if up.is_none() {
            bail!(
                "{node} does not find the media server up\n{}",
                self.describe()
            );
        }
        Ok(start.elapsed())
    }

    /// `tandemctl incidents` of `node` (text, newest first).
    fn incidents(&self, node: Node) -> Result<String> {
        let output = self.tandem(node).ctl(self.net, &["incidents"])?;
        ensure!(output.status.success(), "tandemctl incidents in {node}");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Each Tandem's and keepalived's state, and what the notify scripts did.
    fn describe(&mut self) -> String {
        let mut text: Vec<String> = self.tandems.values_mut().map(NsTandem::describe).collect();
        text.extend(self.keepaliveds.values_mut().map(Keepalived::describe));
        for node in Node::TANDEMS {
            text.push(format!(
                "notify script in {node}:\n      {}",
                file_tail(&notify_log(&self.dir, node), 10).replace('\n', "\n      ")
            ));
        }
        text.join("\n")
    }
}

/// The SIPp echo server in `media`: answers every call, echoes its RTP.
fn echo_server(net: &Topology, dir: &Path) -> Result<NsSipp> {
    net.spawn_sipp(
        Node::Media,
        "ms1",
        Sipp::uas("ms1", "uas_basic.xml")
            .rtp_echo()
            .arg("-aa")
            .timeout(Duration::from_secs(90)),
        dir,
    )
}

/// `calls` SIPp calls (`role`, `scenario`) to the VIP, at 50 a second.
fn calls_to_vip(net: &Topology, role: &str, scenario: &str, calls: u32) -> Sipp {
    let vip = SocketAddr::new(net.vip().into(), 5060);
    Sipp::uac(role, scenario, vip)
        .calls(calls)
        .rate(50)
        .limit(calls)
        .timeout(Duration::from_secs(40))
}

/// tcpdump in `caller`: the echoed RTP arriving at the caller's media port from the VIP, one
/// source port (relay port) per call.
struct EchoCapture {
    guard: ChildGuard,
    file: PathBuf,
}

impl EchoCapture {
    fn start(net: &Topology, dir: &Path, media_port: u16) -> Result<EchoCapture> {
        let file = dir.join("echo.pcap");
        let filter = format!("udp and src host {} and dst port {media_port}", net.vip());
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-i",
                "svc0",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "64",
                "-w",
            ])
            .arg(&file)
            .arg(filter);
        let mut guard = net.spawn(Node::Caller, "echo", command, dir, false)?;
        let stderr = guard.stderr_log().to_owned();
        let listening = wait_for(secs(5), || {
            if !guard.is_running() {
                return Some(false);
            }
            std::fs::read_to_string(&stderr)
                .ok()
                .filter(|t| t.contains("listening on"))
                .map(|_| true)
        });
        ensure!(
            listening == Some(true),
            "tcpdump in caller: {}",
            file_tail(&stderr, 5)
        );
        Ok(EchoCapture { guard, file })
    }

    /// The relay ports (one per call) whose echoed RTP arrived after `since` (Unix seconds).
    fn calls_heard_after(&self, since: f64) -> Result<usize> {
        let output = Command::new("tcpdump")
            .arg("-r")
            .arg(&self.file)
            .args(["-n", "-tt"])
            .output()
            .context("tcpdump -r")?;
        // 1732200000.123456 IP 10.9.0.100.20002 > 10.9.0.10.6000: UDP, length 172
        let mut ports = std::collections::BTreeSet::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut words = line.split_whitespace();
            let (Some(time), Some(_), Some(source)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let port = source
                .rsplit('.')
                .next()
                .and_then(|p| p.parse::<u16>().ok());
            if let (Ok(time), Some(port)) = (time.parse::<f64>(), port) {
                if time > since {
                    ports.insert(port);
                }
            }
        }
        Ok(ports.len())
    }

    /// Waits until echoed RTP arrived after `since` for `calls` calls.
    fn wait_calls_after(&self, since: f64, calls: usize, deadline: Instant) -> Result<()> {
        let mut heard = 0;
        let all = wait_for(deadline, || {
            heard = self.calls_heard_after(since).ok()?;
            (heard >= calls).then_some(())
        });
        ensure!(
            all.is_some(),
            "echoed RTP reaches the caller for {heard} of {calls} calls"
        );
        Ok(())
    }
}

impl Drop for EchoCapture {
    fn drop(&mut self) {
        let _ = self.guard.signal("INT");
    }
}

/// keepalived moves the VIP and Tandem follows: the active role goes where keepalived puts the
/// VIP (first start, `kill -9` of the master node, its return with the higher priority), the
/// calls keep their RTP and end with BYE 200, new calls work, and the incidents name keepalived.
#[test]
fn keepalived_moves_the_vip_and_tandem_follows() -> Result<()> {
    let test = "ha_keepalived";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    report(&format!("{test}: {}", keepalived_version()?));
    let started = Instant::now();
    let topology = Topology::build("ha-ka")?;
    let outcome = follow_keepalived(&topology, dir.path(), test);
    drop(topology);
    let left = namespaces_left("ha-ka")?;
    ensure!(left.is_empty(), "namespaces left after the test: {left:?}");
    outcome?;
    report(&format!("{test}: took {} s", started.elapsed().as_secs()));
    dir.passed();
    Ok(())
}

fn follow_keepalived(net: &Topology, dir: &Path, test: &str) -> Result<()> {
    let media = echo_server(net, dir)?;
    let mut pair = Pair::new(net, dir, media.addr());
    pair.launch_tandem(Node::TandemA, "")?;
    pair.launch_tandem(Node::TandemB, "")?;
    // both standby and linked: neither promotes itself, not even the preferred one
    for node in Node::TANDEMS {
        let status = pair.wait(node, secs(10), |s| s.peer_connected)?;
        ensure!(!status.is_active(), "{node} promoted itself: {status:?}");
    }

    pair.launch_keepalived(Node::TandemA, PRIORITY_A, "")?;
    pair.keepalived(Node::TandemA)
        .wait_state(VrrpState::Master, secs(5))?;
    pair.launch_keepalived(Node::TandemB, PRIORITY_B, "")?;
    pair.keepalived(Node::TandemB)
        .wait_state(VrrpState::Backup, secs(5))?;
    pair.wait_roles(Node::TandemA, 0, secs(10))?;
    net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;
    pair.wait_server_up(Node::TandemA, secs(5))?;

    // long calls (ha_uac_echo.xml: RTP for about 14 s, then BYE)
    let echo = calls_to_vip(net, "caller", "ha_uac_echo.xml", CALLS);
    let media_port = echo.media_port();
    let caller = net.spawn_sipp(Node::Caller, "caller", echo, dir)?;
    let capture = EchoCapture::start(net, dir, media_port)?;
    pair.wait_roles(Node::TandemA, u64::from(CALLS), secs(20))?;
    capture.wait_calls_after(0.0, CALLS as usize, secs(10))?;

    // kill -9 of the master node: Tandem and keepalived at once
    let kill = unix_now();
    let killed = Instant::now();
    ensure!(net.kill_all(Node::TandemA)? >= 2, "tandem-a ran too little");
    pair.keepalived(Node::TandemB)
        .wait_state(VrrpState::Master, secs(5))?;
    let master = killed.elapsed();
    let taken = pair.wait(Node::TandemB, secs(5), HaStatus::is_active)?;
    let active = killed.elapsed();
    net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
    ensure!(
        taken.calls == u64::from(CALLS),
        "tandem-b carries {} calls, not {CALLS}",
        taken.calls
    );
    let incidents = pair.incidents(Node::TandemB)?;
    let reason = format!("keepalived: MASTER of INSTANCE {INSTANCE}");
    ensure!(
        incidents.contains(&reason),
        "tandem-b's incidents do not name {reason:?}:\n{incidents}"
    );
    report(&format!(
        "{test}: kill -9 of tandem-a (Tandem and keepalived), advert_int {} ms: keepalived MASTER \
         on tandem-b after {} ms, its Tandem active (polled) after {} ms with {} calls, epoch {}",
        ADVERT.as_millis(),
        master.as_millis(),
        active.as_millis(),
        taken.calls,
        taken.epoch
    ));
    report(&format!(
        "{test}: tandem-b's incidents:\n    {}",
        incidents.trim_end().replace('\n', "\n    ")
    ));
    capture.wait_calls_after(kill, CALLS as usize, secs(5))?;
    let probed = pair.wait_server_up(Node::TandemB, secs(5))?;
    report(&format!(
        "{test}: tandem-b finds the media server up {} ms after it was active",
        probed.as_millis()
    ));

    let short = calls_to_vip(net, "after-takeover", "uac_basic.xml", 5);
    let short = net.spawn_sipp(Node::Caller, "after-takeover", short, dir)?;
    short
        .wait(secs(20))?
        .check_caller(5)
        .map_err(anyhow::Error::msg)
        .context("new calls after the takeover")?;

    // tandem-a comes back: Tandem first (standby, synced), then keepalived, which takes the VIP
    // back (higher priority): the active role follows it
    pair.launch_tandem(Node::TandemA, "restarted")?;
    pair.wait_roles(Node::TandemB, u64::from(CALLS), secs(10))?;
    let moved = Instant::now();
    pair.launch_keepalived(Node::TandemA, PRIORITY_A, "restarted")?;
    pair.keepalived(Node::TandemA)
        .wait_state(VrrpState::Master, secs(5))?;
    pair.wait(Node::TandemA, secs(5), HaStatus::is_active)?;
    let back = moved.elapsed();
    pair.wait(Node::TandemB, secs(5), |s| !s.is_active())?;
    net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;
    let incidents = pair.incidents(Node::TandemA)?;
    ensure!(
        incidents.contains(&reason),
        "tandem-a's incidents do not name {reason:?}:\n{incidents}"
    );
    let back_calls = pair.tandem(Node::TandemA).status(net)?.calls;
    report(&format!(
        "{test}: tandem-a back: keepalived took the VIP back and its Tandem was active {} ms after \
         keepalived started, carrying {back_calls} calls",
        back.as_millis()
    ));

    let outcome = caller.wait(secs(40))?;
    if let Err(failure) = outcome.check_caller(u64::from(CALLS)) {
        bail!("{failure}\n{}", pair.describe());
    }
    drop(capture);
    media
        .finish(secs(10))?
        .check_server(Invites::AtLeast(u64::from(CALLS) + 5))
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

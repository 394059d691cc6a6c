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
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_tests::ha_calls::EchoCapture;
use tandem_tests::keepalived::{keepalived_version, notify_log, tandem_notify, INSTANCE};
use tandem_tests::netns::{
    namespaces_left, Detection, HaOptions, HaStatus, NsSipp, NsTandem, SecondPath,
};
use tandem_tests::process::{file_tail, wait_for};
use tandem_tests::sipp::Invites;
use tandem_tests::{
    free_port, need_root, need_tool, Keepalived, KeepalivedConfig, Node, Sipp, TandemConfig,
    TestDir, Topology, VrrpState,
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
    /// Whether keepalived tracks the notify script's health check.
    checked: bool,
}

impl<'n> Pair<'n> {
    fn new(net: &'n Topology, dir: &Path, server: SocketAddr, checked: bool) -> Pair<'n> {
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
            checked,
        }
    }

    /// Starts `node`'s Tandem (logs under `<dir>/<run>/tandem-<node>`; the epoch file stays in
    /// `<dir>/state-<node>` across runs).
    fn launch_tandem(&mut self, node: Node, run: &str) -> Result<()> {
        let ha = HaOptions {
            state_dir: self.dir.join(format!("state-{node}")),
            prefer_active: node == Node::TandemA,
            second_path: SecondPath::ServiceAddress,
            detection: Detection::Patient,
        };
        let config = self.configs[node.name()].clone();
        let tandem = self
            .net
            .start_keepalived_tandem(node, config, &ha, &self.dir.join(run))?;
        self.tandems.insert(node.name(), tandem);
        Ok(())
    }

    /// Starts `node`'s keepalived with the notify script that makes its Tandem follow, and with
    /// the script's health check if `self.checked`.
    fn launch_keepalived(&mut self, node: Node, priority: u8, run: &str) -> Result<()> {
        let mut config = KeepalivedConfig::new(self.net, node, priority);
        config.advert_interval = ADVERT;
        let notify = tandem_notify(self.tandem(node), &self.dir)?;
        config.check = self.checked.then(|| format!("{notify} check"));
        config.notify = Some(notify);
        let keepalived = Keepalived::start(self.net, node, &config, &self.dir.join(run))?;
        self.keepaliveds.insert(node.name(), keepalived);
        Ok(())
    }

    /// Starts both Tandems (neither becomes active by itself), then keepalived in tandem-a
    /// (which becomes MASTER, and its Tandem active) and in tandem-b; waits until tandem-a is
    /// active, tandem-b its synced standby, the caller reaches the VIP at tandem-a and tandem-a
    /// finds the media server up.
    fn start(&mut self) -> Result<()> {
        self.launch_tandem(Node::TandemA, "")?;
        self.launch_tandem(Node::TandemB, "")?;
        for node in Node::TANDEMS {
            let status = self.wait(node, secs(10), |s| s.peer_connected)?;
            ensure!(!status.is_active(), "{node} promoted itself: {status:?}");
        }
        self.launch_keepalived(Node::TandemA, PRIORITY_A, "")?;
        self.keepalived(Node::TandemA)
            .wait_state(VrrpState::Master, secs(5))?;
        self.launch_keepalived(Node::TandemB, PRIORITY_B, "")?;
        self.keepalived(Node::TandemB)
            .wait_state(VrrpState::Backup, secs(5))?;
        self.wait_roles(Node::TandemA, 0, secs(10))?;
        self.net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;
        self.wait_server_up(Node::TandemA, secs(5))?;
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

/// The tests run one at a time (each runs two Tandems, two keepaliveds, SIPp and tcpdump).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `body` on a fresh topology (one test at a time), then checks that no namespace is left.
fn with_topology(
    test: &str,
    prefix: &str,
    body: impl FnOnce(&Topology, &Path) -> Result<()>,
) -> Result<()> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut dir = TestDir::new(test)?;
    report(&format!("{test}: {}", keepalived_version()?));
    let started = Instant::now();
    let topology = Topology::build(prefix)?;
    let outcome = body(&topology, dir.path());
    drop(topology);
    let left = namespaces_left(prefix)?;
    ensure!(left.is_empty(), "namespaces left after the test: {left:?}");
    outcome?;
    report(&format!("{test}: took {} s", started.elapsed().as_secs()));
    dir.passed();
    Ok(())
}

/// Long calls (ha_uac_echo.xml: RTP for about 14 s, then BYE) from `caller` to the VIP, and a
/// capture of their echoed RTP; returns once both tandems count them and their RTP is echoed.
fn echo_calls(pair: &mut Pair<'_>, calls: u32) -> Result<(NsSipp, EchoCapture)> {
    let (net, dir) = (pair.net, pair.dir.clone());
    let echo = calls_to_vip(net, "caller", "ha_uac_echo.xml", calls);
    let media_port = echo.media_port();
    let caller = net.spawn_sipp(Node::Caller, "caller", echo, &dir)?;
    let capture = EchoCapture::start(net, &dir, "echo", media_port)?;
    pair.wait_roles(Node::TandemA, u64::from(calls), secs(20))?;
    capture.wait_calls(calls as usize, secs(10))?;
    Ok((caller, capture))
}

/// `calls` new calls to the VIP, all answered and ended with BYE 200.
fn new_calls_succeed(net: &Topology, dir: &Path, role: &str, calls: u32) -> Result<()> {
    let sipp = calls_to_vip(net, role, "uac_basic.xml", calls).port(caller_port(net)?);
    net.spawn_sipp(Node::Caller, role, sipp, dir)?
        .wait(secs(20))?
        .check_caller(u64::from(calls))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{role}: new calls"))
}

/// A SIP port for another SIPp in `caller`: free on the host (as every SIPp port of the harness)
/// and used by no socket in the caller's namespace, where the running SIPp already has sockets the
/// host cannot see.
fn caller_port(net: &Topology) -> Result<u16> {
    let output = net.exec(Node::Caller, &["ss", "-H", "-a", "-n", "-u"])?;
    let sockets = String::from_utf8_lossy(&output.stdout).into_owned();
    let in_use = |port: u16| {
        let suffix = format!(":{port}");
        sockets
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3))
            .any(|local| local.ends_with(&suffix))
    };
    (0..100)
        .map(|_| free_port())
        .find(|port| !in_use(*port))
        .with_context(|| format!("no free SIP port in caller:\n{sockets}"))
}

/// Waits for the echo caller: every one of its `calls` calls ended with its BYE answered 200.
fn all_calls_ended(caller: NsSipp, calls: u32, pair: &mut Pair<'_>) -> Result<()> {
    let outcome = caller.wait(secs(40))?;
    if let Err(failure) = outcome.check_caller(u64::from(calls)) {
        bail!("{failure}\n{}", pair.describe());
    }
    Ok(())
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
    with_topology(test, "ha-ka", |net, dir| {
        let media = echo_server(net, dir)?;
        let mut pair = Pair::new(net, dir, media.addr(), false);
        pair.start()?;
        follow_keepalived(&mut pair, test)?;
        media
            .finish(secs(10))?
            .check_server(Invites::AtLeast(u64::from(CALLS) + 5))
            .map_err(anyhow::Error::msg)
    })
}

/// With the notify script's health check tracked by keepalived: `kill -9` of Tandem alone on the
/// active node, its keepalived left running. The check fails, keepalived there gives the VIP up
/// (FAULT), tandem-b's keepalived takes it and its Tandem is promoted with every call; the calls
/// keep their RTP and end with BYE 200, and new calls work.
#[test]
fn the_health_check_moves_the_vip_off_a_node_whose_tandem_died() -> Result<()> {
    let test = "ha_keepalived_check";
    if !ready(test) {
        return Ok(());
    }
    with_topology(test, "ha-kc", |net, dir| {
        let media = echo_server(net, dir)?;
        let mut pair = Pair::new(net, dir, media.addr(), true);
        pair.start()?;
        let calls = 10;
        let (caller, capture) = echo_calls(&mut pair, calls)?;

        let kill = unix_now();
        let killed = Instant::now();
        pair.tandems
            .get_mut(Node::TandemA.name())
            .unwrap()
            .kill9()?;
        pair.keepalived(Node::TandemA)
            .wait_state(VrrpState::Fault, secs(5))?;
        let fault = killed.elapsed();
        pair.keepalived(Node::TandemB)
            .wait_state(VrrpState::Master, secs(5))?;
        let taken = pair.wait(Node::TandemB, secs(5), HaStatus::is_active)?;
        let active = killed.elapsed();
        ensure!(
            taken.calls == u64::from(calls),
            "tandem-b carries {} calls, not {calls}",
            taken.calls
        );
        net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
        ensure!(
            !net.vip_holders()?.contains(&Node::TandemA),
            "tandem-a's keepalived kept the VIP in FAULT"
        );
        report(&format!(
            "{test}: kill -9 of Tandem alone on tandem-a: its keepalived in FAULT after {} ms, \
             tandem-b active (polled) after {} ms with {} calls",
            fault.as_millis(),
            active.as_millis(),
            taken.calls
        ));
        capture.wait_calls_after(kill, calls as usize, secs(5))?;
        pair.wait_server_up(Node::TandemB, secs(5))?;
        new_calls_succeed(net, dir, "after-takeover", 3)?;
        all_calls_ended(caller, calls, &mut pair)?;
        drop(capture);
        media
            .finish(secs(10))?
            .check_server(Invites::AtLeast(u64::from(calls) + 3))
            .map_err(anyhow::Error::msg)
    })
}

/// The first test's story once the pair is up: calls, `kill -9` of tandem-a, new calls, the
/// return of tandem-a and the move back.
fn follow_keepalived(pair: &mut Pair<'_>, test: &str) -> Result<()> {
    let (net, dir) = (pair.net, pair.dir.clone());
    let (caller, capture) = echo_calls(pair, CALLS)?;
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

    new_calls_succeed(net, &dir, "after-takeover", 5)?;

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

    all_calls_ended(caller, CALLS, pair)?;
    drop(capture);
    Ok(())
}

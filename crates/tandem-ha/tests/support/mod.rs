//! A two-node world in virtual time: each node is a role machine, a stand-in core (real
//! `CallSnapshot` values, the core's replication API shape), an outbox while active and a mirror
//! while standby, wired like the shell will wire them. The test passes the messages between the
//! nodes with one millisecond of latency and injects failures: silent or noisy deaths, a cut
//! replication link, connection resets on lost deltas, probes that never answer.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tandem_core::call::{CallState, CallTimes, Leg};
use tandem_core::media::CallMedia;
use tandem_core::{CallSnapshot, Peer, ReplicaSnapshot, ReplicationChange};
use tandem_ha::convert::{active_heartbeat, standby_heartbeat};
use tandem_ha::{
    Action, HelloOutcome, Mirror, NodeRole, Outbox, OutboxConfig, Progress, Role, RoleConfig,
    StepName,
};
use tandem_media::ports::PortPair;
use tandem_media::session::{EndpointPlan, StreamPlan};
use tandem_proto::replication::v1::{
    active_message, standby_message, ActiveMessage, StandbyMessage,
};

pub const MS: Duration = Duration::from_millis(1);
pub const BASE_UNIX_MS: u64 = 1_700_000_000_000;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// An answered call as the core would snapshot it.
pub fn sample_call(key: u64, age: Duration) -> CallSnapshot {
    let port = |n: u64| {
        PortPair::from_rtp(20_000 + u16::try_from((key * 8 + n) % 20_000).unwrap() * 2).unwrap()
    };
    let leg = |side: &str, peer: Peer| Leg {
        call_id: format!("{key}-{side}@example.test"),
        local_tag: format!("tandem-{side}-{key}"),
        remote_tag: Some(format!("{side}-tag-{key}")),
        local_party: format!("<sip:tandem@example.test>;tag=tandem-{side}-{key}"),
        remote_party: format!("<sip:{side}@example.test>;tag={side}-tag-{key}"),
        local_cseq: 1,
        remote_cseq: Some(101),
        remote_target: format!("sip:{side}@{}", peer.addr),
        route_set: vec![format!("<sip:edge.example.test;lr;k={key}>")],
        peer,
    };
    let endpoint = |n: u64, remote: &str| EndpointPlan {
        local: port(n),
        remote_rtp: Some(addr(remote)),
        remote_rtcp: None,
        rtcp_mux: (n & 1) == 0,
        latched_rtp: None,
        latched_rtcp: None,
        outbound: None,
    };
    CallSnapshot {
        key,
        state: CallState::Confirmed,
        caller: leg("caller", Peer::udp(addr("192.0.2.10:5060"))),
        server: leg("server", Peer::tcp(addr("[2001:db8::5]:5060"), None)),
        server_name: Some("ms1".to_owned()),
        media: CallMedia {
            streams: vec![StreamPlan {
                index: 0,
                clock_rate: 8000,
                caller: endpoint(0, "192.0.2.10:40000"),
                server: endpoint(1, "198.51.100.5:30000"),
            }],
            sending: vec![[true, true]],
            ..CallMedia::default()
        },
        age,
        times: CallTimes {
            answered: Some(Duration::from_millis(300)),
            session_expires: Some(Duration::from_millis(1_800_300)),
            max_duration: Some(Duration::from_millis(43_200_300)),
        },
    }
}

/// The core's replication API, over a map of calls.
#[derive(Debug, Default)]
pub struct FakeCore {
    /// Calls and their creation time (Unix ms).
    calls: BTreeMap<u64, (CallSnapshot, u64)>,
    servers: Vec<(String, bool)>,
    next_key: u64,
    last_seq: u64,
    changes: VecDeque<(u64, ReplicationChange)>,
}

impl FakeCore {
    pub fn new() -> FakeCore {
        FakeCore {
            servers: vec![("ms1".to_owned(), true), ("ms2".to_owned(), true)],
            next_key: 1,
            ..FakeCore::default()
        }
    }

    fn record(&mut self, change: ReplicationChange) {
        self.last_seq += 1;
        self.changes.push_back((self.last_seq, change));
    }

    fn call_at(&self, key: u64, unix_ms: u64) -> Option<CallSnapshot> {
        let (call, created) = self.calls.get(&key)?;
        Some(CallSnapshot {
            age: Duration::from_millis(unix_ms - created),
            ..call.clone()
        })
    }

    pub fn new_call(&mut self, unix_ms: u64) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.calls
            .insert(key, (sample_call(key, Duration::ZERO), unix_ms));
        let call = self.call_at(key, unix_ms).unwrap();
        self.record(ReplicationChange::Call(Box::new(call)));
        key
    }

    /// An in-dialog request moved the call on (next CSeq, a new remote target).
    pub fn update_call(&mut self, key: u64, unix_ms: u64) {
        let Some((call, _)) = self.calls.get_mut(&key) else {
            return;
        };
        call.caller.local_cseq += 1;
        call.server.remote_cseq = Some(call.server.remote_cseq.unwrap_or(0) + 1);
        call.media.sending[0][1] = !call.media.sending[0][1];
        let call = self.call_at(key, unix_ms).unwrap();
        self.record(ReplicationChange::Call(Box::new(call)));
    }

    pub fn end_call(&mut self, key: u64) {
        if self.calls.remove(&key).is_some() {
            self.record(ReplicationChange::CallRemoved {
                key,
                reason: "bye-caller".to_owned(),
            });
        }
    }

    pub fn server_health(&mut self, name: &str, up: bool) {
        if let Some(server) = self.servers.iter_mut().find(|(n, _)| n == name) {
            server.1 = up;
        }
        self.record(ReplicationChange::ServerHealth {
            name: name.to_owned(),
            up,
        });
    }

    /// The next change. The real core takes a call's age when the change happens and the shell
    /// pushes it in the same turn; here the age is taken when the change is polled, for the same
    /// effect.
    pub fn poll_replication(&mut self, unix_ms: u64) -> Option<(u64, ReplicationChange)> {
        let (seq, mut change) = self.changes.pop_front()?;
        if let ReplicationChange::Call(call) = &mut change {
            if let Some((_, created)) = self.calls.get(&call.key) {
                call.age = Duration::from_millis(unix_ms - created);
            }
        }
        Some((seq, change))
    }

    pub fn replication_snapshot(&self, unix_ms: u64) -> ReplicaSnapshot {
        ReplicaSnapshot {
            seq: self.last_seq - self.changes.len() as u64,
            calls: self
                .calls
                .keys()
                .filter_map(|key| self.call_at(*key, unix_ms))
                .collect(),
            servers: self.servers.clone(),
            next_call_key: self.next_key,
        }
    }

    pub fn restore(&mut self, unix_ms: u64, snapshot: ReplicaSnapshot) -> usize {
        let mut restored = 0;
        self.last_seq = self.last_seq.max(snapshot.seq);
        self.next_key = self.next_key.max(snapshot.next_call_key);
        for (name, up) in snapshot.servers {
            if let Some(server) = self.servers.iter_mut().find(|(n, _)| *n == name) {
                server.1 = up;
            }
        }
        for call in snapshot.calls {
            let created = unix_ms - u64::try_from(call.age.as_millis()).unwrap();
            self.next_key = self.next_key.max(call.key + 1);
            self.calls.entry(call.key).or_insert_with(|| {
                restored += 1;
                (call, created)
            });
        }
        restored
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn keys(&self) -> Vec<u64> {
        self.calls.keys().copied().collect()
    }
}

/// One Tandem node as the shell drives it.
#[derive(Debug)]
pub struct Node {
    pub name: &'static str,
    pub config: RoleConfig,
    pub role: Role,
    pub core: FakeCore,
    pub outbox: Option<Outbox>,
    pub mirror: Mirror,
    /// The process runs (a dead or frozen node does nothing).
    pub alive: bool,
    /// The shell serves calls (between BecomeActive and BecomeStandby).
    pub serving: bool,
    /// The shell takes SIP (cleared by StopAccepting during a switchover).
    pub accepting: bool,
    pub persisted_epoch: u64,
    /// Test knob: the standby applies but does not acknowledge.
    pub acks_enabled: bool,
    /// A probe answer is due then.
    probe_due: Option<Instant>,
    /// Calls the last promotion restored.
    pub restored: Option<usize>,
    /// What the outbox made of the last Hello.
    pub last_hello: Option<HelloOutcome>,
}

impl Node {
    fn new(config: RoleConfig, now: Instant, unix_ms: u64) -> Node {
        let name = if config.node == "a" { "a" } else { "b" };
        Node {
            name,
            role: Role::new(config.clone(), now, unix_ms),
            persisted_epoch: config.epoch,
            config,
            core: FakeCore::new(),
            outbox: None,
            mirror: Mirror::new(),
            alive: true,
            serving: false,
            accepting: false,
            acks_enabled: true,
            probe_due: None,
            restored: None,
            last_hello: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.role.role() == NodeRole::Active
    }
}

/// One message on the stream, either direction.
#[derive(Debug, Clone)]
enum Msg {
    Active(Box<ActiveMessage>),
    Standby(StandbyMessage),
}

/// How the second path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Says whether the peer process runs (SIP OPTIONS answered, or ICMP port unreachable).
    Truthful,
    /// A dead peer does not answer at all (power loss): the probe runs into its timeout.
    SilentWhenDead,
}

/// How a node or the link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nobody is told: messages just stop (power loss, a cut cable).
    Silent,
    /// The stream closes at once (kill -9: the kernel resets the connection).
    Reset,
}

/// Two nodes, a replication link and virtual time.
#[derive(Debug)]
pub struct Net {
    pub start: Instant,
    pub now: Instant,
    pub nodes: [Node; 2],
    pub outbox_config: OutboxConfig,
    pub probe: Probe,
    /// Replication link not cut.
    pub link_up: bool,
    /// Both ends have a stream.
    connected: bool,
    /// The stream silently drops everything (a silent failure not noticed yet).
    blackhole: bool,
    reset_pending: bool,
    /// Messages toward node 0 and node 1.
    queues: [VecDeque<Msg>; 2],
    /// Per mille of deltas whose loss resets the connection.
    pub delta_loss_per_mille: u64,
    rng: u64,
    /// Connections reset by injected loss.
    pub resets: u64,
    /// Ticks during which both nodes were serving.
    pub both_active_ticks: u64,
}

impl Net {
    /// Nodes "a" (configured active) and "b", with the default role timings.
    pub fn new() -> Net {
        let mut a = RoleConfig::new("a", "b");
        a.prefer_active = true;
        Net::with_configs(a, RoleConfig::new("b", "a"), OutboxConfig::default())
    }

    pub fn with_configs(a: RoleConfig, b: RoleConfig, outbox_config: OutboxConfig) -> Net {
        let start = Instant::now();
        Net {
            start,
            now: start,
            nodes: [
                Node::new(a, start, BASE_UNIX_MS),
                Node::new(b, start, BASE_UNIX_MS),
            ],
            outbox_config,
            probe: Probe::Truthful,
            link_up: true,
            connected: false,
            blackhole: false,
            reset_pending: false,
            queues: [VecDeque::new(), VecDeque::new()],
            delta_loss_per_mille: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            resets: 0,
            both_active_ticks: 0,
        }
    }

    pub fn unix_ms(&self) -> u64 {
        BASE_UNIX_MS + u64::try_from((self.now - self.start).as_millis()).unwrap()
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A deterministic random number below `bound`.
    pub fn random(&mut self, bound: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % bound.max(1)
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[index(name)]
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        &mut self.nodes[index(name)]
    }

    /// The one serving node, if exactly one serves.
    pub fn active(&self) -> Option<&Node> {
        let mut serving = self.nodes.iter().filter(|n| n.alive && n.serving);
        let first = serving.next();
        if serving.next().is_some() {
            None
        } else {
            first
        }
    }

    /// Runs `duration` of virtual time in 1 ms ticks.
    pub fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.tick();
        }
    }

    /// Runs until `done` holds (checked every tick) or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    /// Runs with a call load on the serving node: new calls, in-dialog changes, hang-ups, the
    /// occasional server health change.
    pub fn run_with_load(&mut self, duration: Duration, calls_per_tick: u64) {
        let end = self.now + duration;
        while self.now < end {
            self.load(calls_per_tick);
            self.tick();
        }
    }

    pub fn load(&mut self, changes: u64) {
        let unix_ms = self.unix_ms();
        for _ in 0..changes {
            let roll = self.random(100);
            let pick = self.random(u64::MAX);
            let Some(i) = (0..2).find(|&i| {
                let n = &self.nodes[i];
                n.alive && n.serving && n.accepting
            }) else {
                return;
            };
            let core = &mut self.nodes[i].core;
            let keys = core.keys();
            let some_key = (!keys.is_empty()).then(|| keys[(pick % keys.len() as u64) as usize]);
            match (roll, some_key) {
                (0..=49, _) | (_, None) => {
                    core.new_call(unix_ms);
                }
                (50..=79, Some(key)) => core.update_call(key, unix_ms),
                (80..=98, Some(key)) => core.end_call(key),
                _ => core.server_health("ms2", (pick & 1) == 0),
            }
        }
    }

    /// Whether the standby's mirror is synced and equal to the active core's state.
    pub fn mirror_matches(&self) -> bool {
        let Some(active) = self.active() else {
            return false;
        };
        let standby = &self.nodes[1 - index(active.name)];
        let unix_ms = self.unix_ms();
        let want = active.core.replication_snapshot(unix_ms);
        let have = standby.mirror.to_snapshot(unix_ms);
        standby.alive
            && standby.mirror.synced()
            && have.seq == want.seq
            && have.calls == want.calls
            && have.servers == want.servers
    }

    /// A one-line picture of both nodes, for assertion messages.
    pub fn describe(&self) -> String {
        let unix_ms = self.unix_ms();
        self.nodes
            .iter()
            .map(|n| {
                let outbox = n.outbox.as_ref().map(|o| {
                    format!(
                        "outbox(last {} acked {} synced {} stale {} {:?})",
                        o.last_seq(),
                        o.acked(),
                        o.synced(),
                        o.stale(),
                        o.metrics()
                    )
                });
                let core = n.core.replication_snapshot(unix_ms);
                format!(
                    "{}: alive {} serving {} {:?} epoch {} core(seq {} calls {}) mirror({:?} seq {} epoch {} calls {}) {:?}",
                    n.name,
                    n.alive,
                    n.serving,
                    n.role.role(),
                    n.role.epoch(),
                    core.seq,
                    core.calls.len(),
                    n.mirror.state(),
                    n.mirror.applied_seq(),
                    n.mirror.epoch(),
                    n.mirror.calls(),
                    outbox
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops node `name`.
    pub fn kill(&mut self, name: &str, how: Failure) {
        self.nodes[index(name)].alive = false;
        self.fail(how);
    }

    /// Cuts the replication link only (both processes keep running).
    pub fn cut_link(&mut self, how: Failure) {
        self.link_up = false;
        self.fail(how);
    }

    pub fn restore_link(&mut self) {
        self.link_up = true;
    }

    /// The process of `name` continues where it stopped (it was frozen, not restarted).
    pub fn thaw(&mut self, name: &str) {
        self.nodes[index(name)].alive = true;
    }

    /// A fresh process of `name`, reading its persisted epoch.
    pub fn restart(&mut self, name: &str) {
        let i = index(name);
        let mut config = self.nodes[i].config.clone();
        config.epoch = self.nodes[i].persisted_epoch;
        self.nodes[i] = Node::new(config, self.now, self.unix_ms());
    }

    fn fail(&mut self, how: Failure) {
        match how {
            Failure::Silent => self.blackhole = self.connected,
            Failure::Reset => self.disconnect(),
        }
    }

    fn tick(&mut self) {
        self.now += MS;
        self.update_connection();
        for i in 0..2 {
            let incoming = std::mem::take(&mut self.queues[i]);
            for msg in incoming {
                if self.nodes[i].alive && self.connected && !self.blackhole {
                    self.receive(i, msg);
                }
            }
        }
        for i in 0..2 {
            if self.nodes[i].alive {
                self.drive(i);
            }
        }
        if self.nodes.iter().all(|n| n.alive && n.serving) {
            self.both_active_ticks += 1;
        }
    }

    fn update_connection(&mut self) {
        if std::mem::take(&mut self.reset_pending) {
            self.disconnect();
        }
        let want = self.link_up && self.nodes.iter().all(|n| n.alive);
        if want && (!self.connected || self.blackhole) {
            self.disconnect();
            self.connect();
        } else if !want && self.connected && !self.blackhole {
            self.disconnect();
        }
    }

    fn connect(&mut self) {
        self.connected = true;
        self.blackhole = false;
        for i in 0..2 {
            self.nodes[i].role.handle_peer_connected(self.now);
            if !self.nodes[i].serving {
                self.send_hello(i);
            }
        }
    }

    fn disconnect(&mut self) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.blackhole = false;
        self.queues = [VecDeque::new(), VecDeque::new()];
        for node in self.nodes.iter_mut().filter(|n| n.alive) {
            node.role.handle_peer_disconnected(self.now);
            if let Some(outbox) = node.outbox.as_mut() {
                outbox.handle_disconnect();
            }
        }
    }

    fn send(&mut self, from: usize, msg: Msg) {
        if self.connected && !self.blackhole {
            self.queues[1 - from].push_back(msg);
        }
    }

    fn send_hello(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let hello = node.mirror.hello(node.name, node.role.epoch());
        self.send(
            i,
            Msg::Standby(StandbyMessage {
                kind: Some(standby_message::Kind::Hello(hello)),
            }),
        );
    }

    fn receive(&mut self, i: usize, msg: Msg) {
        let now = self.now;
        let is_delta = |m: &ActiveMessage| matches!(m.kind, Some(active_message::Kind::Delta(_)));
        if matches!(&msg, Msg::Active(m) if is_delta(m))
            && self.random(1000) < self.delta_loss_per_mille
        {
            self.resets += 1;
            self.reset_pending = true;
            return;
        }
        if self.reset_pending {
            return;
        }
        let node = &mut self.nodes[i];
        match msg {
            Msg::Active(message) => {
                if node.serving {
                    if let Some(active_message::Kind::Heartbeat(hb)) = &message.kind {
                        node.role.handle_heartbeat(now, hb);
                    }
                    return;
                }
                if let Ok(Some(hb)) = node.mirror.handle_message(*message) {
                    node.role.handle_heartbeat(now, &hb);
                }
            }
            Msg::Standby(message) => match message.kind {
                Some(standby_message::Kind::Hello(hello)) => {
                    node.role.handle_hello(now, &hello);
                    if let Some(outbox) = node.outbox.as_mut() {
                        node.last_hello = Some(outbox.handle_hello(now, &hello));
                    }
                }
                Some(standby_message::Kind::Ack(ack)) => {
                    if let Some(outbox) = node.outbox.as_mut() {
                        outbox.handle_ack(now, &ack);
                    }
                }
                Some(standby_message::Kind::Heartbeat(hb)) => node.role.handle_heartbeat(now, &hb),
                None => {}
            },
        }
    }

    /// One turn of node `i`'s event loop.
    fn drive(&mut self, i: usize) {
        let (now, unix_ms) = (self.now, self.unix_ms());
        let mut out = Vec::new();
        let node = &mut self.nodes[i];
        let progress = if let Some(outbox) = node.outbox.as_mut() {
            while let Some((seq, change)) = node.core.poll_replication(unix_ms) {
                outbox.push(now, unix_ms, seq, change).unwrap();
            }
            outbox.handle_timeout(now);
            if outbox.poll_need_snapshot() {
                let snapshot = node.core.replication_snapshot(unix_ms);
                outbox.begin_snapshot(now, unix_ms, snapshot).unwrap();
            }
            while let Some(message) = outbox.poll_send() {
                out.push(Msg::Active(Box::new(message.into_message().unwrap())));
            }
            Progress::Active {
                last_seq: outbox.last_seq(),
                acked: outbox.acked(),
                standby_synced: outbox.synced(),
                calls: node.core.calls() as u64,
            }
        } else {
            let ack = node.mirror.poll_ack();
            if let (Some(ack), true) = (ack, node.acks_enabled) {
                out.push(Msg::Standby(StandbyMessage {
                    kind: Some(standby_message::Kind::Ack(ack)),
                }));
            }
            Progress::Standby {
                applied_seq: node.mirror.applied_seq(),
                synced: node.mirror.synced(),
                calls: node.mirror.calls() as u64,
            }
        };
        let resync = node.outbox.is_none() && node.mirror.needs_resync();
        node.role.set_replication(now, progress);
        for msg in out {
            self.send(i, msg);
        }
        if resync {
            self.send_hello(i);
        }
        let peer_alive = self.nodes[1 - i].alive;
        let node = &mut self.nodes[i];
        if node.probe_due.is_some_and(|due| now >= due) {
            node.probe_due = None;
            if peer_alive || self.probe == Probe::Truthful {
                node.role.handle_confirm_result(now, peer_alive);
            }
        }
        if node.role.poll_timeout().is_some_and(|t| now >= t) {
            node.role.handle_timeout(now);
        }
        self.apply_actions(i);
    }

    /// Carries out what node `i`'s role machine asks, like the shell does.
    pub fn apply_actions(&mut self, i: usize) {
        let (now, unix_ms) = (self.now, self.unix_ms());
        while let Some(action) = self.nodes[i].role.poll_action() {
            let node = &mut self.nodes[i];
            match action {
                Action::SendHeartbeat(hb) => {
                    let msg = if node.serving {
                        Msg::Active(Box::new(active_heartbeat(hb)))
                    } else {
                        Msg::Standby(standby_heartbeat(hb))
                    };
                    self.send(i, msg);
                }
                Action::StartConfirm => node.probe_due = Some(now + 2 * MS),
                Action::PersistEpoch { epoch } => node.persisted_epoch = epoch,
                Action::BecomeActive { epoch } => {
                    let restored = node.core.restore(unix_ms, node.mirror.to_snapshot(unix_ms));
                    node.mirror.reset();
                    node.outbox = Some(Outbox::new(self.outbox_config, epoch));
                    node.serving = true;
                    node.accepting = true;
                    node.restored = Some(restored);
                    node.role.record_step(now, StepName::AddressTaken, "vip", 0);
                    node.role
                        .record_step(now, StepName::CallsResumed, "", restored as u64);
                    self.reset_pending = true;
                }
                Action::BecomeStandby { .. } => {
                    node.core = FakeCore::new();
                    node.outbox = None;
                    node.mirror.reset();
                    node.serving = false;
                    node.accepting = false;
                    self.reset_pending = true;
                }
                Action::StopAccepting => node.accepting = false,
                Action::ResumeAccepting => node.accepting = true,
            }
        }
    }
}

fn index(name: &str) -> usize {
    usize::from(name != "a")
}

//! One node of an HA pair, run on the core task beside the `Core` it replicates: the role machine
//! (`tandem_ha::Role`), the active side's outbox or the standby side's mirror, the replication
//! link and the service address. The core task calls [`HaNode::handle_link_event`] for every
//! link event, [`HaNode::after_core`] after every batch of core work and
//! [`HaNode::handle_timeout`] at [`HaNode::poll_timeout`]; SIP input passes
//! [`HaNode::accepts`] first.

use super::address::{self, ServiceAddress};
use super::link::{LinkConfig, LinkEvent, LinkHandle, StreamId};
use crate::config::{HaSettings, VipOwner};
use crate::now;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_core::{Core, Durability};
use tandem_ha::convert::{active_heartbeat, standby_heartbeat};
use tandem_ha::{
    Action, AddressOwner, CallChange, HelloOutcome, Mirror, NodeRole, Outbox, OutboxConfig,
    Progress, Role, RoleConfig, StepName,
};
use tandem_proto::replication::v1::{
    active_message, standby_message, ActiveMessage, StandbyMessage,
};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Messages waiting per direction on the replication stream.
const LINK_QUEUE: usize = 4096;
/// Pause before dialling the peer again after the stream closed.
const REDIAL_AFTER: Duration = Duration::from_millis(200);
/// An active node without a standby dials its peer this often. If the peer is active too (it
/// took over while this node was alive but unheard, or was promoted by force), the two hear each
/// other's heartbeats on that stream and the lower epoch steps down: two actives always meet.
const PEER_SEARCH_EVERY: Duration = Duration::from_secs(1);

/// The wall clock, for the replication schema's Unix times and the incident timeline.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The HA side of a node.
#[derive(Debug)]
pub struct HaNode {
    settings: HaSettings,
    role: Role,
    link: LinkHandle,
    /// Active: the stream of changes to the standby.
    outbox: Option<Outbox>,
    /// Standby: the copy of the active's state.
    mirror: Mirror,
    /// Active side: the peer's accepted stream.
    standby_stream: Option<StreamId>,
    /// Our stream to the peer is open (a standby's to its active, or an active's search for a
    /// second active).
    dialled: bool,
    redial_at: Option<Instant>,
    /// False during a switchover's hand-over: SIP goes unanswered (the next active gets the
    /// retransmissions).
    accepting: bool,
    address: Option<ServiceAddress>,
}

impl HaNode {
    /// Starts the link (its server listens at once) and the role machine, as standby: `core`
    /// stops probing the media servers (the active node probes them; see `Core::set_probing`).
    pub async fn start(
        settings: HaSettings,
        events: mpsc::Sender<LinkEvent>,
        core: &mut Core,
    ) -> anyhow::Result<HaNode> {
        let link = LinkHandle::start(
            LinkConfig {
                listen: settings.listen,
                peer: settings.peer_address,
                peer_sip: settings.peer_sip,
                queue: LINK_QUEUE,
                connect_timeout: Duration::from_millis(500),
            },
            events,
        )
        .await?;
        let mut config = RoleConfig::new(&settings.node, &settings.peer);
        config.heartbeat_interval = settings.heartbeat_interval;
        config.misses = settings.misses;
        config.confirm_timeout = settings.confirm_timeout;
        config.prefer_active = settings.prefer_active;
        config.epoch = read_epoch(&epoch_file(&settings));
        config.address_owner = settings.address_owner();
        let role = Role::new(config, now(), unix_ms());
        let mut address = settings.vip.as_ref().and_then(|vip| match &vip.owner {
            VipOwner::Tandem { interface } => {
                Some(ServiceAddress::new(vip.ip, vip.prefix, interface.clone()))
            }
            VipOwner::Keepalived => None,
        });
        if let Some(address) = &mut address {
            // A node starts as standby: the address is not ours until the role machine says so.
            if let Err(error) = address.release() {
                warn!(%error, "could not release the service address at start");
            }
        }
        core.set_probing(now(), false);
        let node = HaNode {
            settings,
            role,
            link,
            outbox: None,
            mirror: Mirror::new(),
            standby_stream: None,
            dialled: false,
            redial_at: None,
            accepting: false,
            address,
        };
        node.link.dial();
        info!(
            node = %node.settings.node,
            peer = %node.settings.peer,
            epoch = node.role.epoch(),
            address_owner = node.role.config().address_owner.as_str(),
            "HA node started as standby"
        );
        Ok(node)
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// For admin commands (promote, demote, switchover); their actions run after the request.
    pub fn role_mut(&mut self) -> &mut Role {
        &mut self.role
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    /// The node serves calls: active and not handing over.
    pub fn serving(&self) -> bool {
        self.accepting && self.role.role() == NodeRole::Active
    }

    /// Whether a datagram or frame may reach the core: everything on the serving active node; on
    /// a standby (or during a hand-over) only OPTIONS, so that the peer's second-path probe is
    /// answered while calls stay with the active, and responses (the core's own probes).
    pub fn admits(&self, payload: &[u8]) -> bool {
        if self.serving() {
            return true;
        }
        tandem_sip::peek_request(payload)
            .is_none_or(|head| head.method == tandem_sip::Method::Options)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.role.poll_timeout(),
            self.outbox.as_ref().and_then(Outbox::poll_timeout),
            self.redial_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, core: &mut Core) {
        let at = now();
        self.role.handle_timeout(at);
        if let Some(outbox) = &mut self.outbox {
            outbox.handle_timeout(at);
        }
        if self.redial_at.is_some_and(|t| t <= at) {
            self.redial_at = None;
            match self.role.role() {
                NodeRole::Standby => self.link.dial(),
                NodeRole::Active if self.searching_peer() => self.link.dial(),
                _ => {}
            }
        }
        self.after_core(core);
    }

    /// Handles a batch of link events (what the channel held), then sends one cumulative Ack for
    /// everything the mirror applied in it and moves the core's changes on.
    pub fn handle_link_events(
        &mut self,
        core: &mut Core,
        events: impl IntoIterator<Item = LinkEvent>,
    ) {
        for event in events {
            self.dispatch_link_event(core, event);
        }
        if let Some(ack) = self.mirror.poll_ack() {
            self.send_to_peer_as_standby(standby_message::Kind::Ack(ack));
        }
        self.after_core(core);
    }

    fn dispatch_link_event(&mut self, core: &mut Core, event: LinkEvent) {
        let at = now();
        match event {
            LinkEvent::StandbyConnected { stream, peer } => {
                info!(%peer, "peer opened the replication stream");
                if self.role.role() == NodeRole::Active {
                    if self.dialled {
                        // The standby found us: the search for another active is over.
                        self.link.hang_up();
                        self.dialled = false;
                    }
                    // The peer may have held the service address a moment ago (two actives met
                    // and it stepped down): neighbours that still send to its MAC learn ours.
                    if let Some(address) = &mut self.address {
                        address.announce();
                    }
                }
                if let Some(old) = self.standby_stream.replace(stream) {
                    self.link.close_standby(old);
                    if let Some(outbox) = &mut self.outbox {
                        outbox.handle_disconnect();
                    }
                }
                self.role.handle_peer_connected(at);
            }
            LinkEvent::FromStandby { stream, msg } => {
                if self.standby_stream == Some(stream) {
                    self.on_standby_message(core, at, *msg);
                }
            }
            LinkEvent::StandbyGone { stream } => {
                if self.standby_stream == Some(stream) {
                    self.standby_stream = None;
                    if let Some(outbox) = &mut self.outbox {
                        outbox.handle_disconnect();
                    }
                    if !self.dialled {
                        self.role.handle_peer_disconnected(at);
                    }
                }
            }
            // An active node reached its peer while looking for another active (no Hello: it is
            // no standby); with a standby connected, the stream has no use.
            LinkEvent::ActiveConnected if self.role.role() == NodeRole::Active => {
                if self.searching_peer() {
                    self.dialled = true;
                    debug!("reached the peer while active: comparing epochs");
                } else {
                    self.link.hang_up();
                }
            }
            // On that stream only the peer's heartbeats count: an active peer with a higher epoch
            // fences this node (the role machine steps down).
            LinkEvent::FromActive(msg) if self.role.role() == NodeRole::Active => {
                if let Some(active_message::Kind::Heartbeat(heartbeat)) = &msg.kind {
                    self.role.handle_heartbeat(at, heartbeat);
                }
            }
            LinkEvent::ActiveConnected => {
                self.dialled = true;
                self.role.handle_peer_connected(at);
                let hello = self.mirror.hello(&self.settings.node, self.role.epoch());
                self.send_to_peer_as_standby(standby_message::Kind::Hello(hello));
            }
            LinkEvent::FromActive(msg) => self.on_active_message(at, *msg),
            LinkEvent::ActiveGone => {
                self.dialled = false;
                if self.standby_stream.is_none() {
                    self.role.handle_peer_disconnected(at);
                }
                if self.role.role() == NodeRole::Standby {
                    self.redial_at = Some(at + REDIAL_AFTER);
                }
            }
            LinkEvent::PeerSipAlive(alive) => self.role.handle_confirm_result(at, alive),
        }
    }

    fn on_standby_message(&mut self, core: &mut Core, at: Instant, msg: StandbyMessage) {
        match msg.kind {
            Some(standby_message::Kind::Hello(hello)) => {
                self.role.handle_hello(at, &hello);
                if let Some(outbox) = &mut self.outbox {
                    match outbox.handle_hello(at, &hello) {
                        HelloOutcome::Resumed { from } => info!(from, "standby resumes"),
                        HelloOutcome::Snapshot => info!("standby gets a snapshot"),
                        HelloOutcome::Refused { their_epoch } => {
                            warn!(their_epoch, "standby knows a higher epoch")
                        }
                    }
                }
            }
            Some(standby_message::Kind::Ack(ack)) => {
                let acked = self.outbox.as_mut().and_then(|o| o.handle_ack(at, &ack));
                if let Some(seq) = acked {
                    core.handle_replication_ack(at, seq);
                }
            }
            Some(standby_message::Kind::Heartbeat(heartbeat)) => {
                self.role.handle_heartbeat(at, &heartbeat)
            }
            None => {}
        }
    }

    fn on_active_message(&mut self, at: Instant, msg: ActiveMessage) {
        match self.mirror.handle_message(msg) {
            Ok(Some(heartbeat)) => self.role.handle_heartbeat(at, &heartbeat),
            Ok(None) => {}
            Err(error) => warn!(%error, "replication message not applied"),
        }
        // The Ack goes once per batch of events (`handle_link_events`).
        if self.mirror.needs_resync() {
            let hello = self.mirror.hello(&self.settings.node, self.role.epoch());
            self.send_to_peer_as_standby(standby_message::Kind::Hello(hello));
        }
    }

    fn send_to_peer_as_standby(&self, kind: standby_message::Kind) {
        if !self
            .link
            .send_to_active(StandbyMessage { kind: Some(kind) })
        {
            warn!("replication stream to the peer is full or closed");
        }
    }

    /// Moves the core's changes to the standby, reports progress to the role machine and carries
    /// out what it decides. Called after every batch of core work.
    pub fn after_core(&mut self, core: &mut Core) {
        let at = now();
        let wall = unix_ms();
        // A standby's relay binds the mirrored calls' ports ahead of a takeover.
        if self.role.role() == NodeRole::Standby && core.anchors_media() {
            for change in self.mirror.take_call_changes(wall) {
                match change {
                    CallChange::Present(m) => {
                        core.prepare_standby_media(m.key, &m.call_id, &m.media, m.age)
                    }
                    CallChange::Gone(key) => core.forget_standby_media(key),
                }
            }
        } else {
            self.mirror.discard_call_changes();
        }
        // A standby does not probe the media servers (Core::set_probing): it shows the active's
        // verdicts.
        if let Some(servers) = self.mirror.take_server_changes() {
            core.adopt_server_health(servers);
        }
        match &mut self.outbox {
            Some(outbox) => {
                while let Some(pushed) = core
                    .poll_replication_view(|seq, change| outbox.push_view(at, wall, seq, change))
                {
                    if let Err(error) = pushed {
                        error!(%error, "replication change out of order");
                    }
                }
            }
            None => while core.poll_replication_view(|_, _| ()).is_some() {},
        }
        if self.role.role() == NodeRole::Active && self.searching_peer() && self.redial_at.is_none()
        {
            self.redial_at = Some(at + PEER_SEARCH_EVERY);
        }
        if let Some(outbox) = &mut self.outbox {
            if let Some(seq) = core.awaited_replication() {
                outbox.send_through(seq);
            }
            if outbox.poll_need_snapshot() {
                let snapshot = core.replication_snapshot(at);
                if let Err(error) = outbox.begin_snapshot(at, wall, snapshot) {
                    warn!(%error, "snapshot not started");
                }
            }
            if let Some(stream) = self.standby_stream {
                while outbox.has_sendable() && self.link.standby_has_room(stream) {
                    let Some(msg) = outbox.poll_send() else { break };
                    self.link.send_to_standby(stream, msg);
                }
            }
            let wanted = match (outbox.synced(), self.settings.sync_wait) {
                (true, Some(wait)) => Durability::Sync { wait },
                _ => Durability::Async,
            };
            if core.durability() != wanted {
                core.set_durability(at, wanted);
            }
            self.role.set_replication(
                at,
                Progress::Active {
                    last_seq: outbox.last_seq(),
                    acked: outbox.acked(),
                    standby_synced: outbox.synced(),
                    calls: core.active_calls() as u64,
                },
            );
        } else {
            self.role.set_replication(
                at,
                Progress::Standby {
                    applied_seq: self.mirror.applied_seq(),
                    synced: self.mirror.synced(),
                    calls: self.mirror.calls() as u64,
                },
            );
        }
        while let Some(action) = self.role.poll_action() {
            self.carry_out(core, action);
        }
    }

    /// Active, with no standby connected and no stream of its own to the peer: it looks for the
    /// peer (see [`PEER_SEARCH_EVERY`]).
    fn searching_peer(&self) -> bool {
        self.standby_stream.is_none() && !self.dialled
    }

    fn carry_out(&mut self, core: &mut Core, action: Action) {
        let at = now();
        match action {
            Action::SendHeartbeat(heartbeat) => {
                // The wrapper follows the stream's direction, not the role: on the stream the peer
                // opened we are the server (ActiveMessage), on ours the client (StandbyMessage).
                if let Some(stream) = self.standby_stream {
                    self.link
                        .send_to_standby(stream, active_heartbeat(heartbeat.clone()));
                }
                if self.dialled {
                    self.link.send_to_active(standby_heartbeat(heartbeat));
                }
            }
            Action::StartConfirm => self.link.probe_peer_sip(self.settings.confirm_timeout),
            Action::PersistEpoch { epoch } => {
                if let Err(error) = write_epoch(&epoch_file(&self.settings), epoch) {
                    error!(%error, epoch, "epoch file not written");
                }
            }
            Action::BecomeActive { epoch } => self.become_active(core, at, epoch),
            Action::BecomeStandby { epoch } => self.become_standby(core, at, epoch),
            Action::StopAccepting => {
                info!("hand-over: SIP is left to the next active");
                self.accepting = false;
            }
            Action::ResumeAccepting => {
                info!("hand-over given up: serving SIP again");
                self.accepting = true;
            }
        }
    }

    fn become_active(&mut self, core: &mut Core, at: Instant, epoch: u64) {
        let snapshot = self.mirror.to_snapshot(unix_ms());
        let restored = core.restore(at, snapshot);
        core.set_probing(at, true);
        info!(epoch, restored, "this node is now active");
        if let Some(address) = &mut self.address {
            match address.take() {
                Ok(()) => {
                    self.role
                        .record_step(now(), StepName::AddressTaken, address.ip.to_string(), 0);
                }
                Err(error) => error!(%error, "service address not taken"),
            }
        }
        self.note_keepalived_address();
        self.accepting = true;
        self.link.hang_up();
        self.dialled = false;
        self.redial_at = None;
        if let Some(stream) = self.standby_stream.take() {
            // The peer's Hello on that stream went to a standby: closing it makes the peer dial
            // again and say Hello to the active node, which answers with a snapshot.
            self.link.close_standby(stream);
        }
        let config = OutboxConfig {
            batch_window: self.settings.batch_window,
            ..OutboxConfig::default()
        };
        self.outbox = Some(Outbox::new(config, epoch));
        self.mirror.reset();
        core.set_durability(at, Durability::Async);
        self.role.record_step(
            now(),
            StepName::CallsResumed,
            format!("{restored} calls"),
            restored as u64,
        );
    }

    /// When keepalived owns the address: whether it is here as the node becomes active (it should
    /// be: keepalived adds it before running the notify script that promotes), for the incident.
    fn note_keepalived_address(&mut self) {
        let Some(vip) = &self.settings.vip else {
            return;
        };
        if self.role.config().address_owner != AddressOwner::Keepalived {
            return;
        }
        let ip = vip.ip;
        let detail = match address::is_local(ip) {
            Ok(true) => format!("{ip} held by keepalived"),
            Ok(false) => {
                warn!(%ip, "active, but keepalived has not put the service address on this node");
                format!("{ip} not on this node (keepalived)")
            }
            Err(error) => {
                warn!(%error, "cannot tell whether the service address is here");
                format!("{ip}: {error}")
            }
        };
        self.role
            .record_step(now(), StepName::AddressTaken, detail, 0);
    }

    fn become_standby(&mut self, core: &mut Core, at: Instant, epoch: u64) {
        self.accepting = false;
        let dropped = core.drop_all_calls();
        core.set_probing(at, false);
        core.set_durability(now(), Durability::Off);
        self.outbox = None;
        self.mirror.reset();
        if let Some(address) = &mut self.address {
            if let Err(error) = address.release() {
                error!(%error, "service address not released");
            }
        }
        info!(epoch, dropped, "this node is now standby");
        self.link.dial();
    }
}

fn epoch_file(settings: &HaSettings) -> PathBuf {
    settings.state_dir.join(format!("{}.epoch", settings.node))
}

fn read_epoch(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Written to a temporary file and renamed, so a crash never leaves half a number.
fn write_epoch(path: &std::path::Path, epoch: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("epoch.tmp");
    std::fs::write(&tmp, format!("{epoch}\n"))?;
    std::fs::rename(tmp, path)
}

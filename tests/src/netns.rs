//! A topology of network namespaces for the hot-standby tests (root only):
//!
//! ```text
//!   service bridge 10.N.0.0/24, VIP 10.N.0.100 (owned by nobody at start)
//!     caller .10      tandem-a .11      tandem-b .12      media .20
//!   replication bridge 10.N.1.0/24
//!                     tandem-a .11 ──── tandem-b .12
//! ```
//!
//! Every node is a namespace `td-<prefix>-<node>`; the two bridges live in a fifth one,
//! `td-<prefix>-switch`, so a topology leaves no trace in the machine's own network namespace and
//! deleting its namespaces deletes its bridges and veths. Inside a node the service interface is
//! [`SERVICE_DEV`] and the replication interface [`REPLICATION_DEV`]; their MAC addresses encode the
//! address (`02:00:0a:N:<0 service, 1 replication>:<host>`), so a MAC seen in a neighbour cache names
//! the node. N is derived from the prefix; as each topology has its own bridges, two topologies
//! could even share N without seeing each other.
//!
//! The tandem namespaces keep `net.ipv4.ip_nonlocal_bind` at its default 0: a standby binds the VIP
//! (SIP and relay ports) before it owns it through `IP_FREEBIND`, as on an operator's host without
//! that sysctl, and starts receiving on those sockets the moment the address is added to its
//! interface.
//!
//! Every process started in a namespace, and anything it forked, is killed by pid when the topology
//! is dropped (the pids come from `ip netns pids`); then the namespaces are deleted. A topology built
//! with the prefix of a run that crashed first removes what that run left. Prefixes must be unique
//! among the tests running at the same time.

mod peers;

pub use peers::{
    Detection, HaOptions, HaStatus, Incident, IncidentStep, NsSipp, NsTandem, SecondPath, HA_PORT,
};

use crate::process::{wait_for, ChildGuard};
use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsStr;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The service interface inside every node.
pub const SERVICE_DEV: &str = "svc0";
/// The replication interface inside the tandem nodes.
pub const REPLICATION_DEV: &str = "rep0";
/// The VIP's host number on the service subnet.
const VIP_HOST: u8 = 100;

/// A node of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// Where the SIPp callers run (.10).
    Caller,
    /// The first Tandem node (.11 on both subnets).
    TandemA,
    /// The second Tandem node (.12 on both subnets).
    TandemB,
    /// Where the media servers run (.20).
    Media,
}

impl Node {
    /// Every node.
    pub const ALL: [Node; 4] = [Node::Caller, Node::TandemA, Node::TandemB, Node::Media];
    /// The nodes on the replication bridge.
    pub const TANDEMS: [Node; 2] = [Node::TandemA, Node::TandemB];

    /// Its name (`caller`, `tandem-a`, `tandem-b`, `media`), the end of its namespace's name.
    pub fn name(self) -> &'static str {
        match self {
            Node::Caller => "caller",
            Node::TandemA => "tandem-a",
            Node::TandemB => "tandem-b",
            Node::Media => "media",
        }
    }

    /// The other Tandem node (`None` for caller and media).
    pub fn peer(self) -> Option<Node> {
        match self {
            Node::TandemA => Some(Node::TandemB),
            Node::TandemB => Some(Node::TandemA),
            Node::Caller | Node::Media => None,
        }
    }

    fn host(self) -> u8 {
        match self {
            Node::Caller => 10,
            Node::TandemA => 11,
            Node::TandemB => 12,
            Node::Media => 20,
        }
    }

    fn is_tandem(self) -> bool {
        self.peer().is_some()
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the two networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Service,
    Replication,
}

impl Net {
    fn bridge(self) -> &'static str {
        match self {
            Net::Service => "svc",
            Net::Replication => "repl",
        }
    }

    fn dev(self) -> &'static str {
        match self {
            Net::Service => SERVICE_DEV,
            Net::Replication => REPLICATION_DEV,
        }
    }

    fn octet(self) -> u8 {
        match self {
            Net::Service => 0,
            Net::Replication => 1,
        }
    }

    /// The bridge port (switch-side veth) of `node`, e.g. `tandem-a-svc` (≤ 15 characters).
    fn port(self, node: Node) -> String {
        format!("{}-{}", node.name(), &self.bridge()[..3])
    }

    fn nodes(self) -> &'static [Node] {
        match self {
            Net::Service => &Node::ALL,
            Net::Replication => &Node::TANDEMS,
        }
    }
}

/// How [`Topology::replication_loss`] drops packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossMethod {
    /// `tc qdisc … netem loss N%` on each tandem's replication interface (egress, ARP included).
    Netem,
    /// `iptables -m statistic --mode random` DROP in each tandem's OUTPUT chain for the replication
    /// interface (IP only): used when the kernel has no netem (CONFIG_NET_SCH_NETEM unset).
    Iptables,
}

/// A built topology; dropping it kills its processes and deletes it.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    subnet: u8,
    announcers: Mutex<Vec<Child>>,
}

impl Topology {
    /// Builds the topology for `prefix` (lower-case letters, digits and `-`, at most 24), first
    /// deleting whatever a crashed run with the same prefix left.
    pub fn build(prefix: &str) -> Result<Topology> {
        ensure!(
            !prefix.is_empty()
                && prefix.len() <= 24
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "topology prefix {prefix:?}: use 1-24 characters among a-z, 0-9 and -"
        );
        let topology = Topology {
            prefix: prefix.to_owned(),
            subnet: subnet_of(prefix),
            announcers: Mutex::new(Vec::new()),
        };
        topology.remove();
        // from here on, a failed step is undone by Drop
        topology
            .create()
            .with_context(|| format!("building the network namespaces of {prefix}"))?;
        Ok(topology)
    }

    fn create(&self) -> Result<()> {
        for namespace in self.namespaces() {
            run(Command::new("ip").args(["netns", "add", &namespace]))?;
            self.ip_in(&namespace, "link set lo up")?;
        }
        let switch = self.switch();
        for net in [Net::Service, Net::Replication] {
            let bridge = net.bridge();
            self.ip_in(&switch, &format!("link add {bridge} type bridge"))?;
            self.ip_in(&switch, &format!("link set {bridge} up"))?;
            for &node in net.nodes() {
                self.plug(node, net)?;
            }
        }
        // Explicitly off (the default), so binding the VIP early is Tandem's own doing.
        for node in Node::TANDEMS {
            self.set_sysctl(node, "net/ipv4/ip_nonlocal_bind", "0")?;
        }
        Ok(())
    }

    /// A veth from `node`'s interface on `net` to a port of that net's bridge.
    fn plug(&self, node: Node, net: Net) -> Result<()> {
        let (namespace, port, dev) = (self.namespace(node), net.port(node), net.dev());
        let switch = self.switch();
        let bridge = net.bridge();
        self.ip_in(
            &switch,
            &format!("link add {port} type veth peer name {dev} netns {namespace}"),
        )?;
        self.ip_in(&switch, &format!("link set {port} master {bridge} up"))?;
        let (mac, address) = (self.mac_on(node, net), self.address_on(node, net));
        self.ip(node, &format!("link set {dev} address {mac}"))?;
        self.ip(node, &format!("addr add {address}/24 dev {dev}"))?;
        self.ip(node, &format!("link set {dev} up"))?;
        Ok(())
    }

    /// The prefix it was built with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `node`: `td-<prefix>-<node>`.
    pub fn namespace(&self, node: Node) -> String {
        namespace_name(&self.prefix, node.name())
    }

    fn switch(&self) -> String {
        namespace_name(&self.prefix, "switch")
    }

    fn namespaces(&self) -> Vec<String> {
        namespaces_for(&self.prefix)
    }

    /// `node`'s address on the service subnet (10.N.0.x).
    pub fn addr(&self, node: Node) -> Ipv4Addr {
        self.address_on(node, Net::Service)
    }

    /// A tandem node's address on the replication subnet (10.N.1.x); `None` for caller and media.
    pub fn replication_addr(&self, node: Node) -> Option<Ipv4Addr> {
        node.is_tandem()
            .then(|| self.address_on(node, Net::Replication))
    }

    /// The service address (10.N.0.100).
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, VIP_HOST)
    }

    /// The MAC address of `node`'s service interface.
    pub fn mac(&self, node: Node) -> String {
        self.mac_on(node, Net::Service)
    }

    fn address_on(&self, node: Node, net: Net) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, net.octet(), node.host())
    }

    fn mac_on(&self, node: Node, net: Net) -> String {
        format!(
            "02:00:0a:{:02x}:{:02x}:{:02x}",
            self.subnet,
            net.octet(),
            node.host()
        )
    }

    /// `program` run inside `node`'s namespace (`ip netns exec <namespace> program`); add arguments,
    /// environment and a working directory as to any command.
    pub fn command(&self, node: Node, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(node)])
            .arg(program);
        command
    }

    /// Runs `args` (program and arguments) in `node`'s namespace and returns its output, whatever
    /// its exit status.
    pub fn exec(&self, node: Node, args: &[&str]) -> Result<Output> {
        let (program, rest) = args.split_first().context("exec: no program given")?;
        let mut command = self.command(node, program);
        command.args(rest);
        command
            .output()
            .with_context(|| format!("running {args:?} in {node}"))
    }

    /// Starts `command` in `node`'s namespace as [`ChildGuard::spawn`] does (its program, arguments,
    /// environment and working directory are kept; `ip netns exec` execs it, so the guard's pid is
    /// the program's), and waits (at most 2 s) until it is in the namespace. Whatever still runs
    /// in the namespace when the topology is dropped is killed.
    pub fn spawn(
        &self,
        node: Node,
        name: &str,
        command: Command,
        log_dir: &Path,
        own_group: bool,
    ) -> Result<ChildGuard> {
        let mut wrapped = self.command(node, command.get_program());
        wrapped.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let mut guard = ChildGuard::spawn(name, wrapped, log_dir, own_group)?;
        // `ip netns exec` enters the namespace after the spawn returns; once it has, the process is
        // among the namespace's pids, which Drop and kill_all kill
        let pid = guard.pid();
        wait_for(Instant::now() + Duration::from_secs(2), || {
            let entered = self.pids(node).is_ok_and(|pids| pids.contains(&pid));
            (entered || !guard.is_running()).then_some(())
        });
        Ok(guard)
    }

    /// The pids of every process in `node`'s namespace.
    pub fn pids(&self, node: Node) -> Result<Vec<u32>> {
        namespace_pids(&self.namespace(node))
    }

    /// `kill -9` of every process in `node`'s namespace (a node whose software dies at once);
    /// returns how many there were. A process spawned an instant before may not be in the
    /// namespace yet (`ip netns exec` enters it after the spawn returns): wait for its pid in
    /// [`Topology::pids`] first.
    pub fn kill_all(&self, node: Node) -> Result<usize> {
        let pids = self.pids(node)?;
        kill_pids(&pids);
        Ok(pids.len())
    }

    /// Takes `node` off both networks as a pulled cable would (its bridge ports go down: its
    /// interfaces lose carrier, keep their addresses); [`Topology::reconnect`] plugs it back.
    pub fn disconnect(&self, node: Node) -> Result<()> {
        self.set_ports(node, [Net::Service, Net::Replication], false)
    }

    /// Undoes [`Topology::disconnect`] and waits for carrier.
    pub fn reconnect(&self, node: Node) -> Result<()> {
        self.set_ports(node, [Net::Service, Net::Replication], true)
    }

    /// Cuts the replication link only, as a pulled cable would: the bridge ports of both tandems go
    /// down, so their replication interfaces lose carrier but keep address and routes; packets sent
    /// there vanish without an error. The service network is untouched.
    pub fn cut_replication(&self) -> Result<()> {
        for node in Node::TANDEMS {
            self.set_ports(node, [Net::Replication], false)?;
        }
        Ok(())
    }

    /// Undoes [`Topology::cut_replication`] and waits until both sides have carrier again.
    pub fn restore_replication(&self) -> Result<()> {
        for node in Node::TANDEMS {
            self.set_ports(node, [Net::Replication], true)?;
        }
        Ok(())
    }

    fn set_ports<const N: usize>(&self, node: Node, nets: [Net; N], up: bool) -> Result<()> {
        let switch = self.switch();
        for net in nets.into_iter().filter(|net| net.nodes().contains(&node)) {
            let state = if up { "up" } else { "down" };
            self.ip_in(&switch, &format!("link set {} {state}", net.port(node)))?;
            if up {
                let deadline = Instant::now() + Duration::from_secs(3);
                let carrier = wait_for(deadline, || {
                    self.ip(node, &format!("link show {}", net.dev()))
                        .is_ok_and(|text| text.contains("LOWER_UP"))
                        .then_some(())
                });
                ensure!(
                    carrier.is_some(),
                    "{node}'s {} has no carrier after its port came up",
                    net.dev()
                );
            }
        }
        Ok(())
    }

    /// Drops `percent` % of the packets each tandem sends on the replication link (so about twice
    /// that of the round trips), with netem, or with iptables where the kernel has no netem.
    pub fn replication_loss(&self, percent: f64) -> Result<LossMethod> {
        ensure!(
            (0.0..=100.0).contains(&percent),
            "loss of {percent} % is not a percentage"
        );
        self.clear_replication_loss()?;
        let mut method = LossMethod::Netem;
        for node in Node::TANDEMS {
            if method == LossMethod::Netem {
                let netem =
                    format!("tc qdisc replace dev {REPLICATION_DEV} root netem loss {percent}%");
                let output = self.exec_line(node, &netem)?;
                if output.status.success() {
                    continue;
                }
                let error = String::from_utf8_lossy(&output.stderr);
                ensure!(
                    error.contains("qdisc kind is unknown") && node == Node::TandemA,
                    "{netem} in {node}: {error}"
                );
                method = LossMethod::Iptables;
            }
            let probability = format!("{:.6}", percent / 100.0);
            let drop = format!(
                "iptables -w -A OUTPUT -o {REPLICATION_DEV} -m statistic --mode random \
                 --probability {probability} -j DROP"
            );
            let output = self.exec_line(node, &drop)?;
            ensure!(
                output.status.success(),
                "{drop} in {node}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(method)
    }

    /// Removes the loss set by [`Topology::replication_loss`] (either method).
    pub fn clear_replication_loss(&self) -> Result<()> {
        for node in Node::TANDEMS {
            if self.replication_loss_of(node)?.is_some() {
                // one of the two is there; the other's "nothing to delete" is expected
                let _ = self.exec_line(node, &format!("tc qdisc del dev {REPLICATION_DEV} root"));
                let _ = self.exec_line(node, "iptables -w -F OUTPUT");
            }
            ensure!(
                self.replication_loss_of(node)?.is_none(),
                "loss on {node}'s {REPLICATION_DEV} could not be cleared"
            );
        }
        Ok(())
    }

    /// The loss in percent configured on `node`'s replication interface, read back from
    /// `tc qdisc show` (netem) or `iptables -S OUTPUT`; `None` when there is none.
    pub fn replication_loss_of(&self, node: Node) -> Result<Option<f64>> {
        let qdisc = self.exec_line(node, &format!("tc qdisc show dev {REPLICATION_DEV}"))?;
        let qdisc = String::from_utf8_lossy(&qdisc.stdout);
        if let Some(percent) = word_after(&qdisc, "loss") {
            let percent = percent.trim_end_matches('%').parse().ok();
            return Ok(percent);
        }
        // no iptables installed means no iptables rule
        let rules = self.exec_line(node, "iptables -w -S OUTPUT");
        let rules = rules
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        Ok(rules
            .lines()
            .filter(|rule| rule.contains(&format!("-o {REPLICATION_DEV} ")))
            .find_map(|rule| word_after(rule, "--probability"))
            .and_then(|p| p.parse::<f64>().ok())
            .map(|p| (p * 100_000.0).round() / 1000.0))
    }

    /// Adds the VIP to `node`'s service interface and announces it with gratuitous ARP (`arping -U`,
    /// two requests a second apart, sent in the background: the first goes out at once), so that
    /// the neighbour caches of the other nodes follow.
    pub fn assign_vip(&self, node: Node) -> Result<()> {
        let vip = self.vip();
        self.ip(node, &format!("addr add {vip}/32 dev {SERVICE_DEV}"))?;
        self.announce_vip(node)
    }

    /// Sends the gratuitous ARP of [`Topology::assign_vip`] again from `node`.
    pub fn announce_vip(&self, node: Node) -> Result<()> {
        let vip = self.vip().to_string();
        let child = self
            .command(node, "arping")
            .args(["-q", "-U", "-c", "2", "-I", SERVICE_DEV, &vip])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting arping")?;
        let mut announcers = self
            .announcers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        announcers.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        announcers.push(child);
        Ok(())
    }

    /// Removes the VIP from `node`'s service interface.
    pub fn release_vip(&self, node: Node) -> Result<()> {
        let vip = self.vip();
        self.ip(node, &format!("addr del {vip}/32 dev {SERVICE_DEV}"))?;
        Ok(())
    }

    /// The nodes that have the VIP on their service interface (more than one: a split brain).
    pub fn vip_holders(&self) -> Result<Vec<Node>> {
        let needle = format!(" inet {}/", self.vip());
        let mut holders = Vec::new();
        for node in Node::ALL {
            if self
                .ip(node, &format!("-o addr show dev {SERVICE_DEV}"))?
                .contains(&needle)
            {
                holders.push(node);
            }
        }
        Ok(holders)
    }

    /// The node whose MAC address `from`'s neighbour cache holds for the VIP (where its packets to
    /// the VIP go); `None` without a resolved entry.
    pub fn vip_seen_by(&self, from: Node) -> Result<Option<Node>> {
        let vip = self.vip();
        let neighbours = self.ip(from, &format!("neigh show {vip} dev {SERVICE_DEV}"))?;
        let mac = word_after(&neighbours, "lladdr");
        Ok(Node::ALL
            .into_iter()
            .find(|node| Some(self.mac(*node).as_str()) == mac))
    }

    /// Whether one ping from `from` to `to` is answered within `timeout`.
    pub fn ping(&self, from: Node, to: Ipv4Addr, timeout: Duration) -> Result<bool> {
        let wait = format!("{:.3}", timeout.as_secs_f64());
        let output = self.exec_line(from, &format!("ping -n -q -c 1 -W {wait} {to}"))?;
        Ok(output.status.success())
    }

    /// Sends `count` pings from `from` to `to`, 2 ms apart, and returns how many were answered.
    pub fn ping_many(&self, from: Node, to: Ipv4Addr, count: u32) -> Result<u32> {
        let pings = format!("ping -n -q -c {count} -i 0.002 -W 1 {to}");
        let output = self.exec_line(from, &pings)?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| {
                let (_, after) = line.split_once("transmitted, ")?;
                after.split_whitespace().next()?.parse().ok()
            })
            .with_context(|| format!("no ping summary: {text}"))
    }

    /// Pings the VIP from `from` until `owner` answers (the ping succeeds and `from`'s neighbour
    /// cache names `owner`); returns how long that took.
    pub fn wait_vip_at(&self, from: Node, owner: Node, deadline: Instant) -> Result<Duration> {
        let start = Instant::now();
        let mut seen = None;
        while Instant::now() < deadline {
            let answered = self.ping(from, self.vip(), Duration::from_millis(100))?;
            seen = self.vip_seen_by(from)?;
            if answered && seen == Some(owner) {
                return Ok(start.elapsed());
            }
        }
        bail!(
            "{from} does not reach the VIP at {owner}: its neighbour cache names {seen:?}; \
             the VIP is on {:?}",
            self.vip_holders()?
        )
    }

    /// `ip -n <namespace of node> <line>` (arguments separated by spaces); its stdout.
    fn ip(&self, node: Node, line: &str) -> Result<String> {
        self.ip_in(&self.namespace(node), line)
    }

    fn ip_in(&self, namespace: &str, line: &str) -> Result<String> {
        run(Command::new("ip")
            .args(["-n", namespace])
            .args(line.split_whitespace()))
    }

    /// [`Topology::exec`] of a command line whose arguments are separated by spaces.
    fn exec_line(&self, node: Node, line: &str) -> Result<Output> {
        self.exec(node, &line.split_whitespace().collect::<Vec<_>>())
    }

    /// Lets the Tandem namespaces bind addresses they do not hold (`net.ipv4.ip_nonlocal_bind=1`):
    /// for a Tandem without `[ha]` listening on a VIP that something else moves (an operator's
    /// plain keepalived set-up). A node with `[ha.vip]` needs no sysctl (`IP_FREEBIND`).
    pub fn allow_nonlocal_bind(&self) -> Result<()> {
        for node in Node::TANDEMS {
            self.set_sysctl(node, "net/ipv4/ip_nonlocal_bind", "1")?;
        }
        Ok(())
    }

    fn set_sysctl(&self, node: Node, key: &str, value: &str) -> Result<()> {
        // /proc/sys/net shows the namespace of the process that opens it
        run(self.command(node, "sh").args([
            "-c",
            "echo \"$1\" > \"/proc/sys/$2\"",
            "sh",
            value,
            key,
        ]))?;
        Ok(())
    }

    /// Kills every process in the namespaces and deletes them; what is not there is skipped.
    fn remove(&self) {
        let existing = namespace_list().unwrap_or_default();
        let ours: Vec<String> = self
            .namespaces()
            .into_iter()
            .filter(|n| existing.contains(n))
            .collect();
        for namespace in &ours {
            kill_pids(&namespace_pids(namespace).unwrap_or_default());
        }
        for namespace in &ours {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let announcers = self
            .announcers
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for child in announcers.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove();
    }
}

/// The namespaces of a topology built with `prefix` that exist right now (none after it is dropped).
pub fn namespaces_left(prefix: &str) -> Result<Vec<String>> {
    let existing = namespace_list()?;
    Ok(namespaces_for(prefix)
        .into_iter()
        .filter(|n| existing.contains(n))
        .collect())
}

fn namespace_name(prefix: &str, node: &str) -> String {
    format!("td-{prefix}-{node}")
}

fn namespaces_for(prefix: &str) -> Vec<String> {
    Node::ALL
        .iter()
        .map(|n| n.name())
        .chain(["switch"])
        .map(|n| namespace_name(prefix, n))
        .collect()
}

/// The second octet of a prefix's subnets (16–239).
fn subnet_of(prefix: &str) -> u8 {
    // FNV-1a: stable across runs and Rust versions
    let hash = prefix.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    16 + u8::try_from(hash % 224).unwrap_or(0)
}

/// The names `ip netns list` prints (each line: `name` or `name (id: N)`).
fn namespace_list() -> Result<Vec<String>> {
    let text = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

fn namespace_pids(namespace: &str) -> Result<Vec<u32>> {
    let text = run(Command::new("ip").args(["netns", "pids", namespace]))?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The whitespace-separated word after `key` in `text`.
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

/// Runs `command`; its stdout, or an error with its stderr when it fails.
fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits() {
        for node in Node::ALL {
            for net in [Net::Service, Net::Replication] {
                assert!(net.port(node).len() <= 15, "{}", net.port(node));
            }
        }
        assert_eq!(Net::Replication.port(Node::TandemB), "tandem-b-rep");
        assert_eq!(
            namespaces_for("ka"),
            [
                "td-ka-caller",
                "td-ka-tandem-a",
                "td-ka-tandem-b",
                "td-ka-media",
                "td-ka-switch"
            ]
        );
    }

    #[test]
    fn subnets_differ_between_prefixes() {
        let subnets: std::collections::HashSet<u8> = ["call", "repl", "ka", "leftover", "ha-kill"]
            .map(subnet_of)
            .into();
        assert_eq!(subnets.len(), 5);
        assert!(subnets.iter().all(|n| (16..240).contains(n)));
    }

    #[test]
    fn reads_words_from_ip_and_tc_output() {
        let neigh = "10.9.0.100 lladdr 02:00:0a:09:00:0c REACHABLE";
        assert_eq!(word_after(neigh, "lladdr"), Some("02:00:0a:09:00:0c"));
        let qdisc = "qdisc netem 8001: root refcnt 2 limit 1000 loss 5%";
        assert_eq!(word_after(qdisc, "loss"), Some("5%"));
        assert_eq!(word_after("10.9.0.100 FAILED", "lladdr"), None);
    }
}

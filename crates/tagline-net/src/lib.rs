//! Tagline's network driver: the [`tagline_sync::Sync`] state machine run
//! over libp2p on a [`tagline_store::Store`]: TCP (noise, yamux) and QUIC;
//! request-response on `/tagline/sync/1`; identify and ping; mDNS on the
//! LAN; Kademlia (`/tagline/kad/1`) to find, beyond it, the nodes that hold
//! the projects and feeds followed; gossipsub for new-head announcements
//! ([`announce`]), validated before they are forwarded; circuit relay v2
//! (client always, server when configured) and DCUtR for nodes behind NAT;
//! connection and memory limits. The clock and the randomness for batch
//! verification are read here, at the edge.
//!
//! [`spawn`] starts a node on the current tokio runtime and returns a
//! [`Handle`] to tell it about local appends, dial peers, follow feeds, watch
//! its events and shut it down.

pub mod announce;
pub mod codec;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair, kad, mdns, memory_connection_limits, noise, ping, relay, tcp, yamux,
};
use tagline_format::{PublicKey, VerifiedIds};
use tagline_store::{IngestMode, Store};
use tagline_sync::machine::{REQUEST_TIMEOUT_MS, Rejection};
use tagline_sync::{Event, Input, Output, Record, Response, Sync, entries_response};
use tokio::sync::{broadcast, mpsc};

pub use codec::{PROTOCOL, SyncCodec};

use announce::{Subject, Verdict};

/// A connection with no stream open is closed after this long. Clock
/// exchanges every `RESYNC_INTERVAL_MS` keep connections to peers in use.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Commands queued to a running node before senders wait.
pub const COMMAND_QUEUE: usize = 256;
/// Events kept for slow watchers; older ones are dropped for them.
pub const EVENT_QUEUE: usize = 1024;
/// Connections kept at once when the configuration does not say.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 128;
/// Connections per peer (one each way while both dial at once).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Connections being set up at once, each way (handshakes cost CPU).
pub const MAX_PENDING_CONNECTIONS: u32 = 32;
/// Characters of a peer's identify agent string kept for display.
pub const MAX_AGENT_LEN: usize = 64;
/// Fetched answers stored in one background transaction at most: a quarter
/// of [`tagline_sync::machine::MAX_UNSTORED_FETCHES`], so that fetching goes
/// on while a transaction is written. Bigger transactions write faster but
/// hold more dirty pages: at 8 answers (8,000 entries) the receiver of the
/// replication benchmark peaked above 300 MB (docs/performance.md).
pub const WRITE_BATCH_FETCHES: usize = tagline_sync::machine::MAX_UNSTORED_FETCHES / 4;

/// Writes of fetched answers running at once: one verifying its signatures
/// while the one before it is stored (each holds at most
/// [`WRITE_BATCH_FETCHES`] answers).
pub const WRITE_TASKS: usize = 2;

/// The nice value (Linux) of the thread that stores fetched entries, above
/// the verifying threads' 0: verification is the initial sync's critical
/// path, and the writes, which have slack, must not preempt it. In the
/// replication benchmark, with the writes at 0 the verifying thread ran
/// 69-70% of the time it had work, at 5 71-73%, at 10 74-76%, and the sync
/// was about 12% faster at 10 than at 0 (docs/performance.md,
/// "Replication"). A thread already nicer keeps its value.
pub const WRITER_NICE: i32 = 10;

/// Lets writes store in the order they were started ([`Driver::write`]).
#[derive(Debug, Default)]
struct WriteOrder {
    /// The ticket whose turn it is.
    next: std::sync::Mutex<u64>,
    turn: std::sync::Condvar,
}

impl WriteOrder {
    /// Blocks until it is `ticket`'s turn, which ends when the returned
    /// guard is dropped (also if its holder panics).
    fn wait_for(&self, ticket: u64) -> Turn<'_> {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *next != ticket {
            next = self
                .turn
                .wait(next)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        Turn(self, ticket)
    }
}

/// A write's turn to store ([`WriteOrder::wait_for`]).
struct Turn<'a>(&'a WriteOrder, u64);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut next = self
            .0
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next = self.1 + 1;
        self.0.turn.notify_all();
    }
}
/// The identify protocol's version string.
pub const IDENTIFY_PROTOCOL: &str = "/tagline/id/1";
/// Tagline's Kademlia protocol: a DHT of Tagline nodes only.
pub const KAD_PROTOCOL: &str = "/tagline/kad/1";
/// Kademlia refreshes its routing table this often.
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Addresses of one peer added to the routing table from its identify.
pub const MAX_KAD_ADDRS_PER_PEER: usize = 8;
/// The node asks the DHT who provides the projects and feeds it follows this
/// often ([`MAX_DISCOVERY_QUERIES`] subjects per round, in turn) and dials
/// the providers it is not connected to.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(60);
/// The first discovery round, after start (time to bootstrap).
pub const FIRST_DISCOVERY: Duration = Duration::from_secs(2);
/// Provider lookups per discovery round.
pub const MAX_DISCOVERY_QUERIES: usize = 16;
/// New connections are refused while the process uses more memory.
pub const MAX_NODE_MEMORY_BYTES: usize = 1024 * 1024 * 1024;
/// A relay (`relay_server`) keeps at most this many reservations ...
pub const RELAY_MAX_RESERVATIONS: usize = 128;
/// ... and relays at most this many circuits at once,
pub const RELAY_MAX_CIRCUITS: usize = 32;
/// each for at most this long ...
pub const RELAY_MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);
/// ... and this many bytes (libp2p's default, 128 KiB, is too small for a
/// sync; a relay is a deliberate service, like an SSB pub or Radicle seed).
pub const RELAY_MAX_CIRCUIT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("store: {0}")]
    Store(#[from] tagline_store::StoreError),
    #[error("the node has stopped")]
    Stopped,
}

/// Where a node listens and connects, and what it replicates.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub peers: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Most connections at once, in and out together.
    pub max_connections: u32,
    /// What to replicate at start; [`Handle::set_interests`] replaces it.
    pub interests: Interests,
    /// Addresses others reach this node at (a public address, a forwarded
    /// port). With one, the node answers Kademlia queries (server mode) and
    /// can serve as a relay; without, it only asks.
    pub external: Vec<Multiaddr>,
    /// Act as a circuit relay (v2) for nodes behind NAT.
    pub relay_server: bool,
    /// Relays (with `/p2p/`) to listen through: peers reach this node at
    /// `RELAY/p2p-circuit/p2p/THIS_NODE`.
    pub relays: Vec<Multiaddr>,
    /// Merge the store's id runs into one whenever the sync goes idle
    /// ([`Store::compact_id_runs`]): a node that runs on after a large
    /// catch-up looks entries up by id as fast as before it. Off for a node
    /// that stops once synced.
    pub compact_when_idle: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            peers: Vec::new(),
            mdns: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            interests: Interests::default(),
            external: Vec::new(),
            relay_server: false,
            relays: Vec::new(),
            compact_when_idle: false,
        }
    }
}

/// What a running node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    Connected(PeerId),
    Disconnected(PeerId),
    FeedUpdated {
        feed: PublicKey,
        head: u64,
    },
    Misbehaved {
        peer: PeerId,
        reason: String,
    },
    /// Every connected peer has been compared with and nothing is left to fetch.
    Idle,
    /// A dial failed (`peer` when the address named one).
    DialFailed {
        peer: Option<PeerId>,
        error: String,
    },
}

/// What a node replicates.
#[derive(Debug, Clone, Default)]
pub struct Interests {
    /// Feeds to replicate (follows, identities' device feeds, project feeds).
    pub wants: BTreeSet<PublicKey>,
    /// This node's own feeds (restore safety).
    pub own: BTreeSet<PublicKey>,
    /// Projects (their ids) followed: peers are asked for the feeds that
    /// publish to them.
    pub topics: BTreeSet<[u8; 32]>,
    /// The feeds this node holds that publish to each topic (to answer peers).
    pub topic_feeds: BTreeMap<[u8; 32], BTreeSet<PublicKey>>,
    /// Feeds never fetched nor served.
    pub blocked: BTreeSet<PublicKey>,
}

#[derive(Debug)]
enum Command {
    Stored { feed: PublicKey, head: u64 },
    Dial(Multiaddr),
    Want(Vec<PublicKey>),
    Status(tokio::sync::oneshot::Sender<Status>),
    Interests(Interests),
    Lend(tokio::sync::oneshot::Sender<Arc<Store>>),
    Resume(Arc<Store>),
    Shutdown,
}

/// A connected peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub peer: PeerId,
    /// The address of the first connection (ours to it, or its to us).
    pub addr: Multiaddr,
    /// Whether we dialled it.
    pub dialled: bool,
    /// Its identify agent string, once known.
    pub agent: Option<String>,
}

/// A snapshot of a node's replication state.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub connected: Vec<PeerInfo>,
    /// Per connected peer, the feeds where it is ahead: (feed, ours, theirs).
    pub behind: Vec<(PeerId, Vec<tagline_sync::machine::Behind>)>,
    pub idle: bool,
    /// Whether the store is lent out (see [`Handle::lend`]): sync waits.
    pub lent: bool,
    /// Where the node listens now, relayed addresses included.
    pub listening: Vec<Multiaddr>,
}

/// Talks to a running node.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    pub peer_id: PeerId,
    /// The addresses it listens on (ports resolved).
    pub listen_addrs: Vec<Multiaddr>,
}

impl Handle {
    async fn send(&self, c: Command) -> Result<(), NetError> {
        self.commands.send(c).await.map_err(|_| NetError::Stopped)
    }
    /// Tells the node its store holds `feed` up to `head` (after a local append).
    pub async fn stored(&self, feed: PublicKey, head: u64) -> Result<(), NetError> {
        self.send(Command::Stored { feed, head }).await
    }
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::Dial(addr)).await
    }
    pub async fn want(&self, feeds: Vec<PublicKey>) -> Result<(), NetError> {
        self.send(Command::Want(feeds)).await
    }
    /// Replaces what the node replicates.
    pub async fn set_interests(&self, i: Interests) -> Result<(), NetError> {
        self.send(Command::Interests(i)).await
    }
    /// Takes the store from the node, so that another process can open the
    /// database (redb allows one process at a time). The node keeps its
    /// connections and queues what needs the store until [`Handle::resume`].
    pub async fn lend(&self) -> Result<Arc<Store>, NetError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Lend(tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }
    /// Gives the store back (opened again): the node compares its heads with
    /// the ones it knew, announces what was appended meanwhile and goes on.
    pub async fn resume(&self, store: Arc<Store>) -> Result<(), NetError> {
        self.send(Command::Resume(store)).await
    }
    pub async fn status(&self) -> Result<Status, NetError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Status(tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }
    /// Stops the node: no new requests are taken, the store is left closed
    /// by the caller dropping its last reference.
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.send(Command::Shutdown).await
    }
    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossip: gossipsub::Behaviour,
    relay_client: relay::client::Behaviour,
    relay: Toggle<relay::Behaviour>,
    dcutr: dcutr::Behaviour,
}

/// Dials `addr`; a peer it names is also a way into the DHT.
fn dial(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) -> Result<(), libp2p::swarm::DialError> {
    if let Some(Protocol::P2p(peer)) = addr.iter().last() {
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        if let Err(e) = swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!("no Kademlia bootstrap: {e}");
        }
    }
    swarm.dial(addr.clone())
}

/// The Kademlia key under which the nodes holding `s` provide it.
fn provider_key(s: &Subject) -> kad::RecordKey {
    kad::RecordKey::new(&s.topic().hash().into_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Fresh randomness for batch verification. Its coefficients must be
/// unpredictable to the sender, so there is no fallback: without the OS
/// source nothing is ingested.
fn seed() -> Result<[u8; 32], getrandom::Error> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s)?;
    Ok(s)
}

fn build_swarm(key: Keypair, config: &Config) -> Result<Swarm<Behaviour>, NetError> {
    let mdns_on = config.mdns;
    let relay_on = config.relay_server;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_CONNECTIONS))
        .with_max_pending_outgoing(Some(MAX_PENDING_CONNECTIONS));
    let t = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| t(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| t(&e))?
        .with_behaviour(|key, relay_client| {
            let me = key.public().to_peer_id();
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS)),
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.into(),
                key.public(),
            ));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
            let kad = kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), kad_config);
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validate_messages()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .message_id_fn(announce::message_id)
                .max_transmit_size(announce::MAX_GOSSIP_TRANSMIT)
                .build()?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            let relay = relay_on.then(|| {
                relay::Behaviour::new(
                    me,
                    relay::Config {
                        max_reservations: RELAY_MAX_RESERVATIONS,
                        max_circuits: RELAY_MAX_CIRCUITS,
                        max_circuit_duration: RELAY_MAX_CIRCUIT_DURATION,
                        max_circuit_bytes: RELAY_MAX_CIRCUIT_BYTES,
                        ..relay::Config::default()
                    },
                )
            });
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                memory: memory_connection_limits::Behaviour::with_max_bytes(MAX_NODE_MEMORY_BYTES),
                sync,
                identify,
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
                kad,
                gossip,
                relay_client,
                relay: Toggle::from(relay),
                dcutr: dcutr::Behaviour::new(me),
            })
        })
        .map_err(|e| t(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}

/// Starts a node on the current tokio runtime. Returns once it listens on
/// every address of `config.listen`; the task ends on [`Handle::shutdown`].
pub async fn spawn(
    store: Arc<Store>,
    key: Keypair,
    config: Config,
) -> Result<(Handle, tokio::task::JoinHandle<()>), NetError> {
    let mut swarm = build_swarm(key, &config)?;
    let peer_id = *swarm.local_peer_id();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    // Wait for the listeners to report their addresses (ports chosen by the OS).
    let mut listen_addrs = Vec::new();
    while listen_addrs.len() < config.listen.len() {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listen_addrs.push(address),
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(NetError::Transport(error.to_string()));
            }
            Ok(_) => {}
            Err(_) => return Err(NetError::Transport("no listen address in 10 s".into())),
        }
    }
    let local: BTreeMap<PublicKey, u64> = store
        .feeds()?
        .into_iter()
        .map(|f| (f.author, f.head.seq))
        .collect();
    let sync = Sync::new(local, BTreeSet::new(), BTreeSet::new());
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    for addr in &config.peers {
        if let Err(e) = dial(&mut swarm, addr) {
            tracing::warn!(%addr, "cannot dial: {e}");
        }
    }
    for relay in &config.relays {
        let circuit = relay.clone().with(Protocol::P2pCircuit);
        if let Err(e) = swarm.listen_on(circuit) {
            tracing::warn!(%relay, "cannot listen through the relay: {e}");
        }
    }
    let (ctx, crx) = mpsc::channel(COMMAND_QUEUE);
    let (etx, _) = broadcast::channel(EVENT_QUEUE);
    let handle = Handle {
        commands: ctx,
        events: etx.clone(),
        peer_id,
        listen_addrs,
    };
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut driver = Driver {
        swarm,
        sync,
        store: Some(store),
        connected: BTreeMap::new(),
        outbound: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 1,
        events: etx,
        queue: VecDeque::new(),
        writes: Writes::default(),
        writing: 0,
        tickets: 0,
        order: Arc::new(WriteOrder::default()),
        written: done_tx,
        lend_waiting: None,
        compact_when_idle: config.compact_when_idle,
        compact_due: false,
        subscribed: BTreeMap::new(),
        provided: BTreeSet::new(),
        discover: Vec::new(),
        discover_next: 0,
        blocked: BTreeSet::new(),
        topic_feeds: BTreeMap::new(),
        dht_ready: false,
    };
    driver.set_interests(config.interests);
    // Fork proofs recorded before are passed on again after a restart.
    if let Some(store) = &driver.store {
        match store.fork_proofs() {
            Ok(proofs) => {
                for proof in proofs {
                    driver.queue.push_back(Input::ForkFound {
                        proof: Box::new(proof),
                    });
                }
                driver.drain();
            }
            Err(e) => tracing::error!("cannot read the fork proofs: {e}"),
        }
    }
    let task = tokio::spawn(driver.run(crx, done_rx));
    Ok((handle, task))
}

struct Driver {
    swarm: Swarm<Behaviour>,
    sync: Sync<PeerId>,
    /// `None` while lent out: inputs wait in `queue`.
    store: Option<Arc<Store>>,
    connected: BTreeMap<PeerId, PeerInfo>,
    /// libp2p's id of each request the machine sent → (peer, machine's id).
    outbound: HashMap<OutboundRequestId, (PeerId, tagline_sync::RequestId)>,
    /// Response channels of inbound requests, by the id given to the machine.
    inbound: HashMap<u64, ResponseChannel<Response>>,
    next_inbound: u64,
    events: broadcast::Sender<NetEvent>,
    /// Inputs produced while carrying out outputs (a stored ingest).
    queue: VecDeque<Input<PeerId>>,
    /// Store writes waiting for the writer (see [`Driver::write`]).
    writes: Writes,
    /// Writes running on the blocking pool now (at most [`WRITE_TASKS`]).
    writing: usize,
    /// The ticket of the next write started: writes store in ticket order.
    tickets: u64,
    order: Arc<WriteOrder>,
    /// Where a finished write reports.
    written: mpsc::UnboundedSender<Written>,
    /// A lend asked for while a write runs: answered when it ends.
    lend_waiting: Option<tokio::sync::oneshot::Sender<Arc<Store>>>,
    /// [`Config::compact_when_idle`].
    compact_when_idle: bool,
    /// The sync went idle since the id runs were last merged.
    compact_due: bool,
    /// Gossipsub topics subscribed to, and what each is about.
    subscribed: BTreeMap<gossipsub::TopicHash, Subject>,
    /// What this node provides in the DHT (projects it holds, its own feeds).
    provided: BTreeSet<Subject>,
    /// What it looks for in the DHT (projects and feeds followed), in turn.
    discover: Vec<Subject>,
    discover_next: usize,
    blocked: BTreeSet<PublicKey>,
    /// The feeds publishing to each project held (to announce on its topic).
    topic_feeds: BTreeMap<[u8; 32], BTreeSet<PublicKey>>,
    /// Whether the DHT routing table has had a peer: until then provider
    /// records reach nobody, so the first peer triggers providing and a
    /// discovery round.
    dht_ready: bool,
}

/// Writes the machine asked for, carried out together in the background:
/// every fetched answer received meanwhile goes into one transaction.
#[derive(Debug, Default)]
struct Writes {
    ingests: Vec<(PeerId, PublicKey, Vec<tagline_format::Entry>)>,
    confirms: Vec<(PublicKey, u64)>,
    forks: Vec<tagline_format::ForkProof>,
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.ingests.is_empty() && self.confirms.is_empty() && self.forks.is_empty()
    }
}

/// What a background write did.
#[derive(Debug, Default)]
struct Written {
    /// Per ingested feed: (peer, feed, head after, why entries were refused).
    stored: Vec<(PeerId, PublicKey, u64, Option<Rejection>)>,
    /// Fork proofs newly recorded.
    forks: Vec<tagline_format::ForkProof>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut written: mpsc::UnboundedReceiver<Written>,
    ) {
        let mut discovery = tokio::time::interval_at(
            tokio::time::Instant::now() + FIRST_DISCOVERY,
            DISCOVERY_INTERVAL,
        );
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.store.as_ref().and(self.sync.next_wake()).map(|t| {
                let now = now_ms();
                tokio::time::Instant::now() + Duration::from_millis(t.saturating_sub(now))
            });
            let sleep = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Stored { feed, head }) => self.input(Input::Stored { feed, head, from: None, rejected: None }),
                    Some(Command::Dial(addr)) => {
                        if let Err(e) = dial(&mut self.swarm, &addr) {
                            tracing::warn!(%addr, "cannot dial: {e}");
                            self.emit(NetEvent::DialFailed { peer: None, error: format!("{addr}: {e}") });
                        }
                    }
                    Some(Command::Want(feeds)) => {
                        let outs = self.sync.want(feeds, now_ms());
                        self.execute(outs);
                        self.drain();
                    }
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(Status {
                            connected: self.connected.values().cloned().collect(),
                            behind: self.sync.behind(),
                            idle: self.sync.is_idle() && self.queue.is_empty(),
                            lent: self.store.is_none(),
                            listening: self.swarm.listeners().cloned().collect(),
                        });
                    }
                    Some(Command::Interests(i)) => self.set_interests(i),
                    Some(Command::Lend(reply)) => {
                        self.lend_waiting = Some(reply);
                        self.lend();
                    }
                    Some(Command::Resume(store)) => {
                        tracing::debug!("store back");
                        self.resume(store);
                    }
                },
                () = sleep => self.input(Input::Tick),
                Some(w) = written.recv() => self.on_written(w),
                _ = discovery.tick() => self.discover(),
            }
        }
        tracing::info!("sync node stopping");
        // Writes in progress finish before the store may be closed.
        while self.writing > 0 {
            if written.recv().await.is_none() {
                break;
            }
            self.writing -= 1;
        }
    }

    /// Lends the store to whoever waits for it, once no write runs.
    fn lend(&mut self) {
        if self.writing > 0 || self.lend_waiting.is_none() || self.store.is_none() {
            return;
        }
        let (Some(reply), Some(store)) = (self.lend_waiting.take(), self.store.take()) else {
            return;
        };
        tracing::debug!("store lent out");
        if let Err(store) = reply.send(store) {
            self.store = Some(store);
            self.write();
        }
    }

    /// Starts the queued writes on the blocking pool, up to [`WRITE_TASKS`]
    /// at once, unless the store is away or a lend waits. Each verifies its
    /// entries' signatures first (no store needed), then stores them in
    /// ticket order: one batch's signatures are verified while the one
    /// before is written. The network task goes on meanwhile; the machine
    /// holds each fetched feed until it hears it was stored.
    fn write(&mut self) {
        while self.writing < WRITE_TASKS && self.lend_waiting.is_none() && !self.writes.is_empty() {
            let Some(store) = self.store.clone() else {
                return;
            };
            // A bounded share of the answers the machine lets wait: the
            // network goes on fetching the rest while these are written.
            let n = self.writes.ingests.len().min(WRITE_BATCH_FETCHES);
            let writes = Writes {
                ingests: self.writes.ingests.drain(..n).collect(),
                confirms: std::mem::take(&mut self.writes.confirms),
                forks: std::mem::take(&mut self.writes.forks),
            };
            self.start_write(
                store,
                // Without randomness, the store verifies them all itself.
                move || {
                    let started = std::time::Instant::now();
                    let cpu0 = thread_cpu();
                    let verified = seed()
                        .map(|s| {
                            let all: Vec<&tagline_format::Entry> =
                                writes.ingests.iter().flat_map(|(_, _, e)| e).collect();
                            tagline_format::check_signatures(&all, s)
                        })
                        .unwrap_or_default();
                    let cpu = thread_cpu().saturating_sub(cpu0);
                    (writes, verified, started, started.elapsed(), cpu)
                },
                |store, ticket, (writes, verified, started, checked, cpu)| {
                    tracing::debug!(
                        ticket,
                        verify_ms = checked.as_millis() as u64,
                        verify_cpu_ms = cpu.as_millis() as u64,
                        wait_ms = (started.elapsed() - checked).as_millis() as u64,
                        "signatures checked"
                    );
                    write_all(store, writes, &verified)
                },
            );
        }
    }

    /// Starts a write with the next ticket on the blocking pool (which the
    /// runtime waits for when it stops): `prepare` runs at once (it needs
    /// no store), then, in ticket order, `write` on the store at
    /// [`WRITER_NICE`]. The store is let go before the result is reported,
    /// and the result reported before the next ticket's turn.
    fn start_write<P: Send + 'static>(
        &mut self,
        store: Arc<Store>,
        prepare: impl FnOnce() -> P + Send + 'static,
        write: impl FnOnce(&Store, u64, P) -> Written + Send + 'static,
    ) {
        let (done, order, ticket) = (self.written.clone(), self.order.clone(), self.tickets);
        self.tickets += 1;
        self.writing += 1;
        tokio::task::spawn_blocking(move || {
            let prepared = prepare();
            let turn = order.wait_for(ticket);
            let written = below_verification(|| write(&store, ticket, prepared));
            // Let go of the store before reporting: a lend may follow at
            // once, and the borrower must be the only one holding it.
            drop(store);
            // Reported in ticket order too: heads arrive in order.
            let _ = done.send(written);
            drop(turn);
        });
    }

    fn on_written(&mut self, w: Written) {
        self.writing = self.writing.saturating_sub(1);
        for (peer, feed, head, rejected) in w.stored {
            self.queue.push_back(Input::Stored {
                feed,
                head,
                from: Some(peer),
                rejected,
            });
        }
        for proof in w.forks {
            tracing::warn!(feed = %proof.author(), seq = proof.seq(), "feed forked: proof recorded, passed on");
            self.queue.push_back(Input::ForkFound {
                proof: Box::new(proof),
            });
        }
        self.lend();
        self.compact();
        self.drain();
    }

    /// Merges the store's id runs into one ([`Store::compact_id_runs`]) as
    /// a write of its own ([`Driver::start_write`]: a lend waits for it),
    /// once the sync went idle and nothing else is written or waits to be.
    fn compact(&mut self) {
        if !self.compact_due
            || self.writing > 0
            || self.lend_waiting.is_some()
            || !self.writes.is_empty()
        {
            return;
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        self.compact_due = false;
        self.start_write(
            store,
            || (),
            |store, _, ()| {
                let started = std::time::Instant::now();
                match store.compact_id_runs() {
                    Ok(0) => {}
                    Ok(runs) => tracing::info!(
                        runs,
                        ms = started.elapsed().as_millis() as u64,
                        "id runs merged into one"
                    ),
                    Err(e) => tracing::warn!("cannot merge the id runs: {e}"),
                }
                Written::default()
            },
        );
    }

    fn set_interests(&mut self, i: Interests) {
        self.gossip_and_dht(&i);
        self.blocked.clone_from(&i.blocked);
        self.topic_feeds.clone_from(&i.topic_feeds);
        self.sync.set_topics(i.topics);
        self.sync.set_blocked(i.blocked);
        for (t, f) in i.topic_feeds {
            let outs = self.sync.set_topic_feeds(t, f, now_ms());
            self.execute(outs);
        }
        let outs = self.sync.set_wants(i.wants, i.own, now_ms());
        self.execute(outs);
        self.drain();
    }

    /// Subscribes to the gossip topics of what `i` follows (at most
    /// [`announce::MAX_GOSSIP_TOPICS`]), provides in the DHT what this node
    /// holds, and sets what discovery looks for.
    fn gossip_and_dht(&mut self, i: &Interests) {
        let projects = i.topics.iter().map(|t| Subject::Project(*t));
        let own = i.own.iter().map(|f| Subject::Feed(*f));
        let follows = i
            .wants
            .iter()
            .filter(|f| !i.own.contains(*f) && !i.blocked.contains(*f))
            .map(|f| Subject::Feed(*f));
        let mut want: BTreeMap<gossipsub::TopicHash, Subject> = BTreeMap::new();
        for s in projects.chain(own).chain(follows.clone()) {
            if want.len() >= announce::MAX_GOSSIP_TOPICS {
                break;
            }
            want.insert(s.topic().hash(), s);
        }
        let gone: Vec<Subject> = self
            .subscribed
            .iter()
            .filter(|(t, _)| !want.contains_key(*t))
            .map(|(_, s)| *s)
            .collect();
        for s in gone {
            self.swarm.behaviour_mut().gossip.unsubscribe(&s.topic());
        }
        for s in want.values() {
            if !self.subscribed.contains_key(&s.topic().hash())
                && let Err(e) = self.swarm.behaviour_mut().gossip.subscribe(&s.topic())
            {
                tracing::warn!("cannot subscribe to {}: {e}", s.topic());
            }
        }
        self.subscribed = want;
        let provide: BTreeSet<Subject> = i
            .topic_feeds
            .keys()
            .map(|t| Subject::Project(*t))
            .chain(i.own.iter().map(|f| Subject::Feed(*f)))
            .collect();
        for s in self.provided.difference(&provide) {
            self.swarm
                .behaviour_mut()
                .kad
                .stop_providing(&provider_key(s));
        }
        let new: Vec<Subject> = provide.difference(&self.provided).copied().collect();
        for s in &new {
            self.provide(s);
        }
        self.provided = provide;
        self.discover = i
            .topics
            .iter()
            .map(|t| Subject::Project(*t))
            .chain(follows)
            .collect();
    }

    /// Announces in the DHT that this node holds `s` (a provider record on
    /// the closest nodes, which kad republishes).
    fn provide(&mut self, s: &Subject) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(provider_key(s))
        {
            tracing::warn!("cannot provide {} in the DHT: {e}", s.topic());
        }
    }

    /// One discovery round: asks the DHT who provides the next subjects.
    fn discover(&mut self) {
        let n = self.discover.len();
        for _ in 0..n.min(MAX_DISCOVERY_QUERIES) {
            let Some(s) = self.discover.get(self.discover_next % n).copied() else {
                break;
            };
            self.discover_next = self.discover_next.wrapping_add(1);
            self.swarm
                .behaviour_mut()
                .kad
                .get_providers(provider_key(&s));
        }
    }

    /// Announces a new local head on the gossip topics of its feed and of
    /// the projects the feed publishes to.
    fn announce(&mut self, feed: PublicKey, head: u64) {
        let Some(store) = &self.store else {
            return;
        };
        let signed = match store.range(&feed, head, head) {
            Ok(list) => match list.into_iter().next() {
                Some(e) => e.signed.into_bytes(),
                None => return,
            },
            Err(e) => {
                tracing::error!("cannot read the head of {feed} to announce it: {e}");
                return;
            }
        };
        let projects = self
            .topic_feeds
            .iter()
            .filter(|(_, fs)| fs.contains(&feed))
            .map(|(t, _)| Subject::Project(*t));
        let subjects: Vec<Subject> = std::iter::once(Subject::Feed(feed))
            .chain(projects)
            .collect();
        for s in subjects {
            match self
                .swarm
                .behaviour_mut()
                .gossip
                .publish(s.topic(), signed.clone())
            {
                Ok(_) => tracing::debug!(%feed, head, topic = %s.topic(), "announced"),
                // Nobody listening yet: clock exchanges and haves carry it.
                Err(e) => tracing::debug!(%feed, head, "not announced on {}: {e}", s.topic()),
            }
        }
    }

    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        let verdict = announce::judge(
            &message.topic,
            &message.data,
            &self.subscribed,
            |f| self.sync.head_of(f),
            |f| self.blocked.contains(f),
        );
        let (acceptance, head) = match verdict {
            Verdict::Accept(sh) => (gossipsub::MessageAcceptance::Accept, Some(sh)),
            Verdict::Ignore(why) => {
                tracing::trace!(peer = %propagation_source, "announcement ignored: {why}");
                (gossipsub::MessageAcceptance::Ignore, None)
            }
            Verdict::Reject(why) => {
                // Honest peers check before they forward: this one did not.
                self.input(Input::Misbehaved {
                    peer: propagation_source,
                    reason: format!("forwarded {why}"),
                });
                (gossipsub::MessageAcceptance::Reject, None)
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let Some(sh) = head {
            // Fetch from the publisher when connected to it, else from the
            // peer that relayed it (which may hold it, or will).
            let peer = message
                .source
                .filter(|p| self.connected.contains_key(p))
                .unwrap_or(propagation_source);
            self.input(Input::Announced {
                peer,
                heads: vec![(*sh.author(), sh.seq())],
            });
        }
    }

    /// Takes the store back and tells the machine of heads that moved while
    /// it was lent (local appends by another process).
    fn resume(&mut self, store: Arc<Store>) {
        match store.feeds() {
            Ok(feeds) => {
                for f in feeds {
                    if f.head.seq != self.sync.head_of(&f.author) {
                        self.queue.push_back(Input::Stored {
                            feed: f.author,
                            head: f.head.seq,
                            from: None,
                            rejected: None,
                        });
                    }
                }
            }
            Err(e) => tracing::error!("cannot read the feeds of the store given back: {e}"),
        }
        self.store = Some(store);
        self.drain();
        // Another lend may have waited for this one.
        self.lend();
    }

    fn input(&mut self, input: Input<PeerId>) {
        self.queue.push_back(input);
        self.drain();
    }

    /// Hands the queued inputs to the machine and carries out its outputs,
    /// which may queue more (a stored ingest).
    fn drain(&mut self) {
        if self.store.is_none() {
            return;
        }
        while let Some(i) = self.queue.pop_front() {
            if let Input::Stored {
                feed,
                head,
                from: None,
                ..
            } = &i
                && *head > self.sync.head_of(feed)
            {
                self.announce(*feed, *head);
            }
            let outs = self.sync.handle(i, now_ms());
            self.execute(outs);
        }
        self.write();
    }

    fn emit(&self, e: NetEvent) {
        let _ = self.events.send(e);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } if num_established.get() == 1 => {
                tracing::info!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.connected.insert(
                    peer_id,
                    PeerInfo {
                        peer: peer_id,
                        addr: endpoint.get_remote_address().clone(),
                        dialled: endpoint.is_dialer(),
                        agent: None,
                    },
                );
                self.emit(NetEvent::Connected(peer_id));
                self.input(Input::Connected(peer_id));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(%peer_id, "disconnected");
                self.connected.remove(&peer_id);
                self.emit(NetEvent::Disconnected(peer_id));
                self.input(Input::Disconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        tracing::debug!(%peer, %addr, "found on the local network");
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if let Some(p) = self.connected.get_mut(&peer_id) {
                    p.agent = Some(info.agent_version.chars().take(MAX_AGENT_LEN).collect());
                }
                // Tagline nodes that answer DHT queries join the routing table.
                if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
                    for addr in info.listen_addrs.into_iter().take(MAX_KAD_ADDRS_PER_PEER) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            })) => {
                let me = *self.swarm.local_peer_id();
                for p in providers {
                    if p != me && !self.swarm.is_connected(&p) {
                        tracing::debug!(peer = %p, "found through the DHT");
                        let opts = DialOpts::peer_id(p)
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        if let Err(e) = self.swarm.dial(opts) {
                            tracing::debug!(peer = %p, "cannot dial a provider: {e}");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) if !self.dht_ready => {
                tracing::debug!(%peer, "into the DHT");
                self.dht_ready = true;
                for s in self.provided.clone() {
                    self.provide(&s);
                }
                self.discover();
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                tracing::info!(relay = %relay_peer_id, "reachable through the relay");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                tracing::debug!("hole punching: {e:?}");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::info!(peer = ?peer_id, "cannot connect: {error}");
                self.emit(NetEvent::DialFailed {
                    peer: peer_id,
                    error: error.to_string(),
                });
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                // An address through a relay reaches this node by definition.
                if address.iter().any(|p| p == Protocol::P2pCircuit) {
                    self.swarm.add_external_address(address);
                }
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, e: request_response::Event<tagline_sync::Request, Response>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let inbound = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(inbound, channel);
                    self.input(Input::Request {
                        peer,
                        inbound,
                        request,
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((p, id)) = self.outbound.remove(&request_id) {
                        self.input(Input::Response {
                            peer: p,
                            id,
                            response,
                        });
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, id)) = self.outbound.remove(&request_id) {
                    tracing::debug!(%peer, "sync request failed: {error}");
                    self.input(Input::Failed { peer, id });
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound sync request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn execute(&mut self, outs: Vec<Output<PeerId>>) {
        for o in outs {
            match o {
                Output::Send { peer, id, request } => {
                    let oid = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                    self.outbound.insert(oid, (peer, id));
                }
                Output::Respond {
                    inbound, response, ..
                } => self.respond(inbound, response),
                Output::Serve {
                    inbound,
                    feed,
                    from,
                    max,
                    ..
                } => {
                    let to = from.saturating_add(u64::from(max) - 1);
                    let Some(store) = self.store.clone() else {
                        self.respond(
                            inbound,
                            Response::Refused {
                                reason: "busy".into(),
                            },
                        );
                        continue;
                    };
                    let response = match store.range_bytes(&feed, from, to) {
                        Ok(list) => entries_response(list.into_iter().map(|e| Record {
                            signed: e.signed,
                            payload: e.payload,
                        })),
                        Err(e) => {
                            tracing::error!("cannot read feed {feed} to serve it: {e}");
                            Response::Refused {
                                reason: "store error".into(),
                            }
                        }
                    };
                    self.respond(inbound, response);
                }
                Output::Ingest {
                    peer,
                    feed,
                    entries,
                } => self.writes.ingests.push((peer, feed, entries)),
                Output::Confirm { feed, seq } => self.writes.confirms.push((feed, seq)),
                Output::StoreForks { proofs } => self.writes.forks.extend(proofs),
                Output::Disconnect { peer, reason } => {
                    tracing::warn!(%peer, "disconnecting: {reason}");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Output::Event(Event::FeedUpdated { feed, head }) => {
                    self.emit(NetEvent::FeedUpdated { feed, head });
                }
                Output::Event(Event::Misbehaved { peer, reason }) => {
                    tracing::warn!(%peer, "peer misbehaved: {reason}");
                    self.emit(NetEvent::Misbehaved { peer, reason });
                }
                Output::Event(Event::Idle) => {
                    self.emit(NetEvent::Idle);
                    if self.compact_when_idle {
                        self.compact_due = true;
                        self.compact();
                    }
                }
            }
        }
    }

    fn respond(&mut self, inbound: u64, response: Response) {
        if let Some(ch) = self.inbound.remove(&inbound) {
            let _ = self.swarm.behaviour_mut().sync.send_response(ch, response);
        }
    }
}

/// The CPU time this thread has used (for the debug log: beside the wall
/// time, it shows whether the thread waited for a core).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Lowers the calling thread's CPU priority to nice `nice`, unless it is
/// already lower. Linux only, where a nice value is per thread; elsewhere
/// it would lower the whole process, so it does nothing.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    match rustix::process::getpriority_process(None) {
        Ok(now) if now < nice => {
            if let Err(e) = rustix::process::setpriority_process(None, nice) {
                tracing::debug!("cannot lower the writer's priority: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("cannot read the writer's priority: {e}"),
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Runs `f` on a thread of its own at [`WRITER_NICE`] and waits for it (a
/// store thread that `f` starts inherits the value), or runs it here if no
/// thread can be started. A panic is passed on.
fn below_verification<T: Default + Send>(f: impl FnOnce() -> T + Send) -> T {
    let mut job = Some(f);
    let outcome = std::thread::scope(|scope| {
        let job = &mut job;
        std::thread::Builder::new()
            .name("tagline-writer".into())
            .spawn_scoped(scope, move || {
                lower_thread_priority(WRITER_NICE);
                job.take().map(|f| f())
            })
            .map(std::thread::ScopedJoinHandle::join)
    });
    match outcome {
        Ok(Ok(Some(done))) => done,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // Not started: the job is still here.
        Ok(Ok(None)) | Err(_) => job.take().map_or_else(T::default, |f| f()),
    }
}

/// Stores every queued answer in one transaction with full validation, then
/// records confirmed heads. Per ingested feed: its head after, and why
/// entries were refused (hostile unless the refusal is about time or a
/// fork, which the sender may not know).
fn write_all(store: &Store, writes: Writes, verified: &VerifiedIds) -> Written {
    let head_of = |feed: &PublicKey| store.feed(feed).ok().flatten().map_or(0, |m| m.head.seq);
    let feeds: Vec<(PeerId, PublicKey)> = writes.ingests.iter().map(|(p, f, _)| (*p, *f)).collect();
    let entries: Vec<tagline_format::Entry> =
        writes.ingests.into_iter().flat_map(|(_, _, e)| e).collect();
    let mut refused: HashMap<PublicKey, Rejection> = HashMap::new();
    let mut new_forks = Vec::new();
    let started = std::time::Instant::now();
    let n = entries.len();
    if !entries.is_empty() {
        let result = seed()
            .map_err(|e| format!("no randomness for batch verification: {e}"))
            .and_then(|seed| {
                store
                    .ingest_verified(entries, verified, now_ms(), seed, IngestMode::BestEffort)
                    .map_err(|e| format!("store error: {e}"))
            });
        match result {
            Ok(report) => {
                new_forks.extend(report.forks);
                for r in report.rejected {
                    let code = r.reason.code();
                    refused.entry(r.author).or_insert_with(|| Rejection {
                        hostile: !matches!(code, "future-timestamp" | "forked" | "fork"),
                        reason: format!("entry {} of {}: {}", r.seq, r.author, r.reason),
                    });
                }
            }
            Err(reason) => {
                tracing::error!("cannot store fetched entries: {reason}");
                for (_, f) in &feeds {
                    refused.insert(
                        *f,
                        Rejection {
                            hostile: false,
                            reason: reason.clone(),
                        },
                    );
                }
            }
        }
    }
    tracing::debug!(
        entries = n,
        feeds = feeds.len(),
        ms = started.elapsed().as_millis() as u64,
        "stored fetched entries"
    );
    match store.add_fork_proofs(&writes.forks) {
        Ok(new) => new_forks.extend(new),
        Err(e) => tracing::error!("cannot record fork proofs: {e}"),
    }
    for (feed, seq) in writes.confirms {
        if let Err(e) = store.set_confirmed(&feed, seq) {
            tracing::error!("cannot record the confirmed head of {feed}: {e}");
        }
    }
    Written {
        stored: feeds
            .into_iter()
            .map(|(p, f)| (p, f, head_of(&f), refused.remove(&f)))
            .collect(),
        forks: new_forks,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// The writer's thread gets `WRITER_NICE` (or keeps a nicer value),
    /// and the thread that started it keeps its own: lowering the whole
    /// process would slow verification too.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_writer_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let writer = std::thread::spawn(|| {
            lower_thread_priority(WRITER_NICE);
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(writer, before.max(WRITER_NICE));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }
}

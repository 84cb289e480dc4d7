//! Tagline's local node: what `tagline node` runs.
//!
//! It opens the store, computes the replication set ([`interests`]) from the
//! user's follows, subscriptions and blocks ([`files::Replication`]), starts
//! the libp2p node ([`tagline_net`]), serves the owner-only local API
//! ([`api`]) and keeps the replication set fresh as identities and projects
//! arrive. [`run`] returns on Ctrl-C or SIGTERM after a clean shutdown, or,
//! with [`Options::once`], when the known peers have been synced with.

pub mod api;
pub mod config;
pub mod files;
pub mod interests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use tagline_format::PublicKey;
use tagline_format::identity::IdentityId;
use tagline_net::{Handle, NetEvent};
use tagline_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::files::Replication;

pub use api::{Client, Lease, NodeInfo, Request};
pub use config::NodeConfig;

/// After feeds change, the replication set is computed again at most this
/// often (new devices of followed identities, new feeds publishing to a
/// subscribed project).
pub const INTERESTS_REFRESH: Duration = Duration::from_secs(2);
/// How often `--once` checks whether the sync is done.
pub const ONCE_POLL: Duration = Duration::from_millis(100);
/// After this long, `--once` stops waiting for peers that neither connected
/// nor failed, if at least one peer connected.
pub const ONCE_CONNECT_GRACE: Duration = Duration::from_secs(10);
/// How long the node tries to open the store again after a lease (the
/// borrowing process may still be closing it).
pub const REOPEN_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("configuration {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("local API: {0}")]
    Api(String),
    #[error("store: {0}")]
    Store(#[from] tagline_store::StoreError),
    #[error("network: {0}")]
    Net(#[from] tagline_net::NetError),
    #[error("{0}")]
    Sync(String),
}

/// Flags of `tagline node`, over the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replaces the configuration's `listen` when not empty.
    pub listen: Vec<String>,
    /// Dialled besides the configuration's and the peers file's.
    pub peers: Vec<String>,
    /// Overrides the configuration's `mdns`.
    pub mdns: Option<bool>,
    /// Sync with the known peers, then return.
    pub once: bool,
    /// Overrides the configuration's `once_timeout_secs`.
    pub once_timeout: Option<Duration>,
}

/// This node's keys: its feeds, and its identity.
#[derive(Debug, Clone, Default)]
pub struct Own {
    pub feeds: BTreeSet<PublicKey>,
    pub identity: Option<IdentityId>,
}

/// What the node prints when it is up.
#[derive(Debug, Clone)]
pub struct Ready {
    pub peer_id: String,
    pub listen: Vec<Multiaddr>,
    pub dialling: usize,
}

/// How `--once` ended well.
#[derive(Debug, Clone, Default)]
pub struct OnceReport {
    pub peers: usize,
    pub feeds_updated: usize,
}

/// State shared by the node's tasks.
struct Shared {
    home: PathBuf,
    net: Handle,
    own: Own,
    /// The node's own reference to the store (for the replication set);
    /// `None` while lent.
    store: std::sync::Mutex<Option<Arc<Store>>>,
    /// Held while the store is lent or read here: one at a time.
    lease: tokio::sync::Mutex<()>,
    /// Set when the store could not be opened again: the node must stop.
    fatal: tokio::sync::mpsc::Sender<String>,
    /// What the replication set was last computed from, and its size.
    last: std::sync::Mutex<Option<(Mark, usize, usize)>>,
}

/// What the replication set depends on: the identity digest, the review
/// index's mark ([`Store::review_mark`]) and the replication file.
type Mark = ([u8; 40], (u64, u64), Replication);

fn store_slot(s: &Shared) -> Option<Arc<Store>> {
    s.store.lock().ok().and_then(|g| g.clone())
}

/// Computes the replication set again, unless nothing it depends on
/// changed, and hands it to the network.
async fn refresh(s: &Shared) -> Result<(), NodeError> {
    let _g = s.lease.lock().await;
    let Some(store) = store_slot(s) else {
        return Ok(());
    };
    let replication = Replication::load(&s.home)?;
    let mark: Mark = (store.identity_digest()?, store.review_mark()?, replication);
    let unchanged = s
        .last
        .lock()
        .ok()
        .is_some_and(|l| l.as_ref().is_some_and(|(m, _, _)| *m == mark));
    if unchanged {
        return Ok(());
    }
    let i = interests::interests(&store, &mark.2, &s.own.feeds, s.own.identity)?;
    drop(store);
    if let Ok(mut l) = s.last.lock() {
        *l = Some((mark, i.wants.len(), i.topics.len()));
    }
    s.net.set_interests(i).await?;
    Ok(())
}

/// All addresses to dial: flags, configuration, peers file.
fn peer_addrs(
    home: &Path,
    config: &NodeConfig,
    opts: &Options,
) -> Result<Vec<Multiaddr>, NodeError> {
    let mut out: Vec<Multiaddr> = Vec::new();
    let listed = files::read_peers(home)?;
    for a in opts.peers.iter().chain(&config.peers).chain(&listed) {
        let m = config::parse_addr(a).map_err(NodeError::Invalid)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Runs the node until Ctrl-C or SIGTERM (or, with `--once`, until synced).
fn parse_all(addrs: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    addrs
        .iter()
        .map(|a| config::parse_addr(a).map_err(NodeError::Invalid))
        .collect()
}

/// `ready` is called once it listens.
pub async fn run(
    home: &Path,
    opts: Options,
    own: Own,
    ready: impl FnOnce(&Ready),
) -> Result<Option<OnceReport>, NodeError> {
    NodeConfig::write_default(home)?;
    let config = NodeConfig::load(home)?;
    let sock = api::socket_path(home);
    if api::Client::connect(home)?.is_some() {
        return Err(NodeError::Invalid(format!(
            "a node is already running on {} (its API answers on {})",
            home.display(),
            sock.display()
        )));
    }
    // --once listens only where told to: it dials, syncs and leaves.
    let none = Vec::new();
    let listen_src = match (opts.listen.is_empty(), opts.once) {
        (false, _) => &opts.listen,
        (true, false) => &config.listen,
        (true, true) => &none,
    };
    let mut listen = Vec::new();
    for a in listen_src {
        listen.push(config::parse_addr(a).map_err(NodeError::Invalid)?);
    }
    let peers = peer_addrs(home, &config, &opts)?;
    if opts.once && peers.is_empty() {
        return Err(NodeError::Invalid(
            "no peers to sync with: add one with `tagline peers add MULTIADDR` or in config.toml"
                .into(),
        ));
    }
    let store = Arc::new(Store::open(home)?);
    let key = files::node_key(home)?;
    let net_config = tagline_net::Config {
        listen,
        // Dialled below, once events are watched (--once counts dial outcomes).
        peers: Vec::new(),
        // --once syncs with the known peers only.
        mdns: !opts.once && opts.mdns.unwrap_or(config.mdns),
        max_connections: config.max_connections,
        // Set below by `refresh`, the one place that computes it.
        interests: tagline_net::Interests::default(),
        external: parse_all(&config.external)?,
        // --once is a client only: no relaying, no listening through relays.
        relay_server: !opts.once && config.relay,
        relays: if opts.once {
            Vec::new()
        } else {
            parse_all(&config.relays)?
        },
        // --once stops when idle: the next node that runs on merges them.
        compact_when_idle: !opts.once,
    };
    let (net, task) = tagline_net::spawn(store.clone(), key, net_config).await?;
    let mut events = net.events();
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel(1);
    let shared = Arc::new(Shared {
        home: home.to_owned(),
        net: net.clone(),
        own,
        store: std::sync::Mutex::new(Some(store)),
        lease: tokio::sync::Mutex::new(()),
        fatal: fatal_tx,
        last: std::sync::Mutex::new(None),
    });
    refresh(&shared).await?;
    for p in &peers {
        net.dial(p.clone()).await?;
    }
    // The API: a stale socket from an unclean stop is replaced.
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|e| NodeError::Io {
        path: sock.display().to_string(),
        reason: format!("cannot listen: {e}"),
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            NodeError::Io {
                path: sock.display().to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    let owner = api::socket_owner(&sock)?;
    let api_task = tokio::spawn(serve_api(listener, owner, shared.clone()));
    ready(&Ready {
        peer_id: net.peer_id.to_string(),
        listen: net.listen_addrs.clone(),
        dialling: peers.len(),
    });

    let result = main_loop(
        &shared,
        &mut events,
        &mut fatal_rx,
        &opts,
        &config,
        peers.len(),
    )
    .await;
    api_task.abort();
    let _ = std::fs::remove_file(&sock);
    let _ = net.shutdown().await;
    let _ = task.await;
    // Wait for a lease in progress to end, then close the store.
    let _g = shared.lease.lock().await;
    if let Ok(mut g) = shared.store.lock() {
        g.take();
    }
    tracing::info!("node stopped");
    result
}

async fn main_loop(
    shared: &Arc<Shared>,
    events: &mut tokio::sync::broadcast::Receiver<NetEvent>,
    fatal: &mut tokio::sync::mpsc::Receiver<String>,
    opts: &Options,
    config: &NodeConfig,
    dialling: usize,
) -> Result<Option<OnceReport>, NodeError> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| NodeError::Invalid(format!("cannot watch SIGTERM: {e}")))?;
    let started = tokio::time::Instant::now();
    let timeout = opts
        .once_timeout
        .unwrap_or(Duration::from_secs(config.once_timeout_secs));
    let mut refresh_tick = tokio::time::interval(INTERESTS_REFRESH);
    let mut poll = tokio::time::interval(ONCE_POLL);
    let mut dirty = false;
    let (mut connected, mut failed, mut updated) = (BTreeSet::new(), 0usize, BTreeSet::new());
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); return Ok(None); }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(None); }
            reason = fatal.recv() => {
                return Err(NodeError::Invalid(reason.unwrap_or_else(|| "stopped".into())));
            }
            ev = events.recv() => match ev {
                Ok(NetEvent::FeedUpdated { feed, .. }) => { dirty = true; updated.insert(feed); }
                Ok(NetEvent::Connected(p)) => { connected.insert(p); }
                Ok(NetEvent::DialFailed { error, .. }) => { failed += 1; last_error = error; }
                Ok(NetEvent::Misbehaved { peer, reason }) => {
                    last_error = format!("peer {peer} misbehaved: {reason}");
                }
                // --once decides at once rather than at the next poll.
                Ok(NetEvent::Idle) if opts.once => poll.reset_immediately(),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => dirty = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(NodeError::Invalid("the network task stopped".into()));
                }
            },
            _ = refresh_tick.tick() => {
                if dirty {
                    dirty = false;
                    if let Err(e) = refresh(shared).await {
                        tracing::warn!("cannot compute the replication set: {e}");
                    }
                }
            }
            _ = poll.tick(), if opts.once => {
                let status = shared.net.status().await?;
                let live = status.connected.len();
                let settled = connected.len() + failed >= dialling
                    || started.elapsed() >= ONCE_CONNECT_GRACE;
                if live > 0 && settled && status.idle {
                    if !dirty {
                        return Ok(Some(OnceReport { peers: connected.len(), feeds_updated: updated.len() }));
                    }
                    // What arrived may widen the replication set (an
                    // identity's devices, a project's publishers): refresh
                    // it now and decide again at once. The network handles
                    // commands in order, so the status asked for next
                    // already reflects the new set.
                    dirty = false;
                    if let Err(e) = refresh(shared).await {
                        tracing::warn!("cannot compute the replication set: {e}");
                    }
                    poll.reset_immediately();
                    continue;
                }
                if connected.is_empty() && failed >= dialling {
                    return Err(NodeError::Sync(format!(
                        "could not reach any of the {dialling} known peers (last error: {last_error})"
                    )));
                }
                if started.elapsed() >= timeout {
                    let behind: usize = status.behind.iter().map(|(_, v)| v.len()).sum();
                    return Err(NodeError::Sync(format!(
                        "sync did not finish in {} s: {live} peers connected, {behind} feeds still behind{}",
                        timeout.as_secs(),
                        if last_error.is_empty() { String::new() } else { format!(" (last error: {last_error})") }
                    )));
                }
            }
        }
    }
}

async fn serve_api(listener: UnixListener, owner: u32, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == owner => {}
            Ok(c) => {
                tracing::warn!(
                    uid = c.uid(),
                    "refused a local API connection from another user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("refused a local API connection without credentials: {e}");
                continue;
            }
        }
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, s).await {
                tracing::debug!("local API connection: {e}");
            }
        });
    }
}

fn ok(extra: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({ "ok": true });
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

fn error(msg: &str) -> Vec<u8> {
    let mut line = serde_json::json!({ "error": msg }).to_string().into_bytes();
    line.push(b'\n');
    line
}

async fn serve_conn(stream: UnixStream, shared: Arc<Shared>) -> Result<(), std::io::Error> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let n = (&mut r)
            .take(api::MAX_API_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > api::MAX_API_LINE {
            w.write_all(&error("request too long")).await?;
            return Ok(());
        }
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                w.write_all(&error(&format!("not a request: {e}"))).await?;
                continue;
            }
        };
        let answer = match req {
            Request::Info => match info(&shared).await {
                Ok(i) => ok(serde_json::json!({ "info": i })),
                Err(e) => error(&e.to_string()),
            },
            Request::Dial { addr } => match config::parse_addr(&addr) {
                Ok(m) => match shared.net.dial(m).await {
                    Ok(()) => ok(serde_json::json!({})),
                    Err(e) => error(&e.to_string()),
                },
                Err(e) => error(&e),
            },
            Request::Reload => match refresh(&shared).await {
                Ok(()) => ok(serde_json::json!({})),
                Err(e) => error(&e.to_string()),
            },
            // Outside a lease there is nothing to release.
            Request::Release => error("no lease to release"),
            Request::Lease => {
                lend(&shared, &mut r, &mut w).await?;
                continue;
            }
        };
        w.write_all(&answer).await?;
    }
}

async fn info(s: &Shared) -> Result<NodeInfo, NodeError> {
    let st = s.net.status().await?;
    let (wanted_feeds, topics) = s
        .last
        .lock()
        .ok()
        .and_then(|l| l.as_ref().map(|(_, w, t)| (*w, *t)))
        .unwrap_or_default();
    Ok(NodeInfo {
        peer_id: s.net.peer_id.to_string(),
        // Where it listens now (relayed addresses too), each with /p2p/.
        listen: st
            .listening
            .iter()
            .map(|a| {
                if matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                    a.to_string()
                } else {
                    format!("{a}/p2p/{}", s.net.peer_id)
                }
            })
            .collect(),
        connected: st
            .connected
            .iter()
            .map(|p| api::PeerJson {
                peer: p.peer.to_string(),
                addr: p.addr.to_string(),
                dialled: p.dialled,
                agent: p.agent.clone(),
            })
            .collect(),
        behind: st
            .behind
            .iter()
            .flat_map(|(p, v)| {
                v.iter().map(move |(f, ours, theirs)| api::BehindJson {
                    peer: p.to_string(),
                    feed: f.to_string(),
                    ours: *ours,
                    theirs: *theirs,
                })
            })
            .collect(),
        idle: st.idle,
        lent: st.lent,
        wanted_feeds,
        topics,
    })
}

/// Lends the store to the connection until it releases it or closes.
async fn lend(
    shared: &Arc<Shared>,
    r: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
) -> Result<(), std::io::Error> {
    let _g = shared.lease.lock().await;
    let from_net = match shared.net.lend().await {
        Ok(s) => s,
        Err(e) => {
            w.write_all(&error(&e.to_string())).await?;
            return Ok(());
        }
    };
    if let Ok(mut g) = shared.store.lock() {
        g.take();
    }
    match Arc::try_unwrap(from_net) {
        Ok(store) => drop(store),
        Err(store) => {
            // Someone else still reads it: give it back, refuse the lease.
            if let Ok(mut g) = shared.store.lock() {
                *g = Some(store.clone());
            }
            let _ = shared.net.resume(store).await;
            w.write_all(&error("the store is busy; try again")).await?;
            return Ok(());
        }
    }
    tracing::debug!("store lent to a local command");
    let sent = w.write_all(&ok(serde_json::json!({}))).await;
    if sent.is_ok() {
        // Until release or close; anything else is refused meanwhile.
        loop {
            let mut line = Vec::new();
            let n = (&mut *r)
                .take(api::MAX_API_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            if matches!(serde_json::from_slice(&line), Ok(Request::Release)) {
                break;
            }
            let _ = w
                .write_all(&error("only release is allowed during a lease"))
                .await;
        }
    }
    // Open the store again (the borrower may still be closing it).
    let deadline = tokio::time::Instant::now() + REOPEN_WAIT;
    let store = loop {
        match Store::open(&shared.home) {
            Ok(s) => break Arc::new(s),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("store not free yet: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                let _ = shared
                    .fatal
                    .send(format!("cannot open the store again after lending it: {e}"))
                    .await;
                return Ok(());
            }
        }
    };
    if let Ok(mut g) = shared.store.lock() {
        *g = Some(store.clone());
    }
    // What the command appended comes back as feed updates, which refresh
    // the replication set through the main loop.
    if let Err(e) = shared.net.resume(store).await {
        tracing::error!("cannot give the store back to the network task: {e}");
    }
    Ok(())
}

//! The replication state machine. Inputs in (with `now` in milliseconds),
//! outputs out; no clock, no randomness, no I/O. A driver (tagline-net over
//! libp2p, or the simulator in this crate's tests) carries the outputs out:
//! it sends requests and responses, reads ranges from its store to serve a
//! fetch, ingests received entries into its store (which verifies them in
//! batches) and reports back what it stored.

use std::collections::{BTreeMap, BTreeSet};

use tagline_format::{Entry, ForkProof, PublicKey, SignedHeader};

use crate::wire::{
    FeedHead, MAX_CLOCK_HEADS, MAX_FETCH_ENTRIES, MAX_FORK_PROOFS, MAX_TOPICS, Record, Request,
    Response, Topic,
};

/// Entries received without their payload that a node remembers, to fetch
/// again from other peers (one entry per fetch; each peer asked once).
pub const MAX_MISSING_PAYLOADS: usize = 4096;
/// Fork proofs a node keeps in memory to pass on to peers (the store keeps
/// every proof it records; beyond this many, new ones are still recorded
/// but no longer passed on until a restart).
pub const MAX_KNOWN_FORKS: usize = 1024;

/// Fetch requests in flight to one peer at a time. With [`MAX_FRAME_SIZE`]
/// this bounds the bytes in flight from a peer.
///
/// [`MAX_FRAME_SIZE`]: crate::wire::MAX_FRAME_SIZE
pub const MAX_INFLIGHT_FETCHES: usize = 8;
/// Fetches sent or answered but not yet reported stored, across all peers.
/// The driver may store answers in the background while more arrive (and
/// store many in one transaction); this and [`MAX_UNSTORED_BYTES`] bound
/// what a node holds in memory meanwhile.
pub const MAX_UNSTORED_FETCHES: usize = 16;
/// Bytes of answered fetches waiting to be stored, across all peers, beyond
/// which no new fetch is sent until some are stored.
pub const MAX_UNSTORED_BYTES: usize = 64 * 1024 * 1024;
/// A request without a response after this long (ms) has failed.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Clocks are exchanged again with every peer this often (ms), so that a
/// lost announcement delays an update by at most this much.
pub const RESYNC_INTERVAL_MS: u64 = 60_000;
/// Requests a peer may make per second, on average ...
pub const INBOUND_RATE_PER_S: u64 = 100;
/// ... and in a burst.
pub const INBOUND_BURST: u64 = 400;
/// Feeds a peer may introduce through project topics, over a connection:
/// bounds what a peer can make a node fetch for an open project.
pub const MAX_TOPIC_FEEDS_PER_PEER: usize = 10_000;
/// Feeds a peer may tell this node it wants (bounds the per-peer memory).
pub const MAX_PEER_WANTS: usize = 16 * MAX_CLOCK_HEADS;
/// A peer that sent invalid data is refused for this long (ms).
pub const BAN_MS: u64 = 10 * 60 * 1000;
/// Time-outs a peer may cause before it is disconnected.
pub const MAX_TIMEOUTS: u32 = 3;

/// A feed where a peer is ahead: (feed, our head, its head).
pub type Behind = (PublicKey, u64, u64);

/// Identifies one of this node's requests to a peer.
pub type RequestId = u64;

/// What the machine is told.
#[derive(Debug, Clone)]
pub enum Input<P> {
    /// A connection to `peer` is up.
    Connected(P),
    /// The last connection to `peer` is gone.
    Disconnected(P),
    /// `peer` sent a request; answer it with `inbound` in a
    /// [`Output::Respond`] (or, for a fetch, [`Output::Serve`]).
    Request {
        peer: P,
        inbound: u64,
        request: Request,
    },
    /// `peer` answered request `id`.
    Response {
        peer: P,
        id: RequestId,
        response: Response,
    },
    /// Request `id` to `peer` failed in transport (the driver's own time-out,
    /// a reset stream, an undecodable response).
    Failed { peer: P, id: RequestId },
    /// The store now holds `feed` up to `head` (after an ingest, or a local
    /// append). `rejected`: the ingest of entries from `from` was refused.
    Stored {
        feed: PublicKey,
        head: u64,
        from: Option<P>,
        rejected: Option<Rejection>,
    },
    /// A verified announcement (gossip, SPEC.md §14.4) says `peer` holds
    /// these heads: taken like a have from it, with nothing to answer.
    Announced { peer: P, heads: Vec<FeedHead> },
    /// The driver caught `peer` sending invalid data outside the sync
    /// protocol (an invalid announcement): banned like a peer that sends an
    /// invalid entry.
    Misbehaved { peer: P, reason: String },
    /// The store recorded a new fork proof (found by an ingest, or sent by
    /// a peer and checked): pass it on to every peer.
    ForkFound { proof: Box<ForkProof> },
    /// Time passed; see [`Sync::next_wake`].
    Tick,
}

/// Why the driver's store refused entries a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Invalid data (bad signature, broken chain, payload mismatch): the peer
    /// is disconnected and banned. Otherwise (a timestamp in the future, a
    /// fork) the peer is not blamed.
    pub hostile: bool,
    pub reason: String,
}

/// What the machine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<P> {
    Send {
        peer: P,
        id: RequestId,
        request: Request,
    },
    Respond {
        peer: P,
        inbound: u64,
        response: Response,
    },
    /// Read entries `from..` of `feed` (at most `max`) and respond with
    /// [`entries_response`].
    Serve {
        peer: P,
        inbound: u64,
        feed: PublicKey,
        from: u64,
        max: u32,
    },
    /// Store these entries (consecutive, of `feed`, headers decoded but not
    /// verified) and report with [`Input::Stored`].
    Ingest {
        peer: P,
        feed: PublicKey,
        entries: Vec<Entry>,
    },
    /// A peer told us how far it holds one of our own feeds, and we hold at
    /// least that much now: local appends after `seq` are safe (restore
    /// safety).
    Confirm {
        feed: PublicKey,
        seq: u64,
    },
    /// Record these fork proofs (verified, of feeds this node wants or
    /// holds) and report the new ones with [`Input::ForkFound`].
    StoreForks {
        proofs: Vec<ForkProof>,
    },
    Disconnect {
        peer: P,
        reason: String,
    },
    Event(Event<P>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<P> {
    /// A feed grew.
    FeedUpdated { feed: PublicKey, head: u64 },
    /// A peer sent invalid data or broke the protocol.
    Misbehaved { peer: P, reason: String },
    /// Every connected peer has answered a clock exchange and nothing is
    /// left to fetch from any of them.
    Idle,
}

/// Builds a fetch response from stored entries in order, within the size
/// budget: stops at [`SOFT_RESPONSE_BYTES`], but always carries at least one
/// entry when one is given.
///
/// [`SOFT_RESPONSE_BYTES`]: crate::wire::SOFT_RESPONSE_BYTES
pub fn entries_response(entries: impl IntoIterator<Item = Record>) -> Response {
    let mut records = Vec::new();
    let mut size = 0usize;
    for r in entries.into_iter().take(MAX_FETCH_ENTRIES as usize) {
        let s = r.wire_size();
        if !records.is_empty() && size + s > crate::wire::SOFT_RESPONSE_BYTES {
            break;
        }
        size += s;
        records.push(r);
    }
    Response::Entries { records }
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Clock {
        sent: u64,
    },
    Fetch {
        sent: u64,
        feed: PublicKey,
        from: u64,
        max: u32,
    },
    Have {
        sent: u64,
    },
    Forks {
        sent: u64,
    },
}

impl Pending {
    fn sent(&self) -> u64 {
        match self {
            Pending::Clock { sent }
            | Pending::Fetch { sent, .. }
            | Pending::Have { sent }
            | Pending::Forks { sent } => *sent,
        }
    }
}

#[derive(Debug)]
struct Peer {
    /// Heads the peer told us of, for feeds we want.
    theirs: BTreeMap<PublicKey, u64>,
    /// Feeds where the peer is ahead of us.
    todo: BTreeSet<PublicKey>,
    /// Feeds the peer asked about (their clock), and its topics.
    wants: BTreeSet<PublicKey>,
    topics: BTreeSet<Topic>,
    /// Heads to announce to the peer.
    haves: BTreeMap<PublicKey, u64>,
    /// Fork proofs to pass to the peer.
    forks_out: BTreeSet<(PublicKey, u64)>,
    inflight: BTreeMap<RequestId, Pending>,
    /// Clock requests not answered yet in the current exchange.
    clocks_pending: usize,
    synced_once: bool,
    next_resync: u64,
    tokens: u64,
    refilled: u64,
    introduced: usize,
    timeouts: u32,
}

/// The replication state machine of one node, over peers named by `P`.
#[derive(Debug)]
pub struct Sync<P> {
    /// Heads the store holds.
    local: BTreeMap<PublicKey, u64>,
    /// Explicitly wanted feeds (follows, identities' devices, project feeds).
    wants: BTreeSet<PublicKey>,
    /// This node's own feeds (restore safety).
    own: BTreeSet<PublicKey>,
    topics: BTreeSet<Topic>,
    /// Feeds this node holds that publish to each topic (answers peers).
    topic_feeds: BTreeMap<Topic, BTreeSet<PublicKey>>,
    /// Feeds learnt through a topic from a peer.
    discovered: BTreeSet<PublicKey>,
    blocked: BTreeSet<PublicKey>,
    peers: BTreeMap<P, Peer>,
    banned: BTreeMap<P, u64>,
    /// Feed → the peer it is being fetched from (one at a time per feed).
    fetching: BTreeMap<PublicKey, P>,
    /// Feed → bytes of its answered fetch, until reported stored.
    unstored: BTreeMap<PublicKey, usize>,
    /// Fork proofs known, to pass on (at most [`MAX_KNOWN_FORKS`]).
    forks: BTreeMap<(PublicKey, u64), ForkProof>,
    /// Entries received without their payload → the peers asked for it
    /// again (at most [`MAX_MISSING_PAYLOADS`]).
    missing: BTreeMap<(PublicKey, u64), BTreeSet<P>>,
    next_id: RequestId,
    out: Vec<Output<P>>,
    was_idle: bool,
}

impl<P: Ord + Clone + std::fmt::Debug> Sync<P> {
    /// A node holding `local` heads, wanting `wants`, with `own` feeds.
    pub fn new(
        local: BTreeMap<PublicKey, u64>,
        wants: BTreeSet<PublicKey>,
        own: BTreeSet<PublicKey>,
    ) -> Sync<P> {
        Sync {
            local,
            wants,
            own,
            topics: BTreeSet::new(),
            topic_feeds: BTreeMap::new(),
            discovered: BTreeSet::new(),
            blocked: BTreeSet::new(),
            peers: BTreeMap::new(),
            banned: BTreeMap::new(),
            fetching: BTreeMap::new(),
            unstored: BTreeMap::new(),
            forks: BTreeMap::new(),
            missing: BTreeMap::new(),
            next_id: 1,
            out: Vec::new(),
            was_idle: false,
        }
    }

    /// Follows `topics` (project ids): feeds that publish to them are
    /// replicated too.
    pub fn set_topics(&mut self, topics: BTreeSet<Topic>) {
        self.topics = topics.into_iter().take(MAX_TOPICS).collect();
    }

    /// The feeds this node holds that publish to `topic` (to answer peers).
    /// Feeds new to the topic are announced at once to the peers that asked
    /// about it, so a new contributor's revision travels without waiting
    /// for their next resync.
    pub fn set_topic_feeds(
        &mut self,
        topic: Topic,
        feeds: BTreeSet<PublicKey>,
        now: u64,
    ) -> Vec<Output<P>> {
        let old = self.topic_feeds.remove(&topic).unwrap_or_default();
        let new: Vec<(PublicKey, u64)> = feeds
            .difference(&old)
            .filter(|f| !self.blocked.contains(f))
            .map(|f| (*f, self.head(f)))
            .filter(|(_, h)| *h > 0)
            .collect();
        self.topic_feeds.insert(topic, feeds);
        if !new.is_empty() {
            let peers: Vec<P> = self
                .peers
                .iter()
                .filter(|(_, s)| s.topics.contains(&topic))
                .map(|(p, _)| p.clone())
                .collect();
            for p in peers {
                if let Some(s) = self.peers.get_mut(&p) {
                    for (f, h) in &new {
                        if s.theirs.get(f).copied().unwrap_or(0) < *h {
                            s.haves.insert(*f, *h);
                        }
                    }
                }
                self.pump(&p, now);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Feeds never fetched nor served.
    pub fn set_blocked(&mut self, blocked: BTreeSet<PublicKey>) {
        self.blocked = blocked;
    }

    /// Adds wanted feeds; peers are asked about them at once.
    pub fn want(&mut self, feeds: impl IntoIterator<Item = PublicKey>, now: u64) -> Vec<Output<P>> {
        let mut wants = self.wants.clone();
        wants.extend(feeds);
        let own = self.own.clone();
        self.set_wants(wants, own, now)
    }

    /// Replaces the wanted and own feeds (after a follow, an unfollow, a new
    /// subscription or device). Peers are asked about the feeds new to them
    /// at once; feeds no longer wanted are no longer fetched (what is stored
    /// stays, and is served).
    pub fn set_wants(
        &mut self,
        wants: BTreeSet<PublicKey>,
        own: BTreeSet<PublicKey>,
        now: u64,
    ) -> Vec<Output<P>> {
        let new: Vec<PublicKey> = wants
            .union(&own)
            .filter(|f| !self.wants.contains(f) && !self.own.contains(f))
            .copied()
            .collect();
        self.wants = wants;
        self.own = own;
        let dropped: BTreeSet<PublicKey> = self
            .peers
            .values()
            .flat_map(|s| s.todo.iter().copied())
            .filter(|f| !self.wanted(f))
            .collect();
        for s in self.peers.values_mut() {
            s.todo.retain(|f| !dropped.contains(f));
        }
        if !new.is_empty() {
            let peers: Vec<P> = self.peers.keys().cloned().collect();
            for p in peers {
                self.send_clock(&p, &new, now);
            }
        }
        self.check_idle();
        std::mem::take(&mut self.out)
    }

    /// The head this node holds of `feed` (0: none), as the machine knows it.
    pub fn head_of(&self, feed: &PublicKey) -> u64 {
        self.head(feed)
    }

    /// Connected peers, and per peer the feeds where it is ahead: (feed,
    /// ours, theirs).
    pub fn behind(&self) -> Vec<(P, Vec<Behind>)> {
        self.peers
            .iter()
            .map(|(p, s)| {
                let v = s
                    .todo
                    .iter()
                    .map(|f| (*f, self.head(f), s.theirs.get(f).copied().unwrap_or(0)))
                    .collect();
                (p.clone(), v)
            })
            .collect()
    }

    /// Whether every connected peer has answered a clock exchange and
    /// nothing is left to fetch.
    pub fn is_idle(&self) -> bool {
        self.fetching.is_empty()
            && self
                .peers
                .values()
                .all(|p| p.synced_once && p.clocks_pending == 0 && p.todo.is_empty())
    }

    /// When the driver should call `handle(Input::Tick, _)` next.
    pub fn next_wake(&self) -> Option<u64> {
        self.peers
            .values()
            .flat_map(|p| {
                p.inflight
                    .values()
                    .map(|r| r.sent() + REQUEST_TIMEOUT_MS)
                    .chain([p.next_resync])
            })
            .min()
    }

    fn head(&self, f: &PublicKey) -> u64 {
        self.local.get(f).copied().unwrap_or(0)
    }

    fn wanted(&self, f: &PublicKey) -> bool {
        !self.blocked.contains(f)
            && (self.wants.contains(f) || self.own.contains(f) || self.discovered.contains(f))
    }

    /// Feeds this node asks peers about: wanted ones, and those it holds for
    /// its topics.
    fn clock_feeds(&self) -> Vec<PublicKey> {
        let mut all: BTreeSet<PublicKey> = self
            .wants
            .iter()
            .chain(&self.own)
            .chain(&self.discovered)
            .copied()
            .collect();
        for t in &self.topics {
            if let Some(fs) = self.topic_feeds.get(t) {
                all.extend(fs);
            }
        }
        all.into_iter()
            .filter(|f| !self.blocked.contains(f))
            .collect()
    }

    /// Handles one input at time `now` (ms) and returns what to do.
    pub fn handle(&mut self, input: Input<P>, now: u64) -> Vec<Output<P>> {
        match input {
            Input::Connected(p) => self.on_connected(p, now),
            Input::Disconnected(p) => self.drop_peer(&p, now),
            Input::Request {
                peer,
                inbound,
                request,
            } => self.on_request(peer, inbound, request, now),
            Input::Response { peer, id, response } => self.on_response(peer, id, response, now),
            Input::Failed { peer, id } => self.on_failed(peer, id, now),
            Input::Stored {
                feed,
                head,
                from,
                rejected,
            } => self.on_stored(feed, head, from, rejected, now),
            Input::Announced { peer, heads } => {
                if let Some(mut s) = self.peers.remove(&peer) {
                    self.learn_heads(&mut s, heads);
                    self.peers.insert(peer.clone(), s);
                    self.pump(&peer, now);
                }
            }
            Input::Misbehaved { peer, reason } => self.misbehaved(&peer, reason, now),
            Input::ForkFound { proof } => {
                let key = (*proof.author(), proof.seq());
                if self.forks.len() < MAX_KNOWN_FORKS && !self.forks.contains_key(&key) {
                    self.forks.insert(key, *proof);
                    for s in self.peers.values_mut() {
                        s.forks_out.insert(key);
                    }
                    self.pump_all(now);
                }
            }
            Input::Tick => self.on_tick(now),
        }
        self.check_idle();
        std::mem::take(&mut self.out)
    }

    fn check_idle(&mut self) {
        let idle = self.is_idle() && !self.peers.is_empty();
        if idle && !self.was_idle {
            self.out.push(Output::Event(Event::Idle));
        }
        self.was_idle = idle;
    }

    fn on_connected(&mut self, p: P, now: u64) {
        if let Some(until) = self.banned.get(&p) {
            if *until > now {
                self.out.push(Output::Disconnect {
                    peer: p,
                    reason: "banned for sending invalid data".into(),
                });
                return;
            }
            self.banned.remove(&p);
        }
        if self.peers.contains_key(&p) {
            return;
        }
        self.peers.insert(
            p.clone(),
            Peer {
                theirs: BTreeMap::new(),
                todo: BTreeSet::new(),
                wants: BTreeSet::new(),
                topics: BTreeSet::new(),
                haves: BTreeMap::new(),
                forks_out: self.forks.keys().copied().collect(),
                inflight: BTreeMap::new(),
                clocks_pending: 0,
                synced_once: false,
                next_resync: now + RESYNC_INTERVAL_MS,
                tokens: INBOUND_BURST,
                refilled: now,
                introduced: 0,
                timeouts: 0,
            },
        );
        let feeds = self.clock_feeds();
        self.send_clock(&p, &feeds, now);
        // Known fork proofs go out at once.
        self.pump(&p, now);
    }

    fn send(&mut self, p: &P, request: Request, pending: Pending) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(s) = self.peers.get_mut(p) {
            s.inflight.insert(id, pending);
            self.out.push(Output::Send {
                peer: p.clone(),
                id,
                request,
            });
        }
    }

    /// Sends our heads for `feeds` (chunked) and our topics.
    fn send_clock(&mut self, p: &P, feeds: &[PublicKey], now: u64) {
        let topics: Vec<Topic> = self.topics.iter().copied().collect();
        let chunks: Vec<Vec<FeedHead>> = if feeds.is_empty() {
            vec![Vec::new()]
        } else {
            feeds
                .chunks(MAX_CLOCK_HEADS)
                .map(|c| c.iter().map(|f| (*f, self.head(f))).collect())
                .collect()
        };
        for heads in chunks {
            if let Some(s) = self.peers.get_mut(p) {
                s.clocks_pending += 1;
            }
            self.send(
                p,
                Request::Clock {
                    heads,
                    topics: topics.clone(),
                },
                Pending::Clock { sent: now },
            );
        }
    }

    fn misbehaved(&mut self, p: &P, reason: String, now: u64) {
        self.out.push(Output::Event(Event::Misbehaved {
            peer: p.clone(),
            reason: reason.clone(),
        }));
        self.out.push(Output::Disconnect {
            peer: p.clone(),
            reason,
        });
        self.banned.insert(p.clone(), now + BAN_MS);
        self.drop_peer(p, now);
    }

    /// Forgets `p`: the feeds it was fetching go to the other peers.
    fn drop_peer(&mut self, p: &P, now: u64) {
        if self.peers.remove(p).is_some() {
            self.fetching.retain(|_, q| q != p);
            self.pump_all(now);
        }
    }

    fn on_request(&mut self, p: P, inbound: u64, request: Request, now: u64) {
        // Out of the map while it is worked on (the checks below read `self`).
        let Some(mut peer) = self.peers.remove(&p) else {
            return;
        };
        let served = self.serve_request(&p, &mut peer, inbound, request, now);
        self.peers.insert(p.clone(), peer);
        match served {
            Ok(true) => self.pump(&p, now),
            Ok(false) => {}
            Err(reason) => self.misbehaved(&p, reason, now),
        }
    }

    /// Answers one request; returns whether to pump the peer afterwards, or
    /// why the peer is to be banned.
    fn serve_request(
        &mut self,
        p: &P,
        s: &mut Peer,
        inbound: u64,
        request: Request,
        now: u64,
    ) -> Result<bool, String> {
        let p = p.clone();
        // Token bucket: INBOUND_RATE_PER_S, bursts of INBOUND_BURST.
        let earned = now.saturating_sub(s.refilled) * INBOUND_RATE_PER_S / 1000;
        if earned > 0 {
            s.tokens = (s.tokens + earned).min(INBOUND_BURST);
            s.refilled = now;
        }
        if s.tokens == 0 {
            self.out.push(Output::Respond {
                peer: p,
                inbound,
                response: Response::Refused {
                    reason: "rate limited".into(),
                },
            });
            return Ok(false);
        }
        s.tokens -= 1;
        match request {
            Request::Clock { heads, topics } => {
                if s.wants.len() + heads.len() > MAX_PEER_WANTS {
                    self.out.push(Output::Respond {
                        peer: p,
                        inbound,
                        response: Response::Refused {
                            reason: format!("more than {MAX_PEER_WANTS} feeds asked about"),
                        },
                    });
                    return Ok(false);
                }
                s.wants.extend(heads.iter().map(|(f, _)| *f));
                s.topics.extend(topics.iter().copied());
                let mut answer: BTreeMap<PublicKey, u64> = BTreeMap::new();
                for (f, theirs) in &heads {
                    let ours = self.local.get(f).copied().unwrap_or(0);
                    if ours > 0 && !self.blocked.contains(f) {
                        answer.insert(*f, ours);
                    }
                    // What they hold of feeds we want is news too.
                    if *theirs > 0 && self.wanted(f) {
                        s.theirs
                            .insert(*f, (*theirs).max(s.theirs.get(f).copied().unwrap_or(0)));
                        if *theirs > ours {
                            s.todo.insert(*f);
                        }
                    }
                }
                for t in &topics {
                    for f in self.topic_feeds.get(t).into_iter().flatten() {
                        if answer.len() >= MAX_CLOCK_HEADS {
                            break;
                        }
                        let ours = self.local.get(f).copied().unwrap_or(0);
                        if ours > 0 && !self.blocked.contains(f) {
                            answer.insert(*f, ours);
                        }
                    }
                }
                self.out.push(Output::Respond {
                    peer: p.clone(),
                    inbound,
                    response: Response::Clock {
                        heads: answer.into_iter().take(MAX_CLOCK_HEADS).collect(),
                    },
                });
                Ok(true)
            }
            Request::Fetch { feed, from, max } => {
                if self.blocked.contains(&feed) || self.head(&feed) < from {
                    self.out.push(Output::Respond {
                        peer: p,
                        inbound,
                        response: Response::Entries {
                            records: Vec::new(),
                        },
                    });
                } else {
                    self.out.push(Output::Serve {
                        peer: p,
                        inbound,
                        feed,
                        from,
                        max,
                    });
                }
                Ok(false)
            }
            Request::Forks { proofs } => {
                let mut keep = Vec::new();
                for bytes in proofs {
                    match ForkProof::decode(&bytes) {
                        Ok(proof) => {
                            let f = *proof.author();
                            let relevant = self.wanted(&f) || self.local.contains_key(&f);
                            if relevant && !self.forks.contains_key(&(f, proof.seq())) {
                                keep.push(proof);
                            }
                        }
                        Err(e) => {
                            self.out.push(Output::Respond {
                                peer: p.clone(),
                                inbound,
                                response: Response::Refused {
                                    reason: "invalid fork proof".into(),
                                },
                            });
                            return Err(format!("sent an invalid fork proof: {e}"));
                        }
                    }
                }
                if !keep.is_empty() {
                    self.out.push(Output::StoreForks { proofs: keep });
                }
                self.out.push(Output::Respond {
                    peer: p,
                    inbound,
                    response: Response::Ack,
                });
                Ok(false)
            }
            Request::Have { heads } => {
                self.learn_heads(s, heads);
                self.out.push(Output::Respond {
                    peer: p.clone(),
                    inbound,
                    response: Response::Ack,
                });
                Ok(true)
            }
        }
    }

    /// Records heads a peer says it holds (a have, an announcement).
    fn learn_heads(&mut self, s: &mut Peer, heads: Vec<FeedHead>) {
        for (f, seq) in heads {
            if self.blocked.contains(&f) {
                continue;
            }
            if !self.wanted(&f) {
                // A feed new to a topic we asked this peer about:
                // as in a clock answer, within the same budget.
                if self.topics.is_empty() || s.introduced >= MAX_TOPIC_FEEDS_PER_PEER {
                    continue;
                }
                s.introduced += 1;
                self.discovered.insert(f);
            }
            let known = s.theirs.entry(f).or_insert(0);
            *known = (*known).max(seq);
            if seq > self.local.get(&f).copied().unwrap_or(0) {
                s.todo.insert(f);
            }
        }
    }

    fn on_response(&mut self, p: P, id: RequestId, response: Response, now: u64) {
        let Some(pending) = self.peers.get_mut(&p).and_then(|s| s.inflight.remove(&id)) else {
            // Unknown, late or duplicated: nothing to do.
            return;
        };
        match (pending, response) {
            (Pending::Clock { .. }, Response::Clock { heads }) => {
                self.on_clock(&p, heads, now);
            }
            (
                Pending::Fetch {
                    feed, from, max, ..
                },
                Response::Entries { records },
            ) => {
                self.on_entries(&p, feed, from, max, records, now);
            }
            (Pending::Have { .. } | Pending::Forks { .. }, Response::Ack) => {
                self.pump(&p, now);
            }
            (pending, Response::Refused { .. }) => {
                // Not an error: try again at the next resync.
                if let Pending::Fetch { feed, .. } = pending {
                    self.fetching.remove(&feed);
                }
                if let (Pending::Clock { .. }, Some(s)) = (pending, self.peers.get_mut(&p)) {
                    s.clocks_pending = s.clocks_pending.saturating_sub(1);
                }
            }
            (_, other) => {
                let kind = match other {
                    Response::Clock { .. } => "clock",
                    Response::Entries { .. } => "entries",
                    Response::Ack => "ack",
                    Response::Refused { .. } => "refused",
                };
                self.misbehaved(
                    &p,
                    format!("answered a request with a {kind} response"),
                    now,
                );
            }
        }
    }

    fn on_clock(&mut self, p: &P, heads: Vec<FeedHead>, now: u64) {
        let mut confirms = Vec::new();
        let mut told: BTreeSet<PublicKey> = BTreeSet::new();
        for (f, seq) in heads {
            if self.blocked.contains(&f) {
                continue;
            }
            if !self.wanted(&f) {
                // Only through a topic we asked about, within the budget.
                let Some(s) = self.peers.get_mut(p) else {
                    return;
                };
                if self.topics.is_empty() || s.introduced >= MAX_TOPIC_FEEDS_PER_PEER {
                    continue;
                }
                s.introduced += 1;
                self.discovered.insert(f);
            }
            told.insert(f);
            let ours = self.head(&f);
            if let Some(s) = self.peers.get_mut(p) {
                let known = s.theirs.entry(f).or_insert(0);
                *known = (*known).max(seq);
                if seq > ours {
                    s.todo.insert(f);
                } else {
                    s.todo.remove(&f);
                }
                // They are behind on a feed they asked about: tell them.
                if seq < ours && s.wants.contains(&f) {
                    s.haves.insert(f, ours);
                }
            }
            if self.own.contains(&f) && seq <= ours {
                confirms.push((f, ours));
            }
        }
        if let Some(s) = self.peers.get_mut(p) {
            s.clocks_pending = s.clocks_pending.saturating_sub(1);
            if s.clocks_pending == 0 {
                s.synced_once = true;
            }
        }
        // Own feeds the peer did not mention: it holds nothing newer.
        for f in &self.own {
            if !told.contains(f) {
                confirms.push((*f, self.head(f)));
            }
        }
        for (feed, seq) in confirms {
            self.out.push(Output::Confirm { feed, seq });
        }
        self.pump(p, now);
    }

    fn on_entries(
        &mut self,
        p: &P,
        feed: PublicKey,
        from: u64,
        max: u32,
        records: Vec<Record>,
        now: u64,
    ) {
        if records.len() > max as usize {
            self.misbehaved(
                p,
                format!(
                    "sent {} entries for a fetch of at most {max}",
                    records.len()
                ),
                now,
            );
            return;
        }
        if records.is_empty() {
            // It holds less than it claimed (or dropped the feed): stop asking.
            self.fetching.remove(&feed);
            let ours = self.head(&feed);
            if let Some(s) = self.peers.get_mut(p) {
                s.theirs.insert(feed, ours);
                s.todo.remove(&feed);
            }
            self.pump(p, now);
            return;
        }
        let mut entries = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let expected = from + i as u64;
            let sh = match SignedHeader::decode(r.signed) {
                Ok(sh) => sh,
                Err(e) => {
                    self.misbehaved(p, format!("sent an undecodable entry: {e}"), now);
                    return;
                }
            };
            if *sh.author() != feed || sh.seq() != expected {
                self.misbehaved(
                    p,
                    format!(
                        "asked for entry {expected} of feed {}, got entry {} of feed {}",
                        feed.short(),
                        sh.seq(),
                        sh.author().short()
                    ),
                    now,
                );
                return;
            }
            // Payloads that did not come are asked for again elsewhere.
            let key = (feed, expected);
            match &r.payload {
                None if self.missing.len() < MAX_MISSING_PAYLOADS => {
                    self.missing.entry(key).or_default().insert(p.clone());
                }
                None => {}
                Some(_) => {
                    self.missing.remove(&key);
                }
            }
            entries.push(Entry {
                signed: sh,
                payload: r.payload,
            });
        }
        // `fetching` holds the feed until the store reports back.
        let bytes = entries
            .iter()
            .map(|e| e.signed.as_bytes().len() + e.payload.as_ref().map_or(0, Vec::len))
            .sum();
        self.unstored.insert(feed, bytes);
        self.out.push(Output::Ingest {
            peer: p.clone(),
            feed,
            entries,
        });
        // The answer frees a slot: fetch more while it is being stored.
        self.pump(p, now);
    }

    fn on_failed(&mut self, p: P, id: RequestId, now: u64) {
        let Some(s) = self.peers.get_mut(&p) else {
            return;
        };
        let Some(pending) = s.inflight.remove(&id) else {
            return;
        };
        s.timeouts += 1;
        match pending {
            Pending::Fetch { feed, .. } => {
                self.fetching.remove(&feed);
            }
            Pending::Clock { .. } => s.clocks_pending = s.clocks_pending.saturating_sub(1),
            Pending::Have { .. } | Pending::Forks { .. } => {}
        }
        if s.timeouts >= MAX_TIMEOUTS {
            self.out.push(Output::Disconnect {
                peer: p.clone(),
                reason: format!("{MAX_TIMEOUTS} requests failed or timed out"),
            });
            self.drop_peer(&p, now);
        } else {
            self.pump_all(now);
        }
    }

    fn on_stored(
        &mut self,
        feed: PublicKey,
        head: u64,
        from: Option<P>,
        rejected: Option<Rejection>,
        now: u64,
    ) {
        if let Some(p) = &from
            && self.fetching.get(&feed) == Some(p)
        {
            self.fetching.remove(&feed);
        }
        if from.is_some() {
            self.unstored.remove(&feed);
        }
        let before = self.head(&feed);
        if head > before {
            self.local.insert(feed, head);
            self.out
                .push(Output::Event(Event::FeedUpdated { feed, head }));
        }
        if let (Some(p), Some(r)) = (&from, &rejected) {
            if r.hostile {
                self.misbehaved(
                    p,
                    format!("sent entries the store refused: {}", r.reason),
                    now,
                );
            } else if let Some(s) = self.peers.get_mut(p) {
                // Not their fault, but do not ask again until the next resync.
                s.todo.remove(&feed);
            }
        }
        let head = self.head(&feed);
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for p in &peers {
            let Some(s) = self.peers.get_mut(p) else {
                continue;
            };
            let theirs = s.theirs.get(&feed).copied().unwrap_or(0);
            if theirs > head && rejected.is_none() {
                s.todo.insert(feed);
            } else {
                s.todo.remove(&feed);
            }
            // Forward what we learnt to peers that want it and lack it.
            let interested = s.wants.contains(&feed)
                || s.topics
                    .iter()
                    .any(|t| self.topic_feeds.get(t).is_some_and(|fs| fs.contains(&feed)));
            if head > before && interested && theirs < head && Some(p) != from.as_ref() {
                s.haves.insert(feed, head);
            }
        }
        if self.own.contains(&feed) && head > before && from.is_some() {
            // Restored from a peer: local appends continue from here.
            self.out.push(Output::Confirm { feed, seq: head });
        }
        self.pump_all(now);
    }

    fn on_tick(&mut self, now: u64) {
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for p in peers {
            let Some(s) = self.peers.get_mut(&p) else {
                continue;
            };
            let expired: Vec<RequestId> = s
                .inflight
                .iter()
                .filter(|(_, r)| r.sent() + REQUEST_TIMEOUT_MS <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                self.on_failed(p.clone(), id, now);
            }
            let Some(s) = self.peers.get_mut(&p) else {
                continue;
            };
            if s.next_resync <= now {
                s.next_resync = now + RESYNC_INTERVAL_MS;
                if s.clocks_pending == 0 {
                    let feeds = self.clock_feeds();
                    self.send_clock(&p, &feeds, now);
                }
            }
        }
    }

    fn pump_all(&mut self, now: u64) {
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for p in peers {
            self.pump(&p, now);
        }
    }

    /// Sends what is due to `p`: announcements, and fetches up to the limit.
    fn pump(&mut self, p: &P, now: u64) {
        let Some(s) = self.peers.get_mut(p) else {
            return;
        };
        let have_inflight = s
            .inflight
            .values()
            .any(|r| matches!(r, Pending::Have { .. }));
        let forks_inflight = s
            .inflight
            .values()
            .any(|r| matches!(r, Pending::Forks { .. }));
        if !s.forks_out.is_empty() && !forks_inflight {
            let keys: Vec<(PublicKey, u64)> =
                s.forks_out.iter().take(MAX_FORK_PROOFS).copied().collect();
            let mut proofs = Vec::with_capacity(keys.len());
            for k in &keys {
                s.forks_out.remove(k);
                if let Some(pr) = self.forks.get(k) {
                    proofs.push(pr.encode());
                }
            }
            if !proofs.is_empty() {
                self.send(p, Request::Forks { proofs }, Pending::Forks { sent: now });
            }
        }
        let Some(s) = self.peers.get_mut(p) else {
            return;
        };
        if !s.haves.is_empty() && !have_inflight {
            let n = s.haves.len().min(MAX_CLOCK_HEADS);
            let heads: Vec<FeedHead> = s.haves.iter().take(n).map(|(f, h)| (*f, *h)).collect();
            for (f, _) in &heads {
                s.haves.remove(f);
            }
            self.send(p, Request::Have { heads }, Pending::Have { sent: now });
        }
        loop {
            let Some(s) = self.peers.get(p) else {
                return;
            };
            let fetches = s
                .inflight
                .values()
                .filter(|r| matches!(r, Pending::Fetch { .. }))
                .count();
            if fetches >= MAX_INFLIGHT_FETCHES
                || self.fetching.len() >= MAX_UNSTORED_FETCHES
                || self.unstored.values().sum::<usize>() >= MAX_UNSTORED_BYTES
            {
                return;
            }
            let next = s
                .todo
                .iter()
                .find(|f| !self.fetching.contains_key(*f) && self.wanted(f))
                .map(|f| (*f, s.theirs.get(f).copied().unwrap_or(0)));
            let Some((feed, theirs)) = next else {
                // Nothing new to fetch: ask again for an entry whose payload
                // did not come, from a peer that holds it and was not asked.
                let Some((feed, seq)) = self
                    .missing
                    .iter()
                    .find(|((f, q), asked)| {
                        !asked.contains(p)
                            && !self.fetching.contains_key(f)
                            && s.theirs.get(f).is_some_and(|t| t >= q)
                    })
                    .map(|(k, _)| *k)
                else {
                    return;
                };
                if let Some(asked) = self.missing.get_mut(&(feed, seq)) {
                    asked.insert(p.clone());
                }
                self.fetching.insert(feed, p.clone());
                self.send(
                    p,
                    Request::Fetch {
                        feed,
                        from: seq,
                        max: 1,
                    },
                    Pending::Fetch {
                        sent: now,
                        feed,
                        from: seq,
                        max: 1,
                    },
                );
                continue;
            };
            let from = self.head(&feed) + 1;
            if theirs < from {
                if let Some(s) = self.peers.get_mut(p) {
                    s.todo.remove(&feed);
                }
                continue;
            }
            let max = (theirs - from + 1).min(u64::from(MAX_FETCH_ENTRIES)) as u32;
            self.fetching.insert(feed, p.clone());
            self.send(
                p,
                Request::Fetch { feed, from, max },
                Pending::Fetch {
                    sent: now,
                    feed,
                    from,
                    max,
                },
            );
        }
    }
}

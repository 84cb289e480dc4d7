//! The deterministic simulator of tagline-sync: nodes running the real state
//! machine and real validation (tagline-format) over a simulated network
//! with seeded latency, drops, duplicates, reordering, partitions and nodes
//! leaving and joining. Checks that every node converges to the same feeds,
//! and computes the same review state.
//!
//!     cargo test -p tagline-sync --test sync                  # CI seeds
//!     TAGLINE_SIM_SEEDS=200 cargo test -p tagline-sync --test sync -- --nocapture
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use tagline_format::entry::{Head, create_entry};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::review::{Cover, Patch, Project, ReviewPayload, Revision};
use tagline_format::{EntryId, PublicKey, SecretKey, SignedHeader, validate_received};
use tagline_sync::machine::{MAX_UNSTORED_FETCHES, Rejection};
use tagline_sync::{Event, Input, Output, Record, Request, Response, Sync, entries_response};

/// splitmix64: a small, seedable, portable generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

const T0: u64 = 1_800_000_000_000;
const TOPIC: [u8; 32] = [0x70; 32];

/// A node's store: feeds validated entry by entry with the real rules.
/// A stored entry: the signed header and its payload.
type Stored = (SignedHeader, Option<Vec<u8>>);

#[derive(Default)]
struct MemStore {
    feeds: BTreeMap<PublicKey, Vec<Stored>>,
}

impl MemStore {
    fn head(&self, f: &PublicKey) -> u64 {
        self.feeds.get(f).map_or(0, |v| v.len() as u64)
    }
    fn heads(&self) -> BTreeMap<PublicKey, u64> {
        self.feeds
            .iter()
            .map(|(k, v)| (*k, v.len() as u64))
            .collect()
    }
    fn ingest(
        &mut self,
        feed: PublicKey,
        entries: Vec<tagline_format::Entry>,
        now: u64,
    ) -> (u64, Option<Rejection>) {
        let list = self.feeds.entry(feed).or_default();
        for e in entries {
            let seq = e.signed.seq();
            if seq <= list.len() as u64 {
                continue; // duplicate
            }
            let head = list.last().map(|(s, _)| Head::of(s));
            let target = has_distinct_lipmaa(seq)
                .then(|| list.get((lipmaa(seq) - 1) as usize).map(|(s, _)| s.id()))
                .flatten();
            match validate_received(
                head.as_ref(),
                target,
                e.signed.as_bytes(),
                e.payload.as_deref(),
                now,
            ) {
                Ok(sh) => list.push((sh, e.payload)),
                Err(err) => {
                    return (
                        list.len() as u64,
                        Some(Rejection {
                            hostile: true,
                            reason: err.to_string(),
                        }),
                    );
                }
            }
        }
        (list.len() as u64, None)
    }
}

struct Node {
    key: SecretKey,
    sync: Sync<usize>,
    store: MemStore,
    online: bool,
    hostile: bool,
    /// inbound id → (peer, its request id)
    inbound: BTreeMap<u64, (usize, u64)>,
    next_inbound: u64,
    idle_events: u32,
}

/// A frame on the simulated wire: a request or response with its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    Req { id: u64, bytes: Vec<u8> },
    Resp { id: u64, bytes: Vec<u8> },
}

/// A message in flight, delivered at `at` (ties broken by send order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: std::cmp::Reverse<(u64, u64)>,
    from: usize,
    to: usize,
    msg: Msg,
}

struct Faults {
    drop: u64,
    duplicate: u64,
    max_latency: u64,
    /// Writes finish up to this long after the machine asks for them (0:
    /// at once), as a driver that stores in the background does.
    max_write_latency: u64,
}

/// An ingest the store is still writing: (done at, node, peer, feed, entries).
type PendingWrite = (u64, usize, usize, PublicKey, Vec<tagline_format::Entry>);

struct Sim {
    rng: Rng,
    /// Write latencies, drawn apart so that they do not shift the scenario.
    write_rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    connected: BTreeSet<(usize, usize)>,
    /// Links cut until a time.
    cut: BTreeMap<(usize, usize), u64>,
    faults: Faults,
    misbehaved: Vec<(usize, usize, String)>,
    writes: Vec<PendingWrite>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    fn new(seed: u64, n: usize, hostile: &[usize], faults: Faults) -> Sim {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed(&[i as u8 + 1; 32]))
            .collect();
        let all: BTreeSet<PublicKey> = keys.iter().map(SecretKey::public).collect();
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let own: BTreeSet<PublicKey> = [key.public()].into();
                // The last honest node follows by topic only; others follow everyone.
                let wants = if i == n - 1 { own.clone() } else { all.clone() };
                let mut sync = Sync::new(BTreeMap::new(), wants, own);
                sync.set_topics([TOPIC].into());
                Node {
                    key,
                    sync,
                    store: MemStore::default(),
                    online: true,
                    hostile: hostile.contains(&i),
                    inbound: BTreeMap::new(),
                    next_inbound: 1,
                    idle_events: 0,
                }
            })
            .collect();
        Sim {
            rng: Rng(seed),
            write_rng: Rng(seed ^ 0x7772_6974_6573),
            now: T0,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            connected: BTreeSet::new(),
            cut: BTreeMap::new(),
            faults,
            misbehaved: Vec::new(),
            writes: Vec::new(),
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].online
            && self.nodes[b].online
            && self
                .cut
                .get(&pair(a, b))
                .is_none_or(|until| *until <= self.now)
    }

    fn deliver_later(&mut self, from: usize, to: usize, msg: Msg) {
        if self.rng.chance(self.faults.drop) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.below(self.faults.max_latency);
            self.seq += 1;
            self.queue.push(Scheduled {
                at: std::cmp::Reverse((at, self.seq)),
                from,
                to,
                msg: msg.clone(),
            });
        }
    }

    fn input(&mut self, node: usize, input: Input<usize>) {
        let outs = self.nodes[node].sync.handle(input, self.now);
        self.run_outputs(node, outs);
    }

    /// Stores a fetched answer at `node` and tells its machine.
    fn store_answer(
        &mut self,
        node: usize,
        peer: usize,
        feed: PublicKey,
        entries: Vec<tagline_format::Entry>,
    ) {
        let now = self.now;
        let (head, rejected) = self.nodes[node].store.ingest(feed, entries, now);
        self.refresh_topic(node);
        self.input(
            node,
            Input::Stored {
                feed,
                head,
                from: Some(peer),
                rejected,
            },
        );
    }

    fn run_outputs(&mut self, node: usize, outs: Vec<Output<usize>>) {
        for o in outs {
            match o {
                Output::Send { peer, id, request } => {
                    self.deliver_later(
                        node,
                        peer,
                        Msg::Req {
                            id,
                            bytes: request.encode(),
                        },
                    );
                }
                Output::Respond {
                    peer,
                    inbound,
                    response,
                } => self.respond(node, peer, inbound, response),
                Output::Serve {
                    peer,
                    inbound,
                    feed,
                    from,
                    max,
                } => {
                    let response = if self.nodes[node].hostile {
                        self.forged(node, feed, from, max)
                    } else {
                        let list = self.nodes[node].store.feeds.get(&feed);
                        entries_response(
                            list.into_iter()
                                .flatten()
                                .skip((from - 1) as usize)
                                .take(max as usize)
                                .map(|(s, p)| Record {
                                    signed: s.as_bytes().to_vec(),
                                    payload: p.clone(),
                                }),
                        )
                    };
                    self.respond(node, peer, inbound, response);
                }
                Output::Ingest {
                    peer,
                    feed,
                    entries,
                } if self.faults.max_write_latency > 0 => {
                    let at = self.now + 1 + self.write_rng.below(self.faults.max_write_latency);
                    self.writes.push((at, node, peer, feed, entries));
                    let waiting = self.writes.iter().filter(|w| w.1 == node).count();
                    assert!(
                        waiting <= MAX_UNSTORED_FETCHES,
                        "node {node} has {waiting} answers waiting to be stored"
                    );
                }
                Output::Ingest {
                    peer,
                    feed,
                    entries,
                } => self.store_answer(node, peer, feed, entries),
                Output::Confirm { .. } => {}
                // The simulated store records every proof; the machine
                // keeps the ones it has not seen.
                Output::StoreForks { proofs } => {
                    for proof in proofs {
                        self.input(
                            node,
                            Input::ForkFound {
                                proof: Box::new(proof),
                            },
                        );
                    }
                }
                Output::Disconnect { peer, .. } => self.disconnect(node, peer),
                Output::Event(Event::Misbehaved { peer, reason }) => {
                    self.misbehaved.push((node, peer, reason));
                }
                Output::Event(Event::Idle) => self.nodes[node].idle_events += 1,
                Output::Event(Event::FeedUpdated { .. }) => {}
            }
        }
    }

    /// What a hostile node serves: entries of the feed asked for, with broken
    /// signatures.
    fn forged(&mut self, node: usize, feed: PublicKey, from: u64, max: u32) -> Response {
        let key = SecretKey::from_seed(&[node as u8 + 1; 32]);
        let mut prev: Option<Head> = None;
        let mut ids: Vec<EntryId> = Vec::new();
        let mut out = Vec::new();
        // Chained forgeries for the first entries; beyond, entries 1.. again
        // (the wrong sequence numbers are caught before the store).
        for seq in 1..(from.min(5) + u64::from(max).min(5)) {
            let target = has_distinct_lipmaa(seq).then(|| ids[(lipmaa(seq) - 1) as usize]);
            let e = create_entry(
                &key,
                prev.as_ref(),
                target,
                T0,
                "tagline/note",
                tagline_format::payload::note("forged"),
            )
            .unwrap();
            prev = Some(Head::of(&e.signed));
            ids.push(e.signed.id());
            if seq >= from.min(5) {
                let mut bytes = e.signed.as_bytes().to_vec();
                // Claim the victim's feed: same shape, wrong author and signature.
                let at = bytes
                    .windows(32)
                    .position(|w| w == key.public().as_bytes())
                    .unwrap();
                bytes[at..at + 32].copy_from_slice(feed.as_bytes());
                out.push(Record {
                    signed: bytes,
                    payload: e.payload,
                });
            }
            if seq >= 5 {
                break;
            }
        }
        Response::Entries { records: out }
    }

    fn respond(&mut self, node: usize, peer: usize, inbound: u64, response: Response) {
        if let Some((to, id)) = self.nodes[node].inbound.remove(&inbound) {
            debug_assert_eq!(to, peer);
            self.deliver_later(
                node,
                to,
                Msg::Resp {
                    id,
                    bytes: response.encode(),
                },
            );
        }
    }

    fn refresh_topic(&mut self, node: usize) {
        let feeds: BTreeSet<PublicKey> = self.nodes[node].store.feeds.keys().copied().collect();
        let now = self.now;
        let outs = self.nodes[node].sync.set_topic_feeds(TOPIC, feeds, now);
        self.run_outputs(node, outs);
    }

    fn connect(&mut self, a: usize, b: usize) {
        if self.connected.insert(pair(a, b)) {
            self.input(a, Input::Connected(b));
            self.input(b, Input::Connected(a));
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        if self.connected.remove(&pair(a, b)) {
            self.input(a, Input::Disconnected(b));
            self.input(b, Input::Disconnected(a));
        }
    }

    fn publish(&mut self, node: usize, payload_type: &str, payload: Vec<u8>) -> EntryId {
        let n = &mut self.nodes[node];
        let f = n.key.public();
        let list = n.store.feeds.entry(f).or_default();
        let seq = list.len() as u64 + 1;
        let prev = list.last().map(|(s, _)| Head::of(s));
        let target = has_distinct_lipmaa(seq).then(|| list[(lipmaa(seq) - 1) as usize].0.id());
        let e = create_entry(
            &n.key,
            prev.as_ref(),
            target,
            self.now,
            payload_type,
            payload,
        )
        .unwrap();
        let id = e.signed.id();
        list.push((e.signed, e.payload));
        self.refresh_topic(node);
        self.input(
            node,
            Input::Stored {
                feed: f,
                head: seq,
                from: None,
                rejected: None,
            },
        );
        id
    }

    /// Runs the network until `until`: deliveries, timers, reconnections.
    fn run(&mut self, until: u64) {
        let mut next_maintenance = self.now;
        while self.now < until {
            let next_msg = self.queue.peek().map(|s| s.at.0.0);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.online)
                .filter_map(|n| n.sync.next_wake())
                .min();
            let next_write = self.writes.iter().map(|w| w.0).min();
            let t = [next_msg, next_timer, next_write, Some(next_maintenance)]
                .into_iter()
                .flatten()
                .min()
                .unwrap()
                .max(self.now)
                .min(until);
            self.now = t;
            if t == next_maintenance {
                next_maintenance = t + 5_000;
                // Reconnect linked pairs; drop connections over cut links.
                for a in 0..self.nodes.len() {
                    for b in a + 1..self.nodes.len() {
                        let up = self.connected.contains(&(a, b));
                        if self.linked(a, b) && !up {
                            self.connect(a, b);
                        } else if !self.linked(a, b) && up && self.rng.chance(300) {
                            self.disconnect(a, b);
                        }
                    }
                }
            }
            while self.queue.peek().is_some_and(|s| s.at.0.0 <= self.now) {
                let s = self.queue.pop().unwrap();
                if !self.connected.contains(&pair(s.from, s.to)) || !self.linked(s.from, s.to) {
                    continue; // connection gone: the message is lost
                }
                let (id, bytes) = match &s.msg {
                    Msg::Req { id, bytes } | Msg::Resp { id, bytes } => (*id, bytes),
                };
                if let Msg::Req { .. } = s.msg {
                    let Ok(request) = Request::decode(bytes) else {
                        continue;
                    };
                    let n = &mut self.nodes[s.to];
                    let inbound = n.next_inbound;
                    n.next_inbound += 1;
                    n.inbound.insert(inbound, (s.from, id));
                    if let (true, Request::Fetch { feed, from, max }) = (n.hostile, &request) {
                        // A hostile node answers every fetch with forgeries.
                        let forged = self.forged(s.to, *feed, *from, *max);
                        self.respond(s.to, s.from, inbound, forged);
                        continue;
                    }
                    self.input(
                        s.to,
                        Input::Request {
                            peer: s.from,
                            inbound,
                            request,
                        },
                    );
                } else {
                    let response = Response::decode(bytes).unwrap();
                    self.input(
                        s.to,
                        Input::Response {
                            peer: s.from,
                            id,
                            response,
                        },
                    );
                }
            }
            let (due, later): (Vec<PendingWrite>, Vec<PendingWrite>) =
                std::mem::take(&mut self.writes)
                    .into_iter()
                    .partition(|w| w.0 <= self.now);
            self.writes = later;
            for (_, node, peer, feed, entries) in due {
                self.store_answer(node, peer, feed, entries);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].online
                    && self.nodes[i]
                        .sync
                        .next_wake()
                        .is_some_and(|w| w <= self.now)
                {
                    self.input(i, Input::Tick);
                }
            }
        }
    }

    fn set_online(&mut self, node: usize, online: bool) {
        self.nodes[node].online = online;
        if !online {
            for b in 0..self.nodes.len() {
                self.disconnect(node, b);
            }
        }
    }
}

fn review_state(store: &MemStore, series: EntryId, project_id: EntryId) -> String {
    use tagline_review::rules::{Input as RInput, ProjectContext, evaluate};
    let decoded: Vec<(&SignedHeader, ReviewPayload)> = store
        .feeds
        .values()
        .flatten()
        .filter_map(|(s, p)| {
            let p = ReviewPayload::decode(&s.header().payload_type, p.as_deref()?).ok()??;
            Some((s, p))
        })
        .collect();
    let inputs: Vec<RInput<'_>> = decoded.iter().map(|(s, p)| RInput::new(s, p)).collect();
    let Some(decl) = decoded.iter().find_map(|(s, p)| match p {
        ReviewPayload::Project(d) if s.id() == project_id => Some(d),
        _ => None,
    }) else {
        return "no project".into();
    };
    let policy = tagline_review::policy::Policy::parse(&decl.policy).unwrap();
    let reg = tagline_identity::resolve(&[]);
    let ctx = ProjectContext {
        id: project_id,
        lead: None,
        decl,
        policy: &policy,
        maintainers_file: None,
    };
    let e = evaluate(series, &inputs, &ctx, &reg, T0 + 1_000_000_000);
    format!("{:?} {:?} {:?}", e.state, e.revisions, e.rules)
}

/// One seeded run: `n` nodes (some hostile), publications while links fail
/// and nodes come and go, then a quiet period; returns a summary.
fn simulate(seed: u64, n: usize, hostile: &[usize], faults: Faults) -> Sim {
    let mut sim = Sim::new(seed, n, hostile, faults);
    let honest: Vec<usize> = (0..n).filter(|i| !hostile.contains(i)).collect();
    // A project, a series and reviews, then notes, at random times.
    sim.run(T0 + 1_000);
    let project = Project {
        name: "sim".into(),
        branch: "main".into(),
        policy: "[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\n".into(),
        ..Project::default()
    };
    let lead = honest[0];
    let pid = sim.publish(
        lead,
        "tagline/project",
        ReviewPayload::Project(project).encode(),
    );
    let rev = ReviewPayload::Revision(Revision {
        project: pid,
        series: None,
        version: 1,
        base_commit: None,
        cover: Some(Cover {
            subject: "[PATCH 0/1] sim".into(),
            body: String::new(),
        }),
        changelog: None,
        patches: vec![Patch {
            subject: "one".into(),
            message: "m".into(),
            author: "A <a@example.org>".into(),
            diff: "diff".into(),
            patch_id: "0".repeat(40),
        }],
        change_id: None,
        mails: None,
    });
    let series = sim.publish(honest[1 % honest.len()], "tagline/revision", rev.encode());
    let end_of_chaos = T0 + 600_000;
    let mut t = sim.now;
    let mut rounds = 0;
    while t < end_of_chaos {
        t += 1 + sim.rng.below(4_000);
        sim.run(t);
        rounds += 1;
        let who = honest[sim.rng.below(honest.len() as u64) as usize];
        if !sim.nodes[who].online {
            continue;
        }
        if rounds % 7 == 0 {
            let r = ReviewPayload::Review(tagline_format::review::Review {
                revision: series,
                patch: None,
                trailers: vec![("Reviewed-by".into(), format!("R{who} <r{who}@example.org>"))],
                comment: None,
                inline: vec![],
                retracts: None,
                mail: None,
                flagged: Vec::new(),
            });
            sim.publish(who, "tagline/review", r.encode());
        } else {
            sim.publish(
                who,
                "tagline/note",
                tagline_format::payload::note(&format!("n{rounds}")),
            );
        }
        match sim.rng.below(40) {
            0 => {
                // A partition between two random nodes for up to a minute.
                let (a, b) = (
                    sim.rng.below(n as u64) as usize,
                    sim.rng.below(n as u64) as usize,
                );
                if a != b {
                    let until = sim.now + sim.rng.below(60_000);
                    sim.cut.insert(pair(a, b), until);
                }
            }
            1 => {
                // A node leaves (and comes back at the next toggle).
                let x = honest[sim.rng.below(honest.len() as u64) as usize];
                let online = !sim.nodes[x].online;
                sim.set_online(x, online);
            }
            _ => {}
        }
    }
    // Heal: everyone back, no cuts, no loss; then a quiet period.
    sim.cut.clear();
    sim.faults.drop = 0;
    sim.faults.duplicate = 0;
    for i in 0..n {
        if !sim.nodes[i].online {
            sim.set_online(i, true);
        }
    }
    let quiet = sim.now + 3 * tagline_sync::machine::RESYNC_INTERVAL_MS;
    sim.run(quiet);
    // Converged: every honest node holds every honest feed in full, the same
    // entries, and computes the same review state.
    let reference = sim.nodes[honest[0]].store.heads();
    for &i in &honest {
        let n = &sim.nodes[i];
        let mine: BTreeMap<PublicKey, u64> = n
            .store
            .heads()
            .into_iter()
            .filter(|(f, _)| honest.iter().any(|h| sim.nodes[*h].key.public() == *f))
            .collect();
        let want: BTreeMap<PublicKey, u64> = reference
            .iter()
            .filter(|(f, _)| honest.iter().any(|h| sim.nodes[*h].key.public() == **f))
            .map(|(f, h)| (*f, *h))
            .collect();
        assert_eq!(mine, want, "seed {seed}: node {i} did not converge");
        for (f, h) in &want {
            let own = honest
                .iter()
                .find(|x| sim.nodes[**x].key.public() == *f)
                .unwrap();
            assert_eq!(
                *h,
                sim.nodes[*own].store.head(f),
                "seed {seed}: feed of node {own}"
            );
        }
        // Nothing forged was stored: every entry verifies (MemStore checked
        // each on ingest) and is by the feed's owner.
        for (f, list) in &n.store.feeds {
            assert!(list.iter().all(|(s, _)| s.author() == f));
        }
    }
    let states: BTreeSet<String> = honest
        .iter()
        .map(|i| review_state(&sim.nodes[*i].store, series, pid))
        .collect();
    assert_eq!(
        states.len(),
        1,
        "seed {seed}: review states differ: {states:?}"
    );
    sim
}

fn seeds() -> u64 {
    std::env::var("TAGLINE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

#[test]
fn nodes_converge_under_loss_duplication_partitions_and_churn() {
    for seed in 0..seeds() {
        let sim = simulate(
            seed,
            5,
            &[],
            Faults {
                drop: 50,
                duplicate: 50,
                max_latency: 300,
                max_write_latency: 400,
            },
        );
        let entries: u64 = sim.nodes[0].store.heads().values().sum();
        assert!(
            entries > 100,
            "seed {seed}: only {entries} entries published"
        );
    }
}

#[test]
fn a_hostile_node_is_banned_and_stores_nothing_forged() {
    for seed in 100..100 + seeds() {
        // Node 2 lies about every feed's head and serves forgeries.
        let mut sim = simulate(
            seed,
            5,
            &[2],
            Faults {
                drop: 10,
                duplicate: 10,
                max_latency: 100,
                max_write_latency: 50,
            },
        );
        // Make it claim far more than exists of an honest feed, then serve forgeries.
        let victim = sim.nodes[0].key.public();
        let before = sim.nodes[1].store.head(&victim);
        sim.connect(1, 2);
        sim.input(
            1,
            Input::Request {
                peer: 2,
                inbound: 5_000_000,
                request: Request::Have {
                    heads: vec![(victim, before + 50)],
                },
            },
        );
        sim.run(sim.now + 60_000);
        assert_eq!(sim.nodes[1].store.head(&victim), before, "seed {seed}");
        assert!(
            sim.misbehaved
                .iter()
                .any(|(by, bad, _)| *by == 1 && *bad == 2),
            "seed {seed}: node 1 did not blame node 2: {:?}",
            sim.misbehaved
        );
    }
}

#[test]
fn an_entry_crosses_a_chain_by_announcements_well_before_a_resync() {
    // A - B - C, no direct link between A and C, no loss.
    let mut sim = Sim::new(
        7,
        3,
        &[],
        Faults {
            drop: 0,
            duplicate: 0,
            max_latency: 20,
            max_write_latency: 0,
        },
    );
    // C follows A and B explicitly too (not only through the topic).
    let all: Vec<PublicKey> = sim.nodes.iter().map(|n| n.key.public()).collect();
    let outs = sim.nodes[2].sync.want(all, sim.now);
    sim.run_outputs(2, outs);
    sim.cut.insert(pair(0, 2), u64::MAX);
    sim.run(T0 + 10_000);
    assert!(
        sim.nodes.iter().all(|n| n.idle_events > 0),
        "every node went idle"
    );
    let a = sim.nodes[0].key.public();
    let published = sim.now;
    sim.publish(0, "tagline/note", tagline_format::payload::note("hello"));
    let mut reached = None;
    while sim.now < published + 10_000 {
        sim.run(sim.now + 10);
        if sim.nodes[2].store.head(&a) == 1 {
            reached = Some(sim.now - published);
            break;
        }
    }
    let took = reached.expect("the entry reached C");
    assert!(
        took < tagline_sync::machine::RESYNC_INTERVAL_MS / 10,
        "took {took} ms: forwarded, not waiting for a resync"
    );
}

/// Answers that wait to be stored are bounded across peers: with every
/// answer left unstored, the machine stops fetching at
/// `MAX_UNSTORED_FETCHES`, and one more fetch goes out per stored answer.
#[test]
fn answers_waiting_to_be_stored_are_bounded() {
    let keys: Vec<SecretKey> = (0..100u8)
        .map(|i| SecretKey::from_seed(&[i + 100; 32]))
        .collect();
    let first: BTreeMap<PublicKey, tagline_format::Entry> = keys
        .iter()
        .map(|k| {
            let note = tagline_format::payload::note("x");
            let e = create_entry(k, None, None, T0, "tagline/note", note).unwrap();
            (k.public(), e)
        })
        .collect();
    let wants: BTreeSet<PublicKey> = first.keys().copied().collect();
    let mut sync: Sync<u8> = Sync::new(BTreeMap::new(), wants.clone(), BTreeSet::new());
    let peer = 7u8;
    let mut outs = sync.handle(Input::Connected(peer), T0);
    let mut ingests: Vec<PublicKey> = Vec::new();
    let mut fetches = 0usize;
    // Answer every request at once; never report a store.
    for _ in 0..1000 {
        let mut next = Vec::new();
        for o in outs {
            match o {
                Output::Send { id, request, .. } => {
                    let response = match request {
                        Request::Clock { heads, .. } => Response::Clock {
                            heads: heads.iter().map(|(f, _)| (*f, 1)).collect(),
                        },
                        Request::Fetch { feed, from, .. } => {
                            assert_eq!(from, 1);
                            fetches += 1;
                            let e = &first[&feed];
                            Response::Entries {
                                records: vec![Record {
                                    signed: e.signed.as_bytes().to_vec(),
                                    payload: e.payload.clone(),
                                }],
                            }
                        }
                        Request::Have { .. } | Request::Forks { .. } => Response::Ack,
                    };
                    next.extend(sync.handle(Input::Response { peer, id, response }, T0 + 1));
                }
                Output::Ingest { feed, .. } => ingests.push(feed),
                _ => {}
            }
        }
        if next.is_empty() {
            break;
        }
        outs = next;
    }
    assert_eq!(ingests.len(), MAX_UNSTORED_FETCHES);
    assert_eq!(fetches, MAX_UNSTORED_FETCHES);
    // One answer stored: one more fetch.
    let outs = sync.handle(
        Input::Stored {
            feed: ingests[0],
            head: 1,
            from: Some(peer),
            rejected: None,
        },
        T0 + 2,
    );
    let sent = outs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    request: Request::Fetch { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(sent, 1);
}

/// Fork proofs travel: a node that learns of a fork passes the proof to its
/// peers once; a peer keeps it only for a feed it wants or holds, and an
/// invalid proof gets its sender banned.
#[test]
fn fork_proofs_are_passed_on_once_and_checked() {
    let k = SecretKey::from_seed(&[77; 32]);
    let f = k.public();
    let x = create_entry(
        &k,
        None,
        None,
        T0,
        "tagline/note",
        tagline_format::payload::note("x"),
    )
    .unwrap();
    let y = create_entry(
        &k,
        None,
        None,
        T0,
        "tagline/note",
        tagline_format::payload::note("y"),
    )
    .unwrap();
    let proof = tagline_format::ForkProof::new(x.signed.clone(), y.signed.clone()).unwrap();
    // A node that knows the fork, and a peer.
    let mut a: Sync<u8> = Sync::new(BTreeMap::new(), BTreeSet::new(), BTreeSet::new());
    let _ = a.handle(
        Input::ForkFound {
            proof: Box::new(proof.clone()),
        },
        T0,
    );
    let outs = a.handle(Input::Connected(2), T0);
    let sent: Vec<Vec<u8>> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                request: Request::Forks { proofs },
                ..
            } => Some(proofs.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(sent, vec![proof.encode()]);
    // Known again: not passed on twice.
    let outs = a.handle(
        Input::ForkFound {
            proof: Box::new(proof.clone()),
        },
        T0 + 1,
    );
    assert!(!outs.iter().any(|o| matches!(o, Output::Send { .. })));
    // The receiver keeps it when it wants the feed ...
    let mut b: Sync<u8> = Sync::new(BTreeMap::new(), [f].into(), BTreeSet::new());
    let _ = b.handle(Input::Connected(1), T0);
    let forks = |proofs: Vec<Vec<u8>>| Input::Request {
        peer: 1,
        inbound: 9,
        request: Request::Forks { proofs },
    };
    let outs = b.handle(forks(vec![proof.encode()]), T0);
    assert!(outs.contains(&Output::StoreForks {
        proofs: vec![proof.clone()]
    }));
    // ... not when it neither wants nor holds it ...
    let mut c: Sync<u8> = Sync::new(BTreeMap::new(), BTreeSet::new(), BTreeSet::new());
    let _ = c.handle(Input::Connected(1), T0);
    let outs = c.handle(forks(vec![proof.encode()]), T0);
    assert!(!outs.iter().any(|o| matches!(o, Output::StoreForks { .. })));
    // ... and bans a sender of a proof that is not one.
    let mut bad = proof.encode();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let outs = b.handle(forks(vec![bad]), T0);
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Event(Event::Misbehaved { peer: 1, .. })))
    );
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Disconnect { peer: 1, .. }))
    );
}

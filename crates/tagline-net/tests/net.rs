//! Real libp2p swarms on 127.0.0.1 (TCP + noise + yamux), each on a real
//! redb store in a temporary directory. Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tagline_format::payload::note;
use tagline_format::{PublicKey, SecretKey};
use tagline_net::{Config, Handle, Interests, NetEvent, spawn};
use tagline_store::Store;

/// Longest any test waits for replication.
const WAIT: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn addr(&self) -> Multiaddr {
        self.handle.listen_addrs[0]
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(self.handle.peer_id))
    }
    fn head(&self, f: &PublicKey) -> u64 {
        self.store.feed(f).unwrap().map_or(0, |m| m.head.seq)
    }
    async fn publish(&self, key: &SecretKey, n: usize, tag: &str) -> u64 {
        let items = (0..n)
            .map(|i| ("tagline/note".to_string(), note(&format!("{tag} {i}"))))
            .collect();
        self.store.append_local(key, items, now_ms()).unwrap();
        let head = self.head(&key.public());
        self.handle.stored(key.public(), head).await.unwrap();
        head
    }
    async fn stop(self) {
        self.down().await;
    }
    /// Stops the node; its data directory and store stay.
    async fn down(self) -> (tempfile::TempDir, Arc<Store>) {
        self.handle.shutdown().await.unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        (self._dir, self.store)
    }
}

async fn node(wants: &[PublicKey], own: &[PublicKey], peers: Vec<Multiaddr>) -> Node {
    node_with(wants, own, |c| c.peers = peers).await
}

/// A node on 127.0.0.1 TCP, its configuration adjusted by `f`.
async fn node_with(wants: &[PublicKey], own: &[PublicKey], f: impl FnOnce(&mut Config)) -> Node {
    node_in(tempfile::tempdir().unwrap(), wants, own, f).await
}

/// A node on the store in `dir` (a new one, or one a stopped node left).
async fn node_in(
    dir: tempfile::TempDir,
    wants: &[PublicKey],
    own: &[PublicKey],
    f: impl FnOnce(&mut Config),
) -> Node {
    // RUST_LOG=tagline_net=debug shows what the nodes do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let mut config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        interests: Interests {
            wants: wants.iter().copied().collect(),
            own: own.iter().copied().collect(),
            ..Interests::default()
        },
        ..Config::default()
    };
    f(&mut config);
    let (handle, task) = spawn(store.clone(), Keypair::generate_ed25519(), config)
        .await
        .unwrap();
    Node {
        _dir: dir,
        store,
        handle,
        task,
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t = tokio::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first peer `events` reports as misbehaving, and why.
async fn first_blamed(events: &mut tokio::sync::broadcast::Receiver<NetEvent>) -> (PeerId, String) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(NetEvent::Misbehaved { peer, reason }) = events.recv().await {
                break (peer, reason);
            }
        }
    })
    .await
    .expect("a peer is blamed")
}

/// Waits until `n` has no connection to `peer` (a blamed peer's connection
/// closes just after the blame).
async fn until_gone(n: &Node, peer: PeerId) {
    let t = tokio::time::Instant::now();
    while n
        .handle
        .status()
        .await
        .unwrap()
        .connected
        .iter()
        .any(|p| p.peer == peer)
    {
        assert!(t.elapsed() < WAIT, "{peer} is still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A signed header's bytes with its author key replaced: a forgery whose
/// signature does not verify.
fn relabel(signed: &[u8], from: &PublicKey, to: &PublicKey) -> Vec<u8> {
    let mut bytes = signed.to_vec();
    let at = bytes
        .windows(32)
        .position(|w| w == from.as_bytes())
        .unwrap();
    bytes[at..at + 32].copy_from_slice(to.as_bytes());
    bytes
}

/// A hostile peer on 127.0.0.1: a bare libp2p swarm that speaks the sync
/// protocol and writes, for each request, the bytes `answer` gives (length
/// prefix included, so it may lie about it). Its address, id and task.
async fn hostile_peer(
    mut answer: impl FnMut(tagline_sync::Request) -> Vec<u8> + Send + 'static,
) -> (Multiaddr, PeerId, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;

    let mut evil = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(tagline_net::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    evil.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = evil.select_next_some().await {
            break address.with(libp2p::multiaddr::Protocol::P2p(*evil.local_peer_id()));
        }
    };
    let id = *evil.local_peer_id();
    let task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = evil.select_next_some().await
            {
                let _ = evil.behaviour_mut().send_response(channel, answer(request));
            }
        }
    });
    (addr, id, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_published_at_a_reaches_c_through_b() {
    let ka = SecretKey::from_seed(&[1; 32]);
    let a_feed = ka.public();
    let a = node(&[], &[a_feed], vec![]).await;
    let b = node(&[a_feed], &[], vec![a.addr()]).await;
    let c = node(&[a_feed], &[], vec![b.addr()]).await;
    // Only A-B and B-C are connected: C never dials A.
    a.publish(&ka, 3, "before").await;
    until("C to hold A's first entries", || c.head(&a_feed) == 3).await;
    let head = a.publish(&ka, 1, "after").await;
    until("C to hold A's new entry", || c.head(&a_feed) == head).await;
    assert_eq!(b.head(&a_feed), head);
    let st = c.handle.status().await.unwrap();
    let peers: Vec<_> = st.connected.iter().map(|p| p.peer).collect();
    assert_eq!(peers, vec![b.handle.peer_id], "C talks to B only");
    // Stored entries verify in full on every node.
    for n in [&a, &b, &c] {
        let report = n.store.verify_all([7; 32]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_during_1000_publications_catches_up() {
    let ka = SecretKey::from_seed(&[2; 32]);
    let a_feed = ka.public();
    let a = node(&[], &[a_feed], vec![]).await;
    for i in 0..10 {
        a.publish(&ka, 100, &format!("batch {i}")).await;
    }
    assert_eq!(a.head(&a_feed), 1000);
    let d = node(&[a_feed], &[], vec![a.addr()]).await;
    until("D to catch up", || d.head(&a_feed) == 1000).await;
    // And it says so: idle once nothing is left to fetch.
    let t = tokio::time::Instant::now();
    loop {
        let st = d.handle.status().await.unwrap();
        if st.idle {
            assert!(st.behind.iter().all(|(_, v)| v.is_empty()));
            break;
        }
        assert!(t.elapsed() < WAIT, "D never went idle: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    d.stop().await;
}

/// A node that runs on merges its store's id runs into one once its sync is
/// idle, and still finds every entry by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_merges_its_id_runs_when_idle() {
    let ka = SecretKey::from_seed(&[2; 32]);
    let a = node(&[], &[ka.public()], vec![]).await;
    a.publish(&ka, 10, "a").await;
    // D's store holds two id runs: two writes of more than ID_RUN_MIN ids.
    let dir = tempfile::tempdir().unwrap();
    let kd = SecretKey::from_seed(&[4; 32]);
    let mut ids = Vec::new();
    {
        let store = Store::open(dir.path()).unwrap();
        for round in 0..2 {
            let items = (0..tagline_store::ID_RUN_MIN + 10)
                .map(|i| ("tagline/note".to_string(), note(&format!("d {round} {i}"))))
                .collect();
            let new = store.append_local(&kd, items, now_ms()).unwrap();
            ids.extend(new.iter().map(|e| e.signed.id()));
        }
        assert_eq!(store.id_run_count().unwrap(), 2);
    }
    let d = node_in(dir, &[ka.public()], &[kd.public()], |c| {
        c.peers = vec![a.addr()];
        c.compact_when_idle = true;
    })
    .await;
    until("D to catch up", || d.head(&ka.public()) == 10).await;
    until("D to merge its id runs", || {
        d.store.id_run_count().unwrap() == 1
    })
    .await;
    for id in &ids {
        assert!(d.store.get(id).unwrap().is_some());
    }
    a.stop().await;
    d.stop().await;
}

/// A hostile peer on the real network: a bare libp2p swarm speaking the sync
/// protocol, claiming a far head for a feed and serving forged entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forgeries_is_dropped_and_nothing_is_stored() {
    use tagline_sync::{Record, Request, Response};

    let ka = SecretKey::from_seed(&[3; 32]);
    let victim = ka.public();
    let forger = SecretKey::from_seed(&[4; 32]);
    // Entries signed by the forger, then relabelled as the victim's.
    let forged: Vec<Record> = {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let items = (0..3)
            .map(|i| ("tagline/note".to_string(), note(&format!("forged {i}"))))
            .collect();
        s.append_local(&forger, items, now_ms())
            .unwrap()
            .into_iter()
            .map(|e| Record {
                signed: relabel(e.signed.as_bytes(), &forger.public(), &victim),
                payload: e.payload,
            })
            .collect()
    };
    let (evil_addr, evil_id, evil_task) = hostile_peer(move |request| {
        framed(&match request {
            Request::Clock { .. } => Response::Clock {
                heads: vec![(victim, 3)],
            },
            Request::Fetch { .. } => Response::Entries {
                records: forged.clone(),
            },
            Request::Have { .. } | Request::Forks { .. } => Response::Ack,
        })
    })
    .await;

    let honest = node(&[victim], &[], vec![]).await;
    let mut events = honest.handle.events();
    honest.handle.dial(evil_addr).await.unwrap();
    let blamed = first_blamed(&mut events).await;
    assert_eq!(blamed.0, evil_id);
    // The store refuses the forgeries (a chain or signature check, whichever
    // its batch reaches first).
    assert!(blamed.1.contains("refused"), "{}", blamed.1);
    assert_eq!(honest.head(&victim), 0, "nothing forged was stored");
    until_gone(&honest, evil_id).await;
    evil_task.abort();
    honest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_carries_the_sync() {
    let ka = SecretKey::from_seed(&[11; 32]);
    let quic = |c: &mut Config| c.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    let a = node_with(&[], &[ka.public()], quic).await;
    assert!(a.addr().to_string().contains("/quic-v1/"), "{}", a.addr());
    let b = node_with(&[ka.public()], &[], |c| {
        quic(c);
        c.peers = vec![a.addr()];
    })
    .await;
    let head = a.publish(&ka, 5, "over quic").await;
    until("B to hold A's entries over QUIC", || {
        b.head(&ka.public()) == head
    })
    .await;
    let st = b.handle.status().await.unwrap();
    assert!(st.connected[0].addr.to_string().contains("quic-v1"));
    for n in [a, b] {
        n.stop().await;
    }
}

/// A TCP address on 127.0.0.1 with a port free now, for a node that must
/// know its address before it starts (to name it as external).
fn free_addr() -> Multiaddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

/// C knows only A (a DHT server that does not hold B's feed); B, reachable
/// at its address, provides its feed in the DHT. C finds B through A's DHT
/// and syncs from B directly: with mDNS off and A holding nothing of B's,
/// the DHT is C's only way to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_found_through_the_dht() {
    let kb = SecretKey::from_seed(&[12; 32]);
    let fb = kb.public();
    let reachable = |addr: Multiaddr| {
        move |c: &mut Config| {
            c.listen = vec![addr.clone()];
            c.external = vec![addr];
        }
    };
    let a = node_with(&[], &[], reachable(free_addr())).await;
    let b_addr = free_addr();
    let b = node_with(&[], &[fb], |c| {
        reachable(b_addr)(c);
        c.peers = vec![a.addr()];
    })
    .await;
    b.publish(&kb, 4, "find me").await;
    let c = node_with(&[fb], &[], |c| c.peers = vec![a.addr()]).await;
    until("C to find B and hold its feed", || c.head(&fb) == 4).await;
    assert_eq!(a.head(&fb), 0, "A never held B's feed");
    let st = c.handle.status().await.unwrap();
    assert!(
        st.connected.iter().any(|p| p.peer == b.handle.peer_id),
        "C connected to B"
    );
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// A listens through relay R (it could be behind NAT); B reaches A only at
/// R/p2p-circuit/p2p/A and syncs A's feed through the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_relay_is_reached_through_it() {
    let ka = SecretKey::from_seed(&[13; 32]);
    let r_addr = free_addr();
    let r = node_with(&[], &[], |c| {
        c.listen = vec![r_addr.clone()];
        c.external = vec![r_addr.clone()];
        c.relay_server = true;
    })
    .await;
    let a = node_with(&[], &[ka.public()], |c| {
        // No listening of its own: reachable through the relay only.
        c.listen = vec![];
        c.relays = vec![r.addr()];
    })
    .await;
    let relayed = tokio::time::timeout(WAIT, async {
        loop {
            let st = a.handle.status().await.unwrap();
            if let Some(addr) = st
                .listening
                .iter()
                .find(|l| l.to_string().contains("p2p-circuit"))
            {
                break addr.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("A listens through the relay");
    let head = a.publish(&ka, 3, "relayed").await;
    // RELAY/p2p/R/p2p-circuit/p2p/A, as A reports it.
    let circuit = relayed;
    assert!(circuit.to_string().ends_with(&a.handle.peer_id.to_string()));
    let b = node_with(&[ka.public()], &[], |c| c.peers = vec![circuit]).await;
    until("B to hold A's entries through the relay", || {
        b.head(&ka.public()) == head
    })
    .await;
    let st = b.handle.status().await.unwrap();
    let to_a = st
        .connected
        .iter()
        .find(|p| p.peer == a.handle.peer_id)
        .unwrap();
    assert!(
        to_a.addr.to_string().contains("p2p-circuit"),
        "{}",
        to_a.addr
    );
    for n in [a, b, r] {
        n.stop().await;
    }
}

/// A peer that forwards an invalid announcement on a followed feed's topic
/// is disconnected; the announcement goes no further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_forwarding_a_forged_announcement_is_dropped() {
    use futures::StreamExt;
    use libp2p::gossipsub;
    use libp2p::swarm::SwarmEvent;
    use tagline_net::announce::{self, Subject};

    let ka = SecretKey::from_seed(&[14; 32]);
    let forger = SecretKey::from_seed(&[15; 32]);
    let honest = node(&[ka.public()], &[], vec![]).await;
    let mut events = honest.handle.events();
    // A header signed by the forger, relabelled as ka's.
    let forged = {
        let e = tagline_format::entry::create_entry(
            &forger,
            None,
            None,
            now_ms(),
            "tagline/note",
            note("forged"),
        )
        .unwrap();
        relabel(e.signed.as_bytes(), &forger.public(), &ka.public())
    };
    let topic = Subject::Feed(ka.public()).topic();
    let mut evil = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .message_id_fn(announce::message_id)
                .build()
                .unwrap();
            let b: gossipsub::Behaviour = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                config,
            )
            .unwrap();
            b
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    evil.behaviour_mut().subscribe(&topic).unwrap();
    let evil_id = *evil.local_peer_id();
    evil.dial(honest.addr()).unwrap();
    let evil_task = tokio::spawn(async move {
        let mut sent = false;
        loop {
            match evil.select_next_some().await {
                SwarmEvent::Behaviour(gossipsub::Event::Subscribed { topic: t, .. })
                    if t == topic.hash() && !sent =>
                {
                    evil.behaviour_mut()
                        .publish(topic.clone(), forged.clone())
                        .unwrap();
                    sent = true;
                }
                SwarmEvent::ConnectionClosed { .. } if sent => break,
                _ => {}
            }
        }
    });
    let blamed = first_blamed(&mut events).await;
    assert_eq!(blamed.0, evil_id);
    assert!(blamed.1.contains("announcement"), "{}", blamed.1);
    tokio::time::timeout(WAIT, evil_task)
        .await
        .expect("the forwarder is disconnected")
        .unwrap();
    assert_eq!(honest.head(&ka.public()), 0);
    honest.stop().await;
}

/// A codec for a hostile peer: reads sync requests, writes whatever bytes it
/// likes as the response (length prefix included, or not).
#[derive(Clone, Default)]
struct RawCodec;

impl libp2p::request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = tagline_sync::Request;
    type Response = Vec<u8>;

    async fn read_request<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<tagline_sync::Request>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        use futures::AsyncReadExt;
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        io.read_exact(&mut buf).await?;
        tagline_sync::Request::decode(&buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }

    async fn read_response<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(std::io::Error::other("the hostile peer asks nothing"))
    }

    async fn write_request<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
        _: tagline_sync::Request,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Err(std::io::Error::other("the hostile peer asks nothing"))
    }

    async fn write_response<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&bytes).await?;
        io.close().await
    }
}

fn framed(r: &tagline_sync::Response) -> Vec<u8> {
    let body = r.encode();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A hostile peer claims a feed, answers the first fetch with a frame that
/// announces more than `MAX_FRAME_SIZE` bytes (oversized, endless), then
/// genuine entries out of order and duplicated. The node stores none of it,
/// drops the peer, and gets the feed whole from an honest peer meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_dropped_while_an_honest_one_keeps_syncing() {
    use tagline_sync::{Record, Request, Response};

    let kf = SecretKey::from_seed(&[16; 32]);
    let feed = kf.public();
    let source = node(&[], &[feed], vec![]).await;
    let head = source.publish(&kf, 300, "genuine").await;
    let genuine: Vec<Record> = source
        .store
        .range(&feed, 1, 20)
        .unwrap()
        .into_iter()
        .map(|e| Record {
            signed: e.signed.into_bytes(),
            payload: e.payload,
        })
        .collect();
    let mut fetches = 0;
    let (evil_addr, evil_id, evil_task) = hostile_peer(move |request| match request {
        Request::Clock { .. } => framed(&Response::Clock {
            heads: vec![(feed, 100_000)],
        }),
        Request::Fetch { .. } => {
            fetches += 1;
            if fetches == 1 {
                // Claims a frame far beyond the limit, then sends a little
                // of it.
                let mut b = u32::MAX.to_be_bytes().to_vec();
                b.extend(vec![0u8; 4096]);
                b
            } else {
                let mut shuffled = genuine.clone();
                shuffled.reverse();
                shuffled.push(genuine[0].clone());
                framed(&Response::Entries { records: shuffled })
            }
        }
        Request::Have { .. } | Request::Forks { .. } => framed(&Response::Ack),
    })
    .await;

    let honest = node(&[feed], &[], vec![]).await;
    let mut events = honest.handle.events();
    honest.handle.dial(evil_addr).await.unwrap();
    // The hostile peer first: its clock claims far more than the source has.
    let blamed = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(NetEvent::Misbehaved { peer, reason }) => break (peer, reason),
                Ok(NetEvent::Connected(p)) if p == evil_id => {
                    honest.handle.dial(source.addr()).await.unwrap();
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the hostile peer is blamed");
    assert_eq!(blamed.0, evil_id);
    until("the feed, whole, from the honest peer", || {
        honest.head(&feed) == head
    })
    .await;
    until_gone(&honest, evil_id).await;
    let report = honest.store.verify_all([9; 32]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    evil_task.abort();
    for n in [honest, source] {
        n.stop().await;
    }
}

/// A and B follow each other and are cut apart (B's node stops; A's goes
/// on). Both publish meanwhile; when B comes back both hold both feeds in
/// full, each entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_and_both_sides_converge() {
    let ka = SecretKey::from_seed(&[17; 32]);
    let kb = SecretKey::from_seed(&[18; 32]);
    let (fa, fb) = (ka.public(), kb.public());
    let a = node(&[fb], &[fa], vec![]).await;
    let b = node(&[fa], &[fb], vec![a.addr()]).await;
    a.publish(&ka, 10, "a before").await;
    b.publish(&kb, 10, "b before").await;
    until("both to hold both feeds", || {
        a.head(&fb) == 10 && b.head(&fa) == 10
    })
    .await;
    // The cut: B's node stops; its store stays.
    let (b_dir, b_store) = b.down().await;
    a.publish(&ka, 200, "a during").await;
    let items = (0..150)
        .map(|i| ("tagline/note".to_string(), note(&format!("b during {i}"))))
        .collect();
    b_store.append_local(&kb, items, now_ms()).unwrap();
    drop(b_store);
    // Healed: B's node starts again on the same store.
    let b = node_in(b_dir, &[fa], &[fb], |c| c.peers = vec![a.addr()]).await;
    until("both sides to converge", || {
        a.head(&fb) == 160 && b.head(&fa) == 210
    })
    .await;
    for n in [&a, &b] {
        let report = n.store.verify_all([5; 32]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(n.store.range(&fa, 1, 1000).unwrap().len(), 210);
        assert_eq!(n.store.range(&fb, 1, 1000).unwrap().len(), 160);
    }
    for n in [a, b] {
        n.stop().await;
    }
}

/// A fork proof recorded at A reaches C through B (C never talks to A),
/// and both mark the feed forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_proof_is_passed_on_through_the_network() {
    let kf = SecretKey::from_seed(&[19; 32]);
    let f = kf.public();
    let other = tempfile::tempdir().unwrap();
    let x = {
        let s = Store::open(other.path()).unwrap();
        s.append_local(
            &kf,
            vec![("tagline/note".into(), note("one history"))],
            now_ms(),
        )
        .unwrap()
        .remove(0)
    };
    let a = node(&[], &[], vec![]).await;
    let y = a
        .store
        .append_local(
            &kf,
            vec![("tagline/note".into(), note("another"))],
            now_ms(),
        )
        .unwrap()
        .remove(0);
    let proof = tagline_format::ForkProof::new(x.signed, y.signed).unwrap();
    a.store
        .add_fork_proofs(std::slice::from_ref(&proof))
        .unwrap();
    // A restarts: proofs in its store are passed on from the start.
    let (a_dir, a_store) = a.down().await;
    drop(a_store);
    let a = node_in(a_dir, &[], &[], |_| {}).await;
    let b = node(&[f], &[], vec![a.addr()]).await;
    let c = node(&[f], &[], vec![b.addr()]).await;
    until("B and C to record the fork", || {
        b.store.fork_proofs().unwrap().len() == 1 && c.store.fork_proofs().unwrap().len() == 1
    })
    .await;
    assert_eq!(c.store.fork_proofs().unwrap(), vec![proof]);
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// C first syncs a feed from A, which holds one entry without its payload;
/// it asks B, which holds the payload, for that entry again and stores the
/// payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_payload_is_fetched_from_another_peer() {
    let kf = SecretKey::from_seed(&[20; 32]);
    let f = kf.public();
    let b = node(&[], &[f], vec![]).await;
    b.publish(&kf, 3, "full").await;
    // A holds the same entries, the second without its payload.
    let a = node(&[f], &[], vec![]).await;
    let mut entries: Vec<tagline_format::Entry> = b
        .store
        .range(&f, 1, 3)
        .unwrap()
        .into_iter()
        .map(|e| tagline_format::Entry {
            signed: e.signed,
            payload: e.payload,
        })
        .collect();
    entries[1].payload = None;
    a.store
        .ingest(
            entries,
            now_ms(),
            [3; 32],
            tagline_store::IngestMode::AllOrNothing,
        )
        .unwrap();
    assert!(a.store.range(&f, 2, 2).unwrap()[0].payload.is_none());
    a.handle.stored(f, 3).await.unwrap();
    let c = node(&[f], &[], vec![a.addr()]).await;
    until("C to hold A's entries", || c.head(&f) == 3).await;
    assert!(c.store.range(&f, 2, 2).unwrap()[0].payload.is_none());
    c.handle.dial(b.addr()).await.unwrap();
    until("C to fetch the missing payload from B", || {
        c.store.range(&f, 2, 2).unwrap()[0].payload.is_some()
    })
    .await;
    let report = c.store.verify_all([4; 32]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for n in [a, b, c] {
        n.stop().await;
    }
}

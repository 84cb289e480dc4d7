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

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
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
        self.handle.shutdown().await.unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn node(wants: &[PublicKey], own: &[PublicKey], peers: Vec<Multiaddr>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers,
        mdns: false,
        interests: Interests {
            wants: wants.iter().copied().collect(),
            own: own.iter().copied().collect(),
            ..Interests::default()
        },
        ..Config::default()
    };
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

/// A hostile peer on the real network: a bare libp2p swarm speaking the sync
/// protocol, claiming a far head for a feed and serving forged entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forgeries_is_dropped_and_nothing_is_stored() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use tagline_net::{PROTOCOL, SyncCodec};
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
            .map(|e| {
                let mut bytes = e.signed.as_bytes().to_vec();
                let at = bytes
                    .windows(32)
                    .position(|w| w == forger.public().as_bytes())
                    .unwrap();
                bytes[at..at + 32].copy_from_slice(victim.as_bytes());
                Record {
                    signed: bytes,
                    payload: e.payload,
                }
            })
            .collect()
    };
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
                SyncCodec,
                [(PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    evil.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let evil_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = evil.select_next_some().await {
            break address.with(libp2p::multiaddr::Protocol::P2p(*evil.local_peer_id()));
        }
    };
    let evil_id = *evil.local_peer_id();
    let evil_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = evil.select_next_some().await
            {
                let response = match request {
                    Request::Clock { .. } => Response::Clock {
                        heads: vec![(victim, 3)],
                    },
                    Request::Fetch { .. } => Response::Entries {
                        records: forged.clone(),
                    },
                    Request::Have { .. } => Response::Ack,
                };
                let _ = evil.behaviour_mut().send_response(channel, response);
            }
        }
    });

    let honest = node(&[victim], &[], vec![]).await;
    let mut events = honest.handle.events();
    honest.handle.dial(evil_addr).await.unwrap();
    let blamed = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(NetEvent::Misbehaved { peer, reason }) = events.recv().await {
                break (peer, reason);
            }
        }
    })
    .await
    .expect("the forger is blamed");
    assert_eq!(blamed.0, evil_id);
    // The store refuses the forgeries (a chain or signature check, whichever
    // its batch reaches first).
    assert!(blamed.1.contains("refused"), "{}", blamed.1);
    assert_eq!(honest.head(&victim), 0, "nothing forged was stored");
    let t = tokio::time::Instant::now();
    while honest
        .handle
        .status()
        .await
        .unwrap()
        .connected
        .iter()
        .any(|p| p.peer == evil_id)
    {
        assert!(t.elapsed() < WAIT, "the forger is still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    evil_task.abort();
    honest.stop().await;
}

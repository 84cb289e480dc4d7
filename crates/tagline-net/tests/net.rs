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
use tagline_net::{Config, Handle, spawn};
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
        wants: wants.iter().copied().collect(),
        own: own.iter().copied().collect(),
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
    assert_eq!(st.connected, vec![b.handle.peer_id], "C talks to B only");
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

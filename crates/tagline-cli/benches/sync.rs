//! Replication benchmark (issue: Replication, "Performance"): initial sync of
//! FEEDS x ENTRIES entries from one peer to a fresh node over loopback
//! TCP + noise + yamux, the receiver being the real `tagline node --once`
//! process on its redb store; beside it, in the same run, the single-core
//! validation pipeline over the same entries (decode, payload hash, chain,
//! batched verify: `verify_run`; measured before and after the sync, the
//! ratio taken to their mean, as this machine's speed drifts), and
//! publish-to-stored latency to a direct peer and across two hops (three
//! in-process nodes, A - B - C).
//!
//!     cargo bench -p tagline-cli --bench sync
//!     TAGLINE_SYNC_FEEDS=100 TAGLINE_SYNC_ENTRIES=100 cargo bench -p tagline-cli --bench sync
//!     TAGLINE_SYNC_PERF=/tmp/recv.perf cargo bench -p tagline-cli --bench sync   # profile the receiver
//!
//! The receiver's peak RSS is its `VmHWM` (/proc/PID/status), polled every
//! 50 ms while it runs; CPU times are getrusage(2) of the reaped receiver and
//! of the bench process (the sender). Bytes on the wire are the loopback interface's
//! received bytes (/proc/net/dev: TCP/IP headers, noise, yamux and the sync
//! protocol) during the sync, so run nothing else on loopback meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::collections::BTreeSet;

use nix::sys::resource::{UsageWho, getrusage};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tagline_format::entry::{Head, create_entry};
use tagline_format::feed::verify_run;
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::payload::note;
use tagline_format::{Entry, EntryId, PublicKey, SecretKey, SignedHeader, check_payload};
use tagline_net::{Config, Interests, NetEvent};
use tagline_store::{IngestMode, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One feed of `n` notes (about 100-byte payloads), signed in memory.
fn feed(i: u64, n: u64, ts: u64) -> Vec<Entry> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[31] = 0x5c;
    let key = SecretKey::from_seed(&seed);
    let (mut prev, mut ids, mut out): (Option<Head>, Vec<EntryId>, Vec<Entry>) =
        (None, Vec::new(), Vec::new());
    for s in 1..=n {
        let target = has_distinct_lipmaa(s).then(|| ids[(lipmaa(s) - 1) as usize]);
        let text = format!("feed {i} entry {s}: {}", "x".repeat(64));
        let e = create_entry(&key, prev.as_ref(), target, ts, "tagline/note", note(&text)).unwrap();
        prev = Some(Head::of(&e.signed));
        ids.push(e.signed.id());
        out.push(e);
    }
    out
}

fn lo_rx_bytes() -> u64 {
    let t = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    t.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == "lo").then(|| rest.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process or of its reaped children.
fn cpu_s(who: UsageWho) -> f64 {
    let u = getrusage(who).unwrap();
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    s(u.user_time()) + s(u.system_time())
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn tagline(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tagline"));
    c.env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", home.join("state"))
        // TAGLINE_BENCH_LOG (a RUST_LOG filter) shows the receiver's log.
        .env(
            "RUST_LOG",
            std::env::var("TAGLINE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        );
    c
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run it too:
    // only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let feeds = env("TAGLINE_SYNC_FEEDS", 1000);
    let per = env("TAGLINE_SYNC_ENTRIES", 1000);
    let total = feeds * per;
    let ts = now_ms() - 60_000;
    println!("generating {feeds} feeds x {per} entries");
    let t = Instant::now();
    let all: Vec<Vec<Entry>> = std::thread::scope(|s| {
        let half = feeds / 2;
        let a = s.spawn(move || (0..half).map(|i| feed(i, per, ts)).collect::<Vec<_>>());
        let b = s.spawn(move || (half..feeds).map(|i| feed(i, per, ts)).collect::<Vec<_>>());
        let mut v = a.join().unwrap();
        v.extend(b.join().unwrap());
        v
    });
    println!("  signed in {:.1} s", t.elapsed().as_secs_f64());
    let entry_bytes: u64 = all
        .iter()
        .flatten()
        .map(|e| (e.signed.as_bytes().len() + e.payload.as_ref().map_or(0, Vec::len)) as u64)
        .sum();

    // The sender's store.
    let sender_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sender_dir.path()).unwrap());
    let t = Instant::now();
    let wants: BTreeSet<PublicKey> = all.iter().map(|f| *f[0].signed.author()).collect();
    let mut batch = Vec::new();
    for f in all {
        batch.extend(f);
        if batch.len() >= 100_000 {
            store
                .ingest(
                    std::mem::take(&mut batch),
                    now_ms(),
                    [1; 32],
                    IngestMode::AllOrNothing,
                )
                .unwrap();
        }
    }
    if !batch.is_empty() {
        store
            .ingest(batch, now_ms(), [1; 32], IngestMode::AllOrNothing)
            .unwrap();
    }
    let sender_ingest = t.elapsed();

    // Baseline: the single-core validation pipeline over the same bytes,
    // read feed by feed from the sender's store (not timed, and one feed
    // in memory at a time), timed from decoding to verified. It runs before
    // and after the sync: this machine's speed drifts over minutes, so the
    // ratio is taken to the mean of the two.
    let run_pipeline = || {
        let mut spent = Duration::ZERO;
        for author in &wants {
            let raw = store.range_bytes(author, 1, per).unwrap();
            let t = Instant::now();
            let decoded: Vec<SignedHeader> = raw
                .into_iter()
                .map(|r| {
                    let sh = SignedHeader::decode(r.signed).unwrap();
                    check_payload(sh.header(), &r.payload.unwrap()).unwrap();
                    sh
                })
                .collect();
            let ids: Vec<EntryId> = decoded.iter().map(SignedHeader::id).collect();
            verify_run(
                author,
                None,
                &decoded,
                &mut |s| ids.get(s as usize - 1).copied(),
                now_ms(),
                [9; 32],
            )
            .unwrap();
            spent += t.elapsed();
        }
        spent
    };
    let pipeline_before = run_pipeline();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let (handle, _task) = rt
        .block_on(tagline_net::spawn(
            store.clone(),
            tagline_node::files::node_key(key_dir.path()).unwrap(),
            Config {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                ..Config::default()
            },
        ))
        .unwrap();
    let addr = format!("{}/p2p/{}", handle.listen_addrs[0], handle.peer_id);

    // The receiver: a fresh data directory following every feed.
    let recv = tempfile::tempdir().unwrap();
    let home = recv.path().join("r");
    assert!(
        tagline(&home)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let follow: Vec<String> = wants.iter().map(ToString::to_string).collect();
    let text = format!(
        "follow = [{}]\n",
        follow
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(home.join("replication.toml"), text).unwrap();
    let rx0 = lo_rx_bytes();
    let (self0, children0) = (
        cpu_s(UsageWho::RUSAGE_SELF),
        cpu_s(UsageWho::RUSAGE_CHILDREN),
    );
    let t = Instant::now();
    let receiver = ["node", "--once", "--timeout", "3600", "--peer", &addr];
    // TAGLINE_SYNC_PERF=FILE: the receiver runs under `perf record -g -o FILE`.
    let mut child = match std::env::var("TAGLINE_SYNC_PERF") {
        Ok(out) => {
            let plain = tagline(&home);
            let mut c = Command::new("perf");
            c.args(["record", "-F", "999", "-g", "-o", &out, "--"])
                .arg(plain.get_program())
                .args(receiver);
            for (k, v) in plain.get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            c
        }
        Err(_) => {
            let mut c = tagline(&home);
            c.args(receiver);
            c
        }
    }
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let sync = t.elapsed();
    // CPU time of the receiver (the one child reaped meanwhile) and of this
    // process (the sender's node and the polling loop).
    let receiver_cpu = cpu_s(UsageWho::RUSAGE_CHILDREN) - children0;
    let sender_cpu = cpu_s(UsageWho::RUSAGE_SELF) - self0;
    let wire_bytes = lo_rx_bytes() - rx0;
    assert!(status.success(), "the receiver failed");
    let r = Store::open(&home).unwrap();
    let got: u64 = wants
        .iter()
        .map(|f| r.feed(f).unwrap().map_or(0, |m| m.head.seq))
        .sum();
    assert_eq!(got, total, "the receiver holds every entry");
    drop(r);
    let sync_rate = total as f64 / sync.as_secs_f64();
    let pipeline_after = run_pipeline();
    let pipeline = (pipeline_before + pipeline_after) / 2;
    let pipeline_rate = total as f64 / pipeline.as_secs_f64();

    // Latency: A - B - C in-process, one entry at a time.
    let (direct, two_hops) = rt.block_on(latency());

    println!();
    println!("entries                      {total} ({feeds} feeds x {per})");
    println!(
        "entry size (header+payload)  {:.0} bytes on average",
        entry_bytes as f64 / total as f64
    );
    println!(
        "validation pipeline, 1 core  {:.0} entries/s ({:.2} s; before the sync {:.0}, after it {:.0})",
        pipeline_rate,
        pipeline.as_secs_f64(),
        total as f64 / pipeline_before.as_secs_f64(),
        total as f64 / pipeline_after.as_secs_f64()
    );
    println!(
        "sender ingest (store)        {:.0} entries/s ({:.2} s)",
        total as f64 / sender_ingest.as_secs_f64(),
        sender_ingest.as_secs_f64()
    );
    println!(
        "initial sync, receiver       {:.0} entries/s ({:.2} s, process start to exit) = {:.0}% of the pipeline",
        sync_rate,
        sync.as_secs_f64(),
        100.0 * sync_rate / pipeline_rate
    );
    println!(
        "CPU during the sync          receiver {:.2} s ({:.2} cores), sender {:.2} s ({:.2} cores)",
        receiver_cpu,
        receiver_cpu / sync.as_secs_f64(),
        sender_cpu,
        sender_cpu / sync.as_secs_f64()
    );
    println!(
        "receiver peak RSS            {:.0} MB",
        peak as f64 / 1024.0
    );
    println!(
        "bytes on loopback per entry  {:.0} = {:.2}x the entry's own size",
        wire_bytes as f64 / total as f64,
        wire_bytes as f64 / entry_bytes as f64
    );
    let (mut d, mut h) = (direct, two_hops);
    println!(
        "publish-to-stored, direct    p50 {:.1} ms, p90 {:.1} ms ({} entries)",
        percentile(&mut d, 0.5),
        percentile(&mut d, 0.9),
        d.len()
    );
    println!(
        "publish-to-stored, 2 hops    p50 {:.1} ms, p90 {:.1} ms",
        percentile(&mut h, 0.5),
        percentile(&mut h, 0.9)
    );
}

/// Publishes 100 entries at A, one at a time; for each, the time until B
/// (direct) and C (through B) have stored it.
async fn latency() -> (Vec<f64>, Vec<f64>) {
    let key = SecretKey::from_seed(&[0x17; 32]);
    let f = key.public();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut prev: Option<String> = None;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (h, _t) = tagline_net::spawn(
            store.clone(),
            tagline_node::files::node_key(dir.path()).unwrap(),
            Config {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                peers: prev.iter().map(|p| p.parse().unwrap()).collect(),
                interests: Interests {
                    wants: [f].into(),
                    ..Interests::default()
                },
                ..Config::default()
            },
        )
        .await
        .unwrap();
        prev = Some(format!("{}/p2p/{}", h.listen_addrs[0], h.peer_id));
        nodes.push((store, h));
        dirs.push(dir);
    }
    let mut eb = nodes[1].1.events();
    let mut ec = nodes[2].1.events();
    // Let the connections and first exchanges settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut direct, mut two) = (Vec::new(), Vec::new());
    for i in 0..100u32 {
        let t = Instant::now();
        nodes[0]
            .0
            .append_local(
                &key,
                vec![("tagline/note".into(), note(&format!("n {i}")))],
                now_ms(),
            )
            .unwrap();
        let head = nodes[0].0.feed(&f).unwrap().unwrap().head.seq;
        nodes[0].1.stored(f, head).await.unwrap();
        let wait = async |rx: &mut tokio::sync::broadcast::Receiver<NetEvent>| loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Ok(NetEvent::FeedUpdated { feed, head: h })) if feed == f && h >= head => {
                    return t.elapsed().as_secs_f64() * 1000.0;
                }
                Ok(_) => {}
                Err(_) => panic!("entry {head} did not arrive in 30 s"),
            }
        };
        direct.push(wait(&mut eb).await);
        two.push(wait(&mut ec).await);
    }
    (direct, two)
}

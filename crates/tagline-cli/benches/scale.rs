//! The review commands on a realistic store at full scale, beside the raw
//! redb operations they rest on (docs/performance.md):
//!
//!     cargo bench -p tagline-cli --bench scale
//!     TAGLINE_BENCH_SERIES=5000 cargo bench -p tagline-cli --bench scale   # smaller
//!
//! The generated store (kept in `target/bench-stores/` and reused by later
//! runs): `SERIES` series (default 50,000) by 1,000 authors, 1 to 5 revisions
//! (3 on average) of 3 patches each touching one of four areas
//! (`xen/arch/x86`, `xen/arch/arm`, `xen/common`, `tools/libs`), 2 CI results
//! per revision from 10 CI bots, 2 reviews on each earlier revision and 7 on
//! the latest (Reviewed-by, Acked-by by the lead, Tested-by, comments) from
//! 1,000 reviewers: 20 entries per series on average, about 1,000,000 entries
//! and 2,011 identities in all. Entries are signed in memory and ingested in
//! batches, as replication would bring them.
//!
//! Criterion measures the per-series operations; the whole-store ones (a full
//! scan, the first `series` listing, rebuilding the indexes) take seconds and
//! are timed directly, each beside the raw scan measured in the same run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tagline_cli::reviewcmd::{SeriesFilter, series_list_in, status_computed_in, status_in};
use tagline_format::entry::{Head, create_entry};
use tagline_format::identity::{IdentityId, IdentityPayload};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::review::*;
use tagline_format::{Entry, EntryId, SecretKey};
use tagline_store::{IngestMode, Store};

/// Timestamps start here (2026-01-01) and advance one second per series.
const T0: u64 = 1_767_225_600_000;
const AUTHORS: u32 = 1_000;
const REVIEWERS: u32 = 1_000;
const BOTS: u32 = 10;
/// Entries handed to `Store::ingest` at a time.
const INGEST_BATCH: usize = 20_000;

fn n_series() -> u32 {
    std::env::var("TAGLINE_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

/// A feed being written in memory.
struct Feed {
    key: SecretKey,
    prev: Option<Head>,
    ids: Vec<EntryId>,
}

impl Feed {
    fn new(seed: [u8; 32]) -> Feed {
        Feed {
            key: SecretKey::from_seed(&seed),
            prev: None,
            ids: Vec::new(),
        }
    }
    fn push(&mut self, out: &mut Vec<Entry>, ts: u64, t: &str, payload: Vec<u8>) -> EntryId {
        let seq = self.prev.map_or(1, |h| h.seq + 1);
        let target = has_distinct_lipmaa(seq).then(|| self.ids[(lipmaa(seq) - 1) as usize]);
        let e = create_entry(&self.key, self.prev.as_ref(), target, ts, t, payload).unwrap();
        let id = e.signed.id();
        self.prev = Some(Head::of(&e.signed));
        self.ids.push(id);
        out.push(e);
        id
    }
    fn post(&mut self, out: &mut Vec<Entry>, ts: u64, p: &ReviewPayload) -> EntryId {
        self.push(out, ts, p.type_name(), p.encode())
    }
}

/// A person: root and device feeds; the identity is set up on creation.
struct Person {
    id: IdentityId,
    dev: Feed,
}

fn seed(kind: u8, n: u32) -> [u8; 32] {
    let mut s = [kind; 32];
    s[1..5].copy_from_slice(&n.to_be_bytes());
    s
}

fn person(out: &mut Vec<Entry>, kind: u8, n: u32) -> Person {
    let mut root = Feed::new(seed(kind, n));
    let mut dev = Feed::new(seed(kind + 1, n));
    let id = IdentityId(root.key.public());
    for p in [
        IdentityPayload::Genesis,
        IdentityPayload::Profile {
            name: format!("P{kind}-{n}"),
        },
        IdentityPayload::DeviceAdd {
            device: dev.key.public(),
            from_seq: 1,
        },
    ] {
        root.push(out, T0 - 1000, p.type_name(), p.encode());
    }
    let j = IdentityPayload::Join { identity: id };
    dev.push(out, T0 - 1000, j.type_name(), j.encode());
    Person { id, dev }
}

const AREAS: [&str; 4] = ["xen/arch/x86", "xen/arch/arm", "xen/common", "tools/libs"];

fn patch(s: u32, k: u32, v: u32, author: u32) -> Patch {
    let area = AREAS[(s % 4) as usize];
    // Patch 1 is unchanged across versions (its trailers carry); the others change.
    let rev = if k == 1 { 1 } else { v };
    let file = format!("{area}/f{s}_{k}.c");
    let mut diff = format!(
        "diff --git a/{file} b/{file}\nindex 1111111..2222222 100644\n--- a/{file}\n+++ b/{file}\n@@ -10,7 +10,8 @@ static int f{s}(void)\n"
    );
    for l in 0..6 {
        diff.push_str(&format!(" context line {l} of {file}\n"));
    }
    diff.push_str(&format!(
        "-old line {k}\n+new line {k} version {rev}\n+another line\n"
    ));
    Patch {
        subject: format!("{area}: change {k} of series {s}"),
        message: format!(
            "Change {k} of series {s}: explain what and why over a few lines of\ncommit message, as a patch would.\n\nSigned-off-by: Author {author} <a{author}@example.org>\n"
        ),
        author: format!("Author {author} <a{author}@example.org>"),
        diff,
        patch_id: format!(
            "{:040x}",
            u128::from(s) << 40 | u128::from(k) << 8 | u128::from(rev)
        ),
    }
}

fn review(rev: EntryId, key: &str, who: &str, comment: Option<&str>) -> ReviewPayload {
    ReviewPayload::Review(Review {
        revision: rev,
        patch: None,
        trailers: if key.is_empty() {
            vec![]
        } else {
            vec![(key.into(), who.into())]
        },
        comment: comment.map(str::to_string),
        inline: vec![],
        retracts: None,
        mail: None,
        flagged: Vec::new(),
    })
}

/// Generates the store in `dir`; returns a series with 3 revisions.
fn generate(dir: &Path, n: u32) -> EntryId {
    let store = Store::open(dir).unwrap();
    let mut out: Vec<Entry> = Vec::new();
    let flush = |out: &mut Vec<Entry>, force: bool| {
        if out.len() >= INGEST_BATCH || (force && !out.is_empty()) {
            let batch = std::mem::take(out);
            store
                .ingest(
                    batch,
                    T0 + 10_000_000_000,
                    [7; 32],
                    IngestMode::AllOrNothing,
                )
                .unwrap();
        }
    };
    let mut lead = person(&mut out, 1, 0);
    let mut authors: Vec<Person> = (0..AUTHORS).map(|i| person(&mut out, 10, i)).collect();
    let mut reviewers: Vec<Person> = (0..REVIEWERS).map(|i| person(&mut out, 20, i)).collect();
    let mut bots: Vec<Person> = (0..BOTS).map(|i| person(&mut out, 30, i)).collect();
    let project = Project {
        name: "xen".into(),
        branch: "staging".into(),
        policy: "[ci]\nrequired = [\"build\", \"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\n".into(),
        maintainers: vec![lead.id],
        ci: bots
            .iter()
            .map(|b| CiRole { identity: b.id, contexts: vec!["build".into(), "test".into()] })
            .collect(),
        ..Project::default()
    };
    let pid = lead
        .dev
        .post(&mut out, T0, &ReviewPayload::Project(project));
    flush(&mut out, true);
    let mut probe = None;
    for s in 0..n {
        let ts = T0 + 1000 * u64::from(s + 1);
        let a = s % AUTHORS;
        let versions = 1 + s % 5;
        let mut first = None;
        for v in 1..=versions {
            let rev = ReviewPayload::Revision(Revision {
                project: pid,
                series: first,
                version: u64::from(v),
                base_commit: None,
                cover: Some(Cover {
                    subject: format!("[PATCH v{v} 0/3] {}: series {s}", AREAS[(s % 4) as usize]),
                    body: "A cover letter of a few lines.\n".into(),
                }),
                changelog: (v > 1).then(|| format!("v{v}: rework patches 2 and 3")),
                patches: (1..=3).map(|k| patch(s, k, v, a)).collect(),
                change_id: None,
                mails: None,
            });
            let id = authors[a as usize].dev.post(&mut out, ts, &rev);
            let first_id = *first.get_or_insert(id);
            if v == 3 && probe.is_none() {
                probe = Some(first_id);
            }
            let bot = &mut bots[(s % BOTS) as usize].dev;
            for ctx in ["build", "test"] {
                let fail = v == versions && s % 7 == 0 && ctx == "test";
                let ci = ReviewPayload::Ci(CiResult {
                    revision: id,
                    context: ctx.into(),
                    status: if fail { CiStatus::Fail } else { CiStatus::Pass },
                    summary: format!("{ctx}: {}", if fail { "1 failure" } else { "ok" }),
                    log_excerpt: None,
                    log_hash: None,
                    runner: Some("bench-runner".into()),
                    duration_ms: Some(60_000),
                    url: None,
                });
                bot.post(&mut out, ts + 1, &ci);
            }
            let reviewer = |k: u32| ((s * 7 + k * 131) % REVIEWERS) as usize;
            if v < versions {
                for k in 0..2 {
                    let r = reviewer(k);
                    let p = review(id, "", "", Some("a question about patch 2"));
                    reviewers[r].dev.post(&mut out, ts + 2, &p);
                }
            } else {
                for k in 0..4 {
                    let r = reviewer(k);
                    let who = format!("R{r} <r{r}@example.org>");
                    let key = if s % 3 == 0 && k > 0 {
                        ""
                    } else {
                        "Reviewed-by"
                    };
                    let p = review(id, key, &who, (k == 3).then_some("looks fine"));
                    reviewers[r].dev.post(&mut out, ts + 2, &p);
                }
                let p = review(id, "Tested-by", "T <t@example.org>", None);
                reviewers[reviewer(4)].dev.post(&mut out, ts + 2, &p);
                let p = review(id, "", "", Some("one more comment"));
                reviewers[reviewer(5)].dev.post(&mut out, ts + 2, &p);
                let p = review(id, "Acked-by", "Lead <lead@example.org>", None);
                lead.dev.post(&mut out, ts + 3, &p);
            }
        }
        flush(&mut out, false);
    }
    flush(&mut out, true);
    probe.unwrap()
}

/// The generated store's directory, generating it on first use.
fn store_dir(n: u32) -> (PathBuf, EntryId) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/bench-stores")
        .join(format!("scale-{n}"));
    let marker = dir.join("generated");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        return (dir, text.trim().parse().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    let probe = generate(&dir, n);
    eprintln!("generated {} in {:.1?}", dir.display(), t.elapsed());
    std::fs::write(&marker, probe.to_string()).unwrap();
    (dir, probe)
}

/// Reads every feed in full and decodes every review payload: one full scan.
fn full_scan(store: &Store) -> usize {
    let mut n = 0;
    for f in store.feeds().unwrap() {
        for e in store.range(&f.author, 1, u64::MAX).unwrap() {
            if let Some(p) = e.payload.as_deref() {
                let _ = ReviewPayload::decode(&e.signed.header().payload_type, p);
            }
            n += 1;
        }
    }
    n
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    let d = t.elapsed();
    eprintln!("{what}: {d:.3?}");
    (r, d)
}

fn filter() -> SeriesFilter {
    SeriesFilter {
        state: Some("approved".into()),
        path: vec!["xen/arch/*".into()],
        ..SeriesFilter::default()
    }
}

fn bench(c: &mut Criterion) {
    let n = n_series();
    let (dir, probe) = store_dir(n);
    let store = Store::open(&dir).unwrap();
    let entries = store.entry_count().unwrap();
    let probe_entries = store.series_entries(&probe).unwrap().len() as u64;
    eprintln!(
        "store: {n} series, {entries} entries, {} feeds; probe series {} has {probe_entries} entries",
        store.feeds().unwrap().len(),
        probe.short()
    );

    // Whole-store operations, timed directly (seconds each).
    let (scanned, scan) = timed("raw: full scan + decode", || full_scan(&store));
    assert_eq!(scanned as u64, entries);
    // The first listing after the store changed computes every summary.
    store.rebuild_indexes().unwrap();
    let (_, cold) = timed(
        "series --state approved --path 'xen/arch/*' (cold: computes every summary)",
        || series_list_in(&store, &filter(), false, &mut std::io::sink()).unwrap(),
    );
    let (_, warm) = timed("series --state approved --path 'xen/arch/*' (warm)", || {
        series_list_in(&store, &filter(), false, &mut std::io::sink()).unwrap()
    });
    let mut listed = Vec::new();
    series_list_in(&store, &filter(), true, &mut listed).unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    eprintln!("  it lists {} series", listed.as_array().unwrap().len());
    let (_, scan2) = timed("raw: full scan + decode (again)", || full_scan(&store));
    let (_, rebuild) = timed("rebuild all indexes", || store.rebuild_indexes().unwrap());
    let scan_best = scan.min(scan2);
    eprintln!(
        "series warm = {:.1}% of a full scan (target < 20%); cold = {:.0}%; rebuild throughput = {:.0}% of scan + decode (target >= 50%)",
        100.0 * warm.as_secs_f64() / scan_best.as_secs_f64(),
        100.0 * cold.as_secs_f64() / scan_best.as_secs_f64(),
        100.0 * scan_best.as_secs_f64() / rebuild.as_secs_f64()
    );
    // Warm the summaries and the identity parts again after the rebuild.
    series_list_in(&store, &filter(), false, &mut std::io::sink()).unwrap();
    let arg = probe.to_string();
    status_in(&store, &arg, None, None, false, &mut std::io::sink()).unwrap();

    // Per-series operations.
    let mut g = c.benchmark_group("scale");
    g.measurement_time(Duration::from_secs(5));
    let feed = store
        .feeds()
        .unwrap()
        .into_iter()
        .find(|f| f.head.seq > probe_entries + 10)
        .unwrap();
    g.bench_function("raw/range_read", |b| {
        b.iter(|| store.range(&feed.author, 5, 4 + probe_entries).unwrap())
    });
    g.bench_function("index/series_entries", |b| {
        b.iter(|| store.series_entries(&probe).unwrap())
    });
    g.bench_function("status/command", |b| {
        b.iter(|| status_in(&store, &arg, None, None, false, &mut std::io::sink()).unwrap())
    });
    // The same when its stored view is stale: computed from the entries.
    g.bench_function("status/computed", |b| {
        b.iter(|| status_computed_in(&store, &arg, &mut std::io::sink()).unwrap())
    });
    g.sample_size(10);
    g.bench_function("series/state_approved_path_xen_arch/warm", |b| {
        b.iter(|| series_list_in(&store, &filter(), false, &mut std::io::sink()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

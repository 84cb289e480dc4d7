//! What `tagline status` costs on a realistic store, beside the raw redb reads
//! it rests on (docs/performance.md):
//!
//!     TAGLINE_BENCH_SERIES=50000 cargo bench -p tagline-review --bench review
//!
//! The store: `SERIES` series by 200 authors, 3 revisions of 3 patches each,
//! 5 reviews and 2 CI results per series, 100 reviewers, every author and
//! reviewer with an identity (root feed + device). Measured:
//! - `raw/range_read`: a raw redb range read of one feed's entries, as many
//!   entries as one series has (the baseline for `status`);
//! - `index/series_entries`: the series' entries through the series index;
//! - `evaluate/one_series`: `evaluate` on them, identities already resolved;
//! - `identities/resolve_all`: resolving every identity from the store;
//! - `identities/cached`: the same from the store's identity cache (valid while
//!   no identity entry changed), as `tagline status` now does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tagline_format::identity::{IdentityId, IdentityPayload};
use tagline_format::review::*;
use tagline_format::{EntryId, SecretKey};
use tagline_review::policy::Policy;
use tagline_review::rules::{Input, ProjectContext, evaluate};
use tagline_store::Store;

const NOW: u64 = 1_800_000_000_000;
const AUTHORS: u8 = 200;
const REVIEWERS: u8 = 100;

/// A payload type and its bytes, as `Store::append_local` takes them.
type Item = (String, Vec<u8>);

fn item(p: &ReviewPayload) -> Item {
    (p.type_name().to_string(), p.encode())
}

fn idp(p: &IdentityPayload) -> (String, Vec<u8>) {
    (p.type_name().to_string(), p.encode())
}

/// Every identity resolved from the store's identity entries, uncached.
fn resolve_all(store: &Store) -> tagline_identity::Registry {
    let ids = store.identity_entries().unwrap();
    let inputs: Vec<tagline_identity::Input<'_>> = ids
        .iter()
        .map(|e| tagline_identity::Input {
            signed: &e.signed,
            payload: e.payload.as_deref(),
        })
        .collect();
    tagline_identity::resolve(&inputs)
}

fn seed(kind: u8, n: u8) -> [u8; 32] {
    let mut s = [kind; 32];
    s[1] = n;
    s
}

/// A person: root and device keys, the identity set up in the store.
fn person(store: &Store, kind: u8, n: u8) -> SecretKey {
    let root = SecretKey::from_seed(&seed(kind, n));
    let dev = SecretKey::from_seed(&seed(kind + 1, n));
    let id = IdentityId(root.public());
    store
        .append_local(
            &root,
            vec![
                idp(&IdentityPayload::Genesis),
                idp(&IdentityPayload::DeviceAdd {
                    device: dev.public(),
                    from_seq: 1,
                }),
            ],
            NOW,
        )
        .unwrap();
    store
        .append_local(
            &dev,
            vec![idp(&IdentityPayload::Join { identity: id })],
            NOW,
        )
        .unwrap();
    dev
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    series: EntryId,
    project: Project,
    project_id: EntryId,
    lead: IdentityId,
    reference_feed: tagline_format::PublicKey,
}

fn build(n_series: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lead_root = SecretKey::from_seed(&seed(1, 0));
    let lead_dev = person(&store, 1, 0);
    let authors: Vec<SecretKey> = (0..AUTHORS).map(|i| person(&store, 10, i)).collect();
    let reviewers: Vec<SecretKey> = (0..REVIEWERS).map(|i| person(&store, 20, i)).collect();
    let ci = person(&store, 30, 0);
    let ci_root = IdentityId(SecretKey::from_seed(&seed(30, 0)).public());
    let project = Project {
        name: "bench".into(),
        branch: "main".into(),
        policy: "[ci]\nrequired = [\"build\", \"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\n".into(),
        ci: vec![CiRole { identity: ci_root, contexts: vec!["build".into(), "test".into()] }],
        ..Project::default()
    };
    let project_id = store
        .append_local(
            &lead_dev,
            vec![item(&ReviewPayload::Project(project.clone()))],
            NOW,
        )
        .unwrap()[0]
        .signed
        .id();
    let patch = |s: usize, k: usize, v: u64| Patch {
        subject: format!("drivers/x{s}: part {k}"),
        message: format!("Change {k} of series {s}.\n\nSigned-off-by: A <a@example.org>\n"),
        author: "A <a@example.org>".into(),
        diff: format!(
            "diff --git a/drivers/x{s}/f{k}.c b/drivers/x{s}/f{k}.c\n--- a/drivers/x{s}/f{k}.c\n+++ b/drivers/x{s}/f{k}.c\n@@ -1 +1 @@\n-old\n+new {v}\n"
        ),
        patch_id: format!("{s:020}{k:010}{v:010}"),
    };
    let mut first_series = None;
    // Post in rounds so each author's batch is one transaction.
    let per_author = n_series.div_ceil(AUTHORS as usize);
    for (a, author) in authors.iter().enumerate() {
        let mut revs = Vec::new();
        for j in 0..per_author {
            let s = a * per_author + j;
            if s >= n_series {
                break;
            }
            let v1 = ReviewPayload::Revision(Revision {
                project: project_id,
                series: None,
                version: 1,
                base_commit: None,
                cover: Some(Cover {
                    subject: format!("[PATCH 0/3] series {s}"),
                    body: "why".into(),
                }),
                changelog: None,
                patches: (0..3).map(|k| patch(s, k, 1)).collect(),
                change_id: None,
                mails: None,
            });
            revs.push(item(&v1));
        }
        let posted = store.append_local(author, revs, NOW).unwrap();
        let mut later = Vec::new();
        let mut reviews: Vec<(usize, Vec<Item>)> = Vec::new();
        for (j, e) in posted.iter().enumerate() {
            let s = a * per_author + j;
            let sid = e.signed.id();
            first_series.get_or_insert(sid);
            for v in 2..=3u64 {
                let r = ReviewPayload::Revision(Revision {
                    project: project_id,
                    series: Some(sid),
                    version: v,
                    base_commit: None,
                    cover: Some(Cover {
                        subject: format!("[PATCH v{v} 0/3] series {s}"),
                        body: "why".into(),
                    }),
                    changelog: Some(format!("v{v}: rework")),
                    patches: (0..3)
                        .map(|k| patch(s, k, if k == 0 { 1 } else { v }))
                        .collect(),
                    change_id: None,
                    mails: None,
                });
                later.push(item(&r));
            }
        }
        let later_posted = store.append_local(author, later, NOW).unwrap();
        for (j, e) in later_posted.iter().enumerate() {
            if j % 2 == 1 {
                // The v3 of each series gets the reviews and CI.
                let rev = e.signed.id();
                let rv = (0..5)
                    .map(|r| {
                        item(&ReviewPayload::Review(Review {
                            revision: rev,
                            patch: None,
                            trailers: vec![(
                                "Reviewed-by".into(),
                                format!("R{r} <r{r}@example.org>"),
                            )],
                            comment: None,
                            inline: vec![],
                            retracts: None,
                            mail: None,
                            flagged: Vec::new(),
                        }))
                    })
                    .collect::<Vec<_>>();
                reviews.push((j, rv));
                let cis: Vec<(String, Vec<u8>)> = ["build", "test"]
                    .iter()
                    .map(|c| {
                        item(&ReviewPayload::Ci(CiResult {
                            revision: rev,
                            context: (*c).into(),
                            status: CiStatus::Pass,
                            summary: "ok".into(),
                            log_excerpt: None,
                            log_hash: None,
                            runner: None,
                            duration_ms: Some(1000),
                            url: None,
                        }))
                    })
                    .collect();
                store.append_local(&ci, cis, NOW).unwrap();
            }
        }
        for (j, rv) in reviews {
            for (r, review) in rv.into_iter().enumerate() {
                let who = &reviewers[(a * 7 + j * 3 + r) % REVIEWERS as usize];
                store.append_local(who, vec![review], NOW).unwrap();
            }
        }
    }
    let _ = lead_root;
    Fixture {
        _dir: dir,
        store,
        series: first_series.unwrap(),
        project,
        project_id,
        lead: IdentityId(SecretKey::from_seed(&seed(1, 0)).public()),
        reference_feed: authors[0].public(),
    }
}

fn benches(c: &mut Criterion) {
    let n: usize = std::env::var("TAGLINE_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let f = build(n);
    let entries_total = f.store.entry_count().unwrap();
    let series_entries = f.store.series_entries(&f.series).unwrap();
    eprintln!(
        "store: {n} series, {entries_total} entries; one series has {} entries",
        series_entries.len()
    );
    let k = series_entries.len() as u64;
    let mut g = c.benchmark_group("status");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("raw/range_read", |b| {
        b.iter(|| f.store.range(&f.reference_feed, 1, k).unwrap().len());
    });
    g.bench_function("index/series_entries", |b| {
        b.iter(|| f.store.series_entries(&f.series).unwrap().len())
    });
    let id_entries = f.store.identity_entries().unwrap();
    let reg = tagline_identity::resolve(
        &id_entries
            .iter()
            .map(|e| tagline_identity::Input {
                signed: &e.signed,
                payload: e.payload.as_deref(),
            })
            .collect::<Vec<_>>(),
    );
    let decoded: Vec<(tagline_store::StoredEntry, ReviewPayload)> = series_entries
        .iter()
        .filter_map(|e| {
            Some((
                e.clone(),
                ReviewPayload::decode(&e.signed.header().payload_type, e.payload.as_deref()?)
                    .ok()??,
            ))
        })
        .collect();
    let inputs: Vec<Input<'_>> = decoded
        .iter()
        .map(|(e, p)| Input::new(&e.signed, p))
        .collect();
    let policy = Policy::parse(&f.project.policy).unwrap();
    let ctx = ProjectContext {
        id: f.project_id,
        lead: Some(f.lead),
        decl: &f.project,
        policy: &policy,
        maintainers_file: None,
    };
    let e = evaluate(f.series, &inputs, &ctx, &reg, NOW);
    eprintln!(
        "the series is {} with {} rules",
        e.state.as_str(),
        e.rules.len()
    );
    g.bench_function("evaluate/one_series", |b| {
        b.iter(|| evaluate(f.series, &inputs, &ctx, &reg, NOW).state)
    });
    g.sample_size(10);
    g.bench_function("identities/resolve_all", |b| {
        b.iter(|| resolve_all(&f.store).identities.len())
    });
    let digest = f.store.identity_digest().unwrap();
    let reg_now = resolve_all(&f.store);
    f.store
        .put_identity_cache(&digest, &reg_now.encode())
        .unwrap();
    g.sample_size(100);
    g.bench_function("identities/cached", |b| {
        b.iter(|| {
            tagline_identity::Registry::decode(&f.store.identity_cache().unwrap().unwrap())
                .unwrap()
                .identities
                .len()
        })
    });
    g.finish();
}

criterion_group!(review, benches);
criterion_main!(review);

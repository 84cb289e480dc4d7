//! The store: feeds on redb.
//!
//! One redb file (`store.redb`) in the data directory holds every entry, payload
//! and fork proof this node knows. Every append, local or received, is one
//! write transaction committed with immediate durability: after a crash the
//! store holds each batch whole or not at all, and every batch whose append
//! returned is there.
//!
//! The store validates everything it is given (tagline-format does the rules);
//! time and batch-verification randomness are parameters, so tests are exact.

pub mod tables;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    WriteTransaction,
};
use tagline_format::entry::{check_payload, create_entry};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::{
    Entry, EntryError, EntryId, FeedError, ForkProof, Head, PayloadHash, PublicKey, SecretKey,
    SignedHeader, VerifiedIds,
};

use crate::tables::{
    AWAITING_PAYLOAD, CACHE_KEY, DIGEST_KEY, ENTRIES, ENTRY_PAYLOADS, FEED_META_LEN, FEEDS, FORKS,
    ID_INDEX, ID_OVERFLOW, ID_RUN_LEVELS, IDENTITY_CACHE, IDENTITY_DIGEST, IDENTITY_ENTRIES,
    IDENTITY_PARTS, INDEX_VERSION, IdRunTable, KEY_OWNERS, META, PARTS_KEY, PAYLOADS,
    REVIEW_ENTRIES, REVIEW_REFS, REVISION_SERIES, SCHEMA_VERSION, SERIES, SERIES_STATUS,
    SERIES_SUMMARY, entry_key, id_prefix, id_run_table, split_entry_key,
};

/// A series and its stored summary, when one is held and fresh.
pub type SeriesSummary = (EntryId, Option<Vec<u8>>);

/// A series' stored status view and what to check it against
/// ([`Store::series_status`]).
#[derive(Debug, Clone)]
pub struct SeriesStatus {
    /// The summary generation, for [`Store::put_series_status`].
    pub generation: u64,
    /// The current identity digest (see [`tables::IDENTITY_DIGEST`]).
    pub identity_digest: [u8; 40],
    /// The stored view, if one is held: computed from the series' current entries.
    pub view: Option<Vec<u8>>,
}

/// Smallest [`Store::append_local`] batch signed on a second thread.
pub const PIPELINE_MIN: usize = 64;

/// Chunks of signed entries in flight between the signing thread and the writer.
pub const PIPELINE_DEPTH: usize = 16;

/// Signed entries handed from the signing thread to the writer at a time
/// (fewer, larger hand-offs: each one may cost a context switch).
pub const PIPELINE_CHUNK: usize = 32;

/// Builds the next entries of a local feed: knows the head, and the ids that
/// lipmaa links need (stored ones looked up beforehand, new ones as made).
struct LocalChain<'k> {
    key: &'k SecretKey,
    head: Option<Head>,
    first_new: u64,
    earlier: HashMap<u64, EntryId>,
    batch_ids: Vec<EntryId>,
    now_ms: u64,
}

impl LocalChain<'_> {
    fn next(&mut self, payload_type: &str, payload: Vec<u8>) -> Result<Entry, EntryError> {
        let seq = self.head.map_or(1, |h| h.seq + 1);
        let target = if has_distinct_lipmaa(seq) {
            let t = lipmaa(seq);
            if t >= self.first_new {
                usize::try_from(t - self.first_new)
                    .ok()
                    .and_then(|i| self.batch_ids.get(i))
                    .copied()
            } else {
                self.earlier.get(&t).copied()
            }
        } else {
            None
        };
        let e = create_entry(
            self.key,
            self.head.as_ref(),
            target,
            self.now_ms,
            payload_type,
            payload,
        )?;
        self.head = Some(Head::of(&e.signed));
        self.batch_ids.push(e.signed.id());
        Ok(e)
    }
}

/// Appends entries to one's own feed inside [`Store::append_local_with`].
pub struct LocalAppender<'w, 't> {
    w: &'w mut Writer<'t>,
    chain: LocalChain<'w>,
    last: Option<SignedHeader>,
}

impl std::fmt::Debug for LocalAppender<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAppender")
            .field("head", &self.chain.head)
            .finish_non_exhaustive()
    }
}

impl LocalAppender<'_, '_> {
    /// Signs and stores the next entry (visible to the rest of the
    /// transaction; committed when the closure returns `Ok`).
    pub fn append(&mut self, payload_type: &str, payload: Vec<u8>) -> Result<Entry, StoreError> {
        let seq = self.chain.head.map_or(1, |h| h.seq + 1);
        let t = lipmaa(seq);
        if has_distinct_lipmaa(seq)
            && t < self.chain.first_new
            && !self.chain.earlier.contains_key(&t)
        {
            let author = self.chain.key.public();
            let found = linked_stored_ids(
                &self.w.entries,
                &author,
                self.chain.first_new - 1,
                std::iter::once(seq),
            )?;
            self.chain.earlier.extend(found);
        }
        let e = self.chain.next(payload_type, payload)?;
        self.w.put_entry(&e.signed, e.payload.as_deref())?;
        self.last = Some(e.signed.clone());
        Ok(e)
    }
}

/// One feed's part of an ingest: the run of new entries to verify and write.
struct FeedJob {
    author: PublicKey,
    seed: [u8; 32],
    meta: Option<FeedMeta>,
    head_seq: u64,
    /// Entries above the stored head, in sequence order.
    new: Vec<Entry>,
    /// How many of `new` follow the head without a gap.
    run_len: usize,
    /// Stored entries the run links to (previous and lipmaa links).
    earlier: HashMap<u64, EntryId>,
}

impl FeedJob {
    fn signed(&self) -> &[Entry] {
        self.new.get(..self.run_len).unwrap_or_default()
    }

    /// Verifies the run chunk by chunk, calling `verified(from, to)` for
    /// each verified range (stopping early when it returns false). The
    /// head after, or the index of the first invalid entry and why.
    fn verify(
        &self,
        now_ms: u64,
        known: &VerifiedIds,
        mut verified: impl FnMut(usize, usize) -> bool,
    ) -> Result<Option<Head>, (usize, tagline_format::FeedError)> {
        let signed = self.signed();
        let head_seq = self.head_seq;
        let mut head = self.meta.map(|m| m.head);
        let mut lookup = |t: u64| -> Option<EntryId> {
            if t > head_seq {
                usize::try_from(t - head_seq - 1)
                    .ok()
                    .and_then(|i| signed.get(i))
                    .map(|e| e.signed.id())
            } else {
                self.earlier.get(&t).copied()
            }
        };
        let mut start = 0usize;
        for (c, chunk) in signed.chunks(VERIFY_CHUNK).enumerate() {
            let chunk_seed = derive_seed(&self.seed, c as u64 + 1);
            match tagline_format::verify_run_with(
                &self.author,
                head,
                chunk,
                &mut lookup,
                now_ms,
                chunk_seed,
                Some(known),
            ) {
                Ok(h) => head = h,
                Err((i, err)) => {
                    verified(start, start + i);
                    return Err((start + i, err));
                }
            }
            if !verified(start, start + chunk.len()) {
                break;
            }
            start += chunk.len();
        }
        Ok(head)
    }
}

/// Entries verified per batch-verification call: per hand-off from the
/// verification thread to the writer in [`Store::ingest`], and per chunk in
/// [`Store::verify_all`].
pub const VERIFY_CHUNK: usize = 1024;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// Most entries returned by one [`Store::range`] call.
pub const MAX_RANGE: u64 = 100_000;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {dir} is in use by another tagline process (its store is locked); stop that process or use another --home"
    )]
    Locked { dir: PathBuf },
    #[error("cannot open the store in {dir}: {source}")]
    Open {
        dir: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("cannot create the data directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "store schema version {found} is not supported (this build reads version {SCHEMA_VERSION})"
    )]
    Schema { found: u32 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("feed {author} is forked at seq {seq}: nothing more is appended to it")]
    Forked { author: PublicKey, seq: u64 },
    #[error("cannot create the entry: {0}")]
    Create(#[from] EntryError),
    #[error("refused the whole batch: {0}")]
    Rejected(Box<Rejection>),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Storage(e.to_string()) }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the store knows of one feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedMeta {
    pub author: PublicKey,
    pub head: Head,
    /// Sequence number at which a fork was proven, if any.
    pub forked_at: Option<u64>,
    /// Highest sequence number confirmed as this feed's true head by another
    /// copy (used by restore safety; 0 when unknown).
    pub confirmed_seq: u64,
}

impl FeedMeta {
    fn encode(&self) -> [u8; FEED_META_LEN] {
        let mut v = [0u8; FEED_META_LEN];
        let parts: [&[u8]; 5] = [
            &self.head.seq.to_be_bytes(),
            &self.head.id.0,
            &self.head.timestamp.to_be_bytes(),
            &self.forked_at.unwrap_or(0).to_be_bytes(),
            &self.confirmed_seq.to_be_bytes(),
        ];
        let mut pos = 0;
        for p in parts {
            if let Some(dst) = v.get_mut(pos..pos + p.len()) {
                dst.copy_from_slice(p);
            }
            pos += p.len();
        }
        v
    }

    fn decode(author: &[u8; 32], v: &[u8; FEED_META_LEN]) -> Result<FeedMeta, StoreError> {
        let author = PublicKey::from_bytes(author)
            .map_err(|e| StoreError::Corrupt(format!("feed key: {e}")))?;
        let u = |at: usize| -> u64 {
            let mut b = [0u8; 8];
            b.copy_from_slice(v.get(at..at + 8).unwrap_or(&[0; 8]));
            u64::from_be_bytes(b)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(v.get(8..40).unwrap_or(&[0; 32]));
        let forked = u(48);
        Ok(FeedMeta {
            author,
            head: Head {
                seq: u(0),
                id: EntryId(id),
                timestamp: u(40),
            },
            forked_at: (forked != 0).then_some(forked),
            confirmed_seq: u(56),
        })
    }
}

/// A stored entry as bytes ([`Store::range_bytes`]): the signed header as
/// received, and the payload if held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub signed: Vec<u8>,
    pub payload: Option<Vec<u8>>,
}

/// A stored entry: the signed header as received, and the payload if held.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub signed: SignedHeader,
    pub payload: Option<Vec<u8>>,
}

/// Why one received entry was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed {author}, seq {seq}: {reason}")]
pub struct Rejection {
    pub author: PublicKey,
    pub seq: u64,
    pub reason: RejectReason,
}

/// The reasons behind a [`Rejection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("the feed is forked at seq {0}; nothing past the fork point is accepted")]
    Forked(u64),
    #[error("this entry and the stored one at the same seq prove a fork")]
    ForkDetected,
}

impl RejectReason {
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Feed(e) => e.code(),
            RejectReason::Entry(e) => e.code(),
            RejectReason::Forked(_) => "forked",
            RejectReason::ForkDetected => "fork",
        }
    }
}

/// The outcome of [`Store::ingest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Entries newly stored.
    pub appended: u64,
    /// Entries already stored (same id), ignored.
    pub duplicates: u64,
    /// Payloads newly stored for headers already held.
    pub payloads_added: u64,
    /// Entries refused, with the reason; later entries of the same feed in the
    /// batch are not counted separately.
    pub rejected: Vec<Rejection>,
    /// Fork proofs newly recorded.
    pub forks: Vec<ForkProof>,
}

/// Whether an ingest keeps the valid part of a batch or refuses it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Store every valid entry; report the rest.
    BestEffort,
    /// Store nothing unless every entry is valid or a duplicate.
    AllOrNothing,
}

/// The result of [`Store::verify_all`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub feeds: u64,
    pub entries: u64,
    pub payloads_checked: u64,
    pub payloads_missing: u64,
    pub problems: Vec<String>,
}

/// Memory redb may use to cache pages of the store (its default is 1 GiB,
/// which a long-running node would fill with a large store). Reads beyond
/// it come from the OS page cache.
pub const STORE_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The store. Cheap to share by reference; redb serialises writers.
#[derive(Debug)]
pub struct Store {
    db: Database,
    dir: PathBuf,
    /// When ids go to runs and when runs are merged ([`ID_RUN_LEVELS`]).
    id_runs: IdRuns,
}

/// A write transaction that indexes at least this many ids writes them as
/// one run ([`ID_RUN_LEVELS`]), appended in key order; fewer go straight into
/// [`ID_INDEX`] (a few random inserts cost less than one more run for
/// every lookup to probe).
pub const ID_RUN_MIN: usize = 256;

/// Runs of one level ([`ID_RUN_LEVELS`]) that are merged into one run of the next
/// level. A lookup by id probes every run, at most `ID_RUN_FANIN - 1` per
/// level (17 runs at most after the sync benchmark's 250 writes of 4,000
/// ids); each id is rewritten once per level it climbs.
pub const ID_RUN_FANIN: usize = 8;

/// Ids a write transaction holds before writing them as a run: a large
/// import writes runs as it goes (overlapping the verification of what
/// follows) and holds at most this many in memory (about 90 bytes each).
pub const ID_RUN_MAX: usize = 1 << 16;

/// [`ID_RUN_MIN`], [`ID_RUN_FANIN`] and [`ID_RUN_MAX`], which tests lower.
#[derive(Debug, Clone, Copy)]
struct IdRuns {
    min: usize,
    fanin: usize,
    max: usize,
}

impl Default for IdRuns {
    fn default() -> Self {
        IdRuns {
            min: ID_RUN_MIN,
            fanin: ID_RUN_FANIN,
            max: ID_RUN_MAX,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. A second process opening
    /// the same directory gets [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db = match Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(&path)
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(source) => {
                return Err(StoreError::Open {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        let store = Store {
            db,
            dir: dir.to_owned(),
            id_runs: IdRuns::default(),
        };
        store.init_schema()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        let reindex;
        {
            let mut meta = tx.open_table(META)?;
            // (`meta` is dropped before the writer's tables open: they include META.)
            let version = |key: &str| -> Result<Option<u32>, StoreError> {
                Ok(meta.get(key)?.map(|v| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(v.value().get(..4).unwrap_or(&[0; 4]));
                    u32::from_be_bytes(b)
                }))
            };
            let (schema, indexes) = (version("schema")?, version("indexes")?);
            match schema {
                None => {
                    meta.insert("schema", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
                Some(SCHEMA_VERSION) => {}
                // Version 1 lacked ENTRY_PAYLOADS (created below); its
                // payloads stay where readers still look.
                Some(1) => {
                    meta.insert("schema", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
                Some(found) => return Err(StoreError::Schema { found }),
            }
            // A new store has nothing to index; an existing one whose derived
            // tables are of another version is re-indexed below.
            reindex = schema.is_some() && indexes != Some(INDEX_VERSION);
            if schema.is_none() {
                meta.insert("indexes", INDEX_VERSION.to_be_bytes().as_slice())?;
            }
            drop(meta);
            Writer::open(&tx, IdRuns::default())?;
            tx.open_table(IDENTITY_CACHE)?;
            tx.open_table(IDENTITY_PARTS)?;
            tx.open_table(KEY_OWNERS)?;
        }
        tx.commit()?;
        if reindex {
            self.rebuild_indexes()?;
        }
        Ok(())
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// What the store knows of `author`'s feed.
    pub fn feed(&self, author: &PublicKey) -> Result<Option<FeedMeta>, StoreError> {
        let tx = self.read()?;
        read_meta(&tx.open_table(FEEDS)?, author)
    }

    /// Every known feed, in key order.
    pub fn feeds(&self) -> Result<Vec<FeedMeta>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(FEEDS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(FeedMeta::decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Number of stored entries (all feeds).
    pub fn entry_count(&self) -> Result<u64, StoreError> {
        let tx = self.read()?;
        Ok(tx.open_table(ENTRIES)?.len()?)
    }

    /// Entries `from..=to` of a feed (at most [`MAX_RANGE`]), with payloads.
    pub fn range(
        &self,
        author: &PublicKey,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.range_rows(author, from, to, |payloads, pos, row| {
            payloads.load(pos, row)
        })
    }

    /// [`Store::range`] as stored, for serving to peers: each entry's signed
    /// header bytes and its payload, if held, without decoding the header
    /// again (it was validated when stored; the receiver validates it
    /// anyway). Only an entry whose payload is not kept beside it has its
    /// header decoded, to look the payload up by hash.
    pub fn range_bytes(
        &self,
        author: &PublicKey,
        from: u64,
        to: u64,
    ) -> Result<Vec<RawEntry>, StoreError> {
        self.range_rows(author, from, to, |payloads, pos, row| {
            let payload = held_payload(&payloads.by_pos, &payloads.by_hash, pos, || {
                Ok(decode_stored(row)?.header().payload_hash)
            })?;
            Ok(RawEntry {
                signed: row.get(32..).unwrap_or_default().to_vec(),
                payload,
            })
        })
    }

    /// `f` of each [`ENTRIES`] row `from..=to` of a feed (at most
    /// [`MAX_RANGE`]): the payload tables, its position and its value.
    fn range_rows<T>(
        &self,
        author: &PublicKey,
        from: u64,
        to: u64,
        mut f: impl FnMut(&PayloadTables, &[u8; 40], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let to = to.min(from.saturating_add(MAX_RANGE - 1));
        let tx = self.read()?;
        let entries = tx.open_table(ENTRIES)?;
        let payloads = PayloadTables::open(&tx)?;
        let lo = entry_key(author.as_bytes(), from);
        let hi = entry_key(author.as_bytes(), to);
        let mut out = Vec::new();
        for row in entries.range::<&[u8; 40]>(&lo..=&hi)? {
            let (k, v) = row?;
            out.push(f(&payloads, k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The entry with this id, if stored.
    /// Looks in `ID_INDEX`, then in the id runs from the largest (highest
    /// level) down, opening each only when the ones before did not hold the
    /// id, then in `ID_OVERFLOW`.
    pub fn get(&self, id: &EntryId) -> Result<Option<StoredEntry>, StoreError> {
        let tx = self.read()?;
        let entries = tx.open_table(ENTRIES)?;
        let mut runs = run_list(&tx.open_table(ID_RUN_LEVELS)?)?;
        runs.sort_by_key(|(run, level)| std::cmp::Reverse((*level, *run)));
        let runs = runs.into_iter().map(|(run, _)| {
            Ok::<IdRun, StoreError>(tx.open_table(IdRunTable::new(&id_run_table(run)))?)
        });
        // The row of the first position that holds the id, read once.
        let mut row = None;
        let holds_id = |pos: &[u8; 40]| -> Result<bool, StoreError> {
            row = entries
                .get(pos)?
                .filter(|v| stored_id(v.value()) == Some(*id))
                .map(|v| v.value().to_vec());
            Ok(row.is_some())
        };
        let index = tx.open_table(ID_INDEX)?;
        let overflow = tx.open_table(ID_OVERFLOW)?;
        let Some(pos) = find_id(&index, &overflow, runs, id, holds_id)? else {
            return Ok(None);
        };
        match row {
            Some(v) => Ok(Some(PayloadTables::open(&tx)?.load(&pos, &v)?)),
            None => Ok(None),
        }
    }

    /// Every stored entry of an identity payload type, with payloads.
    pub fn identity_entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        self.indexed_entries(IDENTITY_ENTRIES)
    }

    /// Every stored entry of a review payload type, with payloads.
    pub fn review_entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        self.indexed_entries(REVIEW_ENTRIES)
    }

    fn indexed_entries(
        &self,
        table: redb::TableDefinition<&[u8; 40], ()>,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let tx = self.read()?;
        let index = tx.open_table(table)?;
        let entries = tx.open_table(ENTRIES)?;
        let payloads = PayloadTables::open(&tx)?;
        let mut out = Vec::new();
        for row in index.iter()? {
            let pos = *row?.0.value();
            if let Some(v) = entries.get(&pos)? {
                out.push(payloads.load(&pos, v.value())?);
            }
        }
        Ok(out)
    }

    /// Review-model entries that point at `target` (see [`tables::REVIEW_REFS`]).
    pub fn entries_referencing(&self, target: &EntryId) -> Result<Vec<StoredEntry>, StoreError> {
        let tx = self.read()?;
        let refs = tx.open_table(REVIEW_REFS)?;
        let entries = tx.open_table(ENTRIES)?;
        let payloads = PayloadTables::open(&tx)?;
        let (lo, hi) = keys_of(&target.0);
        let mut out = Vec::new();
        for row in refs.range::<&[u8; 72]>(&lo..=&hi)? {
            let pos = pos_in(row?.0.value());
            if let Some(v) = entries.get(&pos)? {
                out.push(payloads.load(&pos, v.value())?);
            }
        }
        Ok(out)
    }

    /// Every series (first revision id) this store holds.
    pub fn series_ids(&self) -> Result<Vec<EntryId>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SERIES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, _) = row?;
            out.push(EntryId(*k.value()));
        }
        Ok(out)
    }

    /// Up to `limit` series whose ids lie in `lo..=hi` (an id prefix's range:
    /// `EntryId::prefix_range`), in id order.
    pub fn series_in_range(
        &self,
        lo: &[u8; 32],
        hi: &[u8; 32],
        limit: usize,
    ) -> Result<Vec<EntryId>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SERIES)?;
        let mut out = Vec::new();
        for row in t.range::<&[u8; 32]>(lo..=hi)?.take(limit) {
            out.push(EntryId(*row?.0.value()));
        }
        Ok(out)
    }

    /// All review-model entries of one series: its revisions, and what points at
    /// the series or at any of its revisions. Reads the index, never the log.
    pub fn series_entries(&self, series: &EntryId) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = self.entries_referencing(series)?;
        let revisions: Vec<EntryId> = out
            .iter()
            .filter(|e| e.signed.header().payload_type == tagline_format::review::REVISION_TYPE)
            .map(|e| e.signed.id())
            .collect();
        for r in revisions {
            if r != *series {
                out.extend(self.entries_referencing(&r)?);
            }
        }
        out.sort_by_key(|e| e.signed.id());
        out.dedup_by_key(|e| e.signed.id());
        Ok(out)
    }

    /// Every series with its stored summary, if one is held and still fresh
    /// (see [`tables::SERIES_SUMMARY`]): the series' entries have not changed
    /// since it was written.
    /// Also the summary generation to pass to [`Store::put_series_summaries`].
    pub fn series_summaries(&self) -> Result<(u64, Vec<SeriesSummary>), StoreError> {
        let tx = self.read()?;
        let generation = read_generation(&tx.open_table(META)?)?;
        let series = tx.open_table(SERIES)?;
        let summaries = tx.open_table(SERIES_SUMMARY)?;
        let mut out = Vec::new();
        for row in series.iter()? {
            let (k, _) = row?;
            let id = *k.value();
            let s = summaries.get(&id)?.map(|v| v.value().to_vec());
            out.push((EntryId(id), s));
        }
        Ok((generation, out))
    }

    /// Stores summaries of series computed from what the store held at
    /// summary generation `generation` (from [`Store::series_summaries`]), in
    /// one transaction (see [`tables::SERIES_SUMMARY`]). When a review entry
    /// was indexed since, nothing is stored (they may be stale) and `false`
    /// is returned: the next reader computes them again.
    pub fn put_series_summaries(
        &self,
        generation: u64,
        rows: &[(EntryId, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        self.put_series_rows(
            SERIES_SUMMARY,
            generation,
            rows.iter().map(|(id, b)| (id, b.as_slice())),
        )
    }

    /// Writes rows of a per-series table that the store keeps as
    /// [`tables::SERIES_SUMMARY`] (dropped when the series' entries change),
    /// in one transaction, unless an entry was indexed since summary
    /// generation `generation` (then `false`: they may be stale).
    fn put_series_rows<'r>(
        &self,
        table: redb::TableDefinition<&[u8; 32], &[u8]>,
        generation: u64,
        rows: impl IntoIterator<Item = (&'r EntryId, &'r [u8])>,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        {
            if read_generation(&tx.open_table(META)?)? != generation {
                return Ok(false);
            }
            let mut t = tx.open_table(table)?;
            for (id, bytes) in rows {
                t.insert(&id.0, bytes)?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// A series' stored status view (see [`tables::SERIES_STATUS`]), if one
    /// is held: present means computed from the series' current entries.
    /// Also the summary generation to pass to [`Store::put_series_status`]
    /// and the identity digest, read in the same transaction.
    pub fn series_status(&self, series: &EntryId) -> Result<SeriesStatus, StoreError> {
        let tx = self.read()?;
        Ok(SeriesStatus {
            generation: read_generation(&tx.open_table(META)?)?,
            identity_digest: read_digest(&tx.open_table(IDENTITY_DIGEST)?)?,
            view: tx
                .open_table(SERIES_STATUS)?
                .get(&series.0)?
                .map(|v| v.value().to_vec()),
        })
    }

    /// Stores a series' status view computed from what the store held at
    /// summary generation `generation` (from [`Store::series_status`]).
    /// Nothing is stored, and `false` returned, when a review entry was
    /// indexed since.
    pub fn put_series_status(
        &self,
        generation: u64,
        series: &EntryId,
        view: &[u8],
    ) -> Result<bool, StoreError> {
        self.put_series_rows(SERIES_STATUS, generation, [(series, view)])
    }

    /// A mark of the review entries pointing at `target` (a hash of their
    /// index rows): it changes when one is added, and reading it touches
    /// the index only. A project's amendments are the entries pointing at
    /// its declaration, so a view recording this mark knows whether the
    /// declaration in force may have changed.
    pub fn references_mark(&self, target: &EntryId) -> Result<[u8; 32], StoreError> {
        let tx = self.read()?;
        let refs = tx.open_table(REVIEW_REFS)?;
        let (lo, hi) = keys_of(&target.0);
        let mut h = blake3::Hasher::new();
        for row in refs.range::<&[u8; 72]>(&lo..=&hi)? {
            h.update(row?.0.value());
        }
        Ok(*h.finalize().as_bytes())
    }

    /// A cheap mark of the review index: the number of review entries and
    /// the summary generation (bumped when an entry that points at a series,
    /// revision or project is indexed). It changes whenever a review entry
    /// is stored, so what was computed from the review entries under an
    /// equal mark is still current.
    pub fn review_mark(&self) -> Result<(u64, u64), StoreError> {
        let tx = self.read()?;
        let n = tx.open_table(REVIEW_ENTRIES)?.len()?;
        let generation = read_generation(&tx.open_table(META)?)?;
        Ok((n, generation))
    }

    /// The current identity digest (see [`tables::IDENTITY_DIGEST`]).
    pub fn identity_digest(&self) -> Result<[u8; 40], StoreError> {
        read_digest(&self.read()?.open_table(IDENTITY_DIGEST)?)
    }

    /// The cached identity resolution, if it was made from the current inputs.
    pub fn identity_cache(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.read()?;
        let digest = read_digest(&tx.open_table(IDENTITY_DIGEST)?)?;
        let cached = tx
            .open_table(IDENTITY_CACHE)?
            .get(CACHE_KEY)?
            .map(|v| v.value().to_vec());
        Ok(cached
            .filter(|c| c.get(..40) == Some(digest.as_slice()))
            .map(|c| c.get(40..).unwrap_or_default().to_vec()))
    }

    /// Stores an identity resolution made from the inputs with `digest`.
    pub fn put_identity_cache(&self, digest: &[u8; 40], encoded: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(IDENTITY_CACHE)?;
            let mut v = Vec::with_capacity(40 + encoded.len());
            v.extend_from_slice(digest);
            v.extend_from_slice(encoded);
            t.insert(CACHE_KEY, v.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the per-identity cache (see [`tables::IDENTITY_PARTS`]): parts
    /// made from the inputs with `digest`, the keys' owners, and the
    /// identities every reader loads.
    pub fn put_identity_parts(
        &self,
        digest: &[u8; 40],
        always: &[[u8; 32]],
        parts: &[([u8; 32], Vec<u8>)],
        owners: &[([u8; 32], [u8; 32])],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            tx.delete_table(IDENTITY_PARTS)?;
            tx.delete_table(KEY_OWNERS)?;
            let mut t = tx.open_table(IDENTITY_PARTS)?;
            for (id, bytes) in parts {
                t.insert(id, bytes.as_slice())?;
            }
            let mut o = tx.open_table(KEY_OWNERS)?;
            for (k, id) in owners {
                o.insert(k, id)?;
            }
            let mut v = Vec::with_capacity(40 + 32 * always.len());
            v.extend_from_slice(digest);
            for id in always {
                v.extend_from_slice(id);
            }
            tx.open_table(IDENTITY_CACHE)?
                .insert(PARTS_KEY, v.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The cached parts for the owners of `keys`, the identities `ids` and
    /// the always-loaded identities, each once; `None` when the parts were
    /// not made from the current identity inputs (or were never made).
    /// Unknown keys and identities are skipped.
    pub fn identity_parts(
        &self,
        keys: &[[u8; 32]],
        ids: &[[u8; 32]],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let tx = self.read()?;
        let digest = read_digest(&tx.open_table(IDENTITY_DIGEST)?)?;
        let head = tx
            .open_table(IDENTITY_CACHE)?
            .get(PARTS_KEY)?
            .map(|v| v.value().to_vec());
        let Some(head) = head.filter(|h| h.get(..40) == Some(digest.as_slice())) else {
            return Ok(None);
        };
        let mut wanted: std::collections::BTreeSet<[u8; 32]> = ids.iter().copied().collect();
        for chunk in head.get(40..).unwrap_or_default().chunks_exact(32) {
            let mut id = [0u8; 32];
            id.copy_from_slice(chunk);
            wanted.insert(id);
        }
        let owners = tx.open_table(KEY_OWNERS)?;
        for k in keys {
            if let Some(id) = owners.get(k)? {
                wanted.insert(*id.value());
            }
        }
        let parts = tx.open_table(IDENTITY_PARTS)?;
        let mut out = Vec::with_capacity(wanted.len());
        for id in &wanted {
            if let Some(v) = parts.get(id)? {
                out.push(v.value().to_vec());
            }
        }
        Ok(Some(out))
    }

    /// Every recorded fork proof.
    pub fn fork_proofs(&self) -> Result<Vec<ForkProof>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(FORKS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(ForkProof::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Signs and appends entries to `key`'s own feed, all in one transaction.
    /// `now_ms` is the author's clock. Returns the new entries. Batches of at
    /// least [`PIPELINE_MIN`] entries are signed on a second thread while this
    /// one writes (signing a chain is sequential; storing overlaps with it).
    pub fn append_local(
        &self,
        key: &SecretKey,
        items: Vec<(String, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let author = key.public();
        let tx = self.db.begin_write()?;
        let out;
        {
            let mut w = Writer::open(&tx, self.id_runs)?;
            let meta = read_meta(&w.feeds, &author)?;
            if let Some(seq) = meta.and_then(|m| m.forked_at) {
                return Err(StoreError::Forked { author, seq });
            }
            let head = meta.map(|m| m.head);
            let first_new = head.map_or(1, |h| h.seq + 1);
            let earlier = linked_stored_ids(
                &w.entries,
                &author,
                first_new - 1,
                first_new..first_new + items.len() as u64,
            )?;
            let mut chain = LocalChain {
                key,
                head,
                first_new,
                earlier,
                batch_ids: Vec::with_capacity(items.len()),
                now_ms,
            };
            let mut store_one = |e: &Entry| w.put_entry(&e.signed, e.payload.as_deref());
            out = if items.len() < PIPELINE_MIN {
                let mut out = Vec::with_capacity(items.len());
                for (t, p) in items {
                    let e = chain.next(&t, p)?;
                    store_one(&e)?;
                    out.push(e);
                }
                out
            } else {
                std::thread::scope(|scope| -> Result<Vec<Entry>, StoreError> {
                    let n = items.len();
                    let (send, recv) = std::sync::mpsc::sync_channel::<
                        Result<Vec<Entry>, EntryError>,
                    >(PIPELINE_DEPTH);
                    scope.spawn(move || {
                        let mut chunk = Vec::with_capacity(PIPELINE_CHUNK);
                        for (t, p) in items {
                            match chain.next(&t, p) {
                                Ok(e) => chunk.push(e),
                                Err(err) => {
                                    let _ = send.send(Err(err));
                                    return;
                                }
                            }
                            if chunk.len() == PIPELINE_CHUNK
                                && send
                                    .send(Ok(std::mem::replace(
                                        &mut chunk,
                                        Vec::with_capacity(PIPELINE_CHUNK),
                                    )))
                                    .is_err()
                            {
                                return;
                            }
                        }
                        let _ = send.send(Ok(chunk));
                    });
                    let mut out = Vec::with_capacity(n);
                    for r in recv {
                        for e in r? {
                            store_one(&e)?;
                            out.push(e);
                        }
                    }
                    Ok(out)
                })?
            };
            if let Some(last) = out.last() {
                w.set_head(meta, &last.signed)?;
            }
            w.write_ids()?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Appends to `key`'s own feed from inside `f`, in one transaction: `f`
    /// gets a [`LocalAppender`] whose `append` signs and stores the next
    /// entry and returns it, so that later entries can name earlier ones
    /// (an email bridge's revision names the series' first revision). When
    /// `f` fails nothing is stored. Returns `f`'s value and the new head.
    pub fn append_local_with<T, E: From<StoreError>>(
        &self,
        key: &SecretKey,
        now_ms: u64,
        f: impl FnOnce(&mut LocalAppender<'_, '_>) -> Result<T, E>,
    ) -> Result<(T, Option<Head>), E> {
        let author = key.public();
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let (value, head) = {
            let mut w = Writer::open(&tx, self.id_runs)?;
            let meta = read_meta(&w.feeds, &author)?;
            if let Some(seq) = meta.and_then(|m| m.forked_at) {
                return Err(StoreError::Forked { author, seq }.into());
            }
            let head = meta.map(|m| m.head);
            let mut appender = LocalAppender {
                w: &mut w,
                chain: LocalChain {
                    key,
                    head,
                    first_new: head.map_or(1, |h| h.seq + 1),
                    earlier: HashMap::new(),
                    batch_ids: Vec::new(),
                    now_ms,
                },
                last: None,
            };
            let value = f(&mut appender)?;
            let last = appender.last.take();
            if let Some(last) = &last {
                w.set_head(meta, last)?;
            }
            w.write_ids()?;
            (value, last.map(|l| Head::of(&l)))
        };
        tx.commit().map_err(StoreError::from)?;
        Ok((value, head))
    }

    /// Stores received entries (any feeds, any order) after full validation:
    /// canonical form, signatures (batched), chains, lipmaa links, timestamps
    /// against `now_ms`, payloads against their headers. All in one write
    /// transaction. `seed` is fresh randomness for batch verification.
    pub fn ingest(
        &self,
        batch: Vec<Entry>,
        now_ms: u64,
        seed: [u8; 32],
        mode: IngestMode,
    ) -> Result<IngestReport, StoreError> {
        self.ingest_verified(batch, &VerifiedIds::default(), now_ms, seed, mode)
    }

    /// [`Store::ingest`] of entries whose signatures were verified
    /// beforehand, outside any transaction (`tagline_format::check_signatures`,
    /// which alone makes a [`VerifiedIds`]): a receiver verifies the next
    /// batch while this one is written. Signatures it does not list are
    /// verified here; every other check is made as in [`Store::ingest`].
    pub fn ingest_verified(
        &self,
        batch: Vec<Entry>,
        verified: &VerifiedIds,
        now_ms: u64,
        seed: [u8; 32],
        mode: IngestMode,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        // Group per feed, in sequence order; identical duplicates collapse.
        let mut per_feed: BTreeMap<PublicKey, Vec<Entry>> = BTreeMap::new();
        for e in batch {
            per_feed.entry(*e.signed.author()).or_default().push(e);
        }
        let tx = self.db.begin_write()?;
        {
            let mut w = Writer::open(&tx, self.id_runs)?;
            let mut feed_no = 0u64;
            let mut jobs: Vec<FeedJob> = Vec::with_capacity(per_feed.len());
            for (author, mut list) in per_feed {
                feed_no += 1;
                list.sort_by_key(|e| e.signed.seq());
                list.dedup_by(|a, b| a.signed.id() == b.signed.id());
                let meta = read_meta(&w.feeds, &author)?;
                let head_seq = meta.map_or(0, |m| m.head.seq);
                // Entries at or below the head: duplicates, late payloads, or forks.
                let (old, new): (Vec<Entry>, Vec<Entry>) =
                    list.into_iter().partition(|e| e.signed.seq() <= head_seq);
                let mut forked_at = meta.and_then(|m| m.forked_at);
                for e in old {
                    let key = entry_key(author.as_bytes(), e.signed.seq());
                    let stored = w.entries.get(&key)?.map(|v| v.value().to_vec());
                    match stored {
                        Some(v) if v.get(..32) == Some(e.signed.id().0.as_slice()) => {
                            report.duplicates += 1;
                            // A late payload: the indexes that wait for it catch up.
                            if let Some(p) = &e.payload
                                && !w.has_payload(&key, &e.signed.header().payload_hash)?
                                && check_payload(e.signed.header(), p).is_ok()
                            {
                                w.add_payload(&key, &e.signed.header().payload_hash, p)?;
                                report.payloads_added += 1;
                            }
                        }
                        Some(v) => {
                            let mine = decode_stored(&v)?;
                            match ForkProof::new(mine, e.signed.clone()) {
                                Ok(proof) => {
                                    let seq = e.signed.seq();
                                    if w.forks.get(&key)?.is_none() {
                                        w.forks.insert(&key, proof.encode().as_slice())?;
                                        report.forks.push(proof);
                                    }
                                    forked_at = Some(forked_at.map_or(seq, |f| f.min(seq)));
                                    report.rejected.push(Rejection {
                                        author,
                                        seq,
                                        reason: RejectReason::ForkDetected,
                                    });
                                }
                                // A header that does not verify proves nothing.
                                Err(tagline_format::ForkProofError::Entry(err)) => {
                                    report.rejected.push(Rejection {
                                        author,
                                        seq: e.signed.seq(),
                                        reason: err.into(),
                                    });
                                }
                                // Same author and seq by construction, ids differ
                                // by the match above: only a stored row that does
                                // not match its key gets here.
                                Err(other) => {
                                    return Err(StoreError::Corrupt(format!(
                                        "feed {author}, entry {}: {other}",
                                        e.signed.seq()
                                    )));
                                }
                            }
                        }
                        None => {
                            return Err(StoreError::Corrupt(format!(
                                "feed {author} has head {head_seq} but no entry {}",
                                e.signed.seq()
                            )));
                        }
                    }
                }
                if let Some(f) = forked_at {
                    if let Some(first) = new.first() {
                        report.rejected.push(Rejection {
                            author,
                            seq: first.signed.seq(),
                            reason: RejectReason::Forked(f),
                        });
                    }
                    if let Some(mut m) = meta {
                        m.forked_at = Some(f);
                        w.feeds.insert(author.as_bytes(), &m.encode())?;
                    }
                    continue;
                }
                if new.is_empty() {
                    continue;
                }
                // Only a contiguous run from head + 1 can be appended.
                let run_len = new
                    .iter()
                    .enumerate()
                    .take_while(|(i, e)| e.signed.seq() == head_seq + 1 + *i as u64)
                    .count();
                let earlier = linked_stored_ids(
                    &w.entries,
                    &author,
                    head_seq,
                    new.iter().take(run_len).map(|e| e.signed.seq()),
                )?;
                jobs.push(FeedJob {
                    author,
                    seed: derive_seed(&seed, feed_no),
                    meta,
                    head_seq,
                    new,
                    run_len,
                    earlier,
                });
            }
            // Verify on a second thread, feed after feed and chunk by chunk;
            // write each verified chunk here meanwhile (and check its
            // payloads), so verifying one feed overlaps writing the one before.
            let jobs = &jobs;
            let (results, accepted, payload_errs) =
                std::thread::scope(|scope| -> Result<_, StoreError> {
                    let (send, recv) =
                        std::sync::mpsc::sync_channel::<(usize, usize, usize)>(PIPELINE_DEPTH);
                    let verifier = scope.spawn(move || {
                        let mut results = Vec::with_capacity(jobs.len());
                        for (j, job) in jobs.iter().enumerate() {
                            let r = job.verify(now_ms, verified, |from, to| {
                                send.send((j, from, to)).is_ok()
                            });
                            results.push(r);
                        }
                        results
                    });
                    let mut accepted = vec![0usize; jobs.len()];
                    let mut payload_errs: Vec<Option<Rejection>> = vec![None; jobs.len()];
                    for (j, from, to) in recv {
                        let (Some(job), Some(n), Some(perr)) =
                            (jobs.get(j), accepted.get_mut(j), payload_errs.get_mut(j))
                        else {
                            continue;
                        };
                        if perr.is_some() {
                            continue;
                        }
                        for e in job.signed().get(from..to).unwrap_or_default() {
                            if let Some(p) = &e.payload
                                && let Err(err) = check_payload(e.signed.header(), p)
                            {
                                *perr = Some(Rejection {
                                    author: job.author,
                                    seq: e.signed.seq(),
                                    reason: err.into(),
                                });
                                break;
                            }
                            w.put_entry(&e.signed, e.payload.as_deref())?;
                            *n += 1;
                        }
                    }
                    let results = verifier.join().map_err(|_| {
                        StoreError::Storage("the verification thread panicked".into())
                    })?;
                    Ok((results, accepted, payload_errs))
                })?;
            for (((job, result), accepted), payload_err) in
                jobs.iter().zip(results).zip(accepted).zip(payload_errs)
            {
                let author = job.author;
                report.appended += accepted as u64;
                if let Some(last) = job
                    .new
                    .get(accepted.wrapping_sub(1))
                    .filter(|_| accepted > 0)
                {
                    w.set_head(job.meta, &last.signed)?;
                }
                if let Some(r) = payload_err {
                    report.rejected.push(r);
                } else if let Err((i, err)) = result {
                    let seq = job.signed().get(i).map_or(0, |e| e.signed.seq());
                    report.rejected.push(Rejection {
                        author,
                        seq,
                        reason: err.into(),
                    });
                } else if let Some(gap) = job.new.get(job.run_len) {
                    let expected = job.head_seq + 1 + job.run_len as u64;
                    report.rejected.push(Rejection {
                        author,
                        seq: gap.signed.seq(),
                        reason: FeedError::SeqGap {
                            expected,
                            found: gap.signed.seq(),
                        }
                        .into(),
                    });
                }
            }
            w.write_ids()?;
        }
        if mode == IngestMode::AllOrNothing
            && let Some(first) = report.rejected.first()
        {
            tx.abort()?;
            // The batch is refused, but a fork proof is evidence worth keeping.
            self.keep_fork_proofs(&report.forks)?;
            return Err(StoreError::Rejected(Box::new(first.clone())));
        }
        tx.commit()?;
        Ok(report)
    }

    /// Records fork proofs and marks their feeds forked, in one transaction.
    fn keep_fork_proofs(&self, proofs: &[ForkProof]) -> Result<(), StoreError> {
        self.add_fork_proofs(proofs).map(|_| ())
    }

    /// Records fork proofs (checked when they were built or decoded) and
    /// marks their feeds forked, in one transaction: no entry after the
    /// fork point is stored or appended from then on. Returns the proofs
    /// that were new (one per feed and seq).
    pub fn add_fork_proofs(&self, proofs: &[ForkProof]) -> Result<Vec<ForkProof>, StoreError> {
        let mut new = Vec::new();
        if proofs.is_empty() {
            return Ok(new);
        }
        let tx = self.db.begin_write()?;
        {
            let mut forks = tx.open_table(FORKS)?;
            let mut feeds = tx.open_table(FEEDS)?;
            for p in proofs {
                let key = entry_key(p.author().as_bytes(), p.seq());
                if forks.get(&key)?.is_none() {
                    forks.insert(&key, p.encode().as_slice())?;
                    new.push(p.clone());
                }
                if let Some(mut m) = read_meta(&feeds, p.author())? {
                    m.forked_at = Some(m.forked_at.map_or(p.seq(), |f| f.min(p.seq())));
                    feeds.insert(p.author().as_bytes(), &m.encode())?;
                }
            }
        }
        tx.commit()?;
        Ok(new)
    }

    /// How many id runs the store holds now ([`Store::compact_id_runs`]).
    pub fn id_run_count(&self) -> Result<usize, StoreError> {
        Ok(run_list(&self.read()?.open_table(ID_RUN_LEVELS)?)?.len())
    }

    /// Merges every id run into one, so that a lookup by id probes one run
    /// instead of up to `ID_RUN_FANIN - 1` per level: a sequential read of
    /// each run and a sequential write, in one transaction. A node calls it
    /// when its sync goes idle, after a large catch-up wrote runs. Returns
    /// how many runs were merged (0: fewer than two, nothing written).
    pub fn compact_id_runs(&self) -> Result<usize, StoreError> {
        if self.id_run_count()? < 2 {
            return Ok(0);
        }
        let tx = self.db.begin_write()?;
        let merged = {
            let mut w = Writer::open(&tx, self.id_runs)?;
            let runs = run_list(&w.ix.run_levels)?;
            // Another writer may have merged them since (the transaction
            // aborts when dropped).
            if runs.len() < 2 {
                return Ok(0);
            }
            // The merged run keeps the highest level: no level holds more
            // runs than before.
            let level = runs.iter().map(|(_, l)| *l).max().unwrap_or(0);
            let all: Vec<u64> = runs.iter().map(|(r, _)| *r).collect();
            w.ix.merge_runs(&all, level, &w.entries)?;
            all.len()
        };
        tx.commit()?;
        Ok(merged)
    }

    /// Rebuilds every derived index (id index, identity and review entries,
    /// review references, series, identity digest, entries awaiting payloads)
    /// from the stored entries and payloads, in one transaction, and drops the
    /// identity cache. Returns the number of entries indexed.
    pub fn rebuild_indexes(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_write()?;
        let mut n = 0u64;
        {
            Indexes::delete(&tx)?;
            tx.delete_table(IDENTITY_CACHE)?;
            tx.delete_table(IDENTITY_PARTS)?;
            tx.delete_table(KEY_OWNERS)?;
            // Recreated empty: readers expect every table to exist.
            tx.open_table(IDENTITY_CACHE)?;
            tx.open_table(IDENTITY_PARTS)?;
            tx.open_table(KEY_OWNERS)?;
            let entries = tx.open_table(ENTRIES)?;
            let by_pos = tx.open_table(ENTRY_PAYLOADS)?;
            let payloads = tx.open_table(PAYLOADS)?;
            let mut ix = Indexes::open(&tx, self.id_runs)?;
            ix.deferred = Some(Deferred::default());
            for row in entries.iter()? {
                let (k, v) = row?;
                let e = load_entry(&by_pos, &payloads, k.value(), v.value())?;
                ix.index_entry(k.value(), &e.signed, e.payload.as_deref())?;
                n += 1;
                if ix
                    .deferred
                    .as_ref()
                    .is_some_and(|d| d.rows() >= REBUILD_RUN_ROWS)
                {
                    ix.flush_deferred()?;
                }
            }
            ix.flush_deferred()?;
            ix.meta
                .insert("indexes", INDEX_VERSION.to_be_bytes().as_slice())?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Marks `author`'s feed as confirmed up to `seq` (restore safety).
    pub fn set_confirmed(&self, author: &PublicKey, seq: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut feeds = tx.open_table(FEEDS)?;
            if let Some(mut m) = read_meta(&feeds, author)? {
                m.confirmed_seq = m.confirmed_seq.max(seq.min(m.head.seq));
                feeds.insert(author.as_bytes(), &m.encode())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Re-verifies every stored entry: canonical form, signatures, ids, chains,
    /// lipmaa links, payload hashes, and that the feed table matches the entries.
    pub fn verify_all(&self, seed: [u8; 32]) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let tx = self.read()?;
        let feeds = tx.open_table(FEEDS)?;
        let entries = tx.open_table(ENTRIES)?;
        let by_pos = tx.open_table(ENTRY_PAYLOADS)?;
        let payloads = tx.open_table(PAYLOADS)?;
        let index = tx.open_table(ID_INDEX)?;
        let overflow = tx.open_table(ID_OVERFLOW)?;
        let runs = open_runs(&tx)?;
        for row in feeds.iter()? {
            let (k, v) = row?;
            let meta = FeedMeta::decode(k.value(), v.value())?;
            report.feeds += 1;
            let author = meta.author;
            let mut head: Option<Head> = None;
            let mut ids: Vec<EntryId> = Vec::new();
            let mut chunk: Vec<SignedHeader> = Vec::new();
            let lo = entry_key(author.as_bytes(), 0);
            let hi = entry_key(author.as_bytes(), u64::MAX);
            let flush = |chunk: &mut Vec<SignedHeader>,
                         head: &mut Option<Head>,
                         ids: &mut Vec<EntryId>,
                         report: &mut VerifyReport| {
                if chunk.is_empty() {
                    return;
                }
                let known: &[EntryId] = ids;
                let mut lookup = |s: u64| {
                    known
                        .get(usize::try_from(s).unwrap_or(usize::MAX).wrapping_sub(1))
                        .copied()
                };
                // Stored entries were accepted at their time: check the clock only loosely.
                match tagline_format::verify_run(
                    &author,
                    *head,
                    chunk,
                    &mut lookup,
                    u64::MAX - tagline_format::limits::MAX_FUTURE_SKEW_MS,
                    seed,
                ) {
                    Ok(h) => *head = h,
                    Err((i, e)) => {
                        report.problems.push(format!(
                            "feed {author}: entry {}: {e}",
                            chunk.get(i).map_or(0, |x| x.seq())
                        ));
                        *head = chunk.last().map(Head::of);
                    }
                }
                ids.extend(chunk.iter().map(|e| e.id()));
                chunk.clear();
            };
            for row in entries.range::<&[u8; 40]>(&lo..=&hi)? {
                let (_, v) = row?;
                let v = v.value();
                let signed = match decode_stored(v) {
                    Ok(s) => s,
                    Err(e) => {
                        report.problems.push(format!("feed {author}: {e}"));
                        continue;
                    }
                };
                report.entries += 1;
                let id = signed.id();
                let here = entry_key(author.as_bytes(), signed.seq());
                let indexed = find_id(&index, &overflow, runs.iter().map(Ok), &id, |p| {
                    Ok(*p == here)
                })?
                .is_some();
                if !indexed {
                    report.problems.push(format!(
                        "feed {author}: entry {} is missing from the id index",
                        signed.seq()
                    ));
                }
                let hash = signed.header().payload_hash;
                match held_payload(&by_pos, &payloads, &here, || Ok(hash))? {
                    Some(p) => {
                        report.payloads_checked += 1;
                        if let Err(e) = check_payload(signed.header(), &p) {
                            report.problems.push(format!(
                                "feed {author}: entry {}: payload: {e}",
                                signed.seq()
                            ));
                        }
                    }
                    None => report.payloads_missing += 1,
                }
                chunk.push(signed);
                if chunk.len() >= VERIFY_CHUNK {
                    flush(&mut chunk, &mut head, &mut ids, &mut report);
                }
            }
            flush(&mut chunk, &mut head, &mut ids, &mut report);
            if head != Some(meta.head) {
                report.problems.push(format!(
                    "feed {author}: feed table says head {} but the entries end at {}",
                    meta.head.seq,
                    head.map_or(0, |h| h.seq)
                ));
            }
        }
        Ok(report)
    }
}

/// A 72-byte key `x [32] ‖ author [32] ‖ seq u64` ([`REVIEW_REFS`],
/// [`AWAITING_PAYLOAD`]): rows about the entry at `pos`, grouped by `x`.
fn key_of(x: &[u8; 32], pos: &[u8; 40]) -> [u8; 72] {
    let mut k = [0u8; 72];
    let (a, b) = k.split_at_mut(32);
    a.copy_from_slice(x);
    b.copy_from_slice(pos);
    k
}

/// The first and last [`key_of`] keys of `x`: the range of its rows.
fn keys_of(x: &[u8; 32]) -> ([u8; 72], [u8; 72]) {
    (key_of(x, &[0u8; 40]), key_of(x, &[0xffu8; 40]))
}

/// The entry position at the end of a [`key_of`] key.
fn pos_in(k: &[u8; 72]) -> [u8; 40] {
    let mut pos = [0u8; 40];
    pos.copy_from_slice(k.get(32..).unwrap_or(&[0; 40]));
    pos
}

/// Distinct batch-verification randomness per feed, derived from one fresh seed.
fn derive_seed(seed: &[u8; 32], n: u64) -> [u8; 32] {
    let mut x = *seed;
    for (slot, b) in x.iter_mut().zip(n.to_le_bytes()) {
        *slot ^= b;
    }
    x
}

/// Indexes the entry at `pos` by its id's `prefix` in `table` ([`ID_INDEX`]
/// or a run); if another entry holds that prefix there, keeps it and
/// indexes this one by its full id (`id`, asked for only then) in
/// [`ID_OVERFLOW`].
fn put_prefix(
    table: &mut Table<'_, &'static [u8; 16], &'static [u8; 40]>,
    overflow: &mut Table<'_, &'static [u8; 32], &'static [u8; 40]>,
    prefix: &[u8; 16],
    pos: &[u8; 40],
    id: impl FnOnce() -> Result<[u8; 32], StoreError>,
) -> Result<(), StoreError> {
    let previous = table.insert(prefix, pos)?.map(|old| *old.value());
    if let Some(old) = previous.filter(|old| old != pos) {
        table.insert(prefix, &old)?;
        overflow.insert(&id()?, pos)?;
    }
    Ok(())
}

/// The id runs and their levels, in run order ([`ID_RUN_LEVELS`]).
fn run_list(levels: &impl ReadableTable<u64, u8>) -> Result<Vec<(u64, u8)>, StoreError> {
    let mut out = Vec::new();
    for row in levels.iter()? {
        let (k, v) = row?;
        out.push((k.value(), v.value()));
    }
    Ok(out)
}

/// The number of a new run: one past the last.
fn next_run(levels: &impl ReadableTable<u64, u8>) -> Result<u64, StoreError> {
    Ok(levels
        .last()?
        .map_or(0, |(k, _)| k.value().saturating_add(1)))
}

/// The full id of the entry stored at `pos`.
fn full_id(
    entries: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    pos: &[u8; 40],
) -> Result<EntryId, StoreError> {
    entries
        .get(pos)?
        .and_then(|v| stored_id(v.value()))
        .ok_or_else(|| {
            let (author, seq) = split_entry_key(pos);
            let author: String = author.iter().map(|b| format!("{b:02x}")).collect();
            StoreError::Corrupt(format!(
                "the id index names entry {seq} of {author}, which is not stored"
            ))
        })
}

/// Every id run's table, for reading.
fn open_runs(tx: &ReadTransaction) -> Result<Vec<IdRun>, StoreError> {
    let mut out = Vec::new();
    for (run, _) in run_list(&tx.open_table(ID_RUN_LEVELS)?)? {
        out.push(tx.open_table(IdRunTable::new(&id_run_table(run)))?);
    }
    Ok(out)
}

/// An id run's table, open for reading.
type IdRun = redb::ReadOnlyTable<&'static [u8; 16], &'static [u8; 40]>;

/// Looks `id` up where the id index may put it: [`ID_INDEX`] by prefix,
/// then each of `runs` in turn (opened as they come), then [`ID_OVERFLOW`]
/// by the full id. Returns the first position `accept` takes (callers
/// compare the id stored there, or the position they expect).
fn find_id<R: std::borrow::Borrow<IdRun>>(
    index: &impl ReadableTable<&'static [u8; 16], &'static [u8; 40]>,
    overflow: &impl ReadableTable<&'static [u8; 32], &'static [u8; 40]>,
    runs: impl IntoIterator<Item = Result<R, StoreError>>,
    id: &EntryId,
    mut accept: impl FnMut(&[u8; 40]) -> Result<bool, StoreError>,
) -> Result<Option<[u8; 40]>, StoreError> {
    let prefix = id_prefix(&id.0);
    let mut take = |pos: Option<[u8; 40]>| -> Result<Option<[u8; 40]>, StoreError> {
        match pos {
            Some(p) if accept(&p)? => Ok(Some(p)),
            _ => Ok(None),
        }
    };
    if let Some(p) = take(index.get(&prefix)?.map(|p| *p.value()))? {
        return Ok(Some(p));
    }
    for run in runs {
        if let Some(p) = take(run?.borrow().get(&prefix)?.map(|p| *p.value()))? {
            return Ok(Some(p));
        }
    }
    take(overflow.get(&id.0)?.map(|p| *p.value()))
}

/// The id stored in front of an [`ENTRIES`] value.
fn stored_id(v: &[u8]) -> Option<EntryId> {
    v.get(..32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(EntryId)
}

/// Decodes an [`ENTRIES`] value and checks the stored id against the bytes.
fn decode_stored(v: &[u8]) -> Result<SignedHeader, StoreError> {
    let id =
        stored_id(v).ok_or_else(|| StoreError::Corrupt("entry row shorter than an id".into()))?;
    let bytes = v.get(32..).unwrap_or_default().to_vec();
    let signed = SignedHeader::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("stored entry: {e}")))?;
    if signed.id() != id {
        return Err(StoreError::Corrupt(format!(
            "stored entry id {id} does not match its bytes ({})",
            signed.id()
        )));
    }
    Ok(signed)
}

/// A feed's [`FEEDS`] row.
fn read_meta(
    feeds: &impl ReadableTable<&'static [u8; 32], &'static [u8; FEED_META_LEN]>,
    author: &PublicKey,
) -> Result<Option<FeedMeta>, StoreError> {
    feeds
        .get(author.as_bytes())?
        .map(|v| FeedMeta::decode(author.as_bytes(), v.value()))
        .transpose()
}

/// The [`ENTRIES`] row at `pos`, with its payload if held: stored with it
/// ([`ENTRY_PAYLOADS`]), else by hash ([`PAYLOADS`]).
fn load_entry(
    by_pos: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    by_hash: &impl ReadableTable<&'static [u8; 32], &'static [u8]>,
    pos: &[u8; 40],
    row: &[u8],
) -> Result<StoredEntry, StoreError> {
    let signed = decode_stored(row)?;
    let payload = held_payload(by_pos, by_hash, pos, || Ok(signed.header().payload_hash))?;
    Ok(StoredEntry { signed, payload })
}

/// The payload of the entry at `pos`, if held: stored with it, else by its
/// payload hash (`hash`, asked for only then).
fn held_payload(
    by_pos: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    by_hash: &impl ReadableTable<&'static [u8; 32], &'static [u8]>,
    pos: &[u8; 40],
    hash: impl FnOnce() -> Result<PayloadHash, StoreError>,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(match by_pos.get(pos)? {
        Some(p) => Some(p.value().to_vec()),
        None => by_hash.get(hash()?.as_bytes())?.map(|p| p.value().to_vec()),
    })
}

/// The two payload tables, opened for reading.
struct PayloadTables {
    by_pos: redb::ReadOnlyTable<&'static [u8; 40], &'static [u8]>,
    by_hash: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
}

impl PayloadTables {
    fn open(tx: &ReadTransaction) -> Result<PayloadTables, StoreError> {
        Ok(PayloadTables {
            by_pos: tx.open_table(ENTRY_PAYLOADS)?,
            by_hash: tx.open_table(PAYLOADS)?,
        })
    }

    /// The [`ENTRIES`] row `row` at `pos`, with its payload if held.
    fn load(&self, pos: &[u8; 40], row: &[u8]) -> Result<StoredEntry, StoreError> {
        load_entry(&self.by_pos, &self.by_hash, pos, row)
    }
}

/// Ids of `author`'s stored entries (seq at most `head_seq`) that the lipmaa
/// links of the entries `seqs` point to.
fn linked_stored_ids(
    entries: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    author: &PublicKey,
    head_seq: u64,
    seqs: impl Iterator<Item = u64>,
) -> Result<HashMap<u64, EntryId>, StoreError> {
    let mut out = HashMap::new();
    for seq in seqs {
        let t = lipmaa(seq);
        if has_distinct_lipmaa(seq)
            && t <= head_seq
            && !out.contains_key(&t)
            && let Some(id) = entries
                .get(&entry_key(author.as_bytes(), t))?
                .and_then(|v| stored_id(v.value()))
        {
            out.insert(t, id);
        }
    }
    Ok(out)
}

/// The [`IDENTITY_DIGEST`] value (all zero when no identity entry counts).
fn read_digest(
    t: &impl ReadableTable<&'static str, &'static [u8; 40]>,
) -> Result<[u8; 40], StoreError> {
    Ok(t.get(DIGEST_KEY)?.map(|v| *v.value()).unwrap_or([0u8; 40]))
}

/// Whether indexing an entry of this payload type reads its payload (the
/// identity digest, review references and series do).
fn index_needs_payload(payload_type: &str) -> bool {
    tagline_format::identity::IdentityPayload::is_identity_type(payload_type)
        || tagline_format::review::ReviewPayload::is_review_type(payload_type)
}

/// The derived tables, written together. Everything in them can be rebuilt
/// from [`ENTRIES`] and [`PAYLOADS`] ([`Store::rebuild_indexes`]).
struct Indexes<'t> {
    prefix: Table<'t, &'static [u8; 16], &'static [u8; 40]>,
    overflow: Table<'t, &'static [u8; 32], &'static [u8; 40]>,
    /// For the id runs' own tables.
    tx: &'t WriteTransaction,
    run_levels: Table<'t, u64, u8>,
    /// Ids indexed in this transaction: (prefix, position, full id), written
    /// out by [`Indexes::write_ids`] before it commits.
    new_ids: Vec<([u8; 16], [u8; 40], [u8; 32])>,
    id_runs: IdRuns,
    identity: Table<'t, &'static [u8; 40], ()>,
    review: Table<'t, &'static [u8; 40], ()>,
    refs: Table<'t, &'static [u8; 72], ()>,
    series: Table<'t, &'static [u8; 32], &'static [u8; 40]>,
    digest: Table<'t, &'static str, &'static [u8; 40]>,
    awaiting: Table<'t, &'static [u8; 72], ()>,
    revision_series: Table<'t, &'static [u8; 32], &'static [u8; 32]>,
    summaries: Table<'t, &'static [u8; 32], &'static [u8]>,
    statuses: Table<'t, &'static [u8; 32], &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    /// The summary generation was bumped in this transaction already (once
    /// per transaction is enough: summaries are compared per transaction).
    generation_bumped: bool,
    /// While rebuilding: the rows of the randomly keyed tables, written in
    /// key order in runs (a B-tree filled in key order touches each page
    /// once, instead of once per row).
    deferred: Option<Deferred>,
}

/// Rows held back for key-ordered insertion ([`Store::rebuild_indexes`]).
#[derive(Default)]
struct Deferred {
    /// (id prefix, position, full id).
    ids: Vec<([u8; 16], [u8; 40], [u8; 32])>,
    refs: Vec<[u8; 72]>,
    series: Vec<([u8; 32], [u8; 40])>,
    revision_series: Vec<([u8; 32], [u8; 32])>,
}

/// Rows a rebuild holds in memory before writing them out sorted (about
/// 90 bytes each): bounds its memory whatever the store's size.
pub const REBUILD_RUN_ROWS: usize = 1 << 20;

impl Deferred {
    fn rows(&self) -> usize {
        self.ids.len() + self.refs.len() + self.series.len() + self.revision_series.len()
    }
}

/// `META` key of the summary generation: a counter bumped (once) by every
/// write transaction that indexes an entry that can change a series' summary,
/// so that a summary computed before that write is not stored after it
/// ([`Store::put_series_summaries`]).
const SUMMARY_GENERATION: &str = "summary_generation";

fn read_generation(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    let mut b = [0u8; 8];
    if let Some(v) = meta.get(SUMMARY_GENERATION)? {
        b.copy_from_slice(v.value().get(..8).unwrap_or(&[0; 8]));
    }
    Ok(u64::from_be_bytes(b))
}

impl<'t> Indexes<'t> {
    fn open(tx: &'t WriteTransaction, id_runs: IdRuns) -> Result<Indexes<'t>, StoreError> {
        Ok(Indexes {
            prefix: tx.open_table(ID_INDEX)?,
            overflow: tx.open_table(ID_OVERFLOW)?,
            tx,
            run_levels: tx.open_table(ID_RUN_LEVELS)?,
            new_ids: Vec::new(),
            id_runs,
            identity: tx.open_table(IDENTITY_ENTRIES)?,
            review: tx.open_table(REVIEW_ENTRIES)?,
            refs: tx.open_table(REVIEW_REFS)?,
            series: tx.open_table(SERIES)?,
            digest: tx.open_table(IDENTITY_DIGEST)?,
            awaiting: tx.open_table(AWAITING_PAYLOAD)?,
            revision_series: tx.open_table(REVISION_SERIES)?,
            summaries: tx.open_table(SERIES_SUMMARY)?,
            statuses: tx.open_table(SERIES_STATUS)?,
            meta: tx.open_table(META)?,
            generation_bumped: false,
            deferred: None,
        })
    }

    /// Drops every table [`Indexes::open`] opens.
    fn delete(tx: &WriteTransaction) -> Result<(), StoreError> {
        tx.delete_table(ID_INDEX)?;
        tx.delete_table(ID_OVERFLOW)?;
        let runs = run_list(&tx.open_table(ID_RUN_LEVELS)?)?;
        for (run, _) in runs {
            tx.delete_table(IdRunTable::new(&id_run_table(run)))?;
        }
        tx.delete_table(ID_RUN_LEVELS)?;
        tx.delete_table(IDENTITY_ENTRIES)?;
        tx.delete_table(REVIEW_ENTRIES)?;
        tx.delete_table(REVIEW_REFS)?;
        tx.delete_table(SERIES)?;
        tx.delete_table(IDENTITY_DIGEST)?;
        tx.delete_table(AWAITING_PAYLOAD)?;
        tx.delete_table(REVISION_SERIES)?;
        tx.delete_table(SERIES_SUMMARY)?;
        tx.delete_table(SERIES_STATUS)?;
        Ok(())
    }

    /// Indexes `id` at `pos`: at once while rebuilding (in its runs), else
    /// when the transaction's ids are written ([`Indexes::write_ids`]).
    fn insert_id(&mut self, id: &EntryId, pos: &[u8; 40]) -> Result<(), StoreError> {
        let prefix = id_prefix(&id.0);
        match &mut self.deferred {
            Some(d) => d.ids.push((prefix, *pos, id.0)),
            None => self.new_ids.push((prefix, *pos, id.0)),
        }
        Ok(())
    }

    /// Writes the ids indexed in this transaction, in key order: into
    /// [`ID_INDEX`] if fewer than [`ID_RUN_MIN`], else as a new run of level
    /// 0, then merging each level that holds [`ID_RUN_FANIN`] runs into one
    /// run of the next. Every write transaction that indexes entries calls
    /// this before it commits.
    fn write_ids(
        &mut self,
        entries: &Table<'t, &'static [u8; 40], &'static [u8]>,
    ) -> Result<(), StoreError> {
        let mut ids = std::mem::take(&mut self.new_ids);
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort_unstable();
        if ids.len() < self.id_runs.min {
            for (prefix, pos, id) in &ids {
                put_prefix(&mut self.prefix, &mut self.overflow, prefix, pos, || {
                    Ok(*id)
                })?;
            }
            return Ok(());
        }
        let run = next_run(&self.run_levels)?;
        self.run_levels.insert(run, 0)?;
        self.write_run(
            run,
            ids.iter()
                .map(|(prefix, pos, id)| Ok((*prefix, *pos, Some(*id)))),
            entries,
        )?;
        // Merge any level that now holds `fanin` runs into the next one.
        let mut level = 0u8;
        loop {
            let full: Vec<u64> = run_list(&self.run_levels)?
                .into_iter()
                .filter(|(_, l)| *l == level)
                .map(|(r, _)| r)
                .collect();
            if full.len() < self.id_runs.fanin {
                return Ok(());
            }
            self.merge_runs(&full, level.saturating_add(1), entries)?;
            level = level.saturating_add(1);
        }
    }

    /// Writes ids, given in key order, as the new run `run`. An id whose
    /// prefix the run holds already (for another entry) goes to
    /// [`ID_OVERFLOW`], by its full id: given, or read from [`ENTRIES`].
    fn write_run(
        &mut self,
        run: u64,
        ids: impl Iterator<Item = Result<([u8; 16], [u8; 40], Option<[u8; 32]>), StoreError>>,
        entries: &Table<'t, &'static [u8; 40], &'static [u8]>,
    ) -> Result<(), StoreError> {
        let mut table = self.tx.open_table(IdRunTable::new(&id_run_table(run)))?;
        for row in ids {
            let (prefix, pos, id) = row?;
            put_prefix(&mut table, &mut self.overflow, &prefix, &pos, || match id {
                Some(id) => Ok(id),
                None => Ok(full_id(entries, &pos)?.0),
            })?;
        }
        Ok(())
    }

    /// Merges `runs` (each sorted) into one new run of `level`, in key order,
    /// and drops their tables: a sequential read of each and a sequential
    /// write.
    fn merge_runs(
        &mut self,
        runs: &[u64],
        level: u8,
        entries: &Table<'t, &'static [u8; 40], &'static [u8]>,
    ) -> Result<(), StoreError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let new = next_run(&self.run_levels)?;
        self.run_levels.insert(new, level)?;
        {
            let mut tables = Vec::with_capacity(runs.len());
            for run in runs {
                tables.push(self.tx.open_table(IdRunTable::new(&id_run_table(*run)))?);
            }
            let mut cursors = Vec::with_capacity(tables.len());
            let mut heads = BinaryHeap::new();
            for (i, t) in tables.iter().enumerate() {
                let mut rows = t.iter()?;
                if let Some(row) = rows.next() {
                    let (k, v) = row?;
                    heads.push(Reverse((*k.value(), *v.value(), i)));
                }
                cursors.push(rows);
            }
            let merged = std::iter::from_fn(|| {
                let Reverse((prefix, pos, i)) = heads.pop()?;
                if let Some(row) = cursors.get_mut(i).and_then(Iterator::next) {
                    match row {
                        Ok((k, v)) => heads.push(Reverse((*k.value(), *v.value(), i))),
                        Err(e) => return Some(Err(StoreError::from(e))),
                    }
                }
                Some(Ok((prefix, pos, None)))
            });
            self.write_run(new, merged, entries)?;
        }
        for &run in runs {
            self.tx.delete_table(IdRunTable::new(&id_run_table(run)))?;
            self.run_levels.remove(run)?;
        }
        Ok(())
    }

    /// Writes the deferred rows out in key order (a rebuild's run). Ids that
    /// share a prefix: the first by position keeps the prefix row, the
    /// others go to the overflow table, as [`Indexes::insert_id`] does.
    fn flush_deferred(&mut self) -> Result<(), StoreError> {
        let Some(mut d) = self.deferred.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        d.ids.sort_unstable();
        let mut overflow = Vec::new();
        for (prefix, pos, id) in &d.ids {
            let taken = self.prefix.get(prefix)?.map(|old| *old.value());
            match taken {
                Some(old) if old != *pos => overflow.push((*id, *pos)),
                Some(_) => {}
                None => {
                    self.prefix.insert(prefix, pos)?;
                }
            }
        }
        overflow.sort_unstable();
        for (id, pos) in &overflow {
            self.overflow.insert(id, pos)?;
        }
        d.refs.sort_unstable();
        for k in &d.refs {
            self.refs.insert(k, ())?;
        }
        d.series.sort_unstable();
        for (k, v) in &d.series {
            self.series.insert(k, v)?;
        }
        d.revision_series.sort_unstable();
        for (k, v) in &d.revision_series {
            self.revision_series.insert(k, v)?;
        }
        Ok(())
    }

    /// Writes the index rows of the entry stored at `pos`. `payload` is its
    /// payload if held; without it, the rows that need it wait in
    /// [`AWAITING_PAYLOAD`] (see [`Writer::add_payload`]).
    fn index_entry(
        &mut self,
        pos: &[u8; 40],
        signed: &SignedHeader,
        payload: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.insert_id(&signed.id(), pos)?;
        let payload_type = &signed.header().payload_type;
        if tagline_format::identity::IdentityPayload::is_identity_type(payload_type) {
            self.identity.insert(pos, ())?;
        }
        if tagline_format::review::ReviewPayload::is_review_type(payload_type) {
            self.review.insert(pos, ())?;
        }
        if index_needs_payload(payload_type) {
            match payload {
                Some(p) => self.index_payload(pos, signed, p)?,
                None => {
                    self.awaiting
                        .insert(&key_of(signed.header().payload_hash.as_bytes(), pos), ())?;
                }
            }
        }
        Ok(())
    }

    /// The index rows that need the payload: the identity digest for identity
    /// entries; review references and series for review entries.
    fn index_payload(
        &mut self,
        pos: &[u8; 40],
        signed: &SignedHeader,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        use tagline_format::review::ReviewPayload as R;
        let id = signed.id();
        let payload_type = &signed.header().payload_type;
        if tagline_format::identity::IdentityPayload::is_identity_type(payload_type) {
            self.add_to_identity_digest(&id)?;
        }
        let Ok(Some(decoded)) = R::decode(payload_type, payload) else {
            return Ok(());
        };
        let target = match &decoded {
            R::Revision(r) => {
                let series = r.series.unwrap_or(id);
                if r.series.is_none() {
                    match &mut self.deferred {
                        Some(d) => d.series.push((id.0, *pos)),
                        None => {
                            self.series.insert(&id.0, pos)?;
                        }
                    }
                }
                // The series' summary is dropped below: the target is the
                // series, which maps to itself once its first revision is held
                // (and no summary exists before).
                match &mut self.deferred {
                    Some(d) => d.revision_series.push((id.0, series.0)),
                    None => {
                        self.revision_series.insert(&id.0, &series.0)?;
                    }
                }
                Some(series)
            }
            R::Review(r) => Some(r.revision),
            R::Ci(c) => Some(c.revision),
            R::Merge(m) => Some(m.revision),
            R::Tag(t) => Some(t.target),
            R::Withdraw(s) => Some(*s),
            R::Project(p) => p.amends,
        };
        if let Some(t) = target {
            if !self.generation_bumped {
                let generation = read_generation(&self.meta)?.wrapping_add(1);
                self.meta
                    .insert(SUMMARY_GENERATION, generation.to_be_bytes().as_slice())?;
                self.generation_bumped = true;
            }
            if let Some(d) = &mut self.deferred {
                // A rebuild starts with no summaries: none to drop.
                d.refs.push(key_of(&t.0, pos));
                return Ok(());
            }
            self.refs.insert(&key_of(&t.0, pos), ())?;
            // The series this entry changes, if its revision is held (when it
            // is not, the revision's arrival makes the summary stale instead).
            let series = self.revision_series.get(&t.0)?.map(|s| *s.value());
            if let Some(series) = series {
                self.summaries.remove(&series)?;
                self.statuses.remove(&series)?;
            }
        }
        Ok(())
    }

    /// Folds an identity entry (whose payload is held) into the identity digest.
    fn add_to_identity_digest(&mut self, id: &EntryId) -> Result<(), StoreError> {
        let mut d = read_digest(&self.digest)?;
        let mut count = [0u8; 8];
        count.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        let count = u64::from_be_bytes(count).wrapping_add(1);
        if let Some(c) = d.get_mut(..8) {
            c.copy_from_slice(&count.to_be_bytes());
        }
        for (slot, b) in d.iter_mut().skip(8).zip(id.0.iter()) {
            *slot ^= b;
        }
        self.digest.insert(DIGEST_KEY, &d)?;
        Ok(())
    }
}

/// The tables an append writes, opened once per write transaction.
struct Writer<'t> {
    feeds: Table<'t, &'static [u8; 32], &'static [u8; FEED_META_LEN]>,
    entries: Table<'t, &'static [u8; 40], &'static [u8]>,
    /// Payloads stored with their entries ([`ENTRY_PAYLOADS`]).
    inline: Table<'t, &'static [u8; 40], &'static [u8]>,
    payloads: Table<'t, &'static [u8; 32], &'static [u8]>,
    forks: Table<'t, &'static [u8; 40], &'static [u8]>,
    ix: Indexes<'t>,
}

impl<'t> Writer<'t> {
    fn open(tx: &'t WriteTransaction, id_runs: IdRuns) -> Result<Writer<'t>, StoreError> {
        Ok(Writer {
            feeds: tx.open_table(FEEDS)?,
            entries: tx.open_table(ENTRIES)?,
            inline: tx.open_table(ENTRY_PAYLOADS)?,
            payloads: tx.open_table(PAYLOADS)?,
            forks: tx.open_table(FORKS)?,
            ix: Indexes::open(tx, id_runs)?,
        })
    }

    /// Writes the ids this transaction indexed ([`Indexes::write_ids`]).
    fn write_ids(&mut self) -> Result<(), StoreError> {
        self.ix.write_ids(&self.entries)
    }

    /// Moves a (not forked) feed's head to `last`, keeping what `meta` knew.
    fn set_head(&mut self, meta: Option<FeedMeta>, last: &SignedHeader) -> Result<(), StoreError> {
        let m = FeedMeta {
            author: *last.author(),
            head: Head::of(last),
            forked_at: None,
            confirmed_seq: meta.map_or(0, |m| m.confirmed_seq),
        };
        self.feeds.insert(last.author().as_bytes(), &m.encode())?;
        Ok(())
    }

    /// Stores one validated entry, and its payload if given, and indexes it.
    /// Without its own payload, the entry is indexed with one held by hash
    /// (a payload that entries stored without it waited for), if any.
    fn put_entry(
        &mut self,
        signed: &SignedHeader,
        payload: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let pos = entry_key(signed.author().as_bytes(), signed.seq());
        if self.ix.new_ids.len() >= self.ix.id_runs.max {
            self.write_ids()?;
        }
        let mut row = Vec::with_capacity(32 + signed.as_bytes().len());
        row.extend_from_slice(&signed.id().0);
        row.extend_from_slice(signed.as_bytes());
        self.entries.insert(&pos, row.as_slice())?;
        let hash = &signed.header().payload_hash;
        match payload {
            Some(p) => {
                self.ix.index_entry(&pos, signed, Some(p))?;
                self.add_payload(&pos, hash, p)?;
            }
            None => {
                let held = if index_needs_payload(&signed.header().payload_type) {
                    self.payloads.get(hash.as_bytes())?
                } else {
                    None
                };
                self.ix
                    .index_entry(&pos, signed, held.as_ref().map(|p| p.value()))?;
            }
        }
        Ok(())
    }

    /// Stores the checked payload of the entry at `pos` with it. Entries
    /// stored without this payload and waiting for it (any entry with the
    /// same payload hash) get it by hash, and their payload index rows now.
    fn add_payload(
        &mut self,
        pos: &[u8; 40],
        hash: &PayloadHash,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.inline.insert(pos, payload)?;
        let (lo, hi) = keys_of(hash.as_bytes());
        let mut waiting = Vec::new();
        for row in self.ix.awaiting.range::<&[u8; 72]>(&lo..=&hi)? {
            waiting.push(pos_in(row?.0.value()));
        }
        if waiting.iter().any(|w| w != pos) {
            self.payloads.insert(hash.as_bytes(), payload)?;
        }
        for pos in waiting {
            self.ix.awaiting.remove(&key_of(hash.as_bytes(), &pos))?;
            if let Some(v) = self.entries.get(&pos)? {
                let signed = decode_stored(v.value())?;
                self.ix.index_payload(&pos, &signed, payload)?;
            }
        }
        Ok(())
    }

    /// Whether the payload of the entry at `pos` is held.
    fn has_payload(&self, pos: &[u8; 40], hash: &PayloadHash) -> Result<bool, StoreError> {
        Ok(held_payload(&self.inline, &self.payloads, pos, || Ok(*hash))?.is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use redb::TableHandle;

    /// Rows of the id tables after indexing `ids` (id, position) directly or
    /// deferred (as a rebuild does, with runs of `run` rows).
    fn id_rows(ids: &[([u8; 32], [u8; 40])], deferred: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let entries = tx.open_table(ENTRIES).unwrap();
            let mut ix = Indexes::open(&tx, IdRuns::default()).unwrap();
            if deferred {
                ix.deferred = Some(Deferred::default());
            }
            for (i, (id, pos)) in ids.iter().enumerate() {
                ix.insert_id(&EntryId(*id), pos).unwrap();
                if deferred && i % 2 == 1 {
                    ix.flush_deferred().unwrap();
                }
            }
            ix.flush_deferred().unwrap();
            ix.write_ids(&entries).unwrap();
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let rows = |t: redb::ReadOnlyTable<&'static [u8; 16], &'static [u8; 40]>| {
            t.iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    [k.value().as_slice(), v.value().as_slice()].concat()
                })
                .collect()
        };
        let over = tx.open_table(ID_OVERFLOW).unwrap();
        let over = over
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                [k.value().as_slice(), v.value().as_slice()].concat()
            })
            .collect();
        (rows(tx.open_table(ID_INDEX).unwrap()), over)
    }

    #[test]
    fn deferred_id_rows_equal_direct_ones_with_shared_prefixes() {
        // Three ids share a prefix, inserted in position order as a rebuild
        // reads them; one id stands alone.
        let id = |p: u8, rest: u8| {
            let mut b = [rest; 32];
            b[..16].copy_from_slice(&[p; 16]);
            b
        };
        let pos = |n: u8| [n; 40];
        let ids = [
            (id(1, 9), pos(1)),
            (id(1, 3), pos(2)),
            (id(2, 0), pos(3)),
            (id(1, 5), pos(4)),
        ];
        let direct = id_rows(&ids, false);
        assert_eq!(direct.0.len(), 2);
        assert_eq!(direct.1.len(), 2, "two ids overflow");
        assert_eq!(id_rows(&ids, true), direct);
    }

    /// An id with prefix byte `p` and the rest `rest`.
    fn synthetic_id(p: u8, rest: u8) -> [u8; 32] {
        let mut b = [rest; 32];
        b[..16].copy_from_slice(&[p; 16]);
        b
    }

    #[test]
    fn id_runs_are_written_looked_up_and_merged_with_shared_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        // Runs of 3 ids or more, merged two by two.
        let limits = IdRuns {
            min: 3,
            fanin: 2,
            max: usize::MAX,
        };
        // Each write: ids (prefix byte, rest byte, position byte). Prefix 1
        // is shared within the first write and across writes, prefix 2
        // across writes; the last write (of two ids) goes into the index.
        let writes: [&[(u8, u8, u8)]; 5] = [
            &[(1, 9, 1), (1, 3, 2), (2, 0, 3)],
            &[(2, 7, 4), (3, 0, 5), (4, 0, 6)],
            &[(5, 0, 7), (2, 8, 8), (6, 0, 9)],
            &[(7, 0, 10), (8, 0, 11), (1, 1, 12)],
            &[(9, 0, 13), (2, 2, 14)],
        ];
        let mut all = Vec::new();
        let mut runs_after = Vec::new();
        for ids in writes {
            let tx = db.begin_write().unwrap();
            {
                let mut entries = tx.open_table(ENTRIES).unwrap();
                let mut ix = Indexes::open(&tx, limits).unwrap();
                for &(p, rest, at) in ids {
                    let id = synthetic_id(p, rest);
                    let pos = [at; 40];
                    // A merge reads the full id of a prefix taken in its run.
                    entries.insert(&pos, id.as_slice()).unwrap();
                    ix.insert_id(&EntryId(id), &pos).unwrap();
                    all.push((id, pos));
                }
                ix.write_ids(&entries).unwrap();
                runs_after.push(run_list(&ix.run_levels).unwrap());
            }
            tx.commit().unwrap();
            let tx = db.begin_read().unwrap();
            let (index, overflow, runs) = (
                tx.open_table(ID_INDEX).unwrap(),
                tx.open_table(ID_OVERFLOW).unwrap(),
                open_runs(&tx).unwrap(),
            );
            for (id, pos) in &all {
                let found = find_id(&index, &overflow, runs.iter().map(Ok), &EntryId(*id), |p| {
                    Ok(p == pos)
                })
                .unwrap();
                assert!(found.is_some(), "id {:?} at {} lost", &id[..2], pos[0]);
            }
        }
        assert_eq!(
            runs_after,
            [
                vec![(0, 0)],
                // Two runs of level 0 make run 2 of level 1.
                vec![(2, 1)],
                vec![(2, 1), (3, 0)],
                // Runs 3 and 4 make run 5 of level 1; runs 2 and 5, run 6.
                vec![(6, 2)],
                // A small write adds no run.
                vec![(6, 2)],
            ],
        );
        let tx = db.begin_read().unwrap();
        let tables: Vec<String> = tx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .filter(|n| n.starts_with("id_run_v1_"))
            .collect();
        assert_eq!(tables, ["id_run_v1_6"], "merged runs' tables are dropped");
        let runs: Vec<u8> = tx
            .open_table(IdRunTable::new(&id_run_table(6)))
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().1.value()[0])
            .collect();
        assert_eq!(
            runs,
            [1, 3, 5, 6, 7, 9, 10, 11],
            "prefixes 1 to 8, first position each"
        );
        assert_eq!(tx.open_table(ID_INDEX).unwrap().len().unwrap(), 2);
        // The ids whose prefix was taken in their run, in key order: 1.1
        // (merged), 1.3 (within the first run), 2.7 and 2.8 (merged).
        let overflow: Vec<u8> = tx
            .open_table(ID_OVERFLOW)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().1.value()[0])
            .collect();
        assert_eq!(overflow, [12, 2, 4, 8]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// However appends and ingests are cut into transactions, and
        /// whenever the runs are compacted, every stored entry is found by
        /// its id, runs stay within their bound, and a store check and a
        /// rebuild agree.
        #[test]
        fn every_entry_is_found_by_id_whatever_the_writes(
            batches in proptest::collection::vec((1usize..12, proptest::bool::weighted(0.2)), 1..16),
        ) {
            // Transactions of more than 6 ids write runs as they go.
            let limits = IdRuns { min: 4, fanin: 3, max: 6 };
            let dir = tempfile::tempdir().unwrap();
            let mut a = Store::open(&dir.path().join("a")).unwrap();
            let mut b = Store::open(&dir.path().join("b")).unwrap();
            a.id_runs = limits;
            b.id_runs = limits;
            let key = SecretKey::from_seed(&[7; 32]);
            let mut ids = Vec::new();
            for (i, (n, compact)) in batches.iter().enumerate() {
                let items = (0..*n)
                    .map(|j| ("tagline/note".to_string(), tagline_format::payload::note(&format!("{i}.{j}"))))
                    .collect();
                let new = a.append_local(&key, items, 1_000 + i as u64).unwrap();
                ids.extend(new.iter().map(|e| e.signed.id()));
                let report = b.ingest(new, u64::MAX / 2, [i as u8; 32], IngestMode::AllOrNothing).unwrap();
                proptest::prop_assert_eq!(report.appended, *n as u64);
                if *compact {
                    // Merging every run leaves one (or none), and nothing
                    // stored is lost to a lookup.
                    let before = b.id_run_count().unwrap();
                    let merged = b.compact_id_runs().unwrap();
                    proptest::prop_assert_eq!(merged, if before >= 2 { before } else { 0 });
                    let tx = b.read().unwrap();
                    let after = run_list(&tx.open_table(ID_RUN_LEVELS).unwrap()).unwrap().len();
                    proptest::prop_assert_eq!(after, before.min(1));
                    let tables = tx
                        .list_tables()
                        .unwrap()
                        .filter(|t| t.name().starts_with("id_run_v1_"))
                        .count();
                    proptest::prop_assert_eq!(tables, after);
                    drop(tx);
                    for id in &ids {
                        proptest::prop_assert!(b.get(id).unwrap().is_some());
                    }
                }
            }
            for s in [&a, &b] {
                let runs = run_list(&s.read().unwrap().open_table(ID_RUN_LEVELS).unwrap()).unwrap();
                for level in 0..=u8::MAX {
                    let at = runs.iter().filter(|(_, l)| *l == level).count();
                    proptest::prop_assert!(at < limits.fanin, "{at} runs of level {level}");
                }
                for id in &ids {
                    proptest::prop_assert!(s.get(id).unwrap().is_some());
                }
                proptest::prop_assert_eq!(s.verify_all([1; 32]).unwrap().problems, Vec::<String>::new());
                s.rebuild_indexes().unwrap();
                let tx = s.read().unwrap();
                proptest::prop_assert!(tx.open_table(ID_RUN_LEVELS).unwrap().is_empty().unwrap());
                let run_tables = tx
                    .list_tables()
                    .unwrap()
                    .filter(|t| t.name().starts_with("id_run_v1_"))
                    .count();
                proptest::prop_assert_eq!(run_tables, 0);
                for id in &ids {
                    proptest::prop_assert!(s.get(id).unwrap().is_some());
                }
            }
        }
    }
}

//! Every redb table of the store, with its key and value layout.
//!
//! Names carry a version suffix: a layout change adds a new table name and a
//! migration, never reinterprets old bytes. Integers are big-endian so that
//! byte order is numeric order.

use redb::TableDefinition;

/// Schema version written under `META["schema"]`. Version 2 added
/// [`ENTRY_PAYLOADS`]; a version-1 store is upgraded in place when opened
/// (nothing to convert: its payloads stay in [`PAYLOADS`], where readers
/// still look), and a version-1 binary refuses a version-2 store rather than
/// miss its payloads.
pub const SCHEMA_VERSION: u32 = 2;

/// Version of the derived tables (every index and cache: what
/// `Store::rebuild_indexes` writes). Bumped whenever one is added or changes
/// layout; a store whose `META["indexes"]` differs is re-indexed from its
/// entries when opened, so no derived table is ever read half-built.
/// Version 5 added the id runs ([`ID_RUN_LEVELS`]).
pub const INDEX_VERSION: u32 = 5;

/// Store metadata. Key: name. Value: bytes.
/// - `"schema"`: [`SCHEMA_VERSION`] as u32 big-endian.
/// - `"indexes"`: [`INDEX_VERSION`] as u32 big-endian (absent before version 2).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

/// One row per known feed.
/// Key: author public key (32 bytes).
/// Value: [`crate::FeedMeta`] in [`FEED_META_LEN`] bytes:
/// `head_seq u64 ‖ head_id [32] ‖ head_timestamp u64 ‖ forked_at u64 (0 = not forked) ‖ confirmed_seq u64`.
pub const FEEDS: TableDefinition<&[u8; 32], &[u8; FEED_META_LEN]> =
    TableDefinition::new("feeds_v1");

/// Length of a [`FEEDS`] value.
pub const FEED_META_LEN: usize = 8 + 32 + 8 + 8 + 8;

/// The entries, keyed by (author, seq) so that a feed's appends are sequential
/// B-tree inserts and a feed's range is one contiguous scan.
/// Key: `author [32] ‖ seq u64` (40 bytes).
/// Value: `entry id [32] ‖ signed header bytes` (the bytes as received).
pub const ENTRIES: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("entries_v1");

/// Entry id to position, kept small: the key is the first 16 bytes of the id.
/// Readers compare the full id stored in [`ENTRIES`]. Two ids sharing a
/// 16-byte prefix (only by a deliberate 2^64-work attack) are handled by
/// [`ID_OVERFLOW`], so nothing is lost.
/// Key: `id[0..16]`. Value: `author [32] ‖ seq u64`.
pub const ID_INDEX: TableDefinition<&[u8; 16], &[u8; 40]> = TableDefinition::new("id_index_v1");

/// Ids of large writes, kept in sorted runs instead of [`ID_INDEX`], so that
/// storing thousands of entries appends their ids in key order instead of
/// inserting each on a random page of one big tree (whose dirty pages per
/// transaction grew with the store). A write transaction's ids form one run
/// of level 0; when `ID_RUN_FANIN` runs share a level they are merged, in
/// key order, into one run of the next level (a log-structured merge: each
/// id is rewritten once per level, sequentially, and the runs stay few).
/// Each run is a table of its own ([`id_run_table`]), so a merged run is
/// dropped whole instead of row by row. A reader looks an id up in
/// [`ID_INDEX`], [`ID_OVERFLOW`] and each run, and compares the full id
/// stored in [`ENTRIES`]; an id whose prefix is already taken in its run
/// goes to [`ID_OVERFLOW`]. `Store::compact_id_runs` merges all runs into
/// one (a running node does when its sync goes idle).
/// Key: run number (a new run takes the last one plus one). Value: its level.
pub const ID_RUN_LEVELS: TableDefinition<u64, u8> = TableDefinition::new("id_run_levels_v1");

/// The name of run `run`'s table ([`ID_RUN_LEVELS`]).
/// Key: `id[0..16]`. Value: `author [32] ‖ seq u64`.
pub fn id_run_table(run: u64) -> String {
    format!("id_run_v1_{run}")
}

/// Rows of one id run ([`id_run_table`]).
pub type IdRunTable<'n> = TableDefinition<'n, &'static [u8; 16], &'static [u8; 40]>;

/// Full-id index for the rare entries whose 16-byte prefix is already taken in
/// [`ID_INDEX`]. Key: the full id. Value: `author [32] ‖ seq u64`.
pub const ID_OVERFLOW: TableDefinition<&[u8; 32], &[u8; 40]> =
    TableDefinition::new("id_overflow_v1");

/// The payload of an entry stored with it, beside its [`ENTRIES`] row and
/// keyed the same way, so that storing a feed's entries writes sequential
/// keys only (a table keyed by payload hash takes every insert on a random
/// page). Key: `author [32] ‖ seq u64`. Value: payload bytes.
pub const ENTRY_PAYLOADS: TableDefinition<&[u8; 40], &[u8]> =
    TableDefinition::new("entry_payloads_v1");

/// Payloads by content, for entries stored without their payload: when a
/// payload arrives that such entries wait for (`AWAITING_PAYLOAD`), it is
/// kept here, where they find it by their header's payload hash; and every
/// payload of a version-1 store. A reader looks in [`ENTRY_PAYLOADS`] first.
/// Key: blake3 of the payload (32 bytes). Value: payload bytes.
pub const PAYLOADS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("payloads_v1");

/// Fork proofs. Key: `author [32] ‖ seq u64` of the fork point.
/// Value: the encoded [`tagline_format::ForkProof`].
pub const FORKS: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("forks_v1");

/// `author ‖ seq` as a table key.
pub fn entry_key(author: &[u8; 32], seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    let (a, s) = k.split_at_mut(32);
    a.copy_from_slice(author);
    s.copy_from_slice(&seq.to_be_bytes());
    k
}

/// The parts of an [`ENTRIES`] key.
pub fn split_entry_key(k: &[u8; 40]) -> ([u8; 32], u64) {
    let mut a = [0u8; 32];
    let mut s = [0u8; 8];
    let (ka, ks) = k.split_at(32);
    a.copy_from_slice(ka);
    s.copy_from_slice(ks);
    (a, u64::from_be_bytes(s))
}

/// The [`ID_INDEX`] key of an id.
pub fn id_prefix(id: &[u8; 32]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(id.get(..16).unwrap_or(&[0; 16]));
    p
}

/// Entries of identity payload types (`tagline/identity/*`, `tagline/device/*`),
/// so identities resolve without scanning every feed.
/// Key: `author [32] ‖ seq u64`. Value: empty.
pub const IDENTITY_ENTRIES: TableDefinition<&[u8; 40], ()> =
    TableDefinition::new("identity_entries_v1");

/// Entries of review payload types (`tagline/project`, `revision`, `review`,
/// `ci`, `merge`, `tag`, `withdraw`), so the review commands read them without
/// scanning every feed. Key: `author [32] ‖ seq u64`. Value: empty.
pub const REVIEW_ENTRIES: TableDefinition<&[u8; 40], ()> =
    TableDefinition::new("review_entries_v1");

/// Review-model entries by the entry they point at, so a series' state is read
/// from its own entries only (no scan). Key: `target id [32] ‖ author [32] ‖
/// seq u64` (72 bytes). Value: empty. Targets: a revision points at its series
/// (the first revision points at itself); a review, CI result or merge at its
/// revision; a tag at its target; a withdrawal at its series; a project
/// amendment at the project.
pub const REVIEW_REFS: TableDefinition<&[u8; 72], ()> = TableDefinition::new("review_refs_v1");

/// The series (first revisions) this store holds. Key: series id. Value:
/// `author [32] ‖ seq u64`.
pub const SERIES: TableDefinition<&[u8; 32], &[u8; 40]> = TableDefinition::new("series_v1");

/// A running digest of the identity entries whose payloads are held: key
/// [`DIGEST_KEY`], value `count u64 ‖ XOR of their ids [32]`. It changes
/// whenever the input of identity resolution changes, including when a payload
/// arrives that an identity entry stored without one was waiting for
/// ([`AWAITING_PAYLOAD`]).
pub const IDENTITY_DIGEST: TableDefinition<&str, &[u8; 40]> =
    TableDefinition::new("identity_digest_v1");

/// The one key of [`IDENTITY_DIGEST`].
pub const DIGEST_KEY: &str = "identity";

/// A cached resolution of the identities: key [`CACHE_KEY`], value `digest
/// [40] ‖ encoded registry` (tagline-identity's `Registry::encode`). Valid only
/// while the digest equals [`IDENTITY_DIGEST`]'s.
pub const IDENTITY_CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("identity_cache_v1");

/// The one key of [`IDENTITY_CACHE`].
pub const CACHE_KEY: &str = "registry";

/// Identity and review entries stored without their payload, by the payload
/// they wait for: when that payload is stored (with any entry: payloads are
/// shared by hash), their payload-dependent index rows (identity digest,
/// review references, series) are written and the rows here removed.
/// Key: `payload hash [32] ‖ author [32] ‖ seq u64` (72 bytes). Value: empty.
pub const AWAITING_PAYLOAD: TableDefinition<&[u8; 72], ()> =
    TableDefinition::new("awaiting_payload_v1");

/// Revision to series: key a revision's id, value its series' id (the first
/// revision maps to itself), so an entry pointing at a revision finds the
/// series whose summary it makes stale.
pub const REVISION_SERIES: TableDefinition<&[u8; 32], &[u8; 32]> =
    TableDefinition::new("revision_series_v1");

/// A per-series summary computed by a reader (the CLI's `series` listing: state,
/// subject, touched files, counted trailers), opaque to the store. The store
/// deletes a series' row in the transaction that indexes any entry pointing at
/// the series or one of its revisions, so a row present was computed from the
/// series' current entries; what else it depends on (identities, the project
/// declaration, time) the reader records in it and checks.
/// Key: series id. Value: the reader's bytes.
pub const SERIES_SUMMARY: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("series_summary_v1");

/// A per-series status view computed by a reader (the CLI's `status`: the
/// whole rule checklist, trailers and CI results, so that a warm `status`
/// reads one row), opaque to the store. Kept exactly as [`SERIES_SUMMARY`]:
/// deleted in the transaction that indexes any entry pointing at the series
/// or one of its revisions, written only under an unchanged summary
/// generation; the reader records and checks its other inputs.
/// Key: series id. Value: the reader's bytes.
pub const SERIES_STATUS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("series_status_v1");

/// The cached identity resolution split per identity (tagline-identity's
/// `Registry::subset(..).encode()`), so a reader loads only the identities it
/// needs. Valid only while `IDENTITY_CACHE[PARTS_KEY]` starts with the
/// current [`IDENTITY_DIGEST`]. Key: identity id. Value: encoded part.
pub const IDENTITY_PARTS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("identity_parts_v1");

/// Key to owning identity, for the keys that count for an identity, written
/// with [`IDENTITY_PARTS`]. Key: public key. Value: identity id.
pub const KEY_OWNERS: TableDefinition<&[u8; 32], &[u8; 32]> = TableDefinition::new("key_owners_v1");

/// The [`IDENTITY_CACHE`] key whose value is `digest [40] ‖ identity ids
/// [32 each]`: the digest the parts were made at, and the identities every
/// reader loads (the email closure: who has a verified address and who
/// verified it).
pub const PARTS_KEY: &str = "parts";

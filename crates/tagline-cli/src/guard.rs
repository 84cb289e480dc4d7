//! Restore safety on one machine: a per-user record of the last head written
//! for each of this user's feeds, and by which data directory.
//!
//! A data directory copied (or restored from a backup) shares its device key
//! with the original. If both append, the feed forks. Before appending, the
//! CLI compares its feed head with the record: when another data directory has
//! written further (or something else at the same sequence number), it refuses
//! until the user imports that copy or says `--i-know-this-is-the-only-copy`.
//! Across machines, the node compares heads with its peers (replication).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tagline_format::{EntryId, Head, PublicKey};

/// Overrides the record's location (tests, several users' setups).
pub const STATE_DIR_ENV: &str = "TAGLINE_STATE_DIR";

fn state_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(STATE_DIR_ENV) {
        return Some(PathBuf::from(p));
    }
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("tagline"))
}

fn record_path(feed: &PublicKey) -> Option<PathBuf> {
    state_dir().map(|d| d.join("heads").join(hex_of(feed.as_bytes())))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Refuses an append to `feed` from `home` (whose head is `mine`) when another
/// data directory on this machine has written a different history.
pub fn check(home: &Path, feed: &PublicKey, mine: Option<Head>, force: bool) -> Result<()> {
    let Some(path) = record_path(feed) else {
        return Ok(());
    };
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut parts = text.trim().splitn(3, ' ');
    let (Some(seq), Some(id), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(());
    };
    let (Ok(seq), Ok(id)) = (seq.parse::<u64>(), id.parse::<EntryId>()) else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    if same_dir(&dir, home) {
        return Ok(());
    }
    let my_seq = mine.map_or(0, |h| h.seq);
    let diverged = seq > my_seq || (seq == my_seq && mine.map(|h| h.id) != Some(id));
    if diverged && !force {
        bail!(
            "feed {feed} was extended elsewhere on this machine (seq {seq} in {}) but {} holds seq {my_seq}: appending here would fork it. \
             Import that copy first (`tagline --home {} export {feed} | tagline import -`), or pass --i-know-this-is-the-only-copy",
            dir.display(),
            home.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Records that `home` wrote `feed` up to `head`.
pub fn record(home: &Path, feed: &PublicKey, head: &Head) -> Result<()> {
    let Some(path) = record_path(feed) else {
        return Ok(());
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let tmp = path.with_extension("tmp");
    fs::write(
        &tmp,
        format!("{} {} {}\n", head.seq, head.id, home.display()),
    )
    .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

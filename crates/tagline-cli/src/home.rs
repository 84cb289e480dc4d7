//! The data directory ("home"): where it is, the device key file, the store.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tagline_format::SecretKey;
use tagline_store::Store;

/// Directory under the platform data directory used when neither `--home`
/// nor `TAGLINE_HOME` is given.
pub const DEFAULT_DIR_NAME: &str = "tagline";
/// Sub-directory holding secret keys (mode 0700).
pub const KEYS_DIR: &str = "keys";
/// The device key file (mode 0600): one line, `tlsec1…`.
pub const DEVICE_KEY_FILE: &str = "device.key";
/// The identity's root key file (mode 0600), absent when kept offline.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The identity this node's device belongs to: one line, `tli1…` (public).
pub const IDENTITY_FILE: &str = "identity";

/// Resolves the data directory: `--home`, then `TAGLINE_HOME` (clap fills
/// both into `flag`), then the platform data directory.
pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let base =
        dirs::data_dir().context("no platform data directory (set TAGLINE_HOME or pass --home)")?;
    Ok(base.join(DEFAULT_DIR_NAME))
}

pub fn key_path(home: &Path) -> PathBuf {
    home.join(KEYS_DIR).join(DEVICE_KEY_FILE)
}

/// Fresh randomness from the operating system.
pub fn random32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| anyhow::anyhow!("the operating system gave no randomness: {e}"))?;
    Ok(b)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Creates the data directory, a new device key and the store. Refuses to
/// overwrite an existing key.
pub fn init(home: &Path) -> Result<SecretKey> {
    let kp = key_path(home);
    if kp.exists() {
        bail!(
            "{} already holds a device key ({}); refusing to replace it",
            home.display(),
            kp.display()
        );
    }
    let keys = home.join(KEYS_DIR);
    fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
    fs::set_permissions(home, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", home.display()))?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", keys.display()))?;
    let key = SecretKey::from_seed(&random32()?);
    write_key_file(&kp, &key)?;
    Store::open(home)?;
    Ok(key)
}

/// Writes a secret key file with mode 0600, refusing to overwrite.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{}", key.to_text().as_str())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

/// Replaces a key file atomically (write a temporary file, rename over).
pub fn replace_key_file(path: &Path, key: &SecretKey) -> Result<()> {
    let tmp = path.with_extension("key.new");
    let _ = fs::remove_file(&tmp);
    write_key_file(&tmp, key)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

pub fn root_key_path(home: &Path) -> PathBuf {
    home.join(KEYS_DIR).join(ROOT_KEY_FILE)
}

/// Reads a secret key file, refusing one that other users can read.
pub fn read_key_file(path: &Path, what: &str) -> Result<SecretKey> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is accessible by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = zeroizing_read(path)?;
    SecretKey::from_text(text.trim())
        .with_context(|| format!("key file {} is damaged", path.display()))
}

/// Loads the identity root key: `--root-key FILE`, else `keys/root.key`.
pub fn load_root(home: &Path, flag: Option<&Path>) -> Result<SecretKey> {
    let path = flag
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root_key_path(home));
    if !path.exists() {
        bail!(
            "this needs the identity's root key, which is not in {} (kept offline?); pass --root-key FILE",
            path.display()
        );
    }
    read_key_file(&path, "root key")
}

/// The identity this home's device belongs to, if known.
pub fn identity(home: &Path) -> Result<Option<tagline_format::identity::IdentityId>> {
    let p = home.join(IDENTITY_FILE);
    match fs::read_to_string(&p) {
        Ok(t) => Ok(Some(
            t.trim()
                .parse()
                .with_context(|| format!("{} is damaged", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

pub fn set_identity(home: &Path, id: &tagline_format::identity::IdentityId) -> Result<()> {
    let p = home.join(IDENTITY_FILE);
    fs::write(&p, format!("{id}\n")).with_context(|| format!("cannot write {}", p.display()))
}

/// Loads the device key, refusing a key file other users can read.
pub fn load_key(home: &Path) -> Result<SecretKey> {
    let kp = key_path(home);
    if !kp.exists() {
        bail!(
            "no device key in {} (run `tagline init` first, or pass --home)",
            home.display()
        );
    }
    read_key_file(&kp, "device key")
}

fn zeroizing_read(p: &Path) -> Result<String> {
    fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// The feeds this data directory writes: its device feed, and its root
/// feed when the root key is here.
pub fn own_feeds(home: &Path) -> Result<std::collections::BTreeSet<tagline_format::PublicKey>> {
    let mut feeds = std::collections::BTreeSet::new();
    feeds.insert(load_key(home)?.public());
    if root_key_path(home).exists() {
        feeds.insert(load_root(home, None)?.public());
    }
    Ok(feeds)
}

/// What changes when the store is written (its file's size and
/// modification time), for a long-running command to notice new entries
/// without opening the store: the gate, the bridge's outbox.
pub type StoreStamp = Option<(u64, Option<std::time::SystemTime>)>;

/// The store's [`StoreStamp`] now.
pub fn store_stamp(home: &Path) -> StoreStamp {
    std::fs::metadata(home.join(tagline_store::DB_FILE))
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// How often a watching command ([`watch`]) checks whether the store was
/// written, to look again at once when it was.
pub const WATCH_STEP: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a watching command waits after a look that failed (the store
/// busy, a push refused) before trying again.
pub const WATCH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `look` (which returns how much it did) until killed, as `tagline
/// ci run` and `tagline gate` do: again at once after a look that did
/// something (it may have made more to do), else as soon as the store was
/// written (an entry arrived from a peer through the node, or from a local
/// command; checked every [`WATCH_STEP`]) and at least every `interval`.
/// The first look's errors (a wrong project, no repository) are returned;
/// later ones are reported and tried again after [`WATCH_RETRY`]. With
/// `once`, one look, printing `idle` if it did nothing.
pub fn watch(
    home: &Path,
    interval: std::time::Duration,
    once: bool,
    idle: &str,
    mut look: impl FnMut() -> Result<usize>,
) -> Result<()> {
    let mut first = true;
    loop {
        let n = match look() {
            Ok(n) => n,
            Err(e) if !first => {
                eprintln!("{e:#} (trying again in {} s)", WATCH_RETRY.as_secs());
                std::thread::sleep(WATCH_RETRY);
                continue;
            }
            Err(e) => return Err(e),
        };
        first = false;
        if once {
            if n == 0 {
                println!("{idle}");
            }
            return Ok(());
        }
        if n > 0 {
            continue;
        }
        // Taken after the look, so that the look's own opening of the store
        // does not count as a change.
        let seen = store_stamp(home);
        let deadline = std::time::Instant::now() + interval.max(WATCH_STEP);
        while std::time::Instant::now() < deadline && store_stamp(home) == seen {
            std::thread::sleep(WATCH_STEP);
        }
    }
}

pub fn open_store(home: &Path) -> Result<OpenStore> {
    if !home.join(tagline_store::DB_FILE).exists() && !key_path(home).exists() {
        bail!(
            "{} is not a Tagline data directory (run `tagline init` first, or pass --home)",
            home.display()
        );
    }
    // While a node runs it holds the store: borrow it (see tagline-node's api).
    let lease = match tagline_node::Client::connect(home)? {
        Some(c) => Some(
            c.lease()
                .context("the node running on this data directory did not lend its store")?,
        ),
        None => None,
    };
    let store = Store::open(home)?;
    Ok(OpenStore {
        store,
        _lease: lease,
    })
}

/// The store, opened directly or borrowed from a running node: dereferences
/// to [`Store`]. Dropping it closes the store, then gives it back.
#[derive(Debug)]
pub struct OpenStore {
    // Field order matters: the store closes before the lease ends.
    store: Store,
    _lease: Option<tagline_node::Lease>,
}

impl std::ops::Deref for OpenStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// A UTC calendar date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub days_since_epoch: i64,
}

/// Milliseconds since the epoch to a UTC date (civil-from-days, proleptic Gregorian).
pub fn civil(ms: u64) -> Civil {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        days_since_epoch: days,
    }
}

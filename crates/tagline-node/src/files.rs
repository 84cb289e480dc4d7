//! The node's files in the data directory, besides the store and the feed
//! keys: its libp2p key, the peers added by hand, and the replication set
//! (follows, subscriptions, blocks). Each is small, owner-only, and replaced
//! atomically (written beside, then renamed over).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::NodeError;

/// The node's libp2p key (mode 0600): 64 hex digits, the ed25519 seed. Its
/// own key, separate from the feed keys: it names the node on the network
/// and signs nothing that is stored.
pub const NODE_KEY_FILE: &str = "keys/node.key";
/// Peers added with `tagline peers add`: one multiaddr per line.
pub const PEERS_FILE: &str = "peers";
/// What this node replicates (`tagline follow`, `subscribe`, `block`).
pub const REPLICATION_FILE: &str = "replication.toml";
/// Largest peers or replication file read.
pub const MAX_LIST_FILE_SIZE: u64 = 4 * 1024 * 1024;
/// Most peers kept in [`PEERS_FILE`].
pub const MAX_PEERS: usize = 1024;

fn io_err(path: &Path, e: std::io::Error) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads a file of at most `max` bytes; `None` when it does not exist.
pub fn read_small(path: &Path, max: u64) -> Result<Option<String>, NodeError> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut text = String::new();
    f.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| io_err(path, e))?;
    if text.len() as u64 > max {
        return Err(NodeError::Io {
            path: path.display().to_string(),
            reason: format!("larger than the {max} bytes allowed"),
        });
    }
    Ok(Some(text))
}

/// Writes `bytes` to `path` atomically, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// The node's libp2p key, created on first use.
pub fn node_key(home: &Path) -> Result<Keypair, NodeError> {
    let path = home.join(NODE_KEY_FILE);
    let bad = |reason: String| NodeError::Io {
        path: path.display().to_string(),
        reason,
    };
    match read_small(&path, 1024)? {
        Some(text) => {
            let mode = fs::metadata(&path)
                .map_err(|e| io_err(&path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "accessible by other users (mode {:o}); run `chmod 600` on it",
                    mode & 0o777
                )));
            }
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|e| bad(format!("expected 64 hex digits: {e}")))?;
            Keypair::ed25519_from_bytes(seed).map_err(|e| bad(e.to_string()))
        }
        None => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| bad(format!("the operating system gave no randomness: {e}")))?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            write_atomic(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
            Keypair::ed25519_from_bytes(seed).map_err(|e| bad(e.to_string()))
        }
    }
}

/// The peers added by hand, in the order added.
pub fn read_peers(home: &Path) -> Result<Vec<String>, NodeError> {
    let text = read_small(&home.join(PEERS_FILE), MAX_LIST_FILE_SIZE)?.unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Adds a peer address; false when it was already there.
pub fn add_peer(home: &Path, addr: &str) -> Result<bool, NodeError> {
    let mut peers = read_peers(home)?;
    if peers.iter().any(|p| p == addr) {
        return Ok(false);
    }
    if peers.len() >= MAX_PEERS {
        return Err(NodeError::Invalid(format!(
            "{PEERS_FILE} already holds {MAX_PEERS} peers; remove some first"
        )));
    }
    peers.push(addr.to_owned());
    let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
    write_atomic(&home.join(PEERS_FILE), text.as_bytes())?;
    Ok(true)
}

/// Removes a peer address; false when it was not there.
pub fn remove_peer(home: &Path, addr: &str) -> Result<bool, NodeError> {
    let mut peers = read_peers(home)?;
    let n = peers.len();
    peers.retain(|p| p != addr);
    if peers.len() == n {
        return Ok(false);
    }
    let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
    write_atomic(&home.join(PEERS_FILE), text.as_bytes())?;
    Ok(true)
}

/// What this node replicates besides its own feeds, as the user said it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// Feed keys (`tlk1…`) and identities (`tli1…`) followed.
    #[serde(default)]
    pub follow: Vec<String>,
    /// Project ids subscribed to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Feed keys and identities never fetched nor served.
    #[serde(default)]
    pub block: Vec<String>,
}

/// Most items in each list of [`Replication`].
pub const MAX_REPLICATION_ITEMS: usize = 100_000;

impl Replication {
    pub fn load(home: &Path) -> Result<Replication, NodeError> {
        let path = home.join(REPLICATION_FILE);
        let Some(text) = read_small(&path, MAX_LIST_FILE_SIZE)? else {
            return Ok(Replication::default());
        };
        let r: Replication = toml::from_str(&text).map_err(|e| NodeError::Config {
            path: path.display().to_string(),
            reason: e.message().to_owned(),
        })?;
        Ok(r)
    }

    pub fn save(&self, home: &Path) -> Result<(), NodeError> {
        for list in [&self.follow, &self.subscribe, &self.block] {
            if list.len() > MAX_REPLICATION_ITEMS {
                return Err(NodeError::Invalid(format!(
                    "at most {MAX_REPLICATION_ITEMS} follows, subscriptions or blocks each, found {}",
                    list.len()
                )));
            }
        }
        let body = toml::to_string(self).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let text = format!(
            "# What this node replicates; written by `tagline follow`, `subscribe`\n\
             # and `block` (and their `un` forms), which also tell a running node.\n\
             # Editing by hand is fine: a running node reads it again when feeds\n\
             # change or at its next start.\n{body}"
        );
        write_atomic(&home.join(REPLICATION_FILE), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_created_once_and_kept_private() {
        let d = tempfile::tempdir().unwrap();
        let a = node_key(d.path()).unwrap();
        let b = node_key(d.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let p = d.path().join(NODE_KEY_FILE);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = node_key(d.path()).unwrap_err().to_string();
        assert!(e.contains("other users"), "{e}");
    }

    #[test]
    fn peers_file_adds_once_and_removes() {
        let d = tempfile::tempdir().unwrap();
        assert!(add_peer(d.path(), "/ip4/127.0.0.1/tcp/1").unwrap());
        assert!(!add_peer(d.path(), "/ip4/127.0.0.1/tcp/1").unwrap());
        assert!(add_peer(d.path(), "/ip4/127.0.0.1/tcp/2").unwrap());
        assert_eq!(read_peers(d.path()).unwrap().len(), 2);
        assert!(remove_peer(d.path(), "/ip4/127.0.0.1/tcp/1").unwrap());
        assert_eq!(read_peers(d.path()).unwrap(), vec!["/ip4/127.0.0.1/tcp/2"]);
    }

    #[test]
    fn replication_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Replication::load(d.path()).unwrap(), Replication::default());
        let r = Replication {
            follow: vec!["a".into()],
            subscribe: vec!["b".into()],
            block: vec![],
        };
        r.save(d.path()).unwrap();
        assert_eq!(Replication::load(d.path()).unwrap(), r);
        fs::write(d.path().join(REPLICATION_FILE), "folow = []").unwrap();
        assert!(Replication::load(d.path()).is_err());
    }
}

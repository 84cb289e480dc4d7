//! The local API: a Unix socket in the data directory ([`API_SOCKET`],
//! mode 0600 in a 0700 directory), reachable only by the user who owns the
//! node: the server also checks each connection's peer credentials (the
//! connecting process must run as the socket's owner). Nothing listens on a
//! TCP port, so no other user and no web page can reach it.
//!
//! One JSON object per line each way ([`Request`], answered by a JSON object
//! with `"ok": true` or `"error": "…"`). Besides questions about the running
//! node, the API lends the store: redb lets one process at a time open the
//! database, so a CLI command run while the node runs asks for a
//! [`Request::Lease`]; the node stops touching the store (its connections
//! stay up; sync work waits), closes it and answers; the command opens the
//! store itself, does its work, closes it and sends [`Request::Release`] (or
//! just exits: the connection closing ends the lease too). The node then
//! opens the store again and announces whatever was appended meanwhile.
//! Every CLI command therefore works the same with or without a node.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeError;

/// The API socket, in the data directory.
pub const API_SOCKET: &str = "node.sock";
/// Longest request or answer line, in bytes.
pub const MAX_API_LINE: usize = 1024 * 1024;
/// How long a client waits for an answer to a question.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for the node to lend the store (it finishes the
/// batch it is storing first).
pub const LEASE_WAIT: Duration = Duration::from_secs(120);

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The node's peer id, addresses, peers and sync state ([`NodeInfo`]).
    Info,
    /// Dial an address now.
    Dial {
        addr: String,
    },
    /// Read the replication file and the configuration's peers again.
    Reload,
    /// Lend the store to this connection until [`Request::Release`] or until
    /// the connection closes.
    Lease,
    Release,
}

/// A connected peer, as [`NodeInfo`] shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerJson {
    pub peer: String,
    pub addr: String,
    pub dialled: bool,
    pub agent: Option<String>,
}

/// A feed where a peer is ahead of this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BehindJson {
    pub peer: String,
    pub feed: String,
    pub ours: u64,
    pub theirs: u64,
}

/// The running node, as `Request::Info` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub connected: Vec<PeerJson>,
    pub behind: Vec<BehindJson>,
    /// Every connected peer compared with, nothing left to fetch.
    pub idle: bool,
    /// A CLI command holds the store; sync waits for it.
    pub lent: bool,
    pub wanted_feeds: usize,
    pub topics: usize,
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join(API_SOCKET)
}

/// A connection to a running node.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

fn api_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Api(e.to_string())
}

impl Client {
    /// Connects to the node running on `home`; `None` when none runs (no
    /// socket, or a socket nobody listens on: a node that did not stop
    /// cleanly).
    pub fn connect(home: &Path) -> Result<Option<Client>, NodeError> {
        let path = socket_path(home);
        match UnixStream::connect(&path) {
            Ok(s) => {
                s.set_read_timeout(Some(API_TIMEOUT)).map_err(api_err)?;
                let writer = s.try_clone().map_err(api_err)?;
                Ok(Some(Client {
                    reader: BufReader::new(s),
                    writer,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(NodeError::Api(format!(
                "cannot reach the node at {}: {e}",
                path.display()
            ))),
        }
    }

    fn send(&mut self, r: &Request) -> Result<(), NodeError> {
        let mut line = serde_json::to_vec(r).map_err(api_err)?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(api_err)
    }

    fn answer(&mut self) -> Result<serde_json::Value, NodeError> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_API_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| NodeError::Api(format!("no answer from the node: {e}")))?;
        if line.is_empty() {
            return Err(NodeError::Api("the node closed the connection".into()));
        }
        let v: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| NodeError::Api(format!("the node's answer is not JSON: {e}")))?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Err(NodeError::Api(format!("the node says: {e}")));
        }
        Ok(v)
    }

    /// Sends a request and reads its answer.
    pub fn call(&mut self, r: &Request) -> Result<serde_json::Value, NodeError> {
        self.send(r)?;
        self.answer()
    }

    pub fn info(&mut self) -> Result<NodeInfo, NodeError> {
        let v = self.call(&Request::Info)?;
        serde_json::from_value(v.get("info").cloned().unwrap_or_default())
            .map_err(|e| NodeError::Api(format!("unexpected answer to info: {e}")))
    }

    /// Asks for the store; once this returns, the caller may open it.
    pub fn lease(mut self) -> Result<Lease, NodeError> {
        self.writer
            .set_read_timeout(Some(LEASE_WAIT))
            .map_err(api_err)?;
        self.call(&Request::Lease)?;
        Ok(Lease { client: Some(self) })
    }
}

/// The store lent by a running node; dropping it gives the store back, so
/// drop the [`tagline_store::Store`] first.
#[derive(Debug)]
pub struct Lease {
    client: Option<Client>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            // No answer to wait for: the node takes the store back on
            // release or when the connection closes, and serialises leases.
            let _ = c.send(&Request::Release);
        }
    }
}

/// The owner of the socket file: the user the node runs as.
pub fn socket_owner(path: &Path) -> Result<u32, NodeError> {
    std::fs::metadata(path)
        .map(|m| m.uid())
        .map_err(|e| NodeError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object() {
        let j = serde_json::to_string(&Request::Dial {
            addr: "/ip4/127.0.0.1/tcp/1".into(),
        })
        .unwrap();
        assert_eq!(j, r#"{"op":"dial","addr":"/ip4/127.0.0.1/tcp/1"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"lease"}"#).unwrap(),
            Request::Lease
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"format-disk"}"#).is_err());
    }

    #[test]
    fn no_node_no_client() {
        let d = tempfile::tempdir().unwrap();
        assert!(Client::connect(d.path()).unwrap().is_none());
        // A socket file left by a node that did not stop cleanly.
        let l = std::os::unix::net::UnixListener::bind(socket_path(d.path())).unwrap();
        drop(l);
        assert!(Client::connect(d.path()).unwrap().is_none());
    }
}

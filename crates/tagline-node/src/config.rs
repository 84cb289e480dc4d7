//! `config.toml` in the data directory: what `tagline node` listens on, whom
//! it dials, and its limits. Every key is documented in [`DEFAULT_CONFIG`],
//! which is written on first run; flags given to `tagline node` override it.

use std::path::Path;

use libp2p::Multiaddr;
use serde::Deserialize;

use crate::NodeError;

/// The configuration file, in the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The TCP port a node listens on when the configuration does not say.
pub const DEFAULT_PORT: u16 = 7411;
/// How long `tagline node --once` waits for the sync to finish.
pub const DEFAULT_ONCE_TIMEOUT_SECS: u64 = 300;
/// Largest configuration file read.
pub const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// The file written on first run: every key, its default, what it does.
pub const DEFAULT_CONFIG: &str = r#"# Tagline node configuration (`tagline node` reads it at start).
# Flags override these keys: `tagline node --help`.

# Addresses to listen on, as libp2p multiaddrs. Port 0 picks a free port.
# TCP (with noise encryption and yamux multiplexing) and QUIC.
listen = ["/ip4/0.0.0.0/tcp/7411", "/ip6/::/tcp/7411", "/ip4/0.0.0.0/udp/7411/quic-v1", "/ip6/::/udp/7411/quic-v1"]

# Peers dialled at start, as multiaddrs, with or without /p2p/PEER_ID.
# `tagline peers add MULTIADDR` keeps its own list in the file `peers`
# beside this one; both are dialled.
peers = []

# Find peers on the local network with mDNS.
mdns = true

# Addresses other nodes can reach this one at, if any: a public address or
# a forwarded port, e.g. "/ip4/203.0.113.7/tcp/7411". With one, the node
# answers DHT (Kademlia) queries for others and can serve as a relay;
# without, it only asks. Known peers (above and in `peers`) are its way
# into the DHT.
external = []

# Relay connections for nodes behind NAT (circuit relay v2), as SSB pubs and
# Radicle seeds do. Needs `external`. Each circuit is limited in time and
# bytes (see docs/node.md).
relay = false

# Relays to listen through when this node cannot be reached directly, as
# multiaddrs ending in /p2p/RELAY_PEER_ID. Peers then reach it at
# RELAY_ADDRESS/p2p-circuit/p2p/THIS_PEER_ID (`tagline peers` prints it).
relays = []

# Most connections kept at once, incoming and outgoing together.
max_connections = 128

# Seconds `tagline node --once` waits for the sync to finish before it
# gives up with an error.
once_timeout_secs = 300
"#;

/// The node's configuration, as read from [`CONFIG_FILE`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    #[serde(default)]
    pub peers: Vec<String>,
    #[serde(default = "yes")]
    pub mdns: bool,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default)]
    pub external: Vec<String>,
    #[serde(default)]
    pub relay: bool,
    #[serde(default)]
    pub relays: Vec<String>,
    #[serde(default = "default_once_timeout")]
    pub once_timeout_secs: u64,
}

fn default_listen() -> Vec<String> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
        format!("/ip6/::/tcp/{DEFAULT_PORT}"),
        format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
        format!("/ip6/::/udp/{DEFAULT_PORT}/quic-v1"),
    ]
}
fn yes() -> bool {
    true
}
fn default_max_connections() -> u32 {
    tagline_net::DEFAULT_MAX_CONNECTIONS
}
fn default_once_timeout() -> u64 {
    DEFAULT_ONCE_TIMEOUT_SECS
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: default_listen(),
            peers: Vec::new(),
            mdns: true,
            max_connections: default_max_connections(),
            external: Vec::new(),
            relay: false,
            relays: Vec::new(),
            once_timeout_secs: DEFAULT_ONCE_TIMEOUT_SECS,
        }
    }
}

impl NodeConfig {
    /// Reads `home/config.toml`; the defaults when there is none.
    pub fn load(home: &Path) -> Result<NodeConfig, NodeError> {
        let path = home.join(CONFIG_FILE);
        let text = match crate::files::read_small(&path, MAX_CONFIG_SIZE) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(NodeConfig::default()),
            Err(e) => return Err(e),
        };
        NodeConfig::parse(&text).map_err(|reason| NodeError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses a configuration and checks its addresses.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        for a in c.listen.iter().chain(&c.peers).chain(&c.external) {
            parse_addr(a)?;
        }
        for a in &c.relays {
            let addr = parse_addr(a)?;
            if !matches!(
                addr.iter().last(),
                Some(libp2p::multiaddr::Protocol::P2p(_))
            ) {
                return Err(format!(
                    "relays: {a:?} does not end in /p2p/PEER_ID (the relay's peer id is needed to reserve a slot)"
                ));
            }
        }
        if c.relay && c.external.is_empty() {
            return Err("relay = true needs an `external` address that others can reach".into());
        }
        if c.max_connections == 0 {
            return Err("max_connections must be at least 1, found 0".into());
        }
        Ok(c)
    }

    /// Writes [`DEFAULT_CONFIG`] unless a configuration exists.
    pub fn write_default(home: &Path) -> Result<(), NodeError> {
        let path = home.join(CONFIG_FILE);
        if path.exists() {
            return Ok(());
        }
        crate::files::write_atomic(&path, DEFAULT_CONFIG.as_bytes())
    }
}

/// A multiaddr, with an error that names it.
pub fn parse_addr(a: &str) -> Result<Multiaddr, String> {
    a.trim()
        .parse::<Multiaddr>()
        .map_err(|e| format!("{a:?} is not a multiaddr such as /ip4/192.0.2.1/tcp/7411: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        assert_eq!(NodeConfig::parse(DEFAULT_CONFIG), Ok(NodeConfig::default()));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let e = NodeConfig::parse("listne = []").unwrap_err();
        assert!(e.contains("listne"), "{e}");
        let e = NodeConfig::parse("peers = [\"example.org:7411\"]").unwrap_err();
        assert!(
            e.contains("example.org:7411") && e.contains("multiaddr"),
            "{e}"
        );
        let e = NodeConfig::parse("relays = [\"/ip4/192.0.2.1/tcp/7411\"]").unwrap_err();
        assert!(e.contains("/p2p/"), "{e}");
        let e = NodeConfig::parse("relay = true").unwrap_err();
        assert!(e.contains("external"), "{e}");
        let e = NodeConfig::parse("max_connections = 0").unwrap_err();
        assert!(e.contains("max_connections"), "{e}");
        assert!(NodeConfig::parse("mdns = \"yes\"").is_err());
    }
}

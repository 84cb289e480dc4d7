//! `tagline node`, `peers`, `sync status`, `follow`, `subscribe`, `block`:
//! the local node and what it replicates (tagline-node does the work).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tagline_node::files::{self, Replication};
use tagline_node::interests::{Target, parse_project};
use tagline_node::{Client, NodeInfo, Options, Own};

use crate::{home, ident, reviewcmd};

/// Flags of `tagline node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Listen on MULTIADDR instead of the configuration's addresses (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Also dial MULTIADDR at start (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<String>,
    /// Do not look for peers on the local network (mDNS)
    #[arg(long)]
    pub no_mdns: bool,
    /// Connect to the known peers, sync, and exit: 0 when done, non-zero with
    /// the reason otherwise (for cron, scripts and CI)
    #[arg(long)]
    pub once: bool,
    /// With --once: give up after SECONDS [default: the configuration's once_timeout_secs]
    #[arg(long, value_name = "SECONDS", requires = "once")]
    pub timeout: Option<u64>,
}

/// `tagline node`: creates the data directory and identity on first run,
/// then runs the node in the foreground.
pub fn node(home_dir: &Path, a: NodeArgs) -> Result<()> {
    if !home::key_path(home_dir).exists() {
        ident::init(home_dir, false)?;
    }
    let own = Own {
        feeds: home::own_feeds(home_dir)?,
        identity: home::identity(home_dir)?,
    };
    let opts = Options {
        listen: a.listen,
        peers: a.peer,
        mdns: a.no_mdns.then_some(false),
        once: a.once,
        once_timeout: a.timeout.map(Duration::from_secs),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let once = opts.once;
    let report = rt.block_on(tagline_node::run(home_dir, opts, own, |r| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "data dir   {}", home_dir.display());
        let _ = writeln!(out, "peer id    {}", r.peer_id);
        for a in &r.listen {
            let _ = writeln!(out, "listening  {a}/p2p/{}", r.peer_id);
        }
        if r.dialling > 0 {
            let _ = writeln!(out, "dialling   {} known peers", r.dialling);
        }
        if !once {
            let _ = writeln!(out, "running: Ctrl-C stops");
        }
        let _ = out.flush();
    }))?;
    if let Some(r) = report {
        println!(
            "synced with {} peers; {} feeds updated",
            r.peers, r.feeds_updated
        );
    }
    Ok(())
}

fn running(home_dir: &Path) -> Result<Option<Client>> {
    Ok(Client::connect(home_dir)?)
}

/// `tagline peers`: known and connected peers.
pub fn peers_list(home_dir: &Path, as_json: bool) -> Result<()> {
    let config = tagline_node::NodeConfig::load(home_dir)?;
    let added = files::read_peers(home_dir)?;
    let info = match running(home_dir)? {
        Some(mut c) => Some(c.info()?),
        None => None,
    };
    if as_json {
        println!(
            "{}",
            json!({
                "configured": config.peers,
                "added": added,
                "running": info.is_some(),
                "listening": info.as_ref().map(|i| &i.listen),
                "connected": info.as_ref().map(|i| &i.connected),
            })
        );
        return Ok(());
    }
    for p in &config.peers {
        println!("known      {p}  (config.toml)");
    }
    for p in &added {
        println!("known      {p}");
    }
    match info {
        Some(i) => {
            for a in &i.listen {
                println!("reachable  {a}");
            }
            for p in &i.connected {
                println!(
                    "connected  {}  {}  {}{}",
                    p.peer,
                    p.addr,
                    if p.dialled { "outgoing" } else { "incoming" },
                    p.agent
                        .as_deref()
                        .map(|a| format!("  {a}"))
                        .unwrap_or_default()
                );
            }
            if i.connected.is_empty() {
                println!("no peer connected");
            }
        }
        None => println!("no node is running (start one with `tagline node`)"),
    }
    Ok(())
}

/// `tagline peers add`: remembers the address and, when a node runs, dials it.
pub fn peers_add(home_dir: &Path, addr: &str) -> Result<()> {
    let m = tagline_node::config::parse_addr(addr).map_err(anyhow::Error::msg)?;
    let text = m.to_string();
    let new = files::add_peer(home_dir, &text)?;
    println!("{} {text}", if new { "added" } else { "already known:" });
    if let Some(mut c) = running(home_dir)? {
        c.call(&tagline_node::Request::Dial { addr: text })?;
        println!("the running node is dialling it");
    }
    Ok(())
}

pub fn peers_remove(home_dir: &Path, addr: &str) -> Result<()> {
    let m = tagline_node::config::parse_addr(addr).map_err(anyhow::Error::msg)?;
    if !files::remove_peer(home_dir, &m.to_string())? {
        bail!("{m} is not among the peers added with `tagline peers add`");
    }
    println!("removed {m}");
    Ok(())
}

/// `tagline sync status`: per peer and per feed, how far behind this node is.
pub fn sync_status(home_dir: &Path, as_json: bool) -> Result<()> {
    let Some(mut c) = running(home_dir)? else {
        if as_json {
            println!("{}", json!({ "running": false }));
        } else {
            println!(
                "no node is running: start one with `tagline node`, or sync once with `tagline node --once`"
            );
        }
        return Ok(());
    };
    let info = c.info()?;
    if as_json {
        let mut v = serde_json::to_value(&info)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("running".into(), json!(true));
        }
        println!("{v}");
        return Ok(());
    }
    print_status(&info);
    Ok(())
}

fn print_status(i: &NodeInfo) {
    let state = if i.lent {
        "paused (a command holds the store)"
    } else if i.connected.is_empty() {
        "no peer connected"
    } else if i.idle {
        "up to date with every connected peer"
    } else {
        "syncing"
    };
    println!("node {}: {state}", i.peer_id);
    println!(
        "replicating {} feeds and {} projects",
        i.wanted_feeds, i.topics
    );
    for p in &i.connected {
        let behind: Vec<_> = i.behind.iter().filter(|b| b.peer == p.peer).collect();
        if behind.is_empty() {
            println!("peer {}  {}  up to date", p.peer, p.addr);
        } else {
            let n: u64 = behind.iter().map(|b| b.theirs.saturating_sub(b.ours)).sum();
            println!(
                "peer {}  {}  behind on {} feeds ({n} entries)",
                p.peer,
                p.addr,
                behind.len()
            );
            for b in behind {
                println!(
                    "  feed {}  have {}  peer has {}  (behind by {})",
                    b.feed,
                    b.ours,
                    b.theirs,
                    b.theirs.saturating_sub(b.ours)
                );
            }
        }
    }
}

/// Which list of the replication file a command edits.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Follow,
    Subscribe,
    Block,
}

/// `tagline follow/subscribe/block` (`add`) and their `un` forms.
pub fn edit(home_dir: &Path, list: List, item: &str, add: bool) -> Result<()> {
    let value = match list {
        List::Follow | List::Block => {
            Target::parse(item)?;
            item.trim().to_owned()
        }
        List::Subscribe => match parse_project(item) {
            Ok(id) => id.to_string(),
            // A name or id prefix of a project this node knows.
            Err(_) => reviewcmd::project_id(home_dir, item)?.to_string(),
        },
    };
    let mut r = Replication::load(home_dir)?;
    let (v, what) = match list {
        List::Follow => (&mut r.follow, "following"),
        List::Subscribe => (&mut r.subscribe, "subscribed to"),
        List::Block => (&mut r.block, "blocking"),
    };
    let had = v.contains(&value);
    if add == had {
        let state = if add { "already" } else { "not" };
        println!("{state} {what} {value}");
        return Ok(());
    }
    if add {
        v.push(value.clone());
    } else {
        v.retain(|x| *x != value);
    }
    r.save(home_dir)?;
    println!(
        "{} {value}",
        if add {
            what.to_owned()
        } else {
            format!("no longer {what}")
        }
    );
    if let Some(mut c) = running(home_dir)? {
        c.call(&tagline_node::Request::Reload)?;
    }
    Ok(())
}

/// `tagline follow` with no argument: the replication file.
pub fn show_replication(home_dir: &Path, as_json: bool) -> Result<()> {
    let r = Replication::load(home_dir)?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    for (list, what) in [
        (&r.follow, "follow"),
        (&r.subscribe, "subscribe"),
        (&r.block, "block"),
    ] {
        for i in list {
            println!("{what:<10} {i}");
        }
    }
    if r.follow.is_empty() && r.subscribe.is_empty() && r.block.is_empty() {
        println!(
            "nothing followed, subscribed to or blocked (your own identity's feeds are always replicated)"
        );
    }
    Ok(())
}

//! The replication set: from what the user follows, subscribes to and
//! blocks (the [`Replication`] file), this node's own keys, and what the
//! store holds (identities' devices, projects' roles and publishing feeds),
//! the [`Interests`] handed to the network driver.
//!
//! Following an identity replicates its root feeds and every device feed it
//! authorised; subscribing to a project replicates the feeds that publish to
//! it (learnt from peers through the project's topic, and from the store)
//! and the identities the project's entries name (lead, maintainers, CI,
//! gates, bridges).

use std::collections::{BTreeMap, BTreeSet};

use tagline_format::identity::{IdentityId, IdentityPayload};
use tagline_format::review::ReviewPayload;
use tagline_format::{EntryId, PublicKey};
use tagline_identity::{Input, Registry, resolve};
use tagline_net::Interests;
use tagline_store::{Store, StoreError};

use crate::NodeError;
use crate::files::Replication;

/// Resolves every identity from the store's identity entries, through the
/// store's cache when the identity entries have not changed since. Returns
/// the identity digest read before resolving: an append racing with it can
/// only make the cache stale (recomputed next time), never wrong.
pub fn registry_at(store: &Store) -> Result<([u8; 40], Registry), StoreError> {
    let digest = store.identity_digest()?;
    if let Some(bytes) = store.identity_cache()?
        && let Some(reg) = Registry::decode(&bytes)
    {
        return Ok((digest, reg));
    }
    let stored = store.identity_entries()?;
    let inputs: Vec<Input<'_>> = stored
        .iter()
        .map(|e| Input {
            signed: &e.signed,
            payload: e.payload.as_deref(),
        })
        .collect();
    let reg = resolve(&inputs);
    store.put_identity_cache(&digest, &reg.encode())?;
    Ok((digest, reg))
}

/// A followed or blocked item: a feed key or an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Feed(PublicKey),
    Identity(IdentityId),
}

impl Target {
    /// Parses `tlk1…` or `tli1…`.
    pub fn parse(s: &str) -> Result<Target, NodeError> {
        let s = s.trim();
        if let Ok(k) = s.parse::<PublicKey>() {
            return Ok(Target::Feed(k));
        }
        if let Ok(i) = s.parse::<IdentityId>() {
            return Ok(Target::Identity(i));
        }
        Err(NodeError::Invalid(format!(
            "expected a feed key (tlk1…) or an identity id (tli1…), found {s:?}"
        )))
    }

    /// The feeds this stands for: a feed itself; an identity's roots and
    /// devices as far as the registry knows them (its first root always).
    pub fn feeds(&self, registry: &Registry) -> BTreeSet<PublicKey> {
        match self {
            Target::Feed(k) => [*k].into(),
            Target::Identity(id) => identity_feeds(registry, id),
        }
    }
}

fn identity_feeds(registry: &Registry, id: &IdentityId) -> BTreeSet<PublicKey> {
    let mut out: BTreeSet<PublicKey> = [id.0].into();
    if let Some(i) = registry.identities.get(id) {
        out.extend(i.roots.iter().map(|(k, _)| *k));
        out.extend(i.devices.iter().map(|d| d.key));
    }
    out
}

/// The identity each of `devices` joined (its lowest-seq
/// `tagline/device/join`, SPEC.md §12), for those whose join the store
/// holds. Reads the identity entries only when `devices` is not empty.
fn joined_identities(
    store: &Store,
    devices: &BTreeSet<PublicKey>,
) -> Result<BTreeSet<IdentityId>, StoreError> {
    if devices.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut first: BTreeMap<PublicKey, (u64, IdentityId)> = BTreeMap::new();
    for e in store.identity_entries()? {
        let h = e.signed.header();
        if !devices.contains(&h.author) {
            continue;
        }
        let Some(p) = e.payload.as_deref() else {
            continue;
        };
        if let Ok(Some(IdentityPayload::Join { identity })) =
            IdentityPayload::decode(&h.payload_type, p)
        {
            let slot = first.entry(h.author).or_insert((h.seq, identity));
            if h.seq < slot.0 {
                *slot = (h.seq, identity);
            }
        }
    }
    Ok(first.into_values().map(|(_, id)| id).collect())
}

/// Parses a project id (the id of its declaring entry).
pub fn parse_project(s: &str) -> Result<EntryId, NodeError> {
    s.trim().parse::<EntryId>().map_err(|_| {
        NodeError::Invalid(format!(
            "expected a project id (the id of its declaring entry, tle1…), found {s:?}"
        ))
    })
}

/// A project's publishing feeds, and the identities its project entries name.
type ProjectFeeds = (BTreeSet<PublicKey>, BTreeSet<IdentityId>);

/// The feeds publishing to each project the store holds entries of, and
/// the identities its project entries name.
fn projects(store: &Store) -> Result<BTreeMap<EntryId, ProjectFeeds>, StoreError> {
    let mut out: BTreeMap<EntryId, ProjectFeeds> = BTreeMap::new();
    // Revision → project, then everything else by the revision or series it
    // points at.
    let entries = store.review_entries()?;
    let mut decoded = Vec::with_capacity(entries.len());
    for e in &entries {
        let Some(p) = e.payload.as_deref() else {
            continue;
        };
        if let Ok(Some(d)) = ReviewPayload::decode(&e.signed.header().payload_type, p) {
            decoded.push((e, d));
        }
    }
    let mut project_of: BTreeMap<EntryId, EntryId> = BTreeMap::new();
    for (e, d) in &decoded {
        if let ReviewPayload::Revision(r) = d {
            project_of.insert(e.signed.id(), r.project);
            project_of.insert(r.series.unwrap_or_else(|| e.signed.id()), r.project);
        }
    }
    for (e, d) in &decoded {
        let project = match d {
            ReviewPayload::Project(p) => Some(p.amends.unwrap_or_else(|| e.signed.id())),
            ReviewPayload::Revision(r) => Some(r.project),
            ReviewPayload::Review(r) => project_of.get(&r.revision).copied(),
            ReviewPayload::Ci(c) => project_of.get(&c.revision).copied(),
            ReviewPayload::Merge(m) => project_of.get(&m.revision).copied(),
            ReviewPayload::Tag(t) => project_of.get(&t.target).copied(),
            ReviewPayload::Withdraw(s) => project_of.get(s).copied(),
        };
        let Some(project) = project else {
            continue;
        };
        let (feeds, named) = out.entry(project).or_default();
        feeds.insert(*e.signed.author());
        if let ReviewPayload::Project(p) = d {
            named.extend(
                p.maintainers
                    .iter()
                    .chain(&p.committers)
                    .chain(&p.reviewers)
                    .chain(&p.bridges)
                    .chain(&p.gates)
                    .chain(p.ci.iter().map(|c| &c.identity))
                    .copied(),
            );
        }
    }
    Ok(out)
}

/// Computes the interests of a node whose own feeds are `own`, from the
/// replication file and the store.
pub fn interests(
    store: &Store,
    replication: &Replication,
    own: &BTreeSet<PublicKey>,
    own_identity: Option<IdentityId>,
) -> Result<Interests, NodeError> {
    let (_, registry) = registry_at(store)?;
    let mut wants = BTreeSet::new();
    if let Some(id) = own_identity {
        // The other devices and roots of this node's identity.
        wants.extend(identity_feeds(&registry, &id));
    }
    for f in &replication.follow {
        wants.extend(Target::parse(f)?.feeds(&registry));
    }
    let mut blocked = BTreeSet::new();
    for b in &replication.block {
        blocked.extend(Target::parse(b)?.feeds(&registry));
    }
    let mut topics = BTreeSet::new();
    for s in &replication.subscribe {
        topics.insert(parse_project(s)?);
    }
    let all = projects(store)?;
    // A lead's node follows the projects it declared.
    for project in all.keys() {
        if let Some(decl) = store.get(project)?
            && own.contains(decl.signed.author())
        {
            topics.insert(*project);
        }
    }
    let mut topic_feeds = BTreeMap::new();
    // Publishing feeds whose identity this node does not know yet.
    let mut strangers = BTreeSet::new();
    for (project, (feeds, named)) in all {
        if topics.contains(&project) {
            for id in named {
                wants.extend(identity_feeds(&registry, &id));
            }
            // The feeds publishing to it are replicated like follows.
            wants.extend(feeds.iter().copied());
            strangers.extend(feeds.iter().filter(|k| registry.owner_of(k).is_none()));
        }
        // Peers asking about any project held here are answered.
        topic_feeds.insert(project.0, feeds);
    }
    // And the identities those publishers joined: without its roots, a
    // reviewer's entries count for nobody (SPEC.md §12).
    for id in joined_identities(store, &strangers)? {
        wants.extend(identity_feeds(&registry, &id));
    }
    for k in own {
        wants.remove(k);
    }
    Ok(Interests {
        wants,
        own: own.clone(),
        topics: topics.iter().map(|t| t.0).collect(),
        topic_feeds,
        blocked,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use tagline_format::SecretKey;
    use tagline_format::review::Revision;

    /// A subscriber holds a reviewer's device feed (it publishes to the
    /// project) but not the identity it joined: it wants that identity's
    /// root feed, without which the reviewer's entries count for nobody.
    #[test]
    fn a_subscribed_projects_publishers_bring_their_identities() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (root, device) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        let identity = IdentityId(root.public());
        let project = EntryId([9; 32]);
        let join = IdentityPayload::Join { identity };
        let rev = ReviewPayload::Revision(Revision {
            project,
            series: None,
            version: 1,
            base_commit: None,
            cover: None,
            changelog: None,
            patches: Vec::new(),
            change_id: None,
            mails: None,
        });
        store
            .append_local(
                &device,
                vec![
                    (join.type_name().to_string(), join.encode()),
                    (rev.type_name().to_string(), rev.encode()),
                ],
                1,
            )
            .unwrap();
        let replication = Replication {
            subscribe: vec![project.to_string()],
            ..Replication::default()
        };
        let wants = |store: &Store| {
            interests(store, &replication, &BTreeSet::new(), None)
                .unwrap()
                .wants
        };
        let w = wants(&store);
        assert!(w.contains(&device.public()), "the publishing feed");
        assert!(w.contains(&root.public()), "the identity it joined");
        // Not subscribed: neither.
        let none = interests(&store, &Replication::default(), &BTreeSet::new(), None)
            .unwrap()
            .wants;
        assert!(none.is_empty(), "{none:?}");
    }
}

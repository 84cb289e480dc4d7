//! The declaration of a project in force: the lead's declaration, replaced by
//! the lead's amendments, or by an amendment that a quorum of the declared
//! maintainers published identically when the policy in force allows it
//! (`[amend] maintainer_quorum`). Pure and order-independent: amendments are
//! taken in (timestamp, id) order, whatever order they arrived in.

use std::collections::{BTreeMap, BTreeSet};

use tagline_format::EntryId;
use tagline_format::identity::IdentityId;
use tagline_format::review::{Project, ReviewPayload};
use tagline_identity::Registry;

use crate::policy::Policy;
use crate::rules::Input;

/// An amendment proposed by maintainers that has not reached its quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The entries that propose it (identical declarations), oldest first.
    pub entries: Vec<EntryId>,
    /// The maintainers who published it.
    pub supporters: BTreeSet<IdentityId>,
    /// The quorum the policy in force asks for.
    pub needed: u64,
}

/// A project as every node sees it from the same entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProject<'a> {
    /// The declaring entry.
    pub id: EntryId,
    /// The identity that declared it (the lead).
    pub lead: Option<IdentityId>,
    /// The declaration in force.
    pub decl: &'a Project,
    /// The amendments that took effect, in order (for a quorum, the entry
    /// that completed it).
    pub applied: Vec<EntryId>,
    /// Maintainer proposals still short of their quorum.
    pub pending: Vec<Proposal>,
    /// Amendments that count for nothing, and why.
    pub ignored: Vec<(EntryId, String)>,
}

/// The quorum a declaration's policy asks for (0: the lead only; also when the
/// policy does not parse, so a broken policy never widens who may amend).
pub fn quorum_of(decl: &Project) -> u64 {
    Policy::parse(&decl.policy).map_or(0, |p| p.amend.maintainer_quorum)
}

/// Resolves the project declared by `declaring` (a `tagline/project` entry
/// without `amends`) from `inputs` (any order, duplicates allowed; entries
/// that are not amendments of this project are skipped). `None` when
/// `declaring` is not a project declaration.
pub fn resolve<'a>(
    declaring: &Input<'a>,
    inputs: &[Input<'a>],
    reg: &Registry,
) -> Option<ResolvedProject<'a>> {
    let ReviewPayload::Project(decl) = declaring.payload else {
        return None;
    };
    if decl.amends.is_some() {
        return None;
    }
    let lead = reg.identity_of(&declaring.author, declaring.seq);
    let mut amendments: BTreeMap<(u64, EntryId), (&Input<'a>, &'a Project)> = BTreeMap::new();
    for i in inputs {
        if let ReviewPayload::Project(p) = i.payload
            && p.amends == Some(declaring.id)
        {
            amendments.insert((i.timestamp, i.id), (i, p));
        }
    }
    let mut out = ResolvedProject {
        id: declaring.id,
        lead,
        decl,
        applied: Vec::new(),
        pending: Vec::new(),
        ignored: Vec::new(),
    };
    // Proposals against the declaration in force: (declaration, entries, supporters).
    let mut proposals: Vec<(&'a Project, Vec<EntryId>, BTreeSet<IdentityId>)> = Vec::new();
    for (input, proposed) in amendments.into_values() {
        let who = reg.identity_of(&input.author, input.seq);
        if who.is_some() && who == lead {
            out.decl = proposed;
            out.applied.push(input.id);
            // Proposals were made against the replaced declaration.
            proposals.clear();
            continue;
        }
        let needed = quorum_of(out.decl);
        let Some(who) = who.filter(|w| out.decl.maintainers.contains(w)) else {
            out.ignored.push((
                input.id,
                "written by neither the lead nor a declared maintainer".into(),
            ));
            continue;
        };
        if needed == 0 {
            out.ignored.push((
                input.id,
                "the policy in force lets only the lead amend".into(),
            ));
            continue;
        }
        let slot = match proposals.iter().position(|(p, _, _)| *p == proposed) {
            Some(k) => k,
            None => {
                proposals.push((proposed, Vec::new(), BTreeSet::new()));
                proposals.len() - 1
            }
        };
        let complete = match proposals.get_mut(slot) {
            Some((_, entries, supporters)) => {
                entries.push(input.id);
                supporters.insert(who);
                supporters.len() as u64 >= needed
            }
            None => false,
        };
        if complete {
            out.decl = proposed;
            out.applied.push(input.id);
            proposals.clear();
        }
    }
    let needed = quorum_of(out.decl);
    out.pending = proposals
        .into_iter()
        .map(|(_, entries, supporters)| Proposal {
            entries,
            supporters,
            needed,
        })
        .collect();
    Some(out)
}

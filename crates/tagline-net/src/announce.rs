//! New-head announcements over gossipsub (SPEC.md §14.4): topic names, the
//! message id, and the check a received announcement must pass before it is
//! forwarded (gossipsub runs with `validate_messages`, so nothing is passed
//! on unchecked).
//!
//! An announcement is the signed header of a feed's new head, as stored: its
//! author's signature proves it, whoever relays it. It is published on the
//! feed's topic (for nodes that follow the feed) and on the topic of every
//! project the feed publishes to (for nodes subscribed to the project).

use std::collections::BTreeMap;

use libp2p::gossipsub::{IdentTopic, Message, MessageId, TopicHash};
use tagline_format::limits::MAX_SIGNED_HEADER_SIZE;
use tagline_format::{PublicKey, SignedHeader};

/// Gossipsub topics one node subscribes to at most: project topics first,
/// then its own feeds', then followed feeds'. Feeds beyond it are kept up to
/// date by clock exchanges and haves alone.
pub const MAX_GOSSIP_TOPICS: usize = 256;
/// Largest gossipsub frame: one signed header and the envelope around it.
pub const MAX_GOSSIP_TRANSMIT: usize = MAX_SIGNED_HEADER_SIZE + 1024;

/// What a topic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Feed(PublicKey),
    Project([u8; 32]),
}

impl Subject {
    pub fn topic(&self) -> IdentTopic {
        match self {
            Subject::Feed(f) => IdentTopic::new(format!("/tagline/feed/1/{}", hex(f.as_bytes()))),
            Subject::Project(p) => IdentTopic::new(format!("/tagline/project/1/{}", hex(p))),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A message's id: blake3 over its topic and data, so that the same head
/// announced on a feed topic and a project topic is two messages, and the
/// same announcement relayed by many peers is one.
pub fn message_id(m: &Message) -> MessageId {
    let mut h = blake3::Hasher::new();
    h.update(m.topic.as_str().as_bytes());
    h.update(&[0]);
    h.update(&m.data);
    MessageId::from(h.finalize().as_bytes().to_vec())
}

/// What to do with a received announcement.
#[derive(Debug)]
pub enum Verdict {
    /// A valid head this node may lack: forward it, and fetch.
    Accept(Box<SignedHeader>),
    /// Not news here (an old head, a topic not followed, a blocked feed):
    /// neither forwarded nor held against the sender.
    Ignore(&'static str),
    /// Invalid: not forwarded, and the sender is penalised.
    Reject(String),
}

/// Checks an announcement: the size before decoding, the header's form,
/// whether it could be news (its seq above `local_head`, so that replays of
/// old heads cost no signature check), the author against a feed topic, and
/// the author's signature.
pub fn judge(
    topic: &TopicHash,
    data: &[u8],
    subscribed: &BTreeMap<TopicHash, Subject>,
    local_head: impl Fn(&PublicKey) -> u64,
    blocked: impl Fn(&PublicKey) -> bool,
) -> Verdict {
    let Some(subject) = subscribed.get(topic) else {
        return Verdict::Ignore("a topic not followed");
    };
    if data.len() > MAX_SIGNED_HEADER_SIZE {
        return Verdict::Reject(format!(
            "an announcement of {} bytes, more than a signed header's {MAX_SIGNED_HEADER_SIZE}",
            data.len()
        ));
    }
    let sh = match SignedHeader::decode(data.to_vec()) {
        Ok(sh) => sh,
        Err(e) => return Verdict::Reject(format!("an announcement that does not decode: {e}")),
    };
    if let Subject::Feed(f) = subject
        && sh.author() != f
    {
        return Verdict::Reject(format!(
            "a head of feed {} on the topic of feed {}",
            sh.author().short(),
            f.short()
        ));
    }
    if blocked(sh.author()) {
        return Verdict::Ignore("a blocked feed");
    }
    if sh.seq() <= local_head(sh.author()) {
        return Verdict::Ignore("a head already held");
    }
    if let Err(e) = sh.verify_signature() {
        return Verdict::Reject(format!("an announcement with a bad signature: {e}"));
    }
    Verdict::Accept(Box::new(sh))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use tagline_format::SecretKey;
    use tagline_format::entry::create_entry;

    fn head(k: &SecretKey) -> SignedHeader {
        let note = tagline_format::payload::note("hi");
        create_entry(k, None, None, 1_800_000_000_000, "tagline/note", note)
            .unwrap()
            .signed
    }

    #[test]
    fn announcements_are_judged() {
        let k = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let sh = head(&k);
        let feed_topic = Subject::Feed(k.public()).topic().hash();
        let project = Subject::Project([7; 32]);
        let subs: BTreeMap<TopicHash, Subject> = [
            (feed_topic.clone(), Subject::Feed(k.public())),
            (project.topic().hash(), project),
        ]
        .into();
        let none = |_: &PublicKey| 0;
        let no = |_: &PublicKey| false;
        let ok = |t: &TopicHash, d: &[u8]| judge(t, d, &subs, none, no);
        assert!(matches!(ok(&feed_topic, sh.as_bytes()), Verdict::Accept(_)));
        assert!(matches!(
            ok(&project.topic().hash(), head(&other).as_bytes()),
            Verdict::Accept(_)
        ));
        // Another author on a feed's topic.
        assert!(matches!(
            ok(&feed_topic, head(&other).as_bytes()),
            Verdict::Reject(_)
        ));
        // A broken signature.
        let mut bad = sh.as_bytes().to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(ok(&feed_topic, &bad), Verdict::Reject(_)));
        // Garbage, and too much of it.
        assert!(matches!(ok(&feed_topic, b"nonsense"), Verdict::Reject(_)));
        let big = vec![0u8; MAX_SIGNED_HEADER_SIZE + 1];
        assert!(matches!(ok(&feed_topic, &big), Verdict::Reject(_)));
        // Not news, a topic not followed, a blocked feed: ignored, even with
        // a bad signature (which costs no check then).
        let held = |_: &PublicKey| 1;
        assert!(matches!(
            judge(&feed_topic, &bad, &subs, held, no),
            Verdict::Ignore(_)
        ));
        let elsewhere = Subject::Project([8; 32]).topic().hash();
        assert!(matches!(ok(&elsewhere, sh.as_bytes()), Verdict::Ignore(_)));
        let yes = |_: &PublicKey| true;
        assert!(matches!(
            judge(&feed_topic, sh.as_bytes(), &subs, none, yes),
            Verdict::Ignore(_)
        ));
    }
}

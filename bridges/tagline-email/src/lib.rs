//! Tagline's email bridge: mailing-list traffic into feed entries, and feed
//! reviews back to the list as ordinary mail.
//!
//! This crate is being built in steps (see the Email bridge issue). Here
//! now: [`mailinfo`], one patch mail split as `git mailinfo` splits it;
//! [`subject`], what a patch subject's bracketed prefix says (both pure:
//! bytes in, values out); [`thread`], a thread read as one series with the
//! trailers its replies give each patch (b4's rules); [`series`], mails of
//! a list grouped into series and revisions (Patchwork's rules); and
//! [`mbox`], messages read from an mbox stream or a Maildir; [`outbound`],
//! feed entries rendered as list mail.
//!
//! At the edges (I/O, tokio): [`dkim`], signatures checked against DNS or
//! recorded keys; [`lmtp`], live delivery over LMTP and SMTP (its protocol
//! a sans-IO session, driven over tokio TCP).

pub mod bridge;
pub mod dkim;
pub mod fuzzing;
pub mod kind;
pub mod lmtp;
pub mod mailinfo;
pub mod mbox;
pub mod outbound;
pub mod public_inbox;
pub mod series;
pub mod subject;
pub mod thread;

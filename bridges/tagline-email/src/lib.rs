//! Tagline's email bridge: mailing-list traffic into feed entries, and feed
//! reviews back to the list as ordinary mail.
//!
//! This crate is being built in steps (see the Email bridge issue). Here
//! now: [`mailinfo`], one patch mail split as `git mailinfo` splits it, and
//! [`subject`], what a patch subject's bracketed prefix says. Both are pure:
//! bytes in, values out.

pub mod mailinfo;
pub mod subject;

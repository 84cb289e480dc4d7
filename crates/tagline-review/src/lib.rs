//! The review model and rules engine. Pure: no I/O.
//!
//! `rules` computes a series' state from entries alone (the same on every
//! node); `project` resolves a project's declaration; `policy` reads the
//! merge policy; `maintainers` ports get_maintainer.pl; `trailers`,
//! `patchid`, `interdiff` and `patchmail` read and write patches as git
//! does.

pub mod interdiff;
pub mod maintainers;
pub mod patchid;
pub mod patchmail;
pub mod policy;
pub mod project;
pub mod rules;
pub mod trailers;

//! The review model and rules engine (in progress): this version holds the
//! MAINTAINERS parser and matcher. Pure: no I/O.

pub mod interdiff;
pub mod maintainers;
pub mod patchid;
pub mod policy;
pub mod project;
pub mod rules;
pub mod trailers;

//! Tagline's feed replication protocol (protocol/SPEC.md §14) as a sans-IO
//! state machine: [`Sync::handle`] takes an [`Input`] with the current time
//! and returns [`Output`]s; the driver owns the network, the clock and the
//! store. Pure: no tokio, no clock, no randomness, no I/O.
//!
//! The protocol is pull-based. On connecting, each side sends a clock: the
//! feeds it wants with how far it holds them, and the project topics it
//! follows. The answer lists the responder's heads among those feeds, plus
//! the feeds it holds for those topics. Each side then fetches, in bounded
//! batches, the ranges it lacks, hands them to its store (which verifies
//! signatures in batches and appends in one transaction per batch), and
//! announces its new heads to the peers that want them.

pub mod machine;
pub mod wire;

pub use machine::{Event, Input, Output, Rejection, RequestId, Sync, entries_response};
pub use wire::{Record, Request, Response, WireError};

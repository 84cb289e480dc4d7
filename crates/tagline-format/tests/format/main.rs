//! The integration tests of tagline-format (one test binary).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

mod corpus;
mod limits;
mod props;
mod vectors;

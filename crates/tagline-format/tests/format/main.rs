//! The integration tests of tagline-format (one test binary).

mod corpus;
mod limits;
mod props;
mod vectors;

//! The integration tests of tagline-format (one test binary).

mod corpus;
mod props;
mod vectors;

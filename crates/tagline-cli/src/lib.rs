//! The `tagline` command's library: the commands behind `main.rs`, public so
//! that benchmarks run them in-process on a generated store
//! (`benches/scale.rs`). Not a stable API.

pub mod bridgecmd;
pub mod cicmd;
pub mod cilog;
pub mod gatecmd;
pub mod guard;
pub mod home;
pub mod ident;
pub mod maint;
pub mod netcmd;
pub mod outboxcmd;
pub mod reviewcmd;

//! The simulated world: a Vast.ai and a GitHub that the real clients talk to
//! over real HTTP. Used by `rigger demo`, `rigger sim` and the tests.

pub mod github;
pub mod vast;

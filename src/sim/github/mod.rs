//! The simulated GitHub.

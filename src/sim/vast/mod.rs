//! The simulated Vast.ai.

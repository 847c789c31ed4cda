//! Files airgap writes for other tools to read.

pub mod mirror;

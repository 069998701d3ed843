//! deploy: render templates per host from an Ansible-style inventory, diff them against what
//! each host has, and apply only what changed.

pub mod render;
pub mod transport;

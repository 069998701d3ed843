//! deploy: render templates per host from an Ansible-style inventory, diff them against what
//! each host has, and apply only what changed.
//!
//! The pipeline, one module per stage: [`inventory`] and [`manifest`] (hosts/) ->
//! [`desired`] (rendered with [`render`]) -> [`checks`] -> [`remote`] (read through
//! [`transport`]) -> [`diff`] -> [`plan`] -> [`apply`] -> [`handlers`] -> [`verify`]. [`ops`]
//! chains them; [`commands`] are the thin command-line front.

pub mod apply;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod desired;
pub mod diff;
pub mod error;
pub mod facts;
pub mod files;
pub mod fuzz;
pub mod handlers;
pub mod inventory;
pub mod manifest;
pub mod mask;
pub mod ops;
pub mod output;
pub mod par;
pub mod plan;
pub mod remote;
pub mod render;
pub mod rollout;
pub mod saved;
pub mod secrets;
pub mod source;
pub mod state;
pub mod text;
pub mod transport;
pub mod verify;
pub mod yaml;

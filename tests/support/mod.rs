//! Shared test helpers: a throwaway deploy repo and a way to run the real binary on it.

pub mod project;

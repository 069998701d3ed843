//! SSH transport (russh): one connection per host for the whole run.

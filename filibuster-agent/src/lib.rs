//! Filibuster: service-level fault injection testing for unmodified
//! services. See README.md for how to use it and how it is built.

pub mod accept;
mod account;
pub mod analyze;
pub mod cgroups;
pub mod config;
pub mod containers;
pub mod control;
pub mod ebpf;
pub mod explore;
pub mod json_file;
pub mod netns;
pub mod observe;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod session;
pub mod sockdiag;

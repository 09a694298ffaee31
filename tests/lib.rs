//! Integration tests: the real `pi-setup` binary against the real Docker daemon, with the
//! offline images built by `ci/test-images`. One test binary; modules by command.

// Test code keeps its imports next to the one step that needs them.
#![allow(clippy::items_after_statements)]

mod harness;

mod backup;
mod cli;
mod copies;
mod gateway;
mod image;
mod host;
mod copies_s3;
mod install;
mod profiles;
mod pull;
mod restore;
mod rough_edges;
mod services;
mod units;
mod stacks_pg;
mod update;
mod validation;
mod volumes;

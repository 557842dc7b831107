//! slotstorm: a chaos and load-testing harness for Redis Cluster.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`spec`] | workload and chaos files (TOML): the formats, defaults, validation with `file:line:column` errors, the fault schedule |
//! | [`backend`] | where nodes live: the node image, Docker networks and containers (labelled `slotstorm.run=<id>`), external seeds |
//! | [`cluster`] | the cluster protocol: hash slots, `CLUSTER NODES` parsing, bootstrap, readiness, status; topology changes: failover, reshard, rebalance, fix, join and forget |
//! | [`embedded`] | an embedded cluster: containers plus bootstrap, all-or-nothing; adding and removing a node |
//! | [`shutdown`] | the signals that end a command early |
//! | [`cli`] | clap commands and exit codes; wiring only |
//!
//! Data flows one way, as `DESIGN.md` lays out: spec → (backend + cluster) → (driver ‖
//! nemesis ‖ observe) → history → check → report. Modules for the later stages arrive with
//! the features that need them.

pub mod backend;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod driver;
pub mod embedded;
pub mod history;
pub mod nemesis;
pub mod observe;
pub mod report;
pub mod run;
pub mod shutdown;
pub mod spec;

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
//! | [`driver`] | the load: key choice, templates, open/closed-loop pacing, slot routing, its own RESP connections, the client policy |
//! | [`nemesis`] | the fault schedule: targets, injection through the Docker API, healing on every exit |
//! | [`observe`] | the failover detector: per-node pollers and node-log followers, emitting events |
//! | [`history`] | the one history: ops, attempt errors, events, per-interval histograms |
//! | [`check`] | pure checks over a history: windows, failover phases, lost writes, over-admission, SLOs |
//! | [`report`] | the results folder: data files, plots, `report.html`, `summary.md`, JUnit |
//! | [`run`] | one run, start to end, cleaning up on every exit path |
//! | [`compare`] | a workload over a matrix of settings with repeats, and the comparative report |
//! | [`clock`] | the run's clock and its stop signal, shared by the driver, the nemesis and the observer |
//! | [`shutdown`] | the signals that end a command early |
//! | [`cli`] | clap commands and exit codes; wiring only |
//!
//! Data flows one way, as `DESIGN.md` lays out: spec → (backend + cluster) → (driver ‖
//! nemesis ‖ observe) → history → check → report; `compare` runs `run` over a matrix.

pub mod backend;
pub mod check;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod compare;
pub mod driver;
pub mod embedded;
pub mod history;
pub mod nemesis;
pub mod observe;
pub mod report;
pub mod run;
pub mod shutdown;
pub mod spec;

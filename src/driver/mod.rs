//! The load generator. (In progress.)

pub mod classify;
pub mod exec;
pub mod keys;
pub mod router;

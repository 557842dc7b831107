//! Topology operations from a chaos file's `[[operation]]` tables: planned failover,
//! reshard, add-node, rebalance, remove-node. The file format and its checks are in
//! [`crate::spec::chaos`]; performing them (through [`crate::cluster`]) is not in this
//! build yet, so every operation fails with [`OperationError::NotPerformed`], and
//! [`crate::run`] refuses such a chaos file before the cluster starts.

use crate::spec::chaos::ScheduledOperation;

/// An operation that could not be performed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// This build reads operations but cannot perform them.
    #[error("operation[{index}] ({action}): operation not yet performed by this build")]
    NotPerformed {
        /// The operation's number in the chaos file.
        index: usize,
        /// Its action, as the file writes it.
        action: &'static str,
    },
}

/// Perform `op` on the cluster.
///
/// # Errors
/// Always [`OperationError::NotPerformed`], until the operations are implemented.
pub async fn perform(op: &ScheduledOperation) -> Result<(), OperationError> {
    Err(OperationError::NotPerformed { index: op.index, action: op.operation.name() })
}

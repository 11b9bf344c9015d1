//! `DeleteEnvironment`: Deletes an environment and its home directory (it must be RUNNING or SUSPENDED).

use crate::error::operation_error;
use crate::operation::{EmptyOutput, environment_input, operation};

environment_input! {
    /// Which environment.
    DeleteEnvironmentInput
}

operation_error! {
    /// Errors `DeleteEnvironment` can return.
    DeleteEnvironmentError {
        /// `ConflictException`.
        Conflict = "ConflictException",
    }
}

operation!(
    DeleteEnvironment,
    "DeleteEnvironment",
    "/deleteEnvironment",
    idempotent = true,
    DeleteEnvironmentInput,
    EmptyOutput,
    DeleteEnvironmentError
);

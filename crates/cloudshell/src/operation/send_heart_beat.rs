//! `SendHeartBeat`: Marks an environment active so it is not suspended for inactivity.

use crate::error::operation_error;
use crate::operation::{EmptyOutput, environment_input, operation};

environment_input! {
    /// Which environment.
    SendHeartBeatInput
}

operation_error! {
    /// Errors `SendHeartBeat` can return.
    SendHeartBeatError {

    }
}

operation!(
    SendHeartBeat,
    "SendHeartBeat",
    "/sendHeartBeat",
    idempotent = true,
    SendHeartBeatInput,
    EmptyOutput,
    SendHeartBeatError
);

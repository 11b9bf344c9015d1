//! `PutCredentials`: Passes the Console's own encrypted credentials to an environment; with ordinary SigV4 credentials it fails with TokenDecryptionException, so export credentials in the shell instead.

use crate::error::operation_error;
use crate::operation::{EmptyOutput, environment_input, operation};

environment_input! {
    /// Which environment.
    PutCredentialsInput
}

operation_error! {
    /// Errors `PutCredentials` can return.
    PutCredentialsError {
        /// `TokenDecryptionException`.
        TokenDecryption = "TokenDecryptionException",
    }
}

operation!(
    PutCredentials,
    "PutCredentials",
    "/putCredentials",
    idempotent = true,
    PutCredentialsInput,
    EmptyOutput,
    PutCredentialsError
);

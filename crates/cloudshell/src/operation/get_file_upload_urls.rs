//! `GetFileUploadUrls`: an S3 presigned POST for a file to put in the environment's home directory.

use crate::error::operation_error;
use crate::operation::{FileUrlsInput, FileUrlsOutput, operation};

operation_error! {
    /// Errors `GetFileUploadUrls` can return.
    GetFileUploadUrlsError {}
}

operation!(
    GetFileUploadUrls,
    "GetFileUploadUrls",
    "/getFileUploadUrls",
    idempotent = true,
    FileUrlsInput,
    FileUrlsOutput,
    GetFileUploadUrlsError
);

// Keeps the shared shapes reachable from this module as the SDKs lay them out.
#[doc(inline)]
pub use crate::operation::{
    FileUrlsInput as GetFileUploadUrlsInput, FileUrlsOutput as GetFileUploadUrlsOutput,
};

//! `GetFileDownloadUrls`: a presigned GET for a file in the environment's home directory.

use crate::error::operation_error;
use crate::operation::{FileUrlsInput, FileUrlsOutput, operation};

operation_error! {
    /// Errors `GetFileDownloadUrls` can return.
    GetFileDownloadUrlsError {}
}

operation!(
    GetFileDownloadUrls,
    "GetFileDownloadUrls",
    "/getFileDownloadUrls",
    idempotent = true,
    FileUrlsInput,
    FileUrlsOutput,
    GetFileDownloadUrlsError
);

// Keeps the shared shapes reachable from this module as the SDKs lay them out.
#[doc(inline)]
pub use crate::operation::{
    FileUrlsInput as GetFileDownloadUrlsInput, FileUrlsOutput as GetFileDownloadUrlsOutput,
};

//! Moving a file through the presigned URLs the file operations hand out.
//!
//! [`GetFileUploadUrls`](crate::Client::get_file_upload_urls) answers with an
//! S3 presigned POST: a URL and form fields that are posted, all of them,
//! before the file part (`multipart/form-data`, the file last, as S3
//! requires). [`GetFileDownloadUrls`](crate::Client::get_file_download_urls)
//! answers with a presigned GET URL and a key with its hash, which are sent
//! as the server-side-encryption-with-customer-key headers (the reference
//! notes say the download key doubles as that key).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::Client;
use crate::operation::FileUrlsOutput;

/// An upload form: POST `fields` and then the file to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    /// Where to post.
    pub url: String,
    /// Form fields, sent in this order before the file.
    pub fields: Vec<(String, String)>,
}

impl PresignedPost {
    /// The upload form in a file operation's answer, if it has one.
    pub fn from_output(out: &FileUrlsOutput) -> Option<Self> {
        Some(Self {
            url: out.file_upload_presigned_url.clone()?,
            fields: out
                .file_upload_presigned_fields
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// A download: GET `url` with the customer-key headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedGet {
    /// Where to get the file.
    pub url: String,
    /// `x-amz-server-side-encryption-customer-key`, base64.
    pub customer_key: Option<String>,
    /// `x-amz-server-side-encryption-customer-key-MD5`, base64.
    pub customer_key_md5: Option<String>,
}

impl PresignedGet {
    /// The download URL in a file operation's answer, if it has one.
    pub fn from_output(out: &FileUrlsOutput) -> Option<Self> {
        Some(Self {
            url: out.file_download_presigned_url.clone()?,
            customer_key: out.file_download_presigned_key.clone(),
            customer_key_md5: out.file_download_presigned_key_hash.clone(),
        })
    }
}

/// Why a presigned transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresignedError {
    /// No response (connection refused, reset, DNS).
    #[error("could not reach the storage endpoint")]
    Dispatch(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The storage service answered with an error.
    #[error("the storage service refused the request: {code}: {message} (HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The S3 error code, e.g. `AccessDenied`, `EntityTooLarge`.
        code: String,
        /// Its message.
        message: String,
    },
    /// The body broke off.
    #[error("the transfer broke off")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A download in progress.
pub struct PresignedDownload {
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    body: Pin<Box<dyn Stream<Item = Result<Bytes, PresignedError>> + Send>>,
}

impl std::fmt::Debug for PresignedDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedDownload")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl PresignedDownload {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, PresignedError> {
        self.body.next().await.transpose()
    }
}

impl Client {
    /// Posts `length` bytes from `body` as `file_name` with the upload form.
    pub async fn post_presigned<S>(
        &self,
        post: &PresignedPost,
        file_name: &str,
        length: u64,
        body: S,
    ) -> Result<(), PresignedError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in &post.fields {
            form = form.text(k.clone(), v.clone());
        }
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), length)
                .file_name(file_name.to_owned());
        form = form.part("file", part);
        let response = self
            .http_for(&post.url)
            .post(&post.url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| PresignedError::Dispatch(Box::new(e)))?;
        check(response).await.map(drop)
    }

    /// Starts a download.
    pub async fn get_presigned(
        &self,
        get: &PresignedGet,
    ) -> Result<PresignedDownload, PresignedError> {
        let mut request = self.http_for(&get.url).get(&get.url);
        if let (Some(key), Some(md5)) = (&get.customer_key, &get.customer_key_md5) {
            request = request
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", key)
                .header("x-amz-server-side-encryption-customer-key-MD5", md5);
        }
        let response = request
            .send()
            .await
            .map_err(|e| PresignedError::Dispatch(Box::new(e)))?;
        let response = check(response).await?;
        Ok(PresignedDownload {
            length: response.content_length(),
            body: Box::pin(
                response
                    .bytes_stream()
                    .map(|r| r.map_err(|e| PresignedError::Body(Box::new(e)))),
            ),
        })
    }
}

/// Turns an S3 error response (`<Error><Code>..</Code><Message>..</Message>`)
/// into [`PresignedError::Refused`].
async fn check(response: reqwest::Response) -> Result<reqwest::Response, PresignedError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(PresignedError::Refused {
        status: status.as_u16(),
        code: xml_element(&body, "Code").unwrap_or_else(|| status.to_string()),
        message: xml_element(&body, "Message").unwrap_or_default(),
    })
}

/// The text of the first `<name>` element: enough for S3's flat error bodies.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(
        body[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Policy expired &amp; gone</Message></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_element(body, "Message").as_deref(),
            Some("Policy expired & gone")
        );
        assert_eq!(xml_element(body, "RequestId"), None);
    }
}

//! A typed client of the daemon's JSON API: one method per operation,
//! answers decoded into [`crate::types`], error answers into
//! [`ClientError::Api`] with the daemon's code and message.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

use crate::types::{
    ChunkPage, ErrorBody, FileInfo, FileList, FileUpdate, Health, Job, KeyChange, KeyChanged,
    KeyList, KeyRequest, NewKey, NewPrincipal, NewQuota, NewRegion, NodeAnswer, NodeList,
    RemoveNode, Rename, ScrubStatus, Stat, Stored,
};

/// What a path segment keeps as is: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answers at the URL.
    #[error("no store daemon answers at {url}")]
    Unreachable {
        /// The daemon's URL.
        url: String,
        /// Why the connection failed.
        #[source]
        source: BoxError,
    },
    /// The daemon's HTTPS certificate is not trusted: not signed by an
    /// authority this machine trusts, or not the one pinned.
    #[error(
        "the daemon at {url} offered a certificate this client does not trust ({why}); if \
         it is the daemon's own, pin it: --pin SHA256 (or CLOUDSHELL_STORE_PIN), the \
         fingerprint `store serve --tls` printed"
    )]
    Untrusted {
        /// The daemon's URL.
        url: String,
        /// What TLS said.
        why: String,
    },
    /// A plain HTTP request reached a listener that speaks HTTPS.
    #[error("the daemon at {url} speaks HTTPS: use https:// in --url")]
    NeedsTls {
        /// The URL given.
        url: String,
    },
    /// A name no URL can carry: a `.` or `..` segment would be resolved
    /// away on the way (RFC 3986 section 5.2.4), storing or reading
    /// another file. The daemon refuses such names too.
    #[error("{name:?} is not a valid file name: it has a . or .. segment")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The daemon said no.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's code (`NoSuchFile`, `StoreFull`, ...), or the status
        /// when the answer had no error body.
        code: String,
        /// What the daemon said.
        message: String,
    },
    /// The request or its answer broke off.
    #[error("request to {url} failed")]
    Transport {
        /// The daemon's URL.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The answer is not what this client expects (another version?).
    #[error("the daemon's answer to {what} is not what this client expects")]
    Decode {
        /// The operation.
        what: String,
        /// Why it did not decode.
        #[source]
        source: BoxError,
    },
}

impl ClientError {
    /// The daemon's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the daemon answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A download under way.
pub struct Download {
    /// The body's length, when the daemon said it.
    pub len: Option<u64>,
    /// The whole file's size, when the daemon said it (a range's
    /// Content-Range).
    pub total: Option<u64>,
    /// The version's ETag.
    pub etag: Option<String>,
    /// The bytes.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("len", &self.len)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// The daemon's API at one URL.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the daemon at `base` (`http://127.0.0.1:8080`), with its
    /// token when it has one.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_tls(base, token, None)
    }

    /// A client of the daemon at `base` over HTTPS with this TLS client
    /// configuration (one that pins the daemon's certificate, say); `None`
    /// trusts the usual certificate authorities.
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| ClientError::Transport {
            url: base.to_owned(),
            source: e.into(),
        })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// The daemon's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.http.get(self.url("/api/health")), "health")
            .await
    }

    /// `GET /api/files`.
    pub async fn files(&self) -> Result<FileList, ClientError> {
        self.json(self.http.get(self.url("/api/files")), "files")
            .await
    }

    /// `GET /api/files?health=false`: every file without its health (no
    /// shard map is read: what a listing that runs often wants).
    pub async fn file_names(&self) -> Result<FileList, ClientError> {
        self.json(self.http.get(self.url("/api/files?health=false")), "files")
            .await
    }

    /// `PUT /api/files/{name}`: stores what `body` yields; `len`, when
    /// known, is sent as the Content-Length.
    pub async fn put<S>(&self, name: &str, len: Option<u64>, body: S) -> Result<Stored, ClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        self.put_modified(name, len, body, None).await
    }

    /// [`Client::put`] of a file last modified at `modified` (seconds
    /// since the epoch), which the daemon keeps with it.
    pub async fn put_modified<S>(
        &self,
        name: &str,
        len: Option<u64>,
        body: S,
        modified: Option<i64>,
    ) -> Result<Stored, ClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut request = self
            .http
            .put(self.name_url("/api/files", name)?)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        if let Some(m) = modified {
            request = request.header("x-cloudshell-modified", m);
        }
        self.json(request, "put").await
    }

    /// `PATCH /api/files/{name}`: sets the file's modification time.
    pub async fn set_modified(&self, name: &str, modified: i64) -> Result<FileInfo, ClientError> {
        let body = FileUpdate { modified };
        self.json(
            self.http
                .patch(self.name_url("/api/files", name)?)
                .json(&body),
            "set modified",
        )
        .await
    }

    /// `GET /api/files/{name}`, the whole file or `range` (`bytes=0-99`).
    pub async fn get(&self, name: &str, range: Option<&str>) -> Result<Download, ClientError> {
        self.get_version(name, range, None).await
    }

    /// [`Client::get`] of the version with ETag `etag` only: when the name
    /// holds another version now, the daemon refuses (412,
    /// `PreconditionFailed`) rather than send bytes of a different file.
    /// How ranges read one after another stay within one version.
    pub async fn get_version(
        &self,
        name: &str,
        range: Option<&str>,
        etag: Option<&str>,
    ) -> Result<Download, ClientError> {
        let mut request = self.http.get(self.name_url("/api/files", name)?);
        if let Some(r) = range {
            request = request.header(reqwest::header::RANGE, r);
        }
        if let Some(e) = etag {
            request = request.header(reqwest::header::IF_MATCH, e);
        }
        let response = self.send(request).await?;
        let url = self.base.clone();
        let total = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit_once('/'))
            .and_then(|(_, total)| total.parse().ok());
        Ok(Download {
            len: response.content_length(),
            total,
            etag: response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: Box::pin(
                response
                    .bytes_stream()
                    .map_err(move |e| ClientError::Transport {
                        url: url.clone(),
                        source: e.into(),
                    }),
            ),
        })
    }

    /// `POST /api/rename`: gives the file `from` the name `to` (replacing
    /// a file of that name), moving no data.
    pub async fn rename(&self, from: &str, to: &str) -> Result<FileInfo, ClientError> {
        let body = Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.json(
            self.http.post(self.url("/api/rename")).json(&body),
            "rename",
        )
        .await
    }

    /// `DELETE /api/files/{name}`.
    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(self.name_url("/api/files", name)?))
            .await
            .map(drop)
    }

    /// `GET /api/stat/{name}`: the file with one page of its shard map.
    pub async fn stat(&self, name: &str, page: ChunkPage) -> Result<Stat, ClientError> {
        let url = format!(
            "{}?offset={}&limit={}",
            self.name_url("/api/stat", name)?,
            page.offset,
            page.limit
        );
        self.json(self.http.get(url), "stat").await
    }

    /// `GET /api/nodes`.
    pub async fn nodes(&self) -> Result<NodeList, ClientError> {
        self.json(self.http.get(self.url("/api/nodes")), "nodes")
            .await
    }

    /// `POST /api/nodes`: adds a node in `region`, of `principal` (the
    /// `default` one when `None`).
    pub async fn add_region(
        &self,
        region: &str,
        principal: Option<&str>,
    ) -> Result<NodeAnswer, ClientError> {
        let body = NewRegion {
            region: region.to_owned(),
            principal: principal.map(str::to_owned),
        };
        let request = self.http.post(self.url("/api/nodes")).json(&body);
        self.json(request, "add region").await
    }

    /// `POST /api/nodes/{id}/offline` or `.../online`.
    pub async fn set_online(&self, id: &str, online: bool) -> Result<NodeAnswer, ClientError> {
        let which = if online { "online" } else { "offline" };
        let path = format!("/api/nodes/{}/{which}", segment(id));
        self.json(self.http.post(self.url(&path)), which).await
    }

    /// `PUT /api/nodes/{id}/quota`: `None` lifts the cap.
    pub async fn set_quota(
        &self,
        id: &str,
        quota: Option<&str>,
    ) -> Result<NodeAnswer, ClientError> {
        let body = NewQuota {
            quota: quota.map(str::to_owned),
        };
        let path = format!("/api/nodes/{}/quota", segment(id));
        self.json(self.http.put(self.url(&path)).json(&body), "quota")
            .await
    }

    /// `POST /api/nodes/{id}/remove`: drains the node and removes it, as a
    /// job; `delete_environment` deletes its environment afterwards.
    pub async fn remove_node(
        &self,
        id: &str,
        delete_environment: bool,
    ) -> Result<Job, ClientError> {
        let body = RemoveNode { delete_environment };
        let path = format!("/api/nodes/{}/remove", segment(id));
        self.json(self.http.post(self.url(&path)).json(&body), "remove node")
            .await
    }

    /// `POST /api/key`: changes the store's key.
    pub async fn change_key(&self, change: &KeyChange) -> Result<KeyChanged, ClientError> {
        let request = self.http.post(self.url("/api/key")).json(change);
        self.json(request, "change key").await
    }

    /// `POST /api/principals`: adds a principal with a node in each of
    /// `regions` (the daemon's when empty).
    pub async fn add_principal(
        &self,
        name: &str,
        regions: &[String],
    ) -> Result<NodeList, ClientError> {
        let body = NewPrincipal {
            name: name.to_owned(),
            regions: regions.to_vec(),
        };
        let request = self.http.post(self.url("/api/principals")).json(&body);
        self.json(request, "add principal").await
    }

    /// `POST /api/principals/{name}/remove`: drains every node of the
    /// principal and removes them, as a job.
    pub async fn remove_principal(
        &self,
        name: &str,
        delete_environments: bool,
    ) -> Result<Job, ClientError> {
        let body = RemoveNode {
            delete_environment: delete_environments,
        };
        let path = format!("/api/principals/{}/remove", segment(name));
        self.json(
            self.http.post(self.url(&path)).json(&body),
            "remove principal",
        )
        .await
    }

    /// `DELETE /api/shards/{node}/{file}/{chunk}/{index}`.
    pub async fn delete_shard(
        &self,
        node: &str,
        file: &str,
        chunk: u64,
        index: u8,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/api/shards/{}/{}/{chunk}/{index}",
            segment(node),
            segment(file)
        );
        self.send(self.http.delete(self.url(&path))).await.map(drop)
    }

    /// `POST /api/repair`: starts a repair of every file.
    pub async fn repair(&self) -> Result<Job, ClientError> {
        self.json(self.http.post(self.url("/api/repair")), "repair")
            .await
    }

    /// `POST /api/redistribute`: starts evening out the nodes.
    pub async fn redistribute(&self) -> Result<Job, ClientError> {
        self.json(
            self.http.post(self.url("/api/redistribute")),
            "redistribute",
        )
        .await
    }

    /// `GET /api/jobs/{id}`.
    pub async fn job(&self, id: u64) -> Result<Job, ClientError> {
        self.json(self.http.get(self.url(&format!("/api/jobs/{id}"))), "job")
            .await
    }

    /// `GET /api/scrub`.
    pub async fn scrub_status(&self) -> Result<ScrubStatus, ClientError> {
        self.json(self.http.get(self.url("/api/scrub")), "scrub")
            .await
    }

    /// `POST /api/scrub`: starts a pass now.
    pub async fn scrub_start(&self) -> Result<ScrubStatus, ClientError> {
        self.json(self.http.post(self.url("/api/scrub")), "scrub")
            .await
    }

    /// `GET /api/s3/keys`.
    pub async fn keys(&self) -> Result<KeyList, ClientError> {
        self.json(self.http.get(self.url("/api/s3/keys")), "keys")
            .await
    }

    /// `POST /api/s3/keys`: a new key acting as `user` (the default user
    /// when `None`), with its secret.
    pub async fn create_key(&self, user: Option<&str>) -> Result<NewKey, ClientError> {
        let body = KeyRequest {
            user: user.map(str::to_owned),
        };
        self.json(
            self.http.post(self.url("/api/s3/keys")).json(&body),
            "create key",
        )
        .await
    }

    /// `DELETE /api/s3/keys/{id}`.
    pub async fn delete_key(&self, access_key_id: &str) -> Result<(), ClientError> {
        let path = format!("/api/s3/keys/{}", segment(access_key_id));
        self.send(self.http.delete(self.url(&path))).await.map(drop)
    }

    /// `GET /api/openapi.json`, as served.
    pub async fn openapi(&self) -> Result<String, ClientError> {
        let response = self
            .send(self.http.get(self.url("/api/openapi.json")))
            .await?;
        response.text().await.map_err(|e| self.transport(e))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `prefix/name`, each segment of the name percent-encoded (names may
    /// hold `/`, spaces, anything printable).
    fn name_url(&self, prefix: &str, name: &str) -> Result<String, ClientError> {
        if name.split('/').any(|s| s == "." || s == "..") {
            return Err(ClientError::InvalidName {
                name: name.to_owned(),
            });
        }
        let encoded: Vec<String> = name.split('/').map(segment).collect();
        Ok(self.url(&format!("{prefix}/{}", encoded.join("/"))))
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if let Some(why) = tls_problem(&e) {
            return ClientError::Untrusted {
                url: self.base.clone(),
                why,
            };
        }
        if self.base.starts_with("http://") && chain_says(&e, "invalid HTTP version") {
            return ClientError::NeedsTls {
                url: self.base.clone(),
            };
        }
        ClientError::Transport {
            url: self.base.clone(),
            source: e.into(),
        }
    }

    /// Sends with the token; an error answer becomes [`ClientError::Api`].
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() && tls_problem(&e).is_none() {
                ClientError::Unreachable {
                    url: self.base.clone(),
                    source: e.into(),
                }
            } else {
                self.transport(e)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => ClientError::Api {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: status.as_u16().to_string(),
                message: format!("the daemon answered {status}"),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, ClientError> {
        let body = self
            .send(request)
            .await?
            .bytes()
            .await
            .map_err(|e| self.transport(e))?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            what: what.to_owned(),
            source: e.into(),
        })
    }
}

/// What rustls said, if a TLS error is in `e`'s sources (a certificate
/// refused, most often).
fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        // reqwest's connector may wrap it where a downcast does not reach;
        // its words still say what it was.
        let text = err.to_string();
        if text.contains("peer certificate") {
            return Some(text);
        }
        next = err.source();
    }
    None
}

/// Whether any of `e`'s sources says `text`.
fn chain_says(e: &(dyn std::error::Error + 'static), text: &str) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.to_string().contains(text) {
            return true;
        }
        next = err.source();
    }
    false
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_segment_by_segment() {
        let c = Client::new("http://h:1/", None).unwrap();
        assert_eq!(
            c.name_url("/api/files", "docs/a file+é?.bin").unwrap(),
            "http://h:1/api/files/docs/a%20file%2B%C3%A9%3F.bin"
        );
        // A URL cannot carry these: they would name another file.
        for bad in ["a/../b", "./a", "a/.", ".."] {
            assert!(matches!(
                c.name_url("/api/files", bad),
                Err(ClientError::InvalidName { .. })
            ));
        }
    }
}

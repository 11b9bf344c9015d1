//! One page of a bucket listing, for ListObjects, ListObjectsV2 and
//! ListObjectVersions, and how their keys are written back
//! (`EncodingType=url`).

use s3s::S3Result;
use s3s::dto::*;

use super::{MAX_KEYS, internal, meta, timestamp};

/// What `EncodingType=url` leaves as it is: the unreserved characters and
/// `/` (as S3 does); everything else, `+` and space included, is
/// percent-encoded so that clients that decode with `unquote_plus` get the
/// key back.
const URL_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// How keys and prefixes go back to the client: as they are, or
/// URL-encoded when the request asked for `EncodingType=url`.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyEncoding {
    url: bool,
}

impl KeyEncoding {
    /// From the request's `EncodingType`; anything but `url` is refused.
    pub fn of(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Self { url: false }),
            Some("url") => Ok(Self { url: true }),
            Some(other) => Err(s3s::s3_error!(
                InvalidArgument,
                "invalid EncodingType {other:?}: the only one is url"
            )),
        }
    }

    /// `text` as the answer carries it.
    pub fn apply(self, text: String) -> String {
        if self.url {
            percent_encoding::utf8_percent_encode(&text, URL_ENCODED).to_string()
        } else {
            text
        }
    }

    /// The page's keys and prefixes, encoded.
    pub fn page(self, mut page: Page) -> Page {
        for o in &mut page.contents {
            o.key = o.key.take().map(|k| self.apply(k));
        }
        for p in &mut page.prefixes {
            p.prefix = p.prefix.take().map(|k| self.apply(k));
        }
        page
    }

    /// The `EncodingType` to echo.
    pub fn echo(self) -> Option<EncodingType> {
        self.url
            .then(|| EncodingType::from_static(EncodingType::URL))
    }
}

/// What every listing request says the same way.
pub(super) struct Params {
    /// How keys go back.
    pub encoding: KeyEncoding,
    /// Keys start with this.
    pub prefix: String,
    /// Rolls keys up to it into common prefixes (an empty one is none).
    pub delimiter: Option<String>,
    /// Keys and prefixes per page, at most [`MAX_KEYS`].
    pub max: usize,
}

impl Params {
    /// From the request's `EncodingType`, `Prefix`, `Delimiter` and `MaxKeys`.
    pub fn of(
        encoding_type: Option<&EncodingType>,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        max_keys: Option<i32>,
    ) -> S3Result<Self> {
        Ok(Self {
            encoding: KeyEncoding::of(encoding_type)?,
            prefix: prefix.unwrap_or_default().to_owned(),
            delimiter: delimiter.filter(|d| !d.is_empty()).map(str::to_owned),
            max: usize::try_from(max_keys.unwrap_or(1000).max(0))
                .unwrap_or(MAX_KEYS)
                .min(MAX_KEYS),
        })
    }
}

pub(super) struct Page {
    pub contents: Vec<Object>,
    pub prefixes: Vec<CommonPrefix>,
    /// Where the next page starts (the last key or prefix given), when truncated.
    pub next: Option<String>,
}

/// Objects of `bucket` whose keys start with `prefix` and come after
/// `after`, in key order, at most `limit`, with their metadata.
fn objects(
    index: &cloudshell_store::index::Index,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> S3Result<Vec<(String, meta::ObjectMeta)>> {
    let base = meta::file_name(bucket, "");
    let after = after.map(|a| format!("{base}{a}"));
    let records = index
        .files_from(&format!("{base}{prefix}"), after.as_deref(), limit)
        .map_err(internal)?;
    Ok(records
        .into_iter()
        .map(|r| {
            let m = meta::ObjectMeta::of(&r);
            (r.name[base.len()..].to_owned(), m)
        })
        .collect())
}

/// One page of a listing: keys under `prefix` after `after`, with keys that
/// share a segment up to `delimiter` rolled into common prefixes.
#[allow(clippy::too_many_arguments)] // The listing's parameters, as S3 names them.
pub(super) fn list_page(
    index: &cloudshell_store::index::Index,
    bucket: &str,
    bucket_owner: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
    with_delete_markers: bool,
) -> S3Result<Page> {
    let mut contents = Vec::new();
    let mut prefixes: Vec<CommonPrefix> = Vec::new();
    let mut cursor = after.map(str::to_owned);
    let mut last_given: Option<String> = None;
    let mut truncated = false;
    'pages: loop {
        let batch = objects(index, bucket, prefix, cursor.as_deref(), MAX_KEYS)?;
        let full = batch.len() == MAX_KEYS;
        for (key, m) in batch {
            cursor = Some(key.clone());
            // A key whose current version is a delete marker is not listed
            // (only ListObjectVersions shows it).
            if m.delete_marker && !with_delete_markers {
                continue;
            }
            let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(p) = rolled {
                if prefixes.last().and_then(|c| c.prefix.as_deref()) == Some(p.as_str())
                    || after.is_some_and(|a| p.as_str() <= a && a.starts_with(p.as_str()))
                {
                    continue;
                }
                if contents.len() + prefixes.len() >= max {
                    truncated = true;
                    break 'pages;
                }
                last_given = Some(p.clone());
                prefixes.push(CommonPrefix { prefix: Some(p) });
            } else {
                if contents.len() + prefixes.len() >= max {
                    truncated = true;
                    break 'pages;
                }
                last_given = Some(key.clone());
                contents.push(Object {
                    key: Some(key),
                    size: i64::try_from(m.size).ok(),
                    e_tag: Some(ETag::Strong(m.etag)),
                    last_modified: Some(timestamp(m.modified)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    owner: Some(crate::settings::owner_of(
                        m.owner.as_deref().unwrap_or(bucket_owner),
                    )),
                    ..Default::default()
                });
            }
        }
        if !full {
            break;
        }
    }
    // A page that ends in a common prefix continues after everything
    // under it: the token is the prefix itself, skipped as a whole above.
    Ok(Page {
        contents,
        prefixes,
        next: if truncated { last_given } else { None },
    })
}

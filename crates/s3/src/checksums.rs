//! S3's additional checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256):
//! which one a write asks for (a header, a trailer after an `aws-chunked`
//! body, or just the algorithm's name), computed as the bytes stream in,
//! checked against what the client sent (a mismatch is `BadDigest` and
//! nothing is stored), kept with the object and returned when asked
//! (`x-amz-checksum-mode: ENABLED`). A write that names none gets
//! CRC64NVME, as S3 gives every new object. Multipart objects combine
//! their parts' checksums: COMPOSITE (the checksum of the parts'
//! checksums, `-N`) or FULL_OBJECT (a CRC of the whole, from the parts'
//! CRCs without reading them again).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

/// An additional checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

const ALL: [Algo; 5] = [
    Algo::Crc32,
    Algo::Crc32c,
    Algo::Crc64Nvme,
    Algo::Sha1,
    Algo::Sha256,
];

impl Algo {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    pub(crate) fn parse(s: &str) -> S3Result<Self> {
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "{s:?} is not a checksum algorithm: use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256"
                )
            })
    }

    fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Self::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Self::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Self::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Self::Sha1 | Self::Sha256 => None,
        }
    }

    fn hasher(self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        match self {
            Self::Crc32 => h.crc32 = Some(Default::default()),
            Self::Crc32c => h.crc32c = Some(Default::default()),
            Self::Crc64Nvme => h.crc64nvme = Some(Default::default()),
            Self::Sha1 => h.sha1 = Some(Default::default()),
            Self::Sha256 => h.sha256 = Some(Default::default()),
        }
        h
    }

    fn value_of(self, c: &Checksum) -> Option<String> {
        match self {
            Self::Crc32 => c.checksum_crc32.clone(),
            Self::Crc32c => c.checksum_crc32c.clone(),
            Self::Crc64Nvme => c.checksum_crc64nvme.clone(),
            Self::Sha1 => c.checksum_sha1.clone(),
            Self::Sha256 => c.checksum_sha256.clone(),
        }
    }
}

/// A checksum kept with an object or a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// Base64, with `-N` for a composite of N parts.
    pub value: String,
    /// FULL_OBJECT (of the bytes) rather than COMPOSITE (of parts').
    pub full_object: bool,
}

impl StoredChecksum {
    /// As the response fields of `algo`: (crc32, crc32c, crc64nvme, sha1,
    /// sha256, type).
    pub(crate) fn fields(&self) -> ChecksumFields {
        let mut f = ChecksumFields::default();
        let v = Some(self.value.clone());
        match Algo::parse(&self.algorithm) {
            Ok(Algo::Crc32) => f.crc32 = v,
            Ok(Algo::Crc32c) => f.crc32c = v,
            Ok(Algo::Crc64Nvme) => f.crc64nvme = v,
            Ok(Algo::Sha1) => f.sha1 = v,
            Ok(Algo::Sha256) => f.sha256 = v,
            Err(_) => return f,
        }
        f.kind = Some(
            if self.full_object {
                "FULL_OBJECT"
            } else {
                "COMPOSITE"
            }
            .to_owned(),
        );
        f
    }
}

/// A checksum as the output fields S3 answers it in.
#[derive(Debug, Default)]
pub(crate) struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<String>,
}

/// Sets an output's checksum fields from a [`ChecksumFields`]; `values`
/// for outputs without a checksum type (a part's).
macro_rules! set_checksum {
    (values $out:expr, $fields:expr) => {{
        let f: $crate::checksums::ChecksumFields = $fields;
        $out.checksum_crc32 = f.crc32;
        $out.checksum_crc32c = f.crc32c;
        $out.checksum_crc64nvme = f.crc64nvme;
        $out.checksum_sha1 = f.sha1;
        $out.checksum_sha256 = f.sha256;
        f.kind
    }};
    ($out:expr, $fields:expr) => {{
        let kind = $crate::checksums::set_checksum!(values $out, $fields);
        $out.checksum_type = kind.map(s3s::dto::ChecksumType::from);
    }};
}
pub(crate) use set_checksum;

/// What a write asks to be checked and kept.
pub(crate) struct Wanted {
    algo: Algo,
    /// The value sent in a header.
    sent: Option<String>,
    /// Where a value comes after the body.
    trailer: Option<s3s::TrailingHeaders>,
}

/// Reads a write's request: at most one `x-amz-checksum-*` header, or an
/// `x-amz-trailer` naming one, or the algorithm alone (`declared`); none
/// of them is `default`.
pub(crate) fn wanted(
    headers: &http::HeaderMap,
    declared: Option<&str>,
    trailers: Option<s3s::TrailingHeaders>,
    default: Option<Algo>,
) -> S3Result<Option<Wanted>> {
    let sent: Vec<(Algo, String)> = ALL
        .into_iter()
        .filter_map(|a| {
            headers
                .get(a.header())
                .and_then(|v| v.to_str().ok())
                .map(|v| (a, v.to_owned()))
        })
        .collect();
    if sent.len() > 1 {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ));
    }
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.trim().strip_prefix("x-amz-checksum-"))
        .map(Algo::parse)
        .transpose()?;
    let declared = declared.map(Algo::parse).transpose()?;
    let (algo, value, trailer) = match (sent.into_iter().next(), trailer) {
        (Some((a, v)), _) => (a, Some(v), None),
        (None, Some(a)) => (a, None, trailers),
        (None, None) => match declared.or(default) {
            Some(a) => (a, None, None),
            None => return Ok(None),
        },
    };
    if let Some(d) = declared
        && d != algo
    {
        return Err(s3_error!(
            InvalidRequest,
            "the checksum algorithm {} does not match the checksum sent ({})",
            d.name(),
            algo.name()
        ));
    }
    Ok(Some(Wanted {
        algo,
        sent: value,
        trailer,
    }))
}

impl Wanted {
    pub(crate) fn algo(&self) -> Algo {
        self.algo
    }
}

/// Computes a [`Wanted`] checksum over a body as it streams.
pub(crate) struct Running {
    wanted: Wanted,
    hasher: ChecksumHasher,
}

impl Running {
    pub(crate) fn new(wanted: Wanted) -> Self {
        let hasher = wanted.algo.hasher();
        Self { wanted, hasher }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The checksum of everything fed, checked against what the client
    /// sent (in a header, or in the trailer now that the body is in).
    pub(crate) fn finish(self) -> S3Result<StoredChecksum> {
        let algo = self.wanted.algo;
        let computed = algo.value_of(&self.hasher.finalize()).unwrap_or_default();
        let header = algo.header();
        let sent = self.wanted.sent.or_else(|| {
            self.wanted.trailer.and_then(|t| {
                t.read(|h| {
                    h.get(&header)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                })
                .flatten()
            })
        });
        if let Some(sent) = sent
            && sent.trim() != computed
        {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum; nothing was stored.",
                    algo.name()
                ),
            ));
        }
        Ok(StoredChecksum {
            algorithm: algo.name().to_owned(),
            value: computed,
            full_object: true,
        })
    }
}

/// How a multipart upload's object checksum is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    /// The algorithm every part uses.
    pub algorithm: String,
    /// FULL_OBJECT rather than COMPOSITE.
    pub full_object: bool,
}

/// Checks a CreateMultipartUpload's algorithm and type as S3 does:
/// CRC64NVME is full-object only, SHA1 and SHA256 composite only; the
/// default type is full-object for CRC64NVME, composite otherwise.
pub(crate) fn upload_checksum(
    algorithm: Option<&str>,
    kind: Option<&str>,
) -> S3Result<Option<UploadChecksum>> {
    let Some(algo) = algorithm.map(Algo::parse).transpose()? else {
        if kind.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "a checksum type needs a checksum algorithm (x-amz-checksum-algorithm)"
            ));
        }
        return Ok(None);
    };
    let full_object = match kind {
        None => algo == Algo::Crc64Nvme,
        Some(k) if k.eq_ignore_ascii_case("FULL_OBJECT") => true,
        Some(k) if k.eq_ignore_ascii_case("COMPOSITE") => false,
        Some(k) => {
            return Err(s3_error!(
                InvalidRequest,
                "{k:?} is not a checksum type: use COMPOSITE or FULL_OBJECT"
            ));
        }
    };
    if full_object && algo.crc().is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            algo.name()
        ));
    }
    if !full_object && algo == Algo::Crc64Nvme {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."
        ));
    }
    Ok(Some(UploadChecksum {
        algorithm: algo.name().to_owned(),
        full_object,
    }))
}

fn decode(value: &str) -> S3Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| s3_error!(InvalidRequest, "checksum {value:?} is not base64"))
}

/// The object checksum of a multipart upload from its parts' checksums
/// and sizes, in order.
pub(crate) fn combine(how: &UploadChecksum, parts: &[(String, u64)]) -> S3Result<StoredChecksum> {
    let algo = Algo::parse(&how.algorithm)?;
    let value = if how.full_object {
        let crc = algo
            .crc()
            .ok_or_else(|| s3_error!(InvalidRequest, "{} has no full-object form", algo.name()))?;
        let width = if algo == Algo::Crc64Nvme { 8 } else { 4 };
        let mut whole: Option<u64> = None;
        for (value, size) in parts {
            let raw = decode(value)?;
            if raw.len() != width {
                return Err(s3_error!(
                    InvalidPart,
                    "a part's {} is not {width} bytes",
                    algo.name()
                ));
            }
            let mut be = [0u8; 8];
            be[8 - width..].copy_from_slice(&raw);
            let part = u64::from_be_bytes(be);
            whole = Some(match whole {
                None => part,
                Some(w) => crc_fast::checksum_combine(crc, w, part, *size),
            });
        }
        let bytes = whole.unwrap_or(0).to_be_bytes();
        base64::engine::general_purpose::STANDARD.encode(&bytes[8 - width..])
    } else {
        let mut h = algo.hasher();
        for (value, _) in parts {
            h.update(&decode(value)?);
        }
        format!(
            "{}-{}",
            algo.value_of(&h.finalize()).unwrap_or_default(),
            parts.len()
        )
    };
    Ok(StoredChecksum {
        algorithm: algo.name().to_owned(),
        value,
        full_object: how.full_object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(algo: Algo, data: &[u8]) -> String {
        let mut r = Running::new(Wanted {
            algo,
            sent: None,
            trailer: None,
        });
        r.update(data);
        r.finish().unwrap().value
    }

    #[test]
    fn checksums_match_known_values() {
        // The standard check values of "123456789".
        let check = |algo, hex: &str| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(sum(algo, b"123456789"))
                .unwrap();
            assert_eq!(hex::encode(raw), hex, "{algo:?}");
        };
        check(Algo::Crc32, "cbf43926");
        check(Algo::Crc32c, "e3069283");
        check(Algo::Crc64Nvme, "ae8b14860a799888");
    }

    #[test]
    fn a_mismatch_is_bad_digest() {
        let mut r = Running::new(Wanted {
            algo: Algo::Crc32,
            sent: Some(sum(Algo::Crc32, b"other")),
            trailer: None,
        });
        r.update(b"data");
        let e = r.finish().unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::BadDigest);
    }

    #[test]
    fn full_object_crcs_combine_from_parts() {
        let (a, b) = (b"hello ".as_slice(), b"multipart world".as_slice());
        for algo in [Algo::Crc32, Algo::Crc32c, Algo::Crc64Nvme] {
            let how = UploadChecksum {
                algorithm: algo.name().into(),
                full_object: true,
            };
            let parts = [
                (sum(algo, a), a.len() as u64),
                (sum(algo, b), b.len() as u64),
            ];
            let whole = combine(&how, &parts).unwrap();
            assert_eq!(whole.value, sum(algo, &[a, b].concat()), "{algo:?}");
        }
        let composite = combine(
            &UploadChecksum {
                algorithm: "SHA256".into(),
                full_object: false,
            },
            &[(sum(Algo::Sha256, a), 6), (sum(Algo::Sha256, b), 15)],
        )
        .unwrap();
        assert!(composite.value.ends_with("-2"), "{}", composite.value);
    }

    #[test]
    fn upload_types_are_checked_as_s3_checks_them() {
        assert!(
            upload_checksum(Some("CRC64NVME"), None)
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(
            !upload_checksum(Some("CRC32"), None)
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(upload_checksum(Some("SHA256"), Some("FULL_OBJECT")).is_err());
        assert!(upload_checksum(Some("CRC64NVME"), Some("COMPOSITE")).is_err());
        assert!(upload_checksum(None, Some("COMPOSITE")).is_err());
        assert!(upload_checksum(Some("MD5"), None).is_err());
    }
}

//! Browser form uploads (POST object) whose `key` field says
//! `${filename}`: S3 puts the uploaded file's name there, so a page can
//! let its users keep their files' names. s3s reads the form but leaves the
//! variable as it is, so the HTTP server rewrites the key field before s3s
//! sees the form: the fields come before the file (S3 requires the file
//! last), so only that first stretch of the body is read and rewritten, and
//! the file's bytes stream through untouched. The policy is signed, not
//! the key, so the signature still holds, and the policy's conditions are
//! checked against the key as rewritten (as S3 does).

/// The longest stretch of a form read to find the file part: s3s takes
/// at most 1 MiB of fields, and anything longer it refuses anyway.
pub const MAX_FIELDS: usize = (1 << 20) + (64 << 10);

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// What [`rewrite`] found in the start of a form.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The file part has not begun yet: read more.
    NeedMore,
    /// The file part begins; here is the form's start to send instead
    /// (unchanged when the key names no `${filename}`).
    Ready(Vec<u8>),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of `param` (`name`, `filename`) in a Content-Disposition.
fn disposition_param(headers: &str, param: &str) -> Option<String> {
    let line = headers
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let pattern = format!("{param}=\"");
    let mut from = 0;
    // `name="` also occurs inside `filename="`: take the one that stands alone.
    while let Some(at) = line[from..].find(&pattern) {
        let start = from + at;
        let alone = start == 0 || matches!(line.as_bytes()[start - 1], b' ' | b';');
        let value_start = start + pattern.len();
        let end = line[value_start..].find('"')? + value_start;
        if alone {
            return Some(line[value_start..end].to_owned());
        }
        from = end;
    }
    None
}

/// Looks at the start of a form with `boundary`: once the file part's
/// headers are in, the start with `${filename}` in the key field replaced
/// by the file's name (its last path component, as browsers on some
/// systems send a full path).
pub fn rewrite(start: &[u8], boundary: &str) -> Found {
    let delimiter = format!("--{boundary}");
    let mut at = match find(start, delimiter.as_bytes()) {
        Some(i) => i,
        None => return Found::NeedMore,
    };
    let mut key: Option<(usize, usize)> = None; // the key value's range
    loop {
        let headers_start = at + delimiter.len() + 2;
        let Some(headers_len) = start
            .get(headers_start..)
            .and_then(|s| find(s, b"\r\n\r\n"))
        else {
            return Found::NeedMore;
        };
        let headers = String::from_utf8_lossy(&start[headers_start..headers_start + headers_len])
            .into_owned();
        let body_start = headers_start + headers_len + 4;
        let name = disposition_param(&headers, "name").unwrap_or_default();
        if name.eq_ignore_ascii_case("file") {
            let filename = disposition_param(&headers, "filename").unwrap_or_default();
            let filename = filename
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let mut out = start.to_vec();
            if let Some((k0, k1)) = key {
                let value =
                    String::from_utf8_lossy(&start[k0..k1]).replace("${filename}", &filename);
                out.splice(k0..k1, value.into_bytes());
            }
            return Found::Ready(out);
        }
        let next_delim = format!("\r\n{delimiter}");
        let Some(body_len) = start
            .get(body_start..)
            .and_then(|s| find(s, next_delim.as_bytes()))
        else {
            return Found::NeedMore;
        };
        if name.eq_ignore_ascii_case("key") {
            key = Some((body_start, body_start + body_len));
        }
        at = body_start + body_len + 2;
        if start.get(at + delimiter.len()..at + delimiter.len() + 2) == Some(b"--") {
            // The form ended without a file: nothing to rewrite.
            return Found::Ready(start.to_vec());
        }
    }
}

/// S3's answer to a form whose fields break its policy (403 AccessDenied
/// "Invalid according to Policy"), from s3s's (400 InvalidPolicyDocument
/// naming the failed condition); none for any other error.
pub fn policy_refusal(s3s_error: &str) -> Option<String> {
    if !s3s_error.contains("<Code>InvalidPolicyDocument</Code>") {
        return None;
    }
    let message = s3s_error
        .split("<Message>")
        .nth(1)?
        .split("</Message>")
        .next()?;
    if !message.contains("condition") {
        return None;
    }
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: {message}</Message></Error>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(key: &str, filename: &str) -> Vec<u8> {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{key}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\neyJ9\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: text/plain\r\n\r\nthe file's bytes\r\n--XyZ--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_key_gets_the_file_name() {
        let body = form("uploads/${filename}", "C:\\Users\\me\\hello.txt");
        let Found::Ready(out) = rewrite(&body, "XyZ") else {
            panic!("not ready")
        };
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\n\r\nuploads/hello.txt\r\n"), "{text}");
        assert!(text.ends_with("the file's bytes\r\n--XyZ--\r\n"));
        let plain = form("fixed", "a.txt");
        assert_eq!(rewrite(&plain, "XyZ"), Found::Ready(plain.clone()));
    }

    #[test]
    fn a_broken_policy_condition_is_access_denied() {
        let s3s = "<Error><Code>InvalidPolicyDocument</Code><Message>Policy condition &apos;eq&apos; failed</Message></Error>";
        let answer = policy_refusal(s3s).unwrap();
        assert!(
            answer.contains("<Code>AccessDenied</Code>")
                && answer.contains("Invalid according to Policy")
        );
        assert_eq!(
            policy_refusal(
                "<Error><Code>InvalidPolicyDocument</Code><Message>bad JSON</Message></Error>"
            ),
            None
        );
    }

    #[test]
    fn a_form_cut_short_asks_for_more() {
        let body = form("k/${filename}", "a.txt");
        let cut = find(&body, b"Content-Type: text/plain").unwrap();
        assert_eq!(rewrite(&body[..cut], "XyZ"), Found::NeedMore);
        assert_eq!(rewrite(&body[..10], "XyZ"), Found::NeedMore);
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("text/plain"), None);
    }
}

//! What a failed call to the daemon becomes for the program that made the
//! system call: an errno it understands, and for anything it cannot
//! explain (EIO), a line in the mount's log that can.

use cloudshell_store_api::ClientError;
use fuser::Errno;

/// The errno for a failed call about `path`; logs what the errno cannot
/// say.
pub fn errno(what: &str, path: &str, e: &ClientError) -> Errno {
    let code = e.code().unwrap_or_default();
    let errno = match code {
        "NoSuchFile" => return Errno::ENOENT,
        "StoreFull" => Errno::ENOSPC,
        "PreconditionFailed" => Errno::from_i32(libc::ESTALE),
        "InvalidName" => Errno::EINVAL,
        "ReservedName" => Errno::EROFS,
        "Unauthorized" | "Forbidden" => Errno::EACCES,
        _ if matches!(e, ClientError::InvalidName { .. }) => Errno::EINVAL,
        _ => Errno::EIO,
    };
    tracing::warn!(
        "{what} {path:?} failed ({}): {}",
        describe(errno),
        with_sources(e)
    );
    errno
}

fn describe(errno: Errno) -> &'static str {
    match errno.code() {
        libc::ENOSPC => "ENOSPC",
        libc::ESTALE => "ESTALE",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        _ => "EIO",
    }
}

/// The error and its causes, one after another.
pub fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// The errno for a local I/O error (the staging file).
pub fn local(what: &str, path: &str, e: &std::io::Error) -> Errno {
    tracing::warn!("{what} {path:?} failed in the staging file: {e}");
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ClientError {
        ClientError::Api {
            status: 400,
            code: code.to_owned(),
            message: "m".to_owned(),
        }
    }

    #[test]
    fn the_daemons_codes_become_the_errnos_programs_know() {
        assert_eq!(errno("read", "f", &api("NoSuchFile")), Errno::ENOENT);
        assert_eq!(errno("write", "f", &api("StoreFull")), Errno::ENOSPC);
        assert_eq!(errno("write", "s3/b/k", &api("ReservedName")), Errno::EROFS);
        assert_eq!(
            errno("read", "f", &api("PreconditionFailed")).code(),
            libc::ESTALE
        );
        assert_eq!(errno("read", "f", &api("Unrecoverable")), Errno::EIO);
    }
}

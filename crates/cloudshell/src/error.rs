//! Errors returned by [`Client`](crate::Client) operations.
//!
//! As in the AWS SDKs, a failed call is an [`SdkError`] that says which stage
//! failed: the request could not be built, it timed out, it could not be sent,
//! the response made no sense, or the service answered with an error. Service
//! errors carry an operation-specific kind (one variant per modeled error,
//! plus `Unhandled`) and the [`ErrorMetadata`] every AWS error has.

use std::error::Error as StdError;
use std::fmt;

use crate::types::ValidationError;

/// What every AWS error response carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorMetadata {
    /// The AWS error code, such as `ValidationException`.
    pub code: Option<String>,
    /// The service's human-readable message.
    pub message: Option<String>,
    /// The HTTP status code.
    pub status: u16,
    /// The `x-amzn-RequestId` of the response, to quote to AWS support.
    pub request_id: Option<String>,
}

impl fmt::Display for ErrorMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_deref().unwrap_or("UnknownError"))?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        write!(f, " (HTTP {}", self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request id {id}")?;
        }
        f.write_str(")")
    }
}

/// Implemented by each operation's error kind enum.
pub trait OperationError: fmt::Debug + Send + Sync + 'static {
    /// Maps an AWS error code to the operation's modeled error, or `Unhandled`.
    fn from_code(code: &str) -> Self;
}

/// The service answered with an error.
#[derive(Debug, Clone)]
pub struct ServiceError<E> {
    kind: E,
    meta: ErrorMetadata,
    attempts: u32,
}

impl<E> ServiceError<E> {
    pub(crate) fn new(kind: E, meta: ErrorMetadata, attempts: u32) -> Self {
        Self {
            kind,
            meta,
            attempts,
        }
    }

    /// The operation-specific kind of the error.
    pub fn kind(&self) -> &E {
        &self.kind
    }

    /// Code, message, status and request id.
    pub fn meta(&self) -> &ErrorMetadata {
        &self.meta
    }

    /// How many attempts were made before giving up.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl<E> fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.meta)?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// A failed operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum SdkError<E> {
    /// The input was invalid; nothing was sent.
    InvalidInput(ValidationError),
    /// The request could not be built (credentials, endpoint, signing); nothing was sent.
    ConstructionFailure {
        /// What could not be done.
        context: &'static str,
        /// Why.
        source: BoxError,
    },
    /// An attempt or the whole operation ran out of time.
    TimeoutError {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The request could not be sent, or the connection broke before a response.
    DispatchFailure {
        /// How many attempts were made.
        attempts: u32,
        /// True when the failure came after the request may have reached the
        /// service (so a non-idempotent call was not retried).
        may_have_reached_service: bool,
        /// The transport error.
        source: BoxError,
    },
    /// A response arrived but could not be understood.
    ResponseError {
        /// The HTTP status.
        status: u16,
        /// The request id, when the response had one.
        request_id: Option<String>,
        /// What was wrong with it.
        source: BoxError,
    },
    /// The service answered with an error.
    ServiceError(ServiceError<E>),
}

impl<E> SdkError<E> {
    /// The AWS error code, for a service error.
    pub fn code(&self) -> Option<&str> {
        self.meta().and_then(|m| m.code.as_deref())
    }

    /// The service's message, for a service error.
    pub fn message(&self) -> Option<&str> {
        self.meta().and_then(|m| m.message.as_deref())
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::ResponseError { status, .. } => Some(*status),
            Self::ServiceError(e) => Some(e.meta.status),
            _ => None,
        }
    }

    /// The request id, when a response carried one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::ResponseError { request_id, .. } => request_id.as_deref(),
            Self::ServiceError(e) => e.meta.request_id.as_deref(),
            _ => None,
        }
    }

    /// The error metadata, for a service error.
    pub fn meta(&self) -> Option<&ErrorMetadata> {
        match self {
            Self::ServiceError(e) => Some(&e.meta),
            _ => None,
        }
    }

    /// The operation-specific kind, for a service error.
    pub fn kind(&self) -> Option<&E> {
        match self {
            Self::ServiceError(e) => Some(&e.kind),
            _ => None,
        }
    }

    /// Drops the operation-specific kind, keeping everything else.
    pub fn into_untyped(self) -> SdkError<()> {
        match self {
            Self::InvalidInput(e) => SdkError::InvalidInput(e),
            Self::ConstructionFailure { context, source } => {
                SdkError::ConstructionFailure { context, source }
            }
            Self::TimeoutError { attempts } => SdkError::TimeoutError { attempts },
            Self::DispatchFailure {
                attempts,
                may_have_reached_service,
                source,
            } => SdkError::DispatchFailure {
                attempts,
                may_have_reached_service,
                source,
            },
            Self::ResponseError {
                status,
                request_id,
                source,
            } => SdkError::ResponseError {
                status,
                request_id,
                source,
            },
            Self::ServiceError(e) => {
                SdkError::ServiceError(ServiceError::new((), e.meta, e.attempts))
            }
        }
    }
}

impl<E> From<ValidationError> for SdkError<E> {
    fn from(e: ValidationError) -> Self {
        Self::InvalidInput(e)
    }
}

impl<E> fmt::Display for SdkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(e) => write!(f, "{e}"),
            Self::ConstructionFailure { context, .. } => {
                write!(f, "could not build the request: {context}")
            }
            Self::TimeoutError { attempts } => {
                write!(f, "timed out ({attempts} attempt{})", plural(*attempts))
            }
            Self::DispatchFailure {
                attempts,
                may_have_reached_service,
                ..
            } => {
                write!(
                    f,
                    "could not send the request ({attempts} attempt{})",
                    plural(*attempts)
                )?;
                if *may_have_reached_service {
                    f.write_str("; it may have reached the service, so it was not retried")?;
                }
                Ok(())
            }
            Self::ResponseError { status, .. } => {
                write!(f, "bad response from the service (HTTP {status})")
            }
            Self::ServiceError(e) => write!(f, "{e}"),
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<E: fmt::Debug> StdError for SdkError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::ConstructionFailure { source, .. }
            | Self::DispatchFailure { source, .. }
            | Self::ResponseError { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Declares an operation's error kind: the errors every CloudShell operation
/// can return, the operation's own, and `Unhandled`.
macro_rules! operation_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            /// `AccessDeniedException`: the principal may not call this operation.
            AccessDenied,
            /// `ValidationException`: the service rejected the input or the
            /// environment's state does not allow the operation.
            Validation,
            /// `ResourceNotFoundException`: no such environment or session.
            ResourceNotFound,
            /// `ThrottlingException`: too many requests (retried automatically).
            Throttling,
            /// `InternalServerException`: the service failed (retried when safe).
            InternalServer,
            $($(#[$vdoc])* $variant,)*
            /// A code this operation does not model; see [`ErrorMetadata::code`](crate::error::ErrorMetadata::code).
            Unhandled,
        }

        impl $crate::error::OperationError for $name {
            fn from_code(code: &str) -> Self {
                match code {
                    "AccessDeniedException" => Self::AccessDenied,
                    "ValidationException" => Self::Validation,
                    "ResourceNotFoundException" => Self::ResourceNotFound,
                    "ThrottlingException" => Self::Throttling,
                    "InternalServerException" => Self::InternalServer,
                    $($code => Self::$variant,)*
                    _ => Self::Unhandled,
                }
            }
        }
    };
}
pub(crate) use operation_error;

impl OperationError for () {
    fn from_code(_: &str) -> Self {}
}

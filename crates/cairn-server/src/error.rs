//! One error type at the server's boundary. Each failure maps to a protocol error code
//! and a message safe to show; storage and I/O details go to the log only.

use crate::storage::StoreError;
use cairn_proto::{ErrorCode, ProtoError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{1}")]
    Client(ErrorCode, String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl ServerError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ServerError::Client(ErrorCode::BadRequest, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ServerError::Client(ErrorCode::Forbidden, msg.into())
    }
    pub fn code(code: ErrorCode, msg: impl Into<String>) -> Self {
        ServerError::Client(code, msg.into())
    }

    /// What the client sees.
    pub fn to_proto(&self) -> ProtoError {
        match self {
            ServerError::Client(code, msg) => ProtoError::new(*code, msg.clone()),
            ServerError::Store(StoreError::NotFound) => {
                ProtoError::new(ErrorCode::NotFound, "not found")
            }
            ServerError::Store(StoreError::HandleTaken) => {
                ProtoError::new(ErrorCode::HandleTaken, "that handle is taken")
            }
            ServerError::Store(StoreError::InviteRequired) => ProtoError::new(
                ErrorCode::InviteRequired,
                "registration needs a valid invite token",
            ),
            ServerError::Store(StoreError::Conflict(why)) => {
                ProtoError::new(ErrorCode::Conflict, *why)
            }
            ServerError::Store(StoreError::Backend(detail)) => {
                tracing::error!(%detail, "storage failure");
                ProtoError::new(ErrorCode::Internal, "internal error; try again")
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, ServerError>;

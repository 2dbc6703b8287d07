use cairn_proto::membership::OpError;

/// Everything that can go wrong while sealing, opening or verifying. Messages name what
/// failed, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("invalid public key")]
    BadPublicKey,
    #[error("decryption failed: wrong key, or the data was altered")]
    DecryptFailed,
    #[error("the sender device was not a member of the space at that epoch")]
    NotAMember,
    #[error("no key for space epoch {0}")]
    MissingKey(u64),
    #[error("the space has no epoch {0}")]
    NoSuchEpoch(u64),
    #[error(
        "the key offered for epoch {0} is not the one its membership op confirms (a planted or corrupt envelope)"
    )]
    KeyNotConfirmed(u64),
    #[error(
        "forged author: the body names {claimed:?}, but the sending device belongs to {actual:?}"
    )]
    ForgedAuthor { claimed: String, actual: String },
    #[error("membership operation rejected: {0}")]
    Op(#[from] OpError),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("media stream is truncated")]
    Truncated,
    #[error("media: the blob's hash does not match its address")]
    WrongAddress,
    #[error("media stream continues after its last chunk")]
    TrailingData,
    #[error("device list rejected: {0}")]
    DeviceList(&'static str),
}

impl CryptoError {
    pub(crate) fn malformed(what: &'static str, why: impl ToString) -> Self {
        CryptoError::Malformed { what, why: why.to_string() }
    }
}

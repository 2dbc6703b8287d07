use cairn_proto::ProtoError;

/// What can go wrong on a device. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("offline: {0}")]
    Offline(String),
    #[error("the server refused: {0}")]
    Server(#[from] ProtoError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("local store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("encryption: {0}")]
    Crypto(#[from] cairn_crypto::CryptoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("media transfer: {0}")]
    Http(String),
    #[error("no profile in {0}: run `cairn-cli init --server URL --handle NAME` first")]
    NoProfile(String),
    #[error("no space named {0:?}")]
    NoSuchSpace(String),
    #[error("no note {0}")]
    NoSuchNote(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}

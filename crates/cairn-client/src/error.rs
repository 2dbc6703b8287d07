use cairn_proto::ProtoError;
use std::path::PathBuf;

/// What can go wrong on a device. Each says what to do about it, and each is a variant a UI
/// can match on: the text is for people, the variant for code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server cannot be reached (or stopped answering); cached data still works.
    #[error("offline: {0}")]
    Offline(String),
    /// The server refused a request, with its code.
    #[error("the server refused: {0}")]
    Server(#[from] ProtoError),
    /// The server answered something the protocol does not allow (or served a stale list
    /// of devices): nothing of it was kept.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("local store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("encryption: {0}")]
    Crypto(#[from] cairn_crypto::CryptoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Uploading or downloading a blob failed (a refusal, a broken transfer, a blob that
    /// does not match its address).
    #[error("media transfer: {0}")]
    Http(String),

    // The profile and its keys.
    #[error("no profile in {0}: run `cairn-cli init --server URL --handle NAME` first")]
    NoProfile(String),
    #[error("{} already holds a profile; use another --home", .0.display())]
    ProfileExists(PathBuf),
    #[error("the profile's stored handle is damaged")]
    DamagedHandle,
    #[error("this profile's keys are protected: set CAIRN_PASSPHRASE")]
    PassphraseNeeded,
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("the stored device keys are damaged")]
    DamagedKeys,
    /// Making or sealing this device's keys failed (the passphrase's key derivation, the
    /// system's randomness).
    #[error("the device keys: {0}")]
    Keys(String),

    // Finding things by name.
    #[error("no space named {0:?}")]
    NoSuchSpace(String),
    #[error("several spaces are named {0:?}; use the id")]
    AmbiguousSpace(String),
    #[error("no note {0}")]
    NoSuchNote(String),
    #[error("a note id is at least 4 hex digits")]
    ShortNoteId,
    #[error("note id {0} is ambiguous; give more digits")]
    AmbiguousNote(String),
    /// No place of that name; `known` lists the space's places.
    #[error("no place named {name:?}{}", if known.is_empty() {
        ": this space has no places yet".to_owned()
    } else {
        format!(" (this space has: {})", known.join(", "))
    })]
    NoSuchPlace { name: String, known: Vec<String> },
    #[error("{count} places are named {name:?}: give the start of one's id instead")]
    AmbiguousPlace { name: String, count: usize },

    // Posting.
    #[error("you are not a member of this space")]
    NotMember,
    #[error("your role may not post in this space")]
    MayNotPost,
    #[error(
        "this device has not been added to this space yet: sync one of your other devices (it adds this one), then sync here"
    )]
    DeviceNotAdded,
    #[error("this device has not received the space's current key yet; sync and retry")]
    NoKeyYet,
    #[error("the note is too large (its thumbnail or text)")]
    NoteTooLarge,
    /// A draft that is not a note: blank text, a reaction to nothing, a place in a place,
    /// a place record that does not hold together.
    #[error("{0}")]
    BadDraft(String),
    /// An image that cannot be read, is too large, or cannot be encoded.
    #[error("{0}")]
    BadImage(String),
    /// A video file that cannot be made a video note (the reason from cairn-video).
    #[error("{0}")]
    BadVideo(String),
    /// The space's membership changed under each of several tries.
    #[error("membership kept changing under us; try again")]
    MembershipRace,
    /// A stored note that could not be opened has nothing to show.
    #[error("note {note} could not be opened: {reason}")]
    NotOpened { note: String, reason: String },

    // Settings.
    #[error("{0}")]
    BadServerUrl(String),
    #[error("{0}")]
    BadCertificate(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}

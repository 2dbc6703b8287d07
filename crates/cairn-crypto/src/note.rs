//! Sealing and opening notes. A note body is CBOR, encrypted with AES-256-GCM under a key
//! derived for this one note from the space's epoch key (HKDF-SHA256 with the sender and
//! note id), with a random 96-bit nonce. The associated data binds the protocol version
//! and the whole clear header (space, epoch, sender device, note id, kind, expiry, media).
//! The sender signs header and ciphertext; opening checks membership, then the signature,
//! then decrypts.

use crate::media::MediaKey;
use crate::{CryptoError, DeviceIdentity, EpochKey, random_bytes, verify_signature};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cairn_proto::membership::SpaceState;
use cairn_proto::{MediaHash, NoteHeader, NoteId, NoteKind, PROTOCOL_VERSION, SealedNote, sign};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

/// Where a note stands: position in metres and orientation as a unit quaternion
/// (x, y, z, w), in the space's reference frame (the stage).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    pub position: [f32; 3],
    pub rotation: [f32; 4],
}

impl Default for Pose {
    fn default() -> Self {
        Pose { position: [0.0; 3], rotation: [0.0, 0.0, 0.0, 1.0] }
    }
}

/// A persisted spatial anchor the note is attached to: which anchor (an XR_FB_spatial_entity
/// UUID, an XR_MSFT_spatial_anchor name), and where the note stands relative to it. A
/// device that can locate the anchor puts the note there, exactly where it was left in
/// the room; any other device uses the note's stage `pose`, marked as approximate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialAnchor {
    pub kind: String,
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    /// The note's pose in the anchor's frame (absent in notes from before it existed: the
    /// anchor's own pose).
    #[serde(default)]
    pub offset: Pose,
}

/// Where a note stands in a place: which place (the id of the note that carries the place's
/// record) and the note's pose in that place's frame. A device aligned with the place shows
/// the note there; any other falls back to the note's stage `pose`, marked approximate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlacePose {
    pub place: NoteId,
    pub pose: Pose,
}

/// A reference mark of a place: a physical point people can find again (a door frame's
/// corner, the end of a counter), named, with its position in the place's frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaceMark {
    pub name: String,
    pub position: [f32; 3],
}

/// What a place is: carried, sealed like any note, by a note of kind [`NoteKind::Place`]
/// (whose author is the place's maker, and whose optional image shows the marks).
///
/// The place's frame: its origin on the floor below the first mark, its x axis level and
/// toward the second mark, y up (gravity and the floor come from each device's stage).
/// Devices align with it by marking the same physical points in the same order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaceRecord {
    pub name: String,
    /// How to find the marks, for people ("the two top corners of the kitchen door").
    pub description: String,
    pub marks: Vec<PlaceMark>,
}

/// Bounds on a place record, checked by its author's client and by every reader.
pub const PLACE_MARKS_MIN: usize = 2;
pub const PLACE_MARKS_MAX: usize = 8;
pub const PLACE_NAME_MAX: usize = 80;
pub const PLACE_DESCRIPTION_MAX: usize = 1000;
/// Metres: marks closer than this are one point marked twice; farther than
/// [`PLACE_REACH`] from the first is no room.
pub const PLACE_MARK_SEPARATION: f32 = 0.03;
pub const PLACE_REACH: f32 = 100.0;

impl PlaceRecord {
    /// Whether a reader can use it: a name, two to eight named marks at finite, distinct
    /// positions within reach of each other.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > PLACE_NAME_MAX {
            return Err(format!("a place's name has 1 to {PLACE_NAME_MAX} characters"));
        }
        if self.description.chars().count() > PLACE_DESCRIPTION_MAX {
            return Err(format!(
                "a place's description has at most {PLACE_DESCRIPTION_MAX} characters"
            ));
        }
        if !(PLACE_MARKS_MIN..=PLACE_MARKS_MAX).contains(&self.marks.len()) {
            return Err(format!(
                "a place has {PLACE_MARKS_MIN} to {PLACE_MARKS_MAX} reference marks, not {}",
                self.marks.len()
            ));
        }
        for (i, m) in self.marks.iter().enumerate() {
            if m.name.trim().is_empty() || m.name.chars().count() > PLACE_NAME_MAX {
                return Err(format!(
                    "mark {} needs a name of 1 to {PLACE_NAME_MAX} characters",
                    i + 1
                ));
            }
            if !m.position.iter().all(|v| v.is_finite() && v.abs() <= PLACE_REACH) {
                return Err(format!("mark {} ({}) is not a position in a room", i + 1, m.name));
            }
            for (j, other) in self.marks[..i].iter().enumerate() {
                let d: f32 =
                    (0..3).map(|k| (m.position[k] - other.position[k]).powi(2)).sum::<f32>().sqrt();
                if d < PLACE_MARK_SEPARATION {
                    return Err(format!("marks {} and {} are the same point", j + 1, i + 1));
                }
            }
        }
        Ok(())
    }
}

/// A media blob a note carries: its address, its key, and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub hash: MediaHash,
    pub key: MediaKey,
    /// Plaintext length in bytes.
    pub size: u64,
    /// MIME type, for example `audio/ogg` or `image/webp`.
    pub mime: String,
}

/// Everything a note says. Only members of the space can read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoteBody {
    pub kind: NoteKind,
    /// The author's handle. Readers refuse a note whose author is not the user that owns
    /// the sending device in the verified membership log ([`CryptoError::ForgedAuthor`]).
    pub author: String,
    pub text: String,
    pub media: Vec<MediaRef>,
    /// About 64 peak values of a voice note, 0..=255.
    #[serde(with = "serde_bytes")]
    pub waveform: Vec<u8>,
    /// Duration of a voice note in milliseconds.
    pub duration_ms: u32,
    /// A small image (JPEG) shown before the full image arrives.
    #[serde(with = "serde_bytes")]
    pub thumbnail: Vec<u8>,
    pub pose: Pose,
    pub anchor: Option<SpatialAnchor>,
    pub reply_to: Option<NoteId>,
    /// For `NoteKind::Reaction`: the emoji.
    pub reaction: Option<String>,
    /// When the author wrote it, unix milliseconds (their clock).
    pub created_at: u64,
    /// The place it was left in, and its pose there. Absent (not null) when it has none, so
    /// that a body from before places encodes as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<PlacePose>,
    /// For `NoteKind::Place`: the place's record (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_record: Option<PlaceRecord>,
}

impl NoteBody {
    /// A text note with everything else empty.
    pub fn text(author: &str, text: &str, pose: Pose) -> Self {
        NoteBody {
            kind: NoteKind::Text,
            author: author.to_owned(),
            text: text.to_owned(),
            media: Vec::new(),
            waveform: Vec::new(),
            duration_ms: 0,
            thumbnail: Vec::new(),
            pose,
            anchor: None,
            reply_to: None,
            reaction: None,
            created_at: cairn_proto::now_ms(),
            place: None,
            place_record: None,
        }
    }
}

/// The key of one note: HKDF-SHA256 of the epoch key with the sender and note id.
pub fn note_key(epoch_key: &EpochKey, header: &NoteHeader) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"cairn/note-key/v1"), epoch_key.as_bytes());
    let mut info = Vec::with_capacity(48);
    info.extend_from_slice(&header.sender.0);
    info.extend_from_slice(&header.note_id.0);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(&info, out.as_mut()).expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The associated data of a note's AES-GCM: CBOR `["cairn/note-aad/v1", version, header]`.
pub fn associated_data(header: &NoteHeader) -> Vec<u8> {
    cairn_proto::encode(&("cairn/note-aad/v1", PROTOCOL_VERSION, header))
}

/// Seals `body` under the epoch key and signs it as `sender`. The header's `sender` must
/// be `sender.id()`, and its `media` must list the hashes of `body.media`.
pub fn seal_note(
    sender: &DeviceIdentity,
    epoch_key: &EpochKey,
    header: NoteHeader,
    body: &NoteBody,
) -> SealedNote {
    seal_note_with_nonce(sender, epoch_key, header, body, *random_bytes::<NONCE_LEN>())
}

/// [`seal_note`] with a given nonce, for known-answer vectors only: a nonce must never be
/// used twice under one note key, which [`seal_note`]'s random nonce ensures.
pub fn seal_note_with_nonce(
    sender: &DeviceIdentity,
    epoch_key: &EpochKey,
    header: NoteHeader,
    body: &NoteBody,
    nonce: [u8; NONCE_LEN],
) -> SealedNote {
    assert_eq!(header.sender, sender.id(), "a note is sealed by its sender");
    let plaintext = Zeroizing::new(cairn_proto::encode(body));
    let key = note_key(epoch_key, &header);
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
    let aad = associated_data(&header);
    let sealed = cipher
        .encrypt(&nonce.into(), Payload { msg: &plaintext, aad: &aad })
        .expect("AES-GCM encryption of a bounded note cannot fail");
    let mut ciphertext = nonce.to_vec();
    ciphertext.extend_from_slice(&sealed);
    let signature = sender.sign(&sign::note_payload(&header, &ciphertext));
    SealedNote { header, ciphertext, signature }
}

/// Opens a note: the sender must have been a member device at the note's epoch, the
/// signature must verify, the ciphertext must decrypt and decode, the body's kind and media
/// must be exactly the header's, and its author the user that owns the sender device.
pub fn open_note(
    membership: &SpaceState,
    epoch_key: &EpochKey,
    note: &SealedNote,
) -> Result<NoteBody, CryptoError> {
    let h = &note.header;
    if h.space != membership.space {
        return Err(CryptoError::NotAMember);
    }
    if !membership.was_member_device(&h.sender, h.epoch) {
        return Err(CryptoError::NotAMember);
    }
    verify_signature(&h.sender, &sign::note_payload(h, &note.ciphertext), &note.signature)?;
    if note.ciphertext.len() < NONCE_LEN + 16 {
        return Err(CryptoError::DecryptFailed);
    }
    let (nonce, sealed) = note.ciphertext.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let key = note_key(epoch_key, h);
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
    let aad = associated_data(h);
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(&nonce.into(), Payload { msg: sealed, aad: &aad })
            .map_err(|_| CryptoError::DecryptFailed)?,
    );
    let body: NoteBody =
        cairn_proto::decode(&plaintext).map_err(|e| CryptoError::malformed("note body", e))?;
    if body.kind != h.kind {
        return Err(CryptoError::malformed("note body", "kind differs from the header"));
    }
    match (&body.place_record, body.kind) {
        (Some(record), NoteKind::Place) => {
            record.check().map_err(|why| CryptoError::malformed("place record", why))?
        }
        (None, NoteKind::Place) => {
            return Err(CryptoError::malformed("note body", "a place without its record"));
        }
        (Some(_), _) => {
            return Err(CryptoError::malformed("note body", "a place record on a note"));
        }
        (None, _) => {}
    }
    let hashes: Vec<_> = body.media.iter().map(|m| m.hash).collect();
    if hashes != h.media {
        return Err(CryptoError::malformed("note body", "media differ from the header"));
    }
    // The author is whoever owns the sending device in the verified log; a body that names
    // anyone else is forged, so the name a reader shows is always the log's.
    let actual = membership.author_of(&h.sender, h.epoch).ok_or(CryptoError::NotAMember)?;
    if body.author != actual.as_str() {
        return Err(CryptoError::ForgedAuthor {
            claimed: body.author.clone(),
            actual: actual.to_string(),
        });
    }
    Ok(body)
}

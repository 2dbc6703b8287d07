//! Fixed-size identifiers. Each travels as a CBOR byte string of its exact length and
//! prints as lowercase hex.

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes on the wire.
            pub const LEN: usize = $len;

            /// The id as lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses lowercase or uppercase hex of exactly `LEN` bytes.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).ok()?;
                Some(Self(out))
            }

            /// Copies from a slice of exactly `LEN` bytes.
            pub fn from_slice(s: &[u8]) -> Option<Self> {
                Some(Self(s.try_into().ok()?))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self([0u8; $len])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16.min(2 * $len)])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a byte string of {} bytes", $len)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        $name::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
                    }
                }
                d.deserialize_bytes(V).map_err(D::Error::custom)
            }
        }
    };
}

byte_id!(
    /// A device: its Ed25519 public key. Self-certifying: whoever holds the secret key is it.
    DeviceId,
    32
);
byte_id!(
    /// A device's X25519 public key, to which space keys are wrapped with HPKE.
    AgreeKey,
    32
);
byte_id!(
    /// A space, chosen at random by the device that creates it.
    SpaceId,
    16
);
byte_id!(
    /// A note, chosen at random by its sender before the first send, so that retries are
    /// idempotent.
    NoteId,
    16
);
byte_id!(
    /// The SHA-256 of a media blob's ciphertext; the blob's address.
    MediaHash,
    32
);
byte_id!(
    /// SHA-256 of a membership operation's encoded body; links each op to the one before.
    OpHash,
    32
);
byte_id!(
    /// A key-confirmation value: derived from an epoch key by its maker (cairn-crypto
    /// `key_confirmation`) and carried in the signed op that starts the epoch, so that every
    /// member can tell the epoch's key from a planted one.
    KeyConfirm,
    32
);
byte_id!(
    /// A random challenge the server asks a device to sign at login.
    Challenge,
    32
);
byte_id!(
    /// An Ed25519 signature.
    Signature,
    64
);

/// Both public keys of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceKeys {
    /// Ed25519 verifying key; also the device's id.
    pub sign: DeviceId,
    /// X25519 public key for HPKE.
    pub agree: AgreeKey,
}

/// Checks a user handle: 1 to 32 characters of `a-z`, `0-9`, `_`, `-` and `.`, starting
/// with a letter or digit.
pub fn valid_handle(h: &str) -> bool {
    (1..=32).contains(&h.len())
        && h.as_bytes()[0].is_ascii_alphanumeric()
        && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

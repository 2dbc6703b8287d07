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

        /// A blob of exactly `LEN` bytes.
        #[cfg(feature = "rusqlite")]
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(&self.0)))
            }
        }

        /// A stored blob of another length is an error, not a truncated or padded id.
        #[cfg(feature = "rusqlite")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let b = v.as_blob()?;
                $name::from_slice(b).ok_or(rusqlite::types::FromSqlError::InvalidBlobSize {
                    expected_size: $len,
                    blob_size: b.len(),
                })
            }
        }

        /// A `bytea` of exactly `LEN` bytes.
        #[cfg(feature = "postgres")]
        impl postgres_types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &postgres_types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                <&[u8] as postgres_types::ToSql>::to_sql(&&self.0[..], ty, out)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&[u8] as postgres_types::ToSql>::accepts(ty)
            }

            postgres_types::to_sql_checked!();
        }

        #[cfg(feature = "postgres")]
        impl<'a> postgres_types::FromSql<'a> for $name {
            fn from_sql(
                ty: &postgres_types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let b = <&[u8] as postgres_types::FromSql>::from_sql(ty, raw)?;
                $name::from_slice(b).ok_or_else(|| {
                    format!("a stored {} of {} bytes, not {}", stringify!($name), b.len(), $len).into()
                })
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&[u8] as postgres_types::FromSql>::accepts(ty)
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

/// A user's handle: 1 to 32 characters of `a-z`, `0-9`, `_`, `-` and `.`, starting with a
/// letter or digit. Checked when one is made ([`Handle::new`], `parse`) and when one is
/// decoded, so a frame, a signed operation or a stored row with a bad handle is refused
/// where it is read, and everything past that holds a good one. Reads as a `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Handle(String);

/// As text.
impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// What [`Handle::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHandle;

impl fmt::Display for BadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a handle has 1 to 32 characters: a-z, 0-9, '_', '-', '.', starting with a letter or digit",
        )
    }
}

impl std::error::Error for BadHandle {}

impl Handle {
    /// The handle `h`, if it keeps the rules.
    pub fn new(h: impl Into<String>) -> Result<Self, BadHandle> {
        let h = h.into();
        let good = (1..=32).contains(&h.len())
            && h.as_bytes()[0].is_ascii_alphanumeric()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if good { Ok(Handle(h)) } else { Err(BadHandle) }
    }

    /// A handle written in the source (a test's, a default): panics if it breaks the rules,
    /// as `http::HeaderName::from_static` does. Never for text from outside.
    pub fn from_static(h: &'static str) -> Self {
        Handle::new(h).unwrap_or_else(|_| panic!("{h:?} is not a handle"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Handle {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Handle {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Handle {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Handle {
    type Err = BadHandle;
    fn from_str(s: &str) -> Result<Self, BadHandle> {
        Handle::new(s)
    }
}

impl TryFrom<String> for Handle {
    type Error = BadHandle;
    fn try_from(s: String) -> Result<Self, BadHandle> {
        Handle::new(s)
    }
}

impl TryFrom<&str> for Handle {
    type Error = BadHandle;
    fn try_from(s: &str) -> Result<Self, BadHandle> {
        Handle::new(s)
    }
}

impl From<Handle> for String {
    fn from(h: Handle) -> String {
        h.0
    }
}

impl PartialEq<str> for Handle {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Handle {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Text.
#[cfg(feature = "rusqlite")]
impl rusqlite::types::ToSql for Handle {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
            self.0.as_bytes(),
        )))
    }
}

/// A stored text that is not a handle is an error.
#[cfg(feature = "rusqlite")]
impl rusqlite::types::FromSql for Handle {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = v.as_str()?;
        Handle::new(text).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// Text.
#[cfg(feature = "postgres")]
impl postgres_types::ToSql for Handle {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        <&str as postgres_types::ToSql>::to_sql(&self.0.as_str(), ty, out)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <&str as postgres_types::ToSql>::accepts(ty)
    }

    postgres_types::to_sql_checked!();
}

/// A stored text that is not a handle is an error.
#[cfg(feature = "postgres")]
impl<'a> postgres_types::FromSql<'a> for Handle {
    fn from_sql(
        ty: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as postgres_types::FromSql>::from_sql(ty, raw)?;
        Ok(Handle::new(text)?)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <&str as postgres_types::FromSql>::accepts(ty)
    }
}

#[cfg(all(test, feature = "rusqlite"))]
mod sqlite_values {
    use super::*;

    #[test]
    fn an_id_is_stored_as_its_bytes_and_a_blob_of_another_length_is_refused() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let id = SpaceId([7; 16]);
        let back: SpaceId = c.query_row("SELECT ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(back, id);
        let raw: Vec<u8> = c.query_row("SELECT ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(raw, [7; 16], "the same bytes as the slice it replaces");
        let short = c.query_row("SELECT x'0102'", [], |r| r.get::<_, SpaceId>(0));
        assert!(short.is_err(), "{short:?}");
    }

    #[test]
    fn a_handle_is_stored_as_text_and_a_stored_text_that_is_not_one_is_refused() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let h = Handle::new("alice").unwrap();
        let back: Handle = c.query_row("SELECT ?1", [&h], |r| r.get(0)).unwrap();
        assert_eq!(back, h);
        let raw: String = c.query_row("SELECT ?1", [&h], |r| r.get(0)).unwrap();
        assert_eq!(raw, "alice");
        let bad = c.query_row("SELECT 'Alice'", [], |r| r.get::<_, Handle>(0));
        assert!(bad.is_err(), "{bad:?}");
    }
}

#[cfg(all(test, feature = "postgres"))]
mod postgres_values {
    use super::*;
    use postgres_types::{FromSql, ToSql, Type};

    #[test]
    fn an_id_is_a_bytea_of_its_bytes_and_one_of_another_length_is_refused() {
        let id = NoteId([3; 16]);
        let mut out = bytes::BytesMut::new();
        id.to_sql(&Type::BYTEA, &mut out).unwrap();
        assert_eq!(&out[..], &[3; 16]);
        assert_eq!(NoteId::from_sql(&Type::BYTEA, &out).unwrap(), id);
        assert!(NoteId::from_sql(&Type::BYTEA, &[1, 2, 3]).is_err());
        assert!(!<NoteId as ToSql>::accepts(&Type::TEXT));
    }

    #[test]
    fn a_handle_is_text_and_a_stored_text_that_is_not_one_is_refused() {
        let h = Handle::new("bob.k").unwrap();
        let mut out = bytes::BytesMut::new();
        h.to_sql(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"bob.k");
        assert_eq!(Handle::from_sql(&Type::TEXT, &out).unwrap(), h);
        assert!(Handle::from_sql(&Type::TEXT, b"no spaces").is_err());
    }
}

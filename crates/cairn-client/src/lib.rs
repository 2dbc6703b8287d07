//! Cairn's client library: everything a device does with the server, without Bevy. It
//! keeps a local store (SQLite) so an app shows what it knows at once and works offline,
//! seals and opens every note through cairn-crypto, and never loses a note its user wrote
//! (the outbox resends with the same note id until acknowledged).
//!
//! [`Client`] is the core with async methods (used by `cairn-cli`); [`ClientHandle`] runs a
//! `Client` on its own tokio runtime with commands in and events out, reconnecting with
//! backoff (used by the app).

pub mod client;
pub mod connection;
pub mod error;
pub mod handle;
pub mod identity;
pub mod image;
pub mod media;
pub mod place;
pub mod profile;
pub mod store;
pub mod tls;

pub use client::{Change, Client, Content, Draft, SpaceView, VideoClip, VoiceClip};
pub use error::ClientError;
pub use handle::{ClientCommand, ClientEvent, ClientHandle, ConnectionState};
pub use place::{AlignError, Alignment, Place};
pub use store::{LocalNote, LocalStore};

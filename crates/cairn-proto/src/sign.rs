//! The exact bytes each signature covers. Every payload is the CBOR encoding of an array
//! whose first element is a domain string naming the purpose and version, so a signature
//! made for one purpose can never be replayed as another.

use crate::ids::*;
use crate::messages::NoteHeader;
use serde::Serialize;

fn payload<T: Serialize>(value: &T) -> Vec<u8> {
    crate::encode(value)
}

/// Registration: `["cairn/register/v1", challenge, handle, device_keys]`.
pub fn register_payload(challenge: &Challenge, handle: &Handle, device: &DeviceKeys) -> Vec<u8> {
    payload(&("cairn/register/v1", challenge, handle, device))
}

/// Login: `["cairn/login/v1", challenge, device]`.
pub fn login_payload(challenge: &Challenge, device: &DeviceId) -> Vec<u8> {
    payload(&("cairn/login/v1", challenge, device))
}

/// Adding a device to a user: `["cairn/add-device/v1", handle, new_device_keys]`.
pub fn add_device_payload(handle: &Handle, device: &DeviceKeys) -> Vec<u8> {
    payload(&("cairn/add-device/v1", handle, device))
}

/// Revoking a device: `["cairn/revoke-device/v1", handle, device]`.
pub fn revoke_device_payload(handle: &Handle, device: &DeviceId) -> Vec<u8> {
    payload(&("cairn/revoke-device/v1", handle, device))
}

/// A membership op: `["cairn/op/v1", body]` where body is the op's CBOR bytes.
pub fn op_payload(body: &[u8]) -> Vec<u8> {
    payload(&("cairn/op/v1", serde_bytes::Bytes::new(body)))
}

/// A note: `["cairn/note/v1", header, ciphertext]`.
pub fn note_payload(header: &NoteHeader, ciphertext: &[u8]) -> Vec<u8> {
    payload(&("cairn/note/v1", header, serde_bytes::Bytes::new(ciphertext)))
}

/// Deleting a note: `["cairn/delete/v1", space, note_id]`.
pub fn delete_payload(space: &SpaceId, note_id: &NoteId) -> Vec<u8> {
    payload(&("cairn/delete/v1", space, note_id))
}

/// A key envelope: `["cairn/envelope/v1", space, epoch, recipient, creator, wrapped]`.
pub fn envelope_payload(
    space: &SpaceId,
    epoch: u64,
    recipient: &DeviceId,
    creator: &DeviceId,
    wrapped: &[u8],
) -> Vec<u8> {
    payload(&(
        "cairn/envelope/v1",
        space,
        epoch,
        recipient,
        creator,
        serde_bytes::Bytes::new(wrapped),
    ))
}

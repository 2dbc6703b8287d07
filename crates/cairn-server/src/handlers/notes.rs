//! Posting, deleting and syncing notes.

use super::{deliver_entry, member_space};
use crate::auth::verify_with;
use crate::connection::Caller;
use crate::error::{Result, ServerError};
use crate::state::AppState;
use cairn_proto::{ErrorCode, NoteId, Response, Role, SealedNote, Signature, SpaceId, sign};
use std::time::Instant;

/// Most media blobs one note may reference.
const MAX_MEDIA_PER_NOTE: usize = 16;

pub async fn post(state: &AppState, caller: &Caller, note: SealedNote) -> Result<Response> {
    let started = Instant::now();
    let h = &note.header;
    if h.sender != caller.device {
        return Err(ServerError::forbidden("a note's sender must be the calling device"));
    }
    if note.ciphertext.len() > cairn_proto::MAX_NOTE_BYTES {
        return Err(ServerError::code(ErrorCode::TooLarge, "note too large"));
    }
    if h.media.len() > MAX_MEDIA_PER_NOTE {
        return Err(ServerError::code(ErrorCode::TooLarge, "too many media references"));
    }
    let now = cairn_proto::now_ms();
    if h.expires_at.is_some_and(|t| t <= now) {
        return Err(ServerError::bad("the note has already expired"));
    }
    // Stored as a signed 64-bit integer: later than that is no time at all.
    if h.expires_at.is_some_and(|t| t > i64::MAX as u64) {
        return Err(ServerError::bad("expires_at is out of range (at most 2^63-1 ms)"));
    }
    let (mut cached, role) = member_space(state, caller, &h.space).await?;
    if !role.may_post(&cached.state.policy) {
        return Err(ServerError::forbidden("your role may not post in this space"));
    }
    if !cached.state.has_epoch(h.epoch) {
        return Err(ServerError::code(ErrorCode::BadEpoch, "no such epoch in this space"));
    }
    // Members open a note only if its sender was a member device at its epoch: refuse one
    // they would all reject (a device its user signed in but has not added to this space).
    if !cached.state.was_member_device(&caller.device, h.epoch) && state.relay.is_some() {
        // Another node may have added the device a moment ago: look again before refusing.
        state.spaces.invalidate(&h.space);
        cached = member_space(state, caller, &h.space).await?.0;
    }
    if !cached.state.was_member_device(&caller.device, h.epoch) {
        return Err(ServerError::forbidden(
            "this device is not a member device of this space at that epoch",
        ));
    }
    // The note's signature is not checked here. The connection is authenticated and the
    // sender is the calling device, a member device at the note's epoch (both checked
    // above): that device could sign any ciphertext it liked, so a check would refuse
    // nothing it could not post anyway. Readers verify every note (they do not trust the
    // server) and show one whose signature fails as unverifiable.
    for m in &h.media {
        if !state.store.media_readable_by(m, &caller.handle).await? {
            return Err(ServerError::forbidden(format!("media {m} was not uploaded by you")));
        }
    }
    let posted = state.store.post_note(&note, now).await?;
    state.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
    if !posted.duplicate {
        state.metrics.notes_posted.inc();
        let seq = posted.entry.seq;
        deliver_entry(state, &cached, note.header.space, posted.entry, Some(caller.conn));
        return Ok(Response::Posted { seq, duplicate: false });
    }
    Ok(Response::Posted { seq: posted.entry.seq, duplicate: true })
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    space: SpaceId,
    note_id: NoteId,
    signature: Signature,
) -> Result<Response> {
    let (cached, role) = member_space(state, caller, &space).await?;
    verify_with(&caller.key, &sign::delete_payload(&space, &note_id), &signature)?;
    let sender = state
        .store
        .note_sender(&space, &note_id)
        .await?
        .ok_or_else(|| ServerError::code(ErrorCode::NotFound, "no such note"))?;
    let author_is_caller =
        cached.state.member_of_device(&sender).is_some_and(|(handle, _)| *handle == caller.handle)
            || sender == caller.device;
    if !author_is_caller && role != Role::Owner {
        return Err(ServerError::forbidden("only the author or an owner may delete a note"));
    }
    let t = state
        .store
        .delete_note(&space, &note_id, &caller.device, &signature, cairn_proto::now_ms())
        .await?;
    let seq = t.entry.seq;
    deliver_entry(state, &cached, space, t.entry, Some(caller.conn));
    Ok(Response::Posted { seq, duplicate: false })
}

pub async fn sync(
    state: &AppState,
    caller: &Caller,
    space: SpaceId,
    after: u64,
    limit: u32,
) -> Result<Response> {
    member_space(state, caller, &space).await?;
    if after > i64::MAX as u64 {
        // No sequence number is that high: nothing comes after it.
        return Ok(Response::Entries { space, entries: Vec::new(), more: false });
    }
    let limit = limit.clamp(1, cairn_proto::MAX_SYNC_PAGE);
    let (entries, more) = state.store.entries(&space, after, limit, cairn_proto::now_ms()).await?;
    Ok(Response::Entries { space, entries, more })
}

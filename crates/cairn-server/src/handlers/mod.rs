//! One module per family of requests; `handle` dispatches a logged-in caller's request.

pub mod devices;
pub mod notes;
pub mod session;
pub mod spaces;

use crate::connection::Caller;
use crate::error::{Result, ServerError};
use crate::hub::Outgoing;
use crate::relay::WakeKind;
use crate::state::{AppState, CachedSpace};
use cairn_proto::{ErrorCode, Event, Handle, Request, Response, Role, ServerFrame, SpaceId};
use std::time::Instant;

pub async fn handle(state: &AppState, caller: &Caller, request: Request) -> Result<Response> {
    match request {
        Request::Hello { .. }
        | Request::Register { .. }
        | Request::Login { .. }
        | Request::Resume { .. } => Err(ServerError::bad("already logged in")),
        Request::ListDevices { handle } => devices::list(state, &handle).await,
        Request::AddDevice { device, signature } => {
            devices::add(state, caller, device, signature).await
        }
        Request::RevokeDevice { device, signature } => {
            devices::revoke(state, caller, device, signature).await
        }
        Request::CreateSpace { op } => spaces::create(state, caller, op).await,
        Request::ChangeMembership { op } => spaces::change(state, caller, op).await,
        Request::GetMembership { space, from } => {
            spaces::membership(state, caller, space, from).await
        }
        Request::ListSpaces => spaces::list(state, caller).await,
        Request::PutEnvelopes { envelopes } => {
            spaces::put_envelopes(state, caller, envelopes).await
        }
        Request::GetEnvelopes { space } => spaces::get_envelopes(state, caller, space).await,
        Request::PostNote { note } => notes::post(state, caller, note).await,
        Request::DeleteNote { space, note_id, signature } => {
            notes::delete(state, caller, space, note_id, signature).await
        }
        Request::Sync { space, after, limit } => {
            notes::sync(state, caller, space, after, limit).await
        }
    }
}

/// The caller's cached space and role; `Forbidden` unless the caller is a current member.
pub(crate) async fn member_space(
    state: &AppState,
    caller: &Caller,
    space: &SpaceId,
) -> Result<(CachedSpace, Role)> {
    let load = || async {
        state
            .spaces
            .get(state.store.as_ref(), space)
            .await?
            .ok_or_else(|| ServerError::code(ErrorCode::NotFound, "no such space"))
    };
    let mut cached = load().await?;
    if state.relay.is_some() && !cached.state.members.contains_key(&caller.handle) {
        // Another node may have added the caller a moment ago: look again before refusing.
        state.spaces.invalidate(space);
        cached = load().await?;
    }
    let role = cached
        .state
        .members
        .get(&caller.handle)
        .map(|m| m.role)
        .ok_or_else(|| ServerError::forbidden("not a member of this space"))?;
    Ok((cached, role))
}

/// Delivers a committed entry to the space's members connected here but connection `from`
/// (the poster's, which its answer tells the entry's number), and tells the other nodes (if
/// any) so that they deliver it to theirs.
pub(crate) fn deliver_entry(
    state: &AppState,
    cached: &CachedSpace,
    space: SpaceId,
    entry: cairn_proto::SpaceEntry,
    from: Option<u64>,
) {
    let seq = entry.seq;
    deliver(state, &cached.handles, from, Event::Entry { space, entry });
    if let Some(relay) = &state.relay {
        relay.delivered_here(&space, seq);
        relay.publish(state, space, WakeKind::Entries { last: seq });
    }
}

/// Queues `event` for every connection of `handles` but `except`, encoded once (and not at
/// all when no connection is to have it).
pub(crate) fn deliver<'h>(
    state: &AppState,
    handles: impl IntoIterator<Item = &'h Handle>,
    except: Option<u64>,
    event: Event,
) {
    state.hub.deliver(handles, except, || {
        std::sync::Arc::new(Outgoing {
            bytes: cairn_proto::encode(&ServerFrame::Event(event)).into(),
            since: Instant::now(),
        })
    });
}

//! Spaces: creation, membership operations (checked for signature, chain and role), the
//! log, the caller's spaces, and the key envelopes.

use super::{deliver, member_space};
use crate::auth::verify;
use crate::connection::Caller;
use crate::error::{Result, ServerError};
use crate::relay::WakeKind;
use crate::state::{AppState, CachedSpace, cached, op_hash};
use crate::storage::MembersAfter;
use cairn_proto::membership::{OpError, SpaceState, WrapError};
use cairn_proto::{
    Action, ErrorCode, Event, Handle, KeyEnvelope, MembershipOp, OpHash, Response, SignedOp,
    SpaceId, sign,
};
use std::collections::BTreeSet;

/// Most envelopes in one request.
const MAX_ENVELOPES: usize = 2000;
/// Largest wrapped key: 32-byte encapsulated key, 32-byte key, 16-byte tag, with room.
const MAX_WRAPPED: usize = 256;

fn op_error(e: OpError) -> ServerError {
    match e {
        OpError::OutOfOrder { .. } | OpError::BrokenChain => {
            ServerError::code(ErrorCode::Conflict, format!("{e}; fetch the log and retry"))
        }
        OpError::ActorNotMember | OpError::NotAllowed => ServerError::forbidden(e.to_string()),
        OpError::WrongSpace | OpError::BadGenesis | OpError::Invalid(_) => {
            ServerError::bad(e.to_string())
        }
    }
}

/// Decodes an op, checks that the caller's device signed it; returns it with its hash.
fn check_signed(caller: &Caller, signed: &SignedOp) -> Result<(MembershipOp, OpHash)> {
    let op: MembershipOp = cairn_proto::decode(&signed.body)
        .map_err(|e| ServerError::bad(format!("op does not decode: {e}")))?;
    if op.actor != caller.device {
        return Err(ServerError::forbidden("an op must be signed by the calling device"));
    }
    verify(&op.actor, &sign::op_payload(&signed.body), &signed.signature)?;
    Ok((op, op_hash(&signed.body)))
}

/// Every device an op gives a member must be a live device of that member.
async fn check_devices(state: &AppState, action: &Action) -> Result<()> {
    let (handle, devices) = match action {
        Action::Create { owner: m, .. } | Action::Add { member: m } => {
            (&m.handle, m.devices.as_slice())
        }
        Action::AddDevice { handle, device } => (handle, std::slice::from_ref(device)),
        _ => return Ok(()),
    };
    for d in devices {
        let owner = state.store.device_owner(&d.sign).await?;
        if !owner.is_some_and(|o| o.handle == *handle && !o.revoked) {
            return Err(ServerError::bad(format!("device {} is not a device of {handle}", d.sign)));
        }
    }
    Ok(())
}

/// What changed in the membership from `before` (none: a new space) to `after`.
fn members_after(before: Option<&SpaceState>, after: &SpaceState) -> MembersAfter {
    let role_before = |h: &str| before.and_then(|b| b.members.get(h)).map(|m| m.role);
    MembersAfter {
        members: after
            .members
            .iter()
            .filter(|(h, m)| role_before(h) != Some(m.role))
            .map(|(h, m)| (h.clone(), m.role))
            .collect(),
        removed: before
            .into_iter()
            .flat_map(|b| b.members.keys())
            .filter(|h| !after.members.contains_key(*h))
            .cloned()
            .collect(),
        epoch: after.epoch,
    }
}

pub async fn create(state: &AppState, caller: &Caller, signed: SignedOp) -> Result<Response> {
    let (op, hash) = check_signed(caller, &signed)?;
    let space_state = SpaceState::genesis(&op, hash).map_err(op_error)?;
    if !space_state.members.contains_key(&caller.handle) {
        return Err(ServerError::forbidden("the creator must be the owner"));
    }
    check_devices(state, &op.action).await?;
    let mut slot = state.spaces.lock(state.store.as_ref(), &op.space).await?;
    if slot.is_some() {
        return Err(ServerError::code(ErrorCode::Conflict, "space exists"));
    }
    state.store.append_op(&op.space, 0, &signed, &members_after(None, &space_state)).await?;
    *slot = Some(cached(space_state));
    Ok(Response::OpAccepted { index: 0, epoch: 0 })
}

pub async fn change(state: &AppState, caller: &Caller, signed: SignedOp) -> Result<Response> {
    let (op, hash) = check_signed(caller, &signed)?;
    check_devices(state, &op.action).await?;
    let mut slot = state.spaces.lock(state.store.as_ref(), &op.space).await?;
    let current =
        slot.as_ref().ok_or_else(|| ServerError::code(ErrorCode::NotFound, "no such space"))?;
    let mut next = current.state.clone();
    next.apply(&op, hash).map_err(op_error)?;
    if let Err(e) = state
        .store
        .append_op(&op.space, op.index, &signed, &members_after(Some(&current.state), &next))
        .await
    {
        // Another node appended first: forget our copy so the next use reloads.
        drop(slot);
        state.spaces.invalidate(&op.space);
        return Err(e.into());
    }
    let audience: BTreeSet<Handle> =
        current.handles.iter().cloned().chain(next.members.keys().cloned()).collect();
    let epoch = next.epoch;
    *slot = Some(cached(next));
    drop(slot);
    deliver(
        state,
        &audience,
        None,
        Event::Membership { space: op.space, index: op.index, op: signed },
    );
    if let Some(relay) = &state.relay {
        relay.ops_here(&op.space, op.index + 1);
        relay.publish(state, op.space, WakeKind::Membership { index: op.index });
    }
    Ok(Response::OpAccepted { index: op.index, epoch })
}

pub async fn membership(
    state: &AppState,
    caller: &Caller,
    space: SpaceId,
    from: u64,
) -> Result<Response> {
    member_space(state, caller, &space).await?;
    if from > i64::MAX as u64 {
        // No log is that long: there is nothing from there on.
        return Ok(Response::Membership { space, ops: Vec::new() });
    }
    let ops = state.store.ops(&space, from).await?;
    Ok(Response::Membership { space, ops })
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Response> {
    Ok(Response::Spaces { spaces: state.store.spaces_of(&caller.handle).await? })
}

pub async fn put_envelopes(
    state: &AppState,
    caller: &Caller,
    envelopes: Vec<KeyEnvelope>,
) -> Result<Response> {
    if envelopes.len() > MAX_ENVELOPES {
        return Err(ServerError::code(ErrorCode::TooLarge, "too many envelopes in one request"));
    }
    let mut spaces: Vec<(SpaceId, CachedSpace)> = Vec::new();
    for e in &envelopes {
        if e.creator != caller.device {
            return Err(ServerError::forbidden("envelopes must be created by the calling device"));
        }
        if e.wrapped.len() > MAX_WRAPPED {
            return Err(ServerError::code(ErrorCode::TooLarge, "wrapped key too large"));
        }
        if !spaces.iter().any(|(s, _)| *s == e.space) {
            let (cached, _) = member_space(state, caller, &e.space).await?;
            spaces.push((e.space, cached));
        }
        let cached = &spaces.iter().find(|(s, _)| *s == e.space).expect("inserted above").1;
        cached.state.may_wrap(&e.creator, &e.recipient, e.epoch).map_err(|w| match w {
            WrapError::NoSuchEpoch => ServerError::code(ErrorCode::BadEpoch, w.to_string()),
            WrapError::RecipientNotMember | WrapError::RecipientMayNotRead => {
                ServerError::bad(w.to_string())
            }
            WrapError::NotEntitled => ServerError::forbidden(w.to_string()),
        })?;
        verify(
            &e.creator,
            &sign::envelope_payload(&e.space, e.epoch, &e.recipient, &e.creator, &e.wrapped),
            &e.signature,
        )?;
    }
    let kept = state.store.put_envelopes(&envelopes).await?;
    // One notice per (space, epoch, user), here and on the other nodes.
    let mut notices: BTreeSet<(SpaceId, u64, Handle)> = BTreeSet::new();
    for e in &envelopes {
        let cached = &spaces.iter().find(|(s, _)| *s == e.space).expect("checked above").1;
        if let Some((handle, _)) = cached.state.member_of_device(&e.recipient) {
            notices.insert((e.space, e.epoch, handle.clone()));
        }
    }
    for (space, epoch, handle) in &notices {
        deliver(state, [handle], None, Event::Envelopes { space: *space, epoch: *epoch });
    }
    if let Some(relay) = &state.relay {
        let mut by_space: std::collections::BTreeMap<(SpaceId, u64), Vec<Handle>> =
            Default::default();
        for (space, epoch, handle) in notices {
            by_space.entry((space, epoch)).or_default().push(handle);
        }
        for ((space, epoch), handles) in by_space {
            relay.publish(state, space, WakeKind::Envelopes { epoch, handles });
        }
    }
    if kept > 0 {
        return Err(ServerError::code(
            ErrorCode::Conflict,
            format!(
                "{kept} of these envelopes were not stored: a different one is stored for that epoch and recipient, and is never replaced (the others were stored)"
            ),
        ));
    }
    Ok(Response::Done)
}

pub async fn get_envelopes(state: &AppState, caller: &Caller, space: SpaceId) -> Result<Response> {
    member_space(state, caller, &space).await?;
    Ok(Response::Envelopes { envelopes: state.store.envelopes(&space, &caller.device).await? })
}

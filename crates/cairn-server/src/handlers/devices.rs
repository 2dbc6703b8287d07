//! A user's devices: list, add (signed by an existing device), revoke.

use crate::auth::verify_with;
use crate::connection::Caller;
use crate::error::{Result, ServerError};
use crate::state::AppState;
use cairn_proto::{
    DeviceId, DeviceKeys, DeviceRecord, ErrorCode, Handle, Response, Signature, sign,
};

pub async fn list(state: &AppState, handle: &Handle) -> Result<Response> {
    let devices = state.store.devices(handle).await?;
    if devices.is_empty() {
        return Err(ServerError::code(ErrorCode::NotFound, "no such user"));
    }
    Ok(Response::Devices { handle: handle.clone(), devices })
}

pub async fn add(
    state: &AppState,
    caller: &Caller,
    device: DeviceKeys,
    signature: Signature,
) -> Result<Response> {
    verify_with(&caller.key, &sign::add_device_payload(&caller.handle, &device), &signature)?;
    let record =
        DeviceRecord { keys: device, added_by: Some(caller.device), signature, revoked: false };
    state.store.add_device(&caller.handle, &record).await?;
    Ok(Response::Done)
}

pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    device: DeviceId,
    signature: Signature,
) -> Result<Response> {
    verify_with(&caller.key, &sign::revoke_device_payload(&caller.handle, &device), &signature)?;
    state.store.revoke_device(&caller.handle, &device).await?;
    state.hub.disconnect_device(&caller.handle, &device);
    Ok(Response::Done)
}

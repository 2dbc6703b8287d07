//! Register, login and resume: the only requests before a connection is authenticated.

use crate::auth::{TokenClaims, device_key, verify_with};
use crate::connection::Caller;
use crate::error::{Result, ServerError};
use crate::state::AppState;
use cairn_proto::{Challenge, DeviceRecord, ErrorCode, Handle, Request, Session, sign};

fn issue(
    state: &AppState,
    handle: Handle,
    device: cairn_proto::DeviceId,
    key: ed25519_dalek::VerifyingKey,
) -> (Caller, Session) {
    let expires_at = cairn_proto::now_ms() + state.config.session_ttl_s * 1000;
    let claims = TokenClaims { handle: handle.clone(), device, expires_at };
    let token = state.tokens.issue(&claims);
    (
        Caller { handle: handle.clone(), device, key, conn: state.hub.connection_id() },
        Session { handle, device, token, expires_at },
    )
}

/// Checks a register, login or resume request; returns the caller and a fresh session.
pub async fn authenticate(
    state: &AppState,
    challenge: &Challenge,
    request: Request,
) -> Result<(Caller, Session)> {
    match request {
        Request::Register { handle, device, invite, signature, self_signature } => {
            // (The handle was checked when the frame was decoded: a bad one is malformed.)
            let key = device_key(&device.sign)?;
            verify_with(&key, &sign::register_payload(challenge, &handle, &device), &signature)?;
            verify_with(&key, &sign::add_device_payload(&handle, &device), &self_signature)?;
            let record = DeviceRecord {
                keys: device,
                added_by: None,
                signature: self_signature,
                revoked: false,
            };
            state
                .store
                .register(
                    &handle,
                    &record,
                    invite.as_deref(),
                    state.config.invite_only,
                    cairn_proto::now_ms(),
                )
                .await?;
            tracing::info!(%handle, "registered");
            Ok(issue(state, handle, device.sign, key))
        }
        Request::Login { device, signature } => {
            let owner = state.store.device_owner(&device).await?;
            let owner = owner.filter(|o| !o.revoked).ok_or_else(|| {
                ServerError::code(ErrorCode::Unauthenticated, "unknown or revoked device")
            })?;
            let key = device_key(&device)?;
            verify_with(&key, &sign::login_payload(challenge, &device), &signature)?;
            Ok(issue(state, owner.handle, device, key))
        }
        Request::Resume { token } => {
            let claims = state.tokens.check(&token, cairn_proto::now_ms()).ok_or_else(|| {
                ServerError::code(ErrorCode::Unauthenticated, "invalid or expired token")
            })?;
            let owner = state.store.device_owner(&claims.device).await?;
            if !owner.is_some_and(|o| !o.revoked && o.handle == claims.handle) {
                return Err(ServerError::code(ErrorCode::Unauthenticated, "device revoked"));
            }
            let key = device_key(&claims.device)?;
            Ok(issue(state, claims.handle, claims.device, key))
        }
        _ => Err(ServerError::bad("not a login request")),
    }
}

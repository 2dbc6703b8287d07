//! The verified view of a space's membership log: every op's signature is checked against
//! its actor, its hash chain against the previous op, and its authority by replaying the
//! roles (`cairn_proto::membership`).

use crate::{CryptoError, DeviceIdentity, EpochKey, key_confirmation, sha256, verify_signature};
use cairn_proto::membership::SpaceState;
use cairn_proto::{MembershipOp, OpHash, SignedOp, sign};

/// Signs a membership op as `actor` (whose id must be `op.actor`).
pub fn sign_op(actor: &DeviceIdentity, op: &MembershipOp) -> SignedOp {
    debug_assert_eq!(actor.id(), op.actor);
    let body = cairn_proto::encode(op);
    let signature = actor.sign(&sign::op_payload(&body));
    SignedOp { body, signature }
}

/// A space's membership, rebuilt from its signed log.
#[derive(Clone, Debug)]
pub struct MembershipLog {
    state: SpaceState,
}

impl MembershipLog {
    /// Verifies and replays a whole log, genesis first.
    pub fn replay(ops: &[SignedOp]) -> Result<Self, CryptoError> {
        let (first, rest) =
            ops.split_first().ok_or(CryptoError::malformed("membership log", "empty"))?;
        let (op, hash) = verify_op(first)?;
        let mut log = MembershipLog { state: SpaceState::genesis(&op, hash)? };
        for signed in rest {
            log.append(signed)?;
        }
        Ok(log)
    }

    /// Verifies and applies the next op; on error nothing changes.
    pub fn append(&mut self, signed: &SignedOp) -> Result<(), CryptoError> {
        let (op, hash) = verify_op(signed)?;
        self.state.apply(&op, hash)?;
        Ok(())
    }

    pub fn state(&self) -> &SpaceState {
        &self.state
    }

    /// The op that would come next: index and prev hash filled in. An action that starts an
    /// epoch needs the new epoch's key (`new_key`), whose confirmation the op carries.
    pub fn next_op(
        &self,
        actor: &DeviceIdentity,
        action: cairn_proto::Action,
        new_key: Option<&EpochKey>,
    ) -> MembershipOp {
        let index = self.state.len;
        MembershipOp {
            space: self.state.space,
            index,
            prev: self.state.head,
            actor: actor.id(),
            at: cairn_proto::now_ms(),
            key_confirm: new_key.map(|k| key_confirmation(k, &self.state.space, index)),
            action,
        }
    }
}

/// Decodes an op and checks its signature by its actor; returns it with its hash.
pub fn verify_op(signed: &SignedOp) -> Result<(MembershipOp, OpHash), CryptoError> {
    let op: MembershipOp = cairn_proto::decode(&signed.body)
        .map_err(|e| CryptoError::malformed("membership op", e))?;
    verify_signature(&op.actor, &sign::op_payload(&signed.body), &signed.signature)?;
    Ok((op, OpHash(sha256(&signed.body))))
}

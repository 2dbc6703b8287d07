//! Replaying a space's membership log: who is a member with which role, which devices
//! belong to each epoch, and whether an actor may perform an operation. Pure logic shared by
//! the server (which enforces it) and the clients (which check the server). Signatures and
//! hashes are checked by the caller before [`SpaceState::apply`].

use crate::ids::*;
use crate::messages::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most devices one member may have in a space.
pub const MAX_MEMBER_DEVICES: usize = 64;

/// Why an operation does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("operation is for another space")]
    WrongSpace,
    #[error("operation index {got} does not follow {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("operation does not chain to the previous one")]
    BrokenChain,
    #[error("the first operation must create the space, and only the first")]
    BadGenesis,
    #[error("the actor is not a current member device")]
    ActorNotMember,
    #[error("the actor's role may not do this")]
    NotAllowed,
    #[error("invalid operation: {0}")]
    Invalid(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub role: Role,
    pub devices: Vec<DeviceKeys>,
}

/// The state after replaying a log prefix.
#[derive(Clone, Debug)]
pub struct SpaceState {
    pub space: SpaceId,
    pub name: String,
    pub policy: Policy,
    pub members: BTreeMap<Handle, MemberState>,
    /// Current epoch: the index of the last op that changed who is a member.
    pub epoch: u64,
    /// Number of ops applied.
    pub len: u64,
    /// Hash of the last op's body.
    pub head: OpHash,
    /// Every epoch so far, oldest first, with the device that started it and the
    /// confirmation of its key.
    epochs: Vec<EpochStart>,
    /// When each device was a member: `[from, until)` epochs, `until = u64::MAX` while it
    /// still is. Linear in the number of devices, however often membership changes.
    spans: HashMap<DeviceId, Vec<(u64, u64)>>,
    /// When each user (still or formerly a member) last joined, as an epoch.
    joined: BTreeMap<Handle, u64>,
    /// The user each device was given to (a device belongs to one user, for good): whose
    /// name a reader shows for a note the device sent.
    users: HashMap<DeviceId, Handle>,
}

/// One epoch of a space: the index of the op that started it, that op's actor (who made and
/// wrapped the epoch's key), and the key's confirmation value from that op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u64,
    pub actor: DeviceId,
    pub confirm: KeyConfirm,
}

/// Why a device may not write an envelope (see [`SpaceState::may_wrap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    #[error("no such epoch")]
    NoSuchEpoch,
    #[error("the recipient is not a current member device")]
    RecipientNotMember,
    #[error("the recipient's user may not read that epoch")]
    RecipientMayNotRead,
    #[error(
        "only the device that started the epoch, an owner's device or a device of the recipient's own user may wrap its key"
    )]
    NotEntitled,
}

impl SpaceState {
    /// Starts from a genesis op (index 0, action `create`) whose body hashes to `hash`.
    pub fn genesis(op: &MembershipOp, hash: OpHash) -> Result<Self, OpError> {
        let Action::Create { name, owner, policy } = &op.action else {
            return Err(OpError::BadGenesis);
        };
        if op.index != 0 || op.prev != OpHash::default() {
            return Err(OpError::BadGenesis);
        }
        if owner.role != Role::Owner {
            return Err(OpError::Invalid("the creator must be a valid owner"));
        }
        if !owner.devices.iter().any(|d| d.sign == op.actor) {
            return Err(OpError::ActorNotMember);
        }
        check_name(name)?;
        let confirm = op.key_confirm.ok_or(OpError::Invalid(MISSING_CONFIRM))?;
        check_new_devices(&owner.devices)?;
        let mut s = SpaceState {
            space: op.space,
            name: name.clone(),
            policy: *policy,
            members: BTreeMap::new(),
            epoch: 0,
            len: 1,
            head: hash,
            epochs: vec![EpochStart { epoch: 0, actor: op.actor, confirm }],
            spans: HashMap::new(),
            joined: BTreeMap::new(),
            users: HashMap::new(),
        };
        s.members.insert(
            owner.handle.clone(),
            MemberState { role: Role::Owner, devices: owner.devices.clone() },
        );
        s.joined.insert(owner.handle.clone(), 0);
        for d in &owner.devices {
            s.spans.entry(d.sign).or_default().push((0, u64::MAX));
            s.users.insert(d.sign, owner.handle.clone());
        }
        Ok(s)
    }

    /// Applies the next op. On error the state is unchanged.
    pub fn apply(&mut self, op: &MembershipOp, hash: OpHash) -> Result<(), OpError> {
        if op.space != self.space {
            return Err(OpError::WrongSpace);
        }
        if op.index != self.len {
            return Err(OpError::OutOfOrder { expected: self.len, got: op.index });
        }
        if op.prev != self.head {
            return Err(OpError::BrokenChain);
        }
        match (op.action.starts_epoch(), op.key_confirm) {
            (true, None) => return Err(OpError::Invalid(MISSING_CONFIRM)),
            (false, Some(_)) => {
                return Err(OpError::Invalid("only an op that starts an epoch confirms a key"));
            }
            _ => {}
        }
        let (actor_handle, actor_role) =
            self.member_of_device(&op.actor).ok_or(OpError::ActorNotMember)?;
        // A member manages its own devices; everything else is an owner's.
        let own_devices = match &op.action {
            Action::AddDevice { handle, .. } | Action::RemoveDevice { handle, .. } => {
                handle == actor_handle
            }
            _ => false,
        };
        if actor_role.role != Role::Owner && !own_devices {
            return Err(OpError::NotAllowed);
        }
        let mut membership_changed = false;
        let mut joined_devices: Vec<DeviceId> = Vec::new();
        let mut left_devices: Vec<DeviceId> = Vec::new();
        match &op.action {
            Action::Create { .. } => return Err(OpError::BadGenesis),
            Action::Add { member } => {
                if self.members.contains_key(&member.handle) {
                    return Err(OpError::Invalid("already a member"));
                }
                if member.devices.is_empty() || member.devices.len() > MAX_MEMBER_DEVICES {
                    return Err(OpError::Invalid("a member needs 1 to 64 devices"));
                }
                check_new_devices(&member.devices)?;
                for d in &member.devices {
                    self.check_device_free(&d.sign, &member.handle)?;
                }
                for d in &member.devices {
                    self.users.insert(d.sign, member.handle.clone());
                }
                self.members.insert(
                    member.handle.clone(),
                    MemberState { role: member.role, devices: member.devices.clone() },
                );
                self.joined.insert(member.handle.clone(), op.index);
                joined_devices = member.devices.iter().map(|d| d.sign).collect();
                membership_changed = true;
            }
            Action::Remove { handle } => {
                let role = self.members.get(handle).ok_or(OpError::Invalid("not a member"))?.role;
                if role == Role::Owner && self.owner_count() == 1 {
                    return Err(OpError::Invalid("a space must keep an owner"));
                }
                if let Some(m) = self.members.remove(handle) {
                    left_devices = m.devices.iter().map(|d| d.sign).collect();
                }
                membership_changed = true;
            }
            Action::SetRole { handle, role } => {
                let old = self.members.get(handle).ok_or(OpError::Invalid("not a member"))?.role;
                if old == Role::Owner && *role != Role::Owner && self.owner_count() == 1 {
                    return Err(OpError::Invalid("a space must keep an owner"));
                }
                self.members.get_mut(handle).expect("checked above").role = *role;
            }
            Action::SetPolicy { policy } => self.policy = *policy,
            Action::AddDevice { handle, device } => {
                self.check_device_free(&device.sign, handle)?;
                if !self.members.contains_key(handle) {
                    return Err(OpError::Invalid("not a member"));
                }
                self.users.insert(device.sign, handle.clone());
                let m = self.members.get_mut(handle).ok_or(OpError::Invalid("not a member"))?;
                if m.devices.len() >= MAX_MEMBER_DEVICES {
                    return Err(OpError::Invalid("a member needs 1 to 64 devices"));
                }
                m.devices.push(*device);
                // Same epoch: a member device from now on, reading the current epoch.
                self.spans.entry(device.sign).or_default().push((self.epoch, u64::MAX));
            }
            Action::RemoveDevice { handle, device } => {
                let m = self.members.get_mut(handle).ok_or(OpError::Invalid("not a member"))?;
                let Some(at) = m.devices.iter().position(|d| d.sign == *device) else {
                    return Err(OpError::Invalid("not a device of that member"));
                };
                if m.devices.len() == 1 {
                    return Err(OpError::Invalid(
                        "a member keeps at least one device; remove the member instead",
                    ));
                }
                m.devices.remove(at);
                left_devices = vec![*device];
                membership_changed = true;
            }
        }
        self.len += 1;
        self.head = hash;
        if membership_changed {
            self.epoch = op.index;
            let confirm = op.key_confirm.expect("checked above: an epoch op confirms its key");
            self.epochs.push(EpochStart { epoch: op.index, actor: op.actor, confirm });
            for d in joined_devices {
                self.spans.entry(d).or_default().push((op.index, u64::MAX));
            }
            for d in left_devices {
                if let Some(open) =
                    self.spans.get_mut(&d).and_then(|s| s.last_mut()).filter(|s| s.1 == u64::MAX)
                {
                    open.1 = op.index;
                }
            }
        }
        Ok(())
    }

    /// A device given to `handle` must not be a current member device, nor ever have been
    /// given to another user: a device belongs to one user, for good.
    fn check_device_free(&self, device: &DeviceId, handle: &Handle) -> Result<(), OpError> {
        if self.role_of_device(device).is_some() {
            return Err(OpError::Invalid("the device is already a member device"));
        }
        if self.users.get(device).is_some_and(|u| u != handle) {
            return Err(OpError::Invalid("the device belongs to another user"));
        }
        Ok(())
    }

    fn owner_count(&self) -> usize {
        self.members.values().filter(|m| m.role == Role::Owner).count()
    }

    /// The role of the member owning `device`, if it is a current member device.
    pub fn role_of_device(&self, device: &DeviceId) -> Option<Role> {
        self.member_of_device(device).map(|(_, m)| m.role)
    }

    /// The handle and state of the member owning `device`.
    pub fn member_of_device(&self, device: &DeviceId) -> Option<(&Handle, &MemberState)> {
        let handle = self.users.get(device)?;
        let (handle, member) = self.members.get_key_value(handle)?;
        member.devices.iter().any(|d| d.sign == *device).then_some((handle, member))
    }

    /// All current member devices.
    pub fn current_devices(&self) -> BTreeSet<DeviceId> {
        self.members.values().flat_map(|m| m.devices.iter().map(|d| d.sign)).collect()
    }

    /// The agreement keys of all current member devices.
    pub fn current_device_keys(&self) -> Vec<DeviceKeys> {
        self.members.values().flat_map(|m| m.devices.iter().copied()).collect()
    }

    /// Whether `epoch` is one of this space's epochs.
    pub fn has_epoch(&self, epoch: u64) -> bool {
        self.epoch_start(epoch).is_some()
    }

    /// The op that started `epoch`: its actor and its key confirmation.
    pub fn epoch_start(&self, epoch: u64) -> Option<&EpochStart> {
        self.epochs.binary_search_by_key(&epoch, |e| e.epoch).ok().map(|i| &self.epochs[i])
    }

    /// The user that owns `device`, if it was a member device at `epoch`: the only author a
    /// reader may show for a note that device sent in that epoch.
    pub fn author_of(&self, device: &DeviceId, epoch: u64) -> Option<&Handle> {
        if !self.was_member_device(device, epoch) {
            return None;
        }
        self.users.get(device)
    }

    /// Whether `creator` may write an envelope of `epoch`'s key for `recipient` (what the
    /// server enforces): the recipient is a current member device whose user may read that
    /// epoch, and the creator is a current member device that started the epoch, belongs to
    /// an owner (who hands history to new members), or belongs to the recipient's own user
    /// (who hands its keys to its new device). Readers do not rely on this: they check every
    /// key against the epoch's confirmation.
    pub fn may_wrap(
        &self,
        creator: &DeviceId,
        recipient: &DeviceId,
        epoch: u64,
    ) -> Result<(), WrapError> {
        let start = self.epoch_start(epoch).ok_or(WrapError::NoSuchEpoch)?;
        let (to, _) = self.member_of_device(recipient).ok_or(WrapError::RecipientNotMember)?;
        if !self.readable_epochs(to).contains(&epoch) {
            return Err(WrapError::RecipientMayNotRead);
        }
        let (from, creator_state) = self.member_of_device(creator).ok_or(WrapError::NotEntitled)?;
        if start.actor == *creator || creator_state.role == Role::Owner || from == to {
            Ok(())
        } else {
            Err(WrapError::NotEntitled)
        }
    }

    /// Whether `device` was a member device at `epoch` (false for an epoch that never was).
    pub fn was_member_device(&self, device: &DeviceId, epoch: u64) -> bool {
        self.has_epoch(epoch)
            && self.spans.get(device).is_some_and(|spans| {
                spans.iter().any(|(from, until)| *from <= epoch && epoch < *until)
            })
    }

    /// The member devices at `epoch` (empty for an epoch that never was).
    pub fn devices_at(&self, epoch: u64) -> BTreeSet<DeviceId> {
        self.spans
            .iter()
            .filter(|(d, _)| self.was_member_device(d, epoch))
            .map(|(d, _)| *d)
            .collect()
    }

    /// All epochs so far, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.epochs.iter().map(|e| e.epoch)
    }

    /// The epochs whose keys `handle` may hold: with history sharing all epochs up to now,
    /// otherwise those from its latest join on.
    pub fn readable_epochs(&self, handle: &Handle) -> Vec<u64> {
        let Some(joined) = self.joined.get(handle) else { return Vec::new() };
        self.epochs().filter(|e| self.policy.history_for_new_members || e >= joined).collect()
    }
}

const MISSING_CONFIRM: &str = "an op that starts an epoch must confirm its key";

/// The devices of a new member (or of the creator): each listed once.
fn check_new_devices(devices: &[DeviceKeys]) -> Result<(), OpError> {
    let distinct: BTreeSet<&DeviceId> = devices.iter().map(|d| &d.sign).collect();
    if distinct.len() != devices.len() {
        return Err(OpError::Invalid("a device is listed twice"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), OpError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(OpError::Invalid("a space name has 1 to 100 bytes"));
    }
    Ok(())
}

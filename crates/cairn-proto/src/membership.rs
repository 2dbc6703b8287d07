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
    pub members: BTreeMap<String, MemberState>,
    /// Current epoch: the index of the last op that changed who is a member.
    pub epoch: u64,
    /// Number of ops applied.
    pub len: u64,
    /// Hash of the last op's body.
    pub head: OpHash,
    /// Every epoch so far, oldest first.
    epochs: Vec<u64>,
    /// When each device was a member: `[from, until)` epochs, `until = u64::MAX` while it
    /// still is. Linear in the number of devices, however often membership changes.
    spans: HashMap<DeviceId, Vec<(u64, u64)>>,
    /// When each user (still or formerly a member) last joined, as an epoch.
    joined: BTreeMap<String, u64>,
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
        if owner.role != Role::Owner || !valid_handle(&owner.handle) {
            return Err(OpError::Invalid("the creator must be a valid owner"));
        }
        if !owner.devices.iter().any(|d| d.sign == op.actor) {
            return Err(OpError::ActorNotMember);
        }
        check_name(name)?;
        let mut s = SpaceState {
            space: op.space,
            name: name.clone(),
            policy: *policy,
            members: BTreeMap::new(),
            epoch: 0,
            len: 1,
            head: hash,
            epochs: vec![0],
            spans: HashMap::new(),
            joined: BTreeMap::new(),
        };
        s.members.insert(
            owner.handle.clone(),
            MemberState { role: Role::Owner, devices: owner.devices.clone() },
        );
        s.joined.insert(owner.handle.clone(), 0);
        for d in &owner.devices {
            s.spans.entry(d.sign).or_default().push((0, u64::MAX));
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
                if !valid_handle(&member.handle) {
                    return Err(OpError::Invalid("bad handle"));
                }
                if self.members.contains_key(&member.handle) {
                    return Err(OpError::Invalid("already a member"));
                }
                if member.devices.is_empty() || member.devices.len() > MAX_MEMBER_DEVICES {
                    return Err(OpError::Invalid("a member needs 1 to 64 devices"));
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
                if self.role_of_device(&device.sign).is_some() {
                    return Err(OpError::Invalid("the device is already a member device"));
                }
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
            self.epochs.push(op.index);
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

    fn owner_count(&self) -> usize {
        self.members.values().filter(|m| m.role == Role::Owner).count()
    }

    /// The role of the member owning `device`, if it is a current member device.
    pub fn role_of_device(&self, device: &DeviceId) -> Option<Role> {
        self.member_of_device(device).map(|(_, m)| m.role)
    }

    /// The handle and state of the member owning `device`.
    pub fn member_of_device(&self, device: &DeviceId) -> Option<(&str, &MemberState)> {
        self.members
            .iter()
            .find(|(_, m)| m.devices.iter().any(|d| d.sign == *device))
            .map(|(h, m)| (h.as_str(), m))
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
        self.epochs.binary_search(&epoch).is_ok()
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
        self.epochs.iter().copied()
    }

    /// The epochs whose keys `handle` may hold: with history sharing all epochs up to now,
    /// otherwise those from its latest join on.
    pub fn readable_epochs(&self, handle: &str) -> Vec<u64> {
        let Some(joined) = self.joined.get(handle) else { return Vec::new() };
        self.epochs
            .iter()
            .copied()
            .filter(|e| self.policy.history_for_new_members || e >= joined)
            .collect()
    }
}

fn check_name(name: &str) -> Result<(), OpError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(OpError::Invalid("a space name has 1 to 100 bytes"));
    }
    Ok(())
}

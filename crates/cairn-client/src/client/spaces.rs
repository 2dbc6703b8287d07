//! Spaces: listing and creating them, their members and roles, invitations.

use super::*;

impl Client {
    /// All known spaces with this device's view of their membership.
    pub fn spaces(&self) -> Result<Vec<SpaceView>, ClientError> {
        Ok(self
            .store
            .spaces()?
            .into_iter()
            .map(|s: LocalSpace| {
                let state = self.logs.get(&s.id).map(MembershipLog::state);
                SpaceView {
                    id: s.id,
                    name: s.name,
                    role: state.and_then(|st| st.members.get(&self.handle).map(|m| m.role)),
                    members: state
                        .map(|st| st.members.iter().map(|(h, m)| (h.clone(), m.role)).collect())
                        .unwrap_or_default(),
                    epoch: state.map(|st| st.epoch).unwrap_or(0),
                }
            })
            .collect())
    }

    /// A space named by its name or by its id (hex, or an unambiguous prefix).
    pub fn resolve_space(&self, name_or_id: &str) -> Result<SpaceId, ClientError> {
        let spaces = self.store.spaces()?;
        let by_name: Vec<_> = spaces.iter().filter(|s| s.name == name_or_id).collect();
        if by_name.len() == 1 {
            return Ok(by_name[0].id);
        }
        let lower = name_or_id.to_ascii_lowercase();
        let by_id: Vec<_> = spaces
            .iter()
            .filter(|s| lower.len() >= 4 && s.id.to_hex().starts_with(&lower))
            .collect();
        match (by_name.len(), by_id.len()) {
            (0, 1) => Ok(by_id[0].id),
            (n, _) if n > 1 => Err(ClientError::AmbiguousSpace(name_or_id.to_owned())),
            _ => Err(ClientError::NoSuchSpace(name_or_id.to_owned())),
        }
    }

    pub(super) fn state(&self, space: &SpaceId) -> Result<&SpaceState, ClientError> {
        self.logs
            .get(space)
            .map(MembershipLog::state)
            .ok_or_else(|| ClientError::NoSuchSpace(space.to_hex()))
    }

    /// Creates a space owned by this user, with its first epoch key. Needs the server.
    pub async fn create_space(
        &mut self,
        name: &str,
        policy: Policy,
    ) -> Result<SpaceId, ClientError> {
        let space = SpaceId(random_id());
        let devices = self.own_devices().await?;
        let key = EpochKey::generate();
        let op = MembershipOp {
            space,
            index: 0,
            prev: OpHash::default(),
            actor: self.identity.id(),
            at: now_ms(),
            action: Action::Create {
                name: name.to_owned(),
                owner: Member { handle: self.handle.clone(), role: Role::Owner, devices },
                policy,
            },
            key_confirm: Some(key_confirmation(&key, &space, 0)),
        };
        let signed = sign_op(&self.identity, &op);
        let log = MembershipLog::replay(std::slice::from_ref(&signed))?;
        self.request(Request::CreateSpace { op: signed.clone() }).await?;
        self.store.upsert_space(&space, name)?;
        self.store.put_op(&space, 0, &signed)?;
        self.logs.insert(space, log);
        self.hand_out_key(&space, 0, &key, &[]).await?;
        Ok(space)
    }

    /// This user's live devices, from the verified signed device list.
    pub(super) async fn own_devices(&mut self) -> Result<Vec<DeviceKeys>, ClientError> {
        let handle = self.handle.clone();
        let devices = self.user_devices(&handle).await?;
        if !devices.iter().any(|d| d.sign == self.identity.id()) {
            return Err(ClientError::Protocol(
                "the server's list of our devices lacks this one".into(),
            ));
        }
        Ok(devices)
    }

    /// A user's live devices, verified from their signed list. A list is append-only, and a
    /// revoked device stays revoked: a list that lacks a device this client saw before, or
    /// shows a device as live again, is an old list served again, and is refused.
    pub async fn user_devices(&mut self, handle: &Handle) -> Result<Vec<DeviceKeys>, ClientError> {
        let Response::Devices { devices, .. } =
            self.request(Request::ListDevices { handle: handle.clone() }).await?
        else {
            return Err(ClientError::Protocol("expected devices".into()));
        };
        let live = verify_device_list(handle, &devices)?;
        let meta_key = format!("device-list:{handle}");
        let seen: Vec<(DeviceId, bool)> = match self.store.meta(&meta_key)? {
            Some(bytes) => cairn_proto::decode(&bytes)
                .map_err(|e| ClientError::Protocol(format!("stored device list: {e}")))?,
            None => Vec::new(),
        };
        for (device, revoked) in &seen {
            let now = devices.iter().find(|r| r.keys.sign == *device);
            if now.is_none_or(|r| *revoked && !r.revoked) {
                return Err(ClientError::Protocol(format!(
                    "the server served an old device list of {handle}: device {} {}",
                    &device.to_hex()[..16],
                    if now.is_none() { "is missing" } else { "was revoked and is live again" }
                )));
            }
        }
        let now: Vec<(DeviceId, bool)> = devices.iter().map(|r| (r.keys.sign, r.revoked)).collect();
        if now != seen {
            self.store.set_meta(&meta_key, &cairn_proto::encode(&now))?;
        }
        Ok(live)
    }

    /// Adds a user to a space (new epoch key; the history too when the policy allows).
    pub async fn invite(
        &mut self,
        space: &SpaceId,
        handle: &Handle,
        role: Role,
    ) -> Result<(), ClientError> {
        let devices = self.user_devices(handle).await?;
        let member = Member { handle: handle.clone(), role, devices };
        self.change_membership(space, Action::Add { member }).await
    }

    /// Removes a user: a new epoch key that the removed devices never receive.
    pub async fn remove(&mut self, space: &SpaceId, handle: &Handle) -> Result<(), ClientError> {
        self.change_membership(space, Action::Remove { handle: handle.clone() }).await
    }

    /// Changes a member's role (no new key: the set of readers is the same).
    pub async fn set_role(
        &mut self,
        space: &SpaceId,
        handle: &Handle,
        role: Role,
    ) -> Result<(), ClientError> {
        self.change_membership(space, Action::SetRole { handle: handle.clone(), role }).await
    }

    /// Appends a membership op (fetching the log and retrying when another op came first).
    /// An op that starts an epoch carries the confirmation of a fresh key, which is then
    /// wrapped for every member device (and, for a new member where the policy shares
    /// history, the earlier keys this device holds for the newcomer's devices).
    pub(super) async fn change_membership(
        &mut self,
        space: &SpaceId,
        action: Action,
    ) -> Result<(), ClientError> {
        for _ in 0..3 {
            self.sync_membership(space).await?;
            let log =
                self.logs.get(space).ok_or_else(|| ClientError::NoSuchSpace(space.to_hex()))?;
            let key = action.starts_epoch().then(EpochKey::generate);
            let op = log.next_op(&self.identity, action.clone(), key.as_ref());
            let signed = sign_op(&self.identity, &op);
            let mut next = log.clone();
            next.append(&signed)?;
            match self.request(Request::ChangeMembership { op: signed.clone() }).await {
                Ok(_) => {
                    self.store.put_op(space, op.index, &signed)?;
                    let history = next.state().policy.history_for_new_members;
                    self.logs.insert(*space, next);
                    if let Some(key) = key {
                        let newcomers = match &action {
                            Action::Add { member } if history => member.devices.clone(),
                            _ => Vec::new(),
                        };
                        self.hand_out_key(space, op.index, &key, &newcomers).await?;
                    }
                    return Ok(());
                }
                Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::MembershipRace)
    }

    /// Keeps the key of the epoch this device just started (its op, which confirms the key,
    /// is in the log), wraps it for every member device, and wraps the past keys this device
    /// holds for `history_for` (new members' devices).
    pub(super) async fn hand_out_key(
        &mut self,
        space: &SpaceId,
        epoch: u64,
        key: &EpochKey,
        history_for: &[DeviceKeys],
    ) -> Result<(), ClientError> {
        let state = self.state(space)?.clone();
        check_epoch_key(&state, epoch, key)?;
        self.store.put_epoch_key(*space, epoch, key)?;
        let mut envelopes = Vec::new();
        for d in state.current_device_keys() {
            envelopes.push(wrap_epoch_key(&self.identity, *space, epoch, &d.sign, &d.agree, key)?);
        }
        for epoch in state.epochs().filter(|e| *e < epoch) {
            if let Some(old) = self.store.epoch_key(*space, epoch)? {
                for d in history_for {
                    envelopes.push(wrap_epoch_key(
                        &self.identity,
                        *space,
                        epoch,
                        &d.sign,
                        &d.agree,
                        &old,
                    )?);
                }
            }
        }
        self.put_envelopes(envelopes).await
    }

    /// Uploads envelopes in requests the server takes. An envelope the server already holds
    /// for that epoch and recipient is kept there, never replaced: the server answers
    /// `conflict` and stores the rest, which is what a retry or a second device of the same
    /// user racing this one looks like; the recipient checks whichever it gets.
    pub(super) async fn put_envelopes(
        &mut self,
        envelopes: Vec<KeyEnvelope>,
    ) -> Result<(), ClientError> {
        for chunk in envelopes.chunks(1000) {
            match self.request(Request::PutEnvelopes { envelopes: chunk.to_vec() }).await {
                Ok(_) => {}
                Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => {
                    tracing::info!(error = %e, "some envelopes were there already");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

//! Sync: bringing the local copy of each space up to date with the server, and the live
//! events that keep it so.

use super::*;

impl Client {
    /// Brings every space up to date: the spaces this user is in, their membership logs,
    /// their keys, their notes from each stored cursor; then sends the outbox.
    pub async fn sync(&mut self) -> Result<Vec<Change>, ClientError> {
        let Response::Spaces { spaces } = self.request(Request::ListSpaces).await? else {
            return Err(ClientError::Protocol("expected spaces".into()));
        };
        let mut changes = Vec::new();
        for s in &spaces {
            changes.extend(self.sync_space(&s.space).await?);
        }
        self.reconcile_devices(spaces.iter().map(|s| s.space)).await;
        changes.extend(self.flush_outbox().await?);
        Ok(changes)
    }

    /// Brings this user's devices in each space in line with the user's signed device
    /// list: a device signed in since the user joined is added to the space and handed the
    /// keys this device holds (so it reads what its user reads); a revoked one is removed,
    /// with a new key it never receives. Only a device that is itself a member device of a
    /// space acts on it. A space that cannot be brought in line now (another device of the
    /// user acting at the same moment, say) is tried again at the next sync.
    pub(super) async fn reconcile_devices(&mut self, spaces: impl Iterator<Item = SpaceId>) {
        let mine = match self.own_devices().await {
            Ok(mine) => mine,
            Err(e) => {
                tracing::warn!(error = %e, "could not check this user's device list");
                return;
            }
        };
        for space in spaces {
            if let Err(e) = self.reconcile_space_devices(&space, &mine).await {
                tracing::warn!(space = %space, error = %e, "could not bring this user's devices in the space up to date");
            }
        }
    }

    pub(super) async fn reconcile_space_devices(
        &mut self,
        space: &SpaceId,
        mine: &[DeviceKeys],
    ) -> Result<(), ClientError> {
        let Ok(state) = self.state(space) else { return Ok(()) };
        let Some((handle, me)) = state.member_of_device(&self.identity.id()) else {
            // Not (yet) a member device here: another device of this user adds it.
            return Ok(());
        };
        if *handle != self.handle {
            return Err(ClientError::Protocol("this device belongs to another member".into()));
        }
        let missing: Vec<DeviceKeys> =
            mine.iter().filter(|d| !me.devices.iter().any(|m| m.sign == d.sign)).copied().collect();
        let gone: Vec<DeviceId> = me
            .devices
            .iter()
            .filter(|m| !mine.iter().any(|d| d.sign == m.sign))
            .map(|m| m.sign)
            .collect();
        for device in missing {
            let handle = self.handle.clone();
            self.change_membership(space, Action::AddDevice { handle, device }).await?;
            self.share_keys(space, &device).await?;
        }
        for device in gone {
            let handle = self.handle.clone();
            self.change_membership(space, Action::RemoveDevice { handle, device }).await?;
        }
        Ok(())
    }

    /// Wraps every key of `space` this device holds, and its user may read, for `device`.
    pub(super) async fn share_keys(
        &mut self,
        space: &SpaceId,
        device: &DeviceKeys,
    ) -> Result<(), ClientError> {
        // Only the epochs this user may read now (a user removed and added again to a space
        // without shared history may hold older keys that the server would not take).
        let epochs = self.state(space)?.readable_epochs(&self.handle);
        let mut envelopes = Vec::new();
        for epoch in epochs {
            if let Some(key) = self.store.epoch_key(*space, epoch)? {
                envelopes.push(wrap_epoch_key(
                    &self.identity,
                    *space,
                    epoch,
                    &device.sign,
                    &device.agree,
                    &key,
                )?);
            }
        }
        self.put_envelopes(envelopes).await
    }

    /// One space: membership, keys, then entries after the cursor.
    pub async fn sync_space(&mut self, space: &SpaceId) -> Result<Vec<Change>, ClientError> {
        let mut changes = Vec::new();
        if self.sync_membership(space).await? {
            changes.push(Change::Space(*space));
        }
        changes.extend(self.sync_keys(space).await?);
        loop {
            let cursor = self.store.cursor(space)?.unwrap_or(0);
            let response = self
                .request(Request::Sync { space: *space, after: cursor, limit: MAX_SYNC_PAGE })
                .await;
            let (entries, more) = match response {
                Ok(Response::Entries { entries, more, .. }) => (entries, more),
                Ok(_) => return Err(ClientError::Protocol("expected entries".into())),
                // Removed from the space: keep what we have, stop syncing it.
                Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => break,
                Err(e) => return Err(e),
            };
            for entry in &entries {
                changes.extend(self.apply_entry(space, entry)?);
            }
            if let Some(last) = entries.last() {
                self.store.set_cursor(space, last.seq)?;
            }
            if !more {
                break;
            }
        }
        Ok(changes)
    }

    /// Fetches and verifies membership ops this device has not seen. Returns whether any
    /// were new.
    pub(super) async fn sync_membership(&mut self, space: &SpaceId) -> Result<bool, ClientError> {
        let have = self.logs.get(space).map(|l| l.state().len).unwrap_or(0);
        let ops = match self.request(Request::GetMembership { space: *space, from: have }).await {
            Ok(Response::Membership { ops, .. }) => ops,
            Ok(_) => return Err(ClientError::Protocol("expected membership".into())),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => return Ok(false),
            Err(e) => return Err(e),
        };
        if ops.is_empty() {
            return Ok(false);
        }
        let mut log = match self.logs.get(space) {
            Some(l) => l.clone(),
            None => MembershipLog::replay(&ops[..1])?,
        };
        let skip = usize::from(have == 0);
        for op in &ops[skip..] {
            log.append(op)?;
        }
        for (i, op) in ops.iter().enumerate() {
            self.store.put_op(space, have + i as u64, op)?;
        }
        self.store.upsert_space(space, &log.state().name)?;
        self.logs.insert(*space, log);
        Ok(true)
    }

    /// Fetches the envelopes wrapped for this device, keeps the keys it lacked, and opens
    /// notes that were waiting for them. A key is kept only if the op that started its epoch
    /// confirms it; any other envelope is refused (and reported) whoever wrote it, so a
    /// good envelope can still be taken later.
    pub(super) async fn sync_keys(&mut self, space: &SpaceId) -> Result<Vec<Change>, ClientError> {
        let envelopes = match self.request(Request::GetEnvelopes { space: *space }).await {
            Ok(Response::Envelopes { envelopes }) => envelopes,
            Ok(_) => return Err(ClientError::Protocol("expected envelopes".into())),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(state) = self.logs.get(space).map(|l| l.state().clone()) else {
            return Ok(Vec::new());
        };
        let mut new_keys = false;
        let mut changes = Vec::new();
        for env in envelopes {
            if env.space == *space && self.store.epoch_key(*space, env.epoch)?.is_some() {
                continue;
            }
            match accept_envelope(&self.identity, &state, &env) {
                Ok(key) => {
                    self.store.put_epoch_key(*space, env.epoch, &key)?;
                    new_keys = true;
                }
                Err(e) => {
                    let message = format!(
                        "refused the key envelope for epoch {} from device {}: {e}",
                        env.epoch,
                        &env.creator.to_hex()[..16]
                    );
                    tracing::warn!(space = %space, "{message}");
                    changes.push(Change::Refused { space: *space, message });
                }
            }
        }
        if new_keys {
            for sealed in self.store.unopened(space)? {
                if let Some(note) = self.store.note(space, &sealed.header.note_id)? {
                    changes.push(Change::Note(self.open_and_store(
                        &sealed,
                        note.seq.unwrap_or(0),
                        note.stored_at,
                    )?));
                }
            }
        }
        Ok(changes)
    }

    /// Opens a sealed note if possible and stores it either way.
    pub(super) fn open_and_store(
        &mut self,
        sealed: &SealedNote,
        seq: u64,
        stored_at: u64,
    ) -> Result<LocalNote, ClientError> {
        let h = &sealed.header;
        let opened = match (self.logs.get(&h.space), self.store.epoch_key(h.space, h.epoch)?) {
            (Some(log), Some(key)) => open_note(log.state(), &key, sealed).map_err(|e| match e {
                // The server does not check a note's signature (a member device could sign
                // anything it posts): readers do, and say plainly what a failure means.
                CryptoError::BadSignature => UNVERIFIABLE.to_owned(),
                e => e.to_string(),
            }),
            (None, _) => Err("the space's membership is unknown".to_owned()),
            (_, None) => Err(format!("no key for epoch {} yet", h.epoch)),
        };
        let (body, error) = match opened {
            Ok(b) => (Some(b), None),
            Err(e) => {
                tracing::warn!(note = %h.note_id, error = %e, "a note could not be opened; kept");
                (None, Some(e))
            }
        };
        let mine = h.sender == self.identity.id();
        let note = LocalNote {
            space: h.space,
            note_id: h.note_id,
            seq: (seq > 0).then_some(seq),
            sender: h.sender,
            body,
            error,
            deleted: false,
            read: mine,
            stored_at,
        };
        self.store.put_note(&note, Some(sealed))?;
        Ok(self.store.note(&h.space, &h.note_id)?.unwrap_or(note))
    }

    pub(super) fn apply_entry(
        &mut self,
        space: &SpaceId,
        entry: &SpaceEntry,
    ) -> Result<Vec<Change>, ClientError> {
        Ok(match &entry.item {
            EntryItem::Note(sealed) => {
                if sealed.header.space != *space {
                    // A server's forgery (its header names another space): nothing of it is
                    // kept, and the rest of the space syncs on.
                    let message = format!(
                        "refused entry {} of this space: it holds note {} of another space",
                        entry.seq, sealed.header.note_id
                    );
                    tracing::warn!(space = %space, "{message}");
                    return Ok(vec![Change::Refused { space: *space, message }]);
                }
                vec![Change::Note(self.open_and_store(sealed, entry.seq, entry.stored_at)?)]
            }
            EntryItem::Tombstone { note_id, .. } => {
                self.store.outbox_done(space, note_id)?;
                if self.store.delete_note(space, note_id)? {
                    vec![Change::Removed { space: *space, note_id: *note_id }]
                } else {
                    vec![]
                }
            }
        })
    }

    /// Applies a live event. Entries must follow the cursor; after a gap this syncs the
    /// space instead.
    pub async fn handle_event(&mut self, event: Event) -> Result<Vec<Change>, ClientError> {
        match event {
            Event::Entry { space, entry } => {
                let cursor = self.store.cursor(&space)?;
                match cursor {
                    Some(c) if entry.seq == c + 1 => {
                        let changes = self.apply_entry(&space, &entry)?;
                        self.store.set_cursor(&space, entry.seq)?;
                        Ok(changes)
                    }
                    Some(c) if entry.seq <= c => Ok(Vec::new()),
                    _ => self.sync_space(&space).await,
                }
            }
            Event::Membership { space, .. } => {
                let mut changes = self.sync_space(&space).await?;
                changes.push(Change::Space(space));
                Ok(changes)
            }
            Event::Envelopes { space, .. } => self.sync_keys(&space).await,
        }
    }
}

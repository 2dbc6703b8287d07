//! Media blobs: uploading them sealed and fetching them into the cache; what a device shows
//! for comparing safety codes.

use super::*;

impl Client {
    pub(super) fn http_base(&self) -> Result<String, ClientError> {
        media::http_base(&self.server)
    }

    pub(super) fn token(&self) -> Result<String, ClientError> {
        let session = self.conn()?.session.as_ref();
        Ok(session.ok_or(ClientError::Offline("not logged in".into()))?.token.clone())
    }

    pub(super) async fn upload(
        &mut self,
        plaintext: &[u8],
        mime: &str,
    ) -> Result<MediaRef, ClientError> {
        let token = self.token()?;
        let media_ref =
            media::upload(&self.http, &self.http_base()?, &token, plaintext, mime).await?;
        // Our own media go straight into the cache.
        media::cache_put(&self.home, &media_ref.hash, plaintext)?;
        self.store.media_touch(&media_ref.hash, plaintext.len() as u64)?;
        Ok(media_ref)
    }

    /// The decrypted bytes of a blob: from the cache, or downloaded (resuming a partial
    /// download), checked against its address, decrypted and cached.
    pub async fn media(&mut self, media_ref: &MediaRef) -> Result<PathBuf, ClientError> {
        self.media_arriving(media_ref, &mut |_| {}).await
    }

    /// [`Client::media`], telling `arriving` where the opened part of the blob grows while
    /// it downloads (not called when the blob is in the cache already).
    pub async fn media_arriving(
        &mut self,
        media_ref: &MediaRef,
        arriving: &mut (dyn FnMut(&Path) + Send),
    ) -> Result<PathBuf, ClientError> {
        let path = media::cache_path(&self.home, &media_ref.hash);
        if !path.exists() {
            let token = self.token()?;
            let base = self.http_base()?;
            media::download(&self.http, &base, &token, &self.home, media_ref, arriving).await?;
        }
        self.store.media_touch(&media_ref.hash, media_ref.size)?;
        for evicted in self.store.media_evict(self.media_cache_bytes)? {
            if evicted != media_ref.hash {
                let _ = std::fs::remove_file(media::cache_path(&self.home, &evicted));
            }
        }
        Ok(path)
    }

    /// The media of a stored note that is readable; a note that failed to open has none.
    pub fn note_body(&self, note: &LocalNote) -> Result<NoteBody, ClientError> {
        note.body.clone().ok_or_else(|| ClientError::NotOpened {
            note: note.note_id.to_string(),
            reason: note.error.clone().unwrap_or_default(),
        })
    }

    /// Who has which devices, for comparing safety codes out of band.
    pub async fn safety_code(&mut self, handle: &Handle) -> Result<String, ClientError> {
        let devices = self.user_devices(handle).await?;
        Ok(safety_code(handle, &devices))
    }

    /// The devices of one member of a space, as this device's copy of the log says.
    pub fn member_devices_of(
        &self,
        space: &SpaceId,
        handle: &Handle,
    ) -> Result<Vec<DeviceId>, ClientError> {
        Ok(self
            .state(space)?
            .members
            .get(handle)
            .map(|m| m.devices.iter().map(|d| d.sign).collect())
            .unwrap_or_default())
    }

    /// Members' device ids at the current epoch (for displaying who can read a space).
    pub fn member_devices(&self, space: &SpaceId) -> Result<BTreeSet<DeviceId>, ClientError> {
        Ok(self.state(space)?.current_devices())
    }
}

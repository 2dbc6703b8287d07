//! Notes: what a note to write is ([`Draft`], [`Content`]), posting it (sealed, through the
//! outbox), deleting, and reading the local copy.

use super::*;

/// A note to write. `Draft::text` makes the common case short; the other kinds are a
/// [`Content`] with the same words, pose and reply around them.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// The note's words: the whole of a text note, a caption on any other.
    pub text: String,
    /// What kind of note it is, with what that kind carries.
    pub content: Content,
    pub pose: Pose,
    pub anchor: Option<SpatialAnchor>,
    pub reply_to: Option<NoteId>,
    pub expires_in: Option<std::time::Duration>,
    /// The place the note stands in, with its pose there (`pose` stays the stage pose).
    pub place: Option<PlacePose>,
    /// The note's id, when the caller needs to know it before posting (a fresh random one
    /// otherwise). It must be new: the server answers a second post of an id as a duplicate.
    pub note_id: Option<NoteId>,
}

/// A note's kind, with what it carries beyond its words: one of these, never two.
#[derive(Clone, Debug, Default)]
pub enum Content {
    /// Words only: they must not be blank.
    #[default]
    Text,
    /// A picture: an image file's bytes (any format `image` decodes), re-encoded before
    /// upload.
    Image(Vec<u8>),
    /// A voice clip, already encoded as Ogg/Opus.
    Voice(VoiceClip),
    /// A video clip, already made canonical ([`VideoClip::from_file`]).
    Video(VideoClip),
    /// A reaction (an emoji) to the draft's `reply_to`, which it needs.
    Reaction(String),
    /// A place (`NoteKind::Place`) with its record; `picture`, if any, shows its reference
    /// marks. A place stands in no other place.
    Place { record: PlaceRecord, picture: Option<Vec<u8>> },
}

#[derive(Clone, Debug)]
pub struct VoiceClip {
    pub ogg_opus: Vec<u8>,
    pub waveform: Vec<u8>,
    pub duration_ms: u32,
}

/// A video note's clip: VP9 + Opus in WebM within `cairn_video`'s limits, its poster (a
/// thumbnail JPEG carried inside the note) and its length.
#[derive(Clone, Debug)]
pub struct VideoClip {
    pub webm: Vec<u8>,
    pub poster: Vec<u8>,
    pub duration_ms: u32,
}

impl VideoClip {
    /// Re-encodes any common video file (MP4/H.264, MOV, WebM, Matroska, …) to the canonical
    /// clip on this device (the server only ever sees its ciphertext). Slow: seconds for a
    /// minute of 720p; run it off any frame loop.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ClientError> {
        let clip =
            cairn_video::transcode(path).map_err(|e| ClientError::BadVideo(e.to_string()))?;
        let poster =
            crate::image::thumbnail_of_rgb(clip.poster.width, clip.poster.height, clip.poster.rgb)?;
        Ok(VideoClip { webm: clip.webm, poster, duration_ms: clip.duration_ms })
    }
}

impl Draft {
    pub fn text(text: &str, position: [f32; 3]) -> Self {
        Draft {
            text: text.to_owned(),
            pose: Pose { position, ..Pose::default() },
            ..Draft::default()
        }
    }
}

impl Client {
    /// Writes a note: sealed, stored locally and put in the outbox at once (shown as
    /// pending), then sent if online. Media are uploaded first, which needs the server.
    pub async fn post(&mut self, space: &SpaceId, draft: Draft) -> Result<LocalNote, ClientError> {
        let state = self.state(space)?.clone();
        let role = state.members.get(&self.handle).map(|m| m.role).ok_or(ClientError::NotMember)?;
        if !role.may_post(&state.policy) {
            return Err(ClientError::MayNotPost);
        }
        if state.role_of_device(&self.identity.id()).is_none() {
            return Err(ClientError::DeviceNotAdded);
        }
        let key = self.store.epoch_key(*space, state.epoch)?.ok_or(ClientError::NoKeyYet)?;
        // Never encrypt with a key the log does not confirm (one stored before this check
        // existed, or a corrupted store).
        check_epoch_key(&state, state.epoch, &key)?;
        let (kind, mut body) = self.build_body(&draft).await?;
        body.pose = draft.pose;
        let header = NoteHeader {
            space: *space,
            epoch: state.epoch,
            sender: self.identity.id(),
            note_id: draft.note_id.unwrap_or_else(|| NoteId(random_id())),
            kind,
            expires_at: draft.expires_in.map(|d| now_ms() + d.as_millis() as u64),
            media: body.media.iter().map(|m| m.hash).collect(),
        };
        let sealed = seal_note(&self.identity, &key, header, &body);
        if sealed.ciphertext.len() > MAX_NOTE_BYTES {
            return Err(ClientError::NoteTooLarge);
        }
        let note = LocalNote {
            space: *space,
            note_id: sealed.header.note_id,
            seq: None,
            sender: self.identity.id(),
            body: Some(body),
            error: None,
            deleted: false,
            read: true,
            stored_at: now_ms(),
        };
        let request = Request::PostNote { note: sealed.clone() };
        self.store.transaction(|s| {
            s.put_note(&note, Some(&sealed))?;
            s.outbox_put(space, &note.note_id, &request)
        })?;
        if self.is_online() {
            let _ = self.flush_outbox().await;
        }
        Ok(self.store.note(space, &note.note_id)?.unwrap_or(note))
    }

    pub(super) async fn build_body(
        &mut self,
        draft: &Draft,
    ) -> Result<(NoteKind, NoteBody), ClientError> {
        let mut body = NoteBody::text(&self.handle, &draft.text, draft.pose);
        body.anchor = draft.anchor.clone();
        body.reply_to = draft.reply_to;
        body.place = draft.place;
        let kind = match &draft.content {
            Content::Place { record, picture } => {
                record.check().map_err(ClientError::BadDraft)?;
                if draft.place.is_some() {
                    return Err(ClientError::BadDraft("a place stands in no other place".into()));
                }
                body.place_record = Some(record.clone());
                if let Some(image) = picture {
                    let prepared = crate::image::prepare(image)?;
                    body.thumbnail = prepared.thumbnail;
                    body.media.push(self.upload(&prepared.display, "image/jpeg").await?);
                }
                NoteKind::Place
            }
            Content::Reaction(emoji) => {
                if draft.reply_to.is_none() {
                    return Err(ClientError::BadDraft(
                        "a reaction needs the note it reacts to".into(),
                    ));
                }
                body.reaction = Some(emoji.clone());
                NoteKind::Reaction
            }
            Content::Image(image) => {
                let prepared = crate::image::prepare(image)?;
                body.thumbnail = prepared.thumbnail;
                body.media.push(self.upload(&prepared.display, "image/jpeg").await?);
                NoteKind::Image
            }
            Content::Video(video) => {
                body.thumbnail = video.poster.clone();
                body.duration_ms = video.duration_ms;
                body.media.push(self.upload(&video.webm, cairn_video::MIME).await?);
                NoteKind::Video
            }
            Content::Voice(voice) => {
                body.waveform = voice.waveform.clone();
                body.duration_ms = voice.duration_ms;
                body.media.push(self.upload(&voice.ogg_opus, "audio/ogg").await?);
                NoteKind::Voice
            }
            Content::Text => {
                if draft.text.trim().is_empty() {
                    return Err(ClientError::BadDraft("a text note needs some text".into()));
                }
                NoteKind::Text
            }
        };
        body.kind = kind;
        Ok((kind, body))
    }

    /// Deletes a note (author or owner): a tombstone for everyone, through the outbox.
    pub async fn delete(&mut self, space: &SpaceId, note_id: &NoteId) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::delete_payload(space, note_id));
        let request = Request::DeleteNote { space: *space, note_id: *note_id, signature };
        let pending_post =
            self.store.outbox()?.into_iter().any(|(s, n, r)| {
                s == *space && n == *note_id && matches!(r, Request::PostNote { .. })
            });
        self.store.transaction(|s| {
            s.delete_note(space, note_id)?;
            if pending_post {
                // Never sent: dropping it from the outbox is the whole deletion.
                s.outbox_done(space, note_id)
            } else {
                s.outbox_put(space, note_id, &request)
            }
        })?;
        if self.is_online() {
            let _ = self.flush_outbox().await;
        }
        Ok(())
    }

    /// Sends what waits in the outbox, each with its original note id, until one fails
    /// for want of a connection. A request the server refuses is dropped from the outbox
    /// and its note marked with the reason.
    pub async fn flush_outbox(&mut self) -> Result<Vec<Change>, ClientError> {
        let mut changes = Vec::new();
        for (space, note_id, request) in self.store.outbox()? {
            match self.request(request).await {
                Ok(Response::Posted { seq, duplicate }) => {
                    self.store.outbox_done(&space, &note_id)?;
                    // The server does not send this connection its own entry back: when it
                    // is the next one, the cursor moves past it here (otherwise the next
                    // event's gap brings it with a sync).
                    if !duplicate
                        && self.store.cursor(&space)?.is_some_and(|c| seq.checked_sub(1) == Some(c))
                    {
                        self.store.set_cursor(&space, seq)?;
                    }
                    if let Some(mut note) = self.store.note(&space, &note_id)?
                        && !note.deleted
                    {
                        note.seq = Some(seq);
                        self.store.put_note(&note, None)?;
                        changes.push(Change::Note(note));
                    }
                }
                Ok(_) => return Err(ClientError::Protocol("expected posted".into())),
                Err(ClientError::Server(e))
                    if e.code != ErrorCode::RateLimited && e.code != ErrorCode::Internal =>
                {
                    tracing::warn!(%note_id, error = %e, "the server refused a note");
                    self.store.outbox_done(&space, &note_id)?;
                    if let Some(mut note) = self.store.note(&space, &note_id)? {
                        note.error = Some(format!("not sent: {}", e.message));
                        self.store.put_note(&note, None)?;
                        changes.push(Change::Note(note));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    pub fn notes(&self, space: &SpaceId) -> Result<Vec<LocalNote>, ClientError> {
        self.store.notes(space)
    }

    /// The places of a space, in the order they were made.
    pub fn places(&self, space: &SpaceId) -> Result<Vec<crate::Place>, ClientError> {
        Ok(crate::Place::all_in(&self.store.notes(space)?))
    }

    /// A place of a space by its name (any case) or the start of its id.
    pub fn find_place(&self, space: &SpaceId, name: &str) -> Result<crate::Place, ClientError> {
        let places = self.places(space)?;
        let wanted = name.trim().to_lowercase();
        let mut found: Vec<&crate::Place> =
            places.iter().filter(|p| p.record.name.trim().to_lowercase() == wanted).collect();
        if found.is_empty() && wanted.len() >= 4 {
            found = places.iter().filter(|p| p.id.to_hex().starts_with(&wanted)).collect();
        }
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let known = places.iter().map(|p| p.record.name.clone()).collect();
                Err(ClientError::NoSuchPlace { name: name.to_owned(), known })
            }
            _ => Err(ClientError::AmbiguousPlace { name: name.to_owned(), count: found.len() }),
        }
    }

    pub fn search(&self, words: &str) -> Result<Vec<LocalNote>, ClientError> {
        self.store.search(words)
    }

    pub fn find_note(&self, id: &str) -> Result<LocalNote, ClientError> {
        self.store.find_note(id)?.ok_or_else(|| ClientError::NoSuchNote(id.to_owned()))
    }

    pub fn outbox_len(&self) -> Result<usize, ClientError> {
        self.store.outbox_len()
    }
}

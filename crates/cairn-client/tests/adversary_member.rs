//! The malicious member (and the malicious reader): someone with an account and a place in
//! the space, who speaks the wire protocol directly with their own device keys. For each
//! attack: what the honest server refuses, and that the honest members' clients read and
//! show exactly what they would have without it. docs/SECURITY.md lists these.

use cairn_client::{Client, Content, Draft};
use cairn_crypto::*;
use cairn_proto::*;

mod support;
use support::{Raw, World, epoch_key};

fn space_epoch(c: &Client, space: &SpaceId) -> u64 {
    c.spaces().unwrap().into_iter().find(|s| s.id == *space).unwrap().epoch
}

/// A member's first device in the space, as `c`'s copy of the log says.
fn device_of(c: &Client, space: &SpaceId, handle: &str) -> DeviceId {
    c.member_devices_of(space, &handle.parse().unwrap()).unwrap()[0]
}

/// What a member's client shows for each note of a space: its text, or why it could not
/// be opened.
fn shown(c: &Client, space: &SpaceId) -> Vec<Result<(String, String), String>> {
    c.notes(space)
        .unwrap()
        .into_iter()
        .map(|n| match n.body {
            Some(b) => Ok((b.author, b.text)),
            None => Err(n.error.unwrap_or_default()),
        })
        .collect()
}

/// The clear header of a text note, as a hostile client builds it by hand.
fn text_header(space: SpaceId, epoch: u64, sender: DeviceId, note_id: NoteId) -> NoteHeader {
    NoteHeader {
        space,
        epoch,
        sender,
        note_id,
        kind: NoteKind::Text,
        expires_at: None,
        media: vec![],
    }
}

fn ok(author: &str, text: &str) -> Result<(String, String), String> {
    Ok((author.to_owned(), text.to_owned()))
}

/// The first reproduction: rita, a reader, replaces carol's envelope with random bytes.
/// Before, the server stored it over carol's and carol could never read alice's later
/// notes. Now the server refuses it (rita may not wrap that epoch), and carol reads on.
#[tokio::test]
async fn a_reader_cannot_replace_another_members_key_envelope() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let rita = w.user("rita").await;
    let mut carol = w.user("carol").await;
    let space = alice.create_space("kitchen", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("rita"), Role::Reader).await.unwrap();
    alice.invite(&space, &Handle::from_static("carol"), Role::Member).await.unwrap();
    let carol_join = space_epoch(&alice, &space);
    let carol_device = carol.device();

    let attacker = Raw::as_device(&w.url(), &rita).await;
    let wrapped: Vec<u8> = (0..80).map(|i| i as u8 ^ 0x5a).collect();
    let signature = attacker.identity.sign(&sign::envelope_payload(
        &space,
        carol_join,
        &carol_device,
        &attacker.identity.id(),
        &wrapped,
    ));
    let planted = KeyEnvelope {
        space,
        epoch: carol_join,
        recipient: carol_device,
        creator: attacker.identity.id(),
        wrapped,
        signature,
    };
    let refused =
        attacker.request(Request::PutEnvelopes { envelopes: vec![planted] }).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");

    alice.post(&space, Draft::text("the basil needs water", [0.0; 3])).await.unwrap();
    carol.sync().await.unwrap();
    assert_eq!(shown(&carol, &space), vec![ok("alice", "the basil needs water")]);
}

/// The variant: rita wraps a key she chose for dave at his join epoch, so that dave would
/// seal with a key only rita and he know. The server refuses it; had it been stored, dave
/// would have refused it too (the next test); dave's notes stay readable to alice and bob.
#[tokio::test]
async fn a_reader_cannot_hand_a_member_a_key_of_her_choosing() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let rita = w.user("rita").await;
    let mut dave = w.user("dave").await;
    let space = alice.create_space("lab", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    alice.invite(&space, &Handle::from_static("rita"), Role::Reader).await.unwrap();
    // rita learns dave's keys from the server, as anyone can.
    let dave_keys = dave.identity().keys();
    // Rita races dave's invitation: she plants first, for the epoch the invite will start.
    let next_epoch = alice.spaces().unwrap()[0].epoch + 1;
    let attacker = Raw::as_device(&w.url(), &rita).await;
    let chosen = EpochKey::generate();
    let planted = wrap_epoch_key(
        &attacker.identity,
        space,
        next_epoch,
        &dave_keys.sign,
        &dave_keys.agree,
        &chosen,
    )
    .unwrap();
    // Before the epoch exists: no such epoch.
    let early = attacker.request(Request::PutEnvelopes { envelopes: vec![planted.clone()] }).await;
    assert_eq!(early.unwrap_err().code, ErrorCode::BadEpoch);
    alice.invite(&space, &Handle::from_static("dave"), Role::Member).await.unwrap();
    assert_eq!(space_epoch(&alice, &space), next_epoch);
    // After: not hers to wrap.
    let late = attacker.request(Request::PutEnvelopes { envelopes: vec![planted] }).await;
    assert_eq!(late.unwrap_err().code, ErrorCode::Forbidden);

    dave.sync().await.unwrap();
    dave.post(&space, Draft::text("results are in", [0.0; 3])).await.unwrap();
    for reader in [&mut alice, &mut bob] {
        reader.sync().await.unwrap();
        assert_eq!(shown(reader, &space), vec![ok("dave", "results are in")]);
    }
    // And the key dave used is the one alice's op confirmed, not rita's.
    assert!(epoch_key(&dave, space, next_epoch) != chosen);
}

/// A device that may wrap an epoch (an owner's) cannot replace an envelope that is there:
/// a second, different one is a conflict and the first stays; an identical retry is fine.
/// A planted key that does get stored (a malicious owner who starts an epoch, commits to
/// one key and wraps another for a newcomer) is refused by its recipient, which says so,
/// never reads or seals with it, and shows the notes of that epoch as waiting for a key.
#[tokio::test]
async fn an_envelope_is_never_replaced_and_a_planted_key_is_refused_by_its_recipient() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut mallory = w.user("mallory").await;
    let mut carol = w.user("carol").await;
    let mut dave = w.user("dave").await;
    let space = alice.create_space("hall", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("mallory"), Role::Owner).await.unwrap();
    alice.invite(&space, &Handle::from_static("carol"), Role::Member).await.unwrap();
    let epoch = space_epoch(&alice, &space);
    mallory.sync().await.unwrap();
    let carol_keys = carol.identity().keys();
    let attacker = Raw::as_device(&w.url(), &mallory).await;

    // Replacing carol's envelope of the current epoch: a conflict, nothing changes.
    let wrong = EpochKey::generate();
    let replace = wrap_epoch_key(
        &attacker.identity,
        space,
        epoch,
        &carol_keys.sign,
        &carol_keys.agree,
        &wrong,
    )
    .unwrap();
    let refused = attacker.request(Request::PutEnvelopes { envelopes: vec![replace] }).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::Conflict);
    carol.sync().await.unwrap();
    assert!(epoch_key(&carol, space, epoch) == epoch_key(&alice, space, epoch));

    // An identical envelope again (a retry) is accepted.
    let Response::Envelopes { envelopes } = Raw::as_device(&w.url(), &carol)
        .await
        .request(Request::GetEnvelopes { space })
        .await
        .unwrap()
    else {
        panic!()
    };
    let honest = Raw::as_device(&w.url(), &alice).await;
    let mine: Vec<KeyEnvelope> =
        envelopes.into_iter().filter(|e| e.creator == honest.identity.id()).collect();
    assert!(!mine.is_empty());
    assert_eq!(honest.request(Request::PutEnvelopes { envelopes: mine }).await, Ok(Response::Done));

    // Mallory adds dave herself: her op confirms key K, she wraps K for everyone but dave,
    // and for dave a key of her choosing.
    let Response::Membership { ops, .. } =
        attacker.request(Request::GetMembership { space, from: 0 }).await.unwrap()
    else {
        panic!()
    };
    let log = MembershipLog::replay(&ops).unwrap();
    let dave_keys = dave.identity().keys();
    let k = EpochKey::generate();
    let add = Action::Add {
        member: Member {
            handle: "dave".parse().unwrap(),
            role: Role::Member,
            devices: vec![dave_keys],
        },
    };
    let op = log.next_op(&attacker.identity, add, Some(&k));
    let dave_epoch = op.index;
    let signed = sign_op(&attacker.identity, &op);
    attacker.request(Request::ChangeMembership { op: signed.clone() }).await.unwrap();
    let mut log = log;
    log.append(&signed).unwrap();
    let mut envelopes = Vec::new();
    for d in log.state().current_device_keys() {
        let key = if d.sign == dave_keys.sign { &wrong } else { &k };
        envelopes.push(
            wrap_epoch_key(&attacker.identity, space, dave_epoch, &d.sign, &d.agree, key).unwrap(),
        );
    }
    assert_eq!(attacker.request(Request::PutEnvelopes { envelopes }).await, Ok(Response::Done));

    let changes = dave.sync().await.unwrap();
    let said: Vec<&String> = changes
        .iter()
        .filter_map(|c| match c {
            cairn_client::Change::Refused { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{changes:?}");
    assert!(said[0].contains("not the one its membership op confirms"), "{}", said[0]);
    assert!(dave.store().epoch_key(space, dave_epoch).unwrap().is_none());
    let refused = dave.post(&space, Draft::text("hello?", [0.0; 3])).await.unwrap_err();
    assert!(refused.to_string().contains("has not received the space's current key"));
    alice.sync().await.unwrap();
    alice.post(&space, Draft::text("hello dave", [0.0; 3])).await.unwrap();
    dave.sync().await.unwrap();
    let seen = shown(&dave, &space);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].as_ref().unwrap_err().contains("no key for epoch"), "{seen:?}");
}

/// The second reproduction: a note whose body names another author. Before, the reader
/// listed it as written by "mallory"; now it is refused as forged, and the author any
/// reader shows is always the user that owns the sending device in the log.
#[tokio::test]
async fn a_member_cannot_write_under_another_name() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut pyuser = w.user("pyuser").await;
    let mut bob = w.user("bob").await;
    let space = alice.create_space("yard", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("pyuser"), Role::Member).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    pyuser.sync().await.unwrap();
    let epoch = space_epoch(&alice, &space);
    let attacker = Raw::as_device(&w.url(), &pyuser).await;
    let key = epoch_key(&pyuser, space, epoch);
    let header = text_header(space, epoch, attacker.identity.id(), NoteId([0x66; 16]));
    for name in ["mallory", "alice"] {
        let mut header = header.clone();
        header.note_id.0[0] = name.len() as u8;
        let body = NoteBody::text(name, &format!("signed, {name}"), Pose::default());
        let note = seal_note(&attacker.identity, &key, header, &body);
        // The server cannot see the author (it is inside the ciphertext): it stores it.
        assert!(matches!(
            attacker.request(Request::PostNote { note }).await,
            Ok(Response::Posted { .. })
        ));
    }
    pyuser.post(&space, Draft::text("signed, pyuser", [0.0; 3])).await.unwrap();
    bob.sync().await.unwrap();
    let seen = shown(&bob, &space);
    assert_eq!(seen.len(), 3, "{seen:?}");
    for forged in &seen[..2] {
        let why = forged.as_ref().unwrap_err();
        assert!(why.contains("forged author") && why.contains("pyuser"), "{why}");
    }
    assert_eq!(seen[2], ok("pyuser", "signed, pyuser"));
}

/// A member's device posts a note whose signature does not verify. The server does not
/// check a note's signature (the device could sign anything it posts), so it stores it;
/// every reader checks, shows the note as unverifiable (nothing of what it says), and
/// keeps syncing the space: live and in a later sync, the honest notes after it open.
#[tokio::test]
async fn a_note_with_a_bad_signature_is_shown_as_unverifiable_and_the_space_syncs_on() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut mallory = w.user("mallory").await;
    let mut bob = w.user("bob").await;
    let mut carol = w.user("carol").await;
    let space = alice.create_space("hall", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("mallory"), Role::Member).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    alice.invite(&space, &Handle::from_static("carol"), Role::Member).await.unwrap();
    mallory.sync().await.unwrap();
    bob.sync().await.unwrap();
    bob.connect().await.unwrap();
    let epoch = space_epoch(&alice, &space);
    let attacker = Raw::as_device(&w.url(), &mallory).await;
    let key = epoch_key(&mallory, space, epoch);
    let header = text_header(space, epoch, attacker.identity.id(), NoteId([0x5b; 16]));
    let body = NoteBody::text("mallory", "believe me", Pose::default());
    let mut note = seal_note(&attacker.identity, &key, header, &body);
    note.signature.0[7] ^= 0x20;
    assert!(matches!(
        attacker.request(Request::PostNote { note }).await,
        Ok(Response::Posted { duplicate: false, .. })
    ));
    alice.post(&space, Draft::text("after it", [0.0; 3])).await.unwrap();

    // Live: both entries arrive as events; the bad one is unverifiable, the next opens.
    let mut live = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while live.len() < 2 {
        let event = tokio::time::timeout_at(deadline, bob.next_event())
            .await
            .expect("both entries arrive live")
            .expect("bob stays connected");
        for change in bob.handle_event(event).await.unwrap() {
            if let cairn_client::Change::Note(n) = change {
                live.push(n.body.map(|b| b.text).ok_or(n.error.unwrap_or_default()));
            }
        }
    }
    assert_eq!(
        live,
        [Err(cairn_client::client::UNVERIFIABLE.to_owned()), Ok("after it".to_owned())]
    );

    // A member syncing afterwards reads the same, and nothing stops its sync.
    carol.sync().await.unwrap();
    let seen = shown(&carol, &space);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], Err(cairn_client::client::UNVERIFIABLE.to_owned()));
    assert_eq!(seen[1], ok("alice", "after it"));
}

/// Posting as another member's device, or referring to media one cannot read: refused by
/// the server, nothing stored.
#[tokio::test]
async fn a_member_cannot_post_as_another_device_or_borrow_media() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut mallory = w.user("mallory").await;
    let mut bob = w.user("bob").await;
    let space = alice.create_space("porch", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("mallory"), Role::Member).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    // Alice's picture lives in a space mallory is not in.
    let private = alice.create_space("private", Policy::default()).await.unwrap();
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([10, 200, 30]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let draft = Draft { content: Content::Image(png.into_inner()), ..Draft::text("", [0.0; 3]) };
    let pic = alice.post(&private, draft).await.unwrap();
    let alice_media = pic.body.unwrap().media[0].hash;

    mallory.sync().await.unwrap();
    let epoch = space_epoch(&alice, &space);
    let attacker = Raw::as_device(&w.url(), &mallory).await;
    let key = epoch_key(&mallory, space, epoch);
    let alice_device = device_of(&alice, &space, "alice");
    let header = |sender: DeviceId, media: Vec<MediaHash>| NoteHeader {
        kind: if media.is_empty() { NoteKind::Text } else { NoteKind::Image },
        media,
        ..text_header(space, epoch, sender, NoteId(*b"borrowed-name-id"))
    };
    // As alice's device: the header names alice, the signature is mallory's.
    let mut as_alice = seal_note(
        &attacker.identity,
        &key,
        header(attacker.identity.id(), vec![]),
        &NoteBody::text("mallory", "from alice, honest", Pose::default()),
    );
    as_alice.header.sender = alice_device;
    let refused = attacker.request(Request::PostNote { note: as_alice }).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
    // Alice's media: mallory knows the hash (say it leaked), not the blob's key.
    let borrowed = header(attacker.identity.id(), vec![alice_media]);
    let mut body = NoteBody::text("mallory", "", Pose::default());
    body.kind = NoteKind::Image;
    body.media.push(MediaRef {
        hash: alice_media,
        key: MediaKey::generate(),
        size: 1,
        mime: "image/jpeg".into(),
    });
    let note = seal_note(&attacker.identity, &key, borrowed, &body);
    let refused = attacker.request(Request::PostNote { note }).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");

    bob.sync().await.unwrap();
    assert!(bob.notes(&space).unwrap().is_empty());
}

/// Replays: an op of one space into another, an old op again, a note re-signed into
/// another space or epoch. The server refuses what it can see; what it cannot see (the
/// ciphertext is bound to its header) every reader refuses.
#[tokio::test]
async fn replayed_ops_and_notes_are_refused() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut mallory = w.user("mallory").await;
    let mut bob = w.user("bob").await;
    let a = alice.create_space("a", Policy::default()).await.unwrap();
    let b = alice.create_space("b", Policy::default()).await.unwrap();
    for space in [&a, &b] {
        alice.invite(space, &Handle::from_static("mallory"), Role::Owner).await.unwrap();
        alice.invite(space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    }
    mallory.sync().await.unwrap();
    let attacker = Raw::as_device(&w.url(), &mallory).await;

    // Alice's ops of space a, replayed: again into a (index taken), and into b.
    let Response::Membership { ops, .. } =
        attacker.request(Request::GetMembership { space: a, from: 0 }).await.unwrap()
    else {
        panic!()
    };
    for op in &ops[1..] {
        let again = attacker.request(Request::ChangeMembership { op: op.clone() }).await;
        let e = again.unwrap_err();
        assert!(matches!(e.code, ErrorCode::Forbidden | ErrorCode::Conflict), "{e}");
    }
    let into_b = attacker.request(Request::ChangeMembership { op: ops[1].clone() }).await;
    assert!(into_b.is_err());

    // Mallory's own note of space a, re-signed with b's header (same ciphertext): the
    // ciphertext is bound to its header, so every reader refuses it.
    let note = mallory.post(&a, Draft::text("only for a", [0.0; 3])).await.unwrap();
    bob.sync().await.unwrap();
    let sealed = {
        let ea = space_epoch(&alice, &a);
        let key = epoch_key(&mallory, a, ea);
        let header = text_header(a, ea, attacker.identity.id(), note.note_id);
        seal_note(
            &attacker.identity,
            &key,
            header,
            &NoteBody::text("mallory", "only for a", Pose::default()),
        )
    };
    let mut moved = sealed.clone();
    moved.header.space = b;
    moved.header.epoch = space_epoch(&alice, &b);
    moved.signature = attacker.identity.sign(&sign::note_payload(&moved.header, &moved.ciphertext));
    attacker.request(Request::PostNote { note: moved }).await.unwrap();
    // Into another epoch of a (epoch 0, when mallory was not yet a member: refused by the
    // server; the epoch before her join when she was: the AAD no longer matches).
    let mut old_epoch = sealed.clone();
    old_epoch.header.epoch = 0;
    old_epoch.header.note_id.0[0] ^= 1;
    old_epoch.signature =
        attacker.identity.sign(&sign::note_payload(&old_epoch.header, &old_epoch.ciphertext));
    let e = attacker.request(Request::PostNote { note: old_epoch }).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");

    bob.sync().await.unwrap();
    let in_b = shown(&bob, &b);
    assert_eq!(in_b.len(), 1);
    let why = in_b[0].as_ref().unwrap_err();
    assert!(why.contains("decryption failed"), "{why}");
    assert_eq!(shown(&bob, &a), vec![ok("mallory", "only for a")]);
}

/// A reader is a reader: no notes, no membership changes (envelopes: the first test).
#[tokio::test]
async fn a_reader_cannot_post_or_change_membership() {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut rita = w.user("rita").await;
    let eve = w.user("eve").await;
    let space = alice.create_space("museum", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("rita"), Role::Reader).await.unwrap();
    rita.sync().await.unwrap();
    let epoch = space_epoch(&alice, &space);
    let attacker = Raw::as_device(&w.url(), &rita).await;
    let key = epoch_key(&rita, space, epoch);
    let header = text_header(space, epoch, attacker.identity.id(), NoteId([1; 16]));
    let note = seal_note(
        &attacker.identity,
        &key,
        header,
        &NoteBody::text("rita", "a reader's note", Pose::default()),
    );
    let e = attacker.request(Request::PostNote { note }).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    // Adding eve with her own op: the log says a reader may not.
    let Response::Membership { ops, .. } =
        attacker.request(Request::GetMembership { space, from: 0 }).await.unwrap()
    else {
        panic!()
    };
    let log = MembershipLog::replay(&ops).unwrap();
    let new_key = EpochKey::generate();
    let add = Action::Add {
        member: Member {
            handle: "eve".parse().unwrap(),
            role: Role::Owner,
            devices: vec![eve.identity().keys()],
        },
    };
    let op = sign_op(&attacker.identity, &log.next_op(&attacker.identity, add, Some(&new_key)));
    let e = attacker.request(Request::ChangeMembership { op }).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    alice.sync().await.unwrap();
    assert_eq!(alice.spaces().unwrap()[0].members.len(), 2);
}

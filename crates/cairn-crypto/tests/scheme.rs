//! The scheme end to end, without a network: membership, epoch keys, notes and media, and
//! every way an attacker might alter them.

use cairn_crypto::*;
use cairn_proto::*;
use proptest::prelude::*;

struct Space {
    log: MembershipLog,
    ops: Vec<SignedOp>,
    /// The key each epoch's op confirmed.
    keys: std::collections::BTreeMap<u64, EpochKey>,
}

fn member(handle: &str, dev: &DeviceIdentity, role: Role) -> Member {
    Member { handle: handle.parse().unwrap(), role, devices: vec![dev.keys()] }
}

fn create_space(owner: &DeviceIdentity, policy: Policy) -> Space {
    let key = EpochKey::generate();
    let op = MembershipOp {
        space: SpaceId([7; 16]),
        index: 0,
        prev: OpHash::default(),
        actor: owner.id(),
        at: 1,
        action: Action::Create {
            name: "kitchen".into(),
            owner: member("alice", owner, Role::Owner),
            policy,
        },
        key_confirm: Some(key_confirmation(&key, &SpaceId([7; 16]), 0)),
    };
    let signed = sign_op(owner, &op);
    Space {
        log: MembershipLog::replay(std::slice::from_ref(&signed)).unwrap(),
        ops: vec![signed],
        keys: [(0, key)].into(),
    }
}

impl Space {
    fn act(&mut self, actor: &DeviceIdentity, action: Action) -> Result<(), CryptoError> {
        let key = action.starts_epoch().then(EpochKey::generate);
        let op = self.log.next_op(actor, action, key.as_ref());
        let signed = sign_op(actor, &op);
        self.log.append(&signed)?;
        self.ops.push(signed);
        if let Some(key) = key {
            self.keys.insert(op.index, key);
        }
        Ok(())
    }
    fn id(&self) -> SpaceId {
        self.log.state().space
    }
}

fn header(space: SpaceId, epoch: u64, sender: &DeviceIdentity, kind: NoteKind) -> NoteHeader {
    NoteHeader {
        space,
        epoch,
        sender: sender.id(),
        note_id: NoteId([9; 16]),
        kind,
        expires_at: Some(42),
        media: vec![],
    }
}

#[test]
fn member_reads_a_note_and_the_server_view_reveals_nothing() {
    let alice = DeviceIdentity::generate();
    let bob = DeviceIdentity::generate();
    let mut space = create_space(&alice, Policy::default());
    space.act(&alice, Action::Add { member: member("bob", &bob, Role::Member) }).unwrap();
    let epoch = space.log.state().epoch;
    let key = EpochKey::generate();
    let env =
        wrap_epoch_key(&alice, space.id(), epoch, &bob.id(), &bob.keys().agree, &key).unwrap();
    assert_eq!(unwrap_epoch_key(&bob, &env).unwrap(), key);

    let body = NoteBody::text("alice", "the spare key is under the third stone", Pose::default());
    let sealed = seal_note(&alice, &key, header(space.id(), epoch, &alice, NoteKind::Text), &body);
    let wire = cairn_proto::encode(&sealed);
    assert!(!wire.windows(9).any(|w| w == b"spare key"), "plaintext on the wire");
    assert_eq!(open_note(space.log.state(), &key, &sealed).unwrap(), body);
}

#[test]
fn every_bit_flip_of_a_sealed_note_is_rejected() {
    let alice = DeviceIdentity::generate();
    let space = create_space(&alice, Policy::default());
    let key = EpochKey::generate();
    let mut body =
        NoteBody::text("alice", "hi", Pose { position: [1.0, 0.0, 2.0], ..Pose::default() });
    body.media = vec![];
    let sealed = seal_note(&alice, &key, header(space.id(), 0, &alice, NoteKind::Text), &body);
    // Ciphertext (nonce, body, tag) and signature.
    for byte in 0..sealed.ciphertext.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad.ciphertext[byte] ^= 1 << bit;
            assert!(open_note(space.log.state(), &key, &bad).is_err(), "ciphertext {byte}.{bit}");
        }
    }
    for byte in 0..64 {
        let mut bad = sealed.clone();
        bad.signature.0[byte] ^= 1;
        assert!(open_note(space.log.state(), &key, &bad).is_err(), "signature byte {byte}");
    }
    // Each associated-data field of the header, one bit at a time.
    type Mutation = Box<dyn Fn(&mut NoteHeader)>;
    let mutations: Vec<Mutation> = vec![
        Box::new(|h| h.space.0[0] ^= 1),
        Box::new(|h| h.epoch ^= 1),
        Box::new(|h| h.sender.0[5] ^= 1),
        Box::new(|h| h.note_id.0[3] ^= 0x80),
        Box::new(|h| h.kind = NoteKind::Voice),
        Box::new(|h| h.expires_at = Some(43)),
        Box::new(|h| h.expires_at = None),
        Box::new(|h| h.media.push(MediaHash([1; 32]))),
    ];
    for (i, mutate) in mutations.iter().enumerate() {
        let mut bad = sealed.clone();
        mutate(&mut bad.header);
        assert!(open_note(space.log.state(), &key, &bad).is_err(), "header mutation {i}");
        // Even re-signed by the real sender (a sender cannot move a note after sealing):
        bad.signature = alice.sign(&sign::note_payload(&bad.header, &bad.ciphertext));
        assert!(open_note(space.log.state(), &key, &bad).is_err(), "re-signed mutation {i}");
    }
}

#[test]
fn a_note_replayed_into_another_space_epoch_or_sender_is_rejected() {
    let alice = DeviceIdentity::generate();
    let mallory = DeviceIdentity::generate();
    let mut space = create_space(&alice, Policy::default());
    space.act(&alice, Action::Add { member: member("mallory", &mallory, Role::Member) }).unwrap();
    let key = EpochKey::generate();
    let sealed = seal_note(
        &alice,
        &key,
        header(space.id(), 0, &alice, NoteKind::Text),
        &NoteBody::text("alice", "x", Pose::default()),
    );
    // Another epoch (same key, as if a member replayed it later).
    let mut moved = sealed.clone();
    moved.header.epoch = space.log.state().epoch;
    moved.signature = alice.sign(&sign::note_payload(&moved.header, &moved.ciphertext));
    assert!(open_note(space.log.state(), &key, &moved).is_err());
    // Another sender: mallory claims alice's note as hers.
    let mut stolen = sealed.clone();
    stolen.header.sender = mallory.id();
    stolen.signature = mallory.sign(&sign::note_payload(&stolen.header, &stolen.ciphertext));
    assert!(open_note(space.log.state(), &key, &stolen).is_err());
    // Another space with the same key material.
    let other = create_space(&alice, Policy::default());
    let mut elsewhere = sealed.clone();
    elsewhere.header.space = SpaceId([8; 16]);
    assert!(open_note(other.log.state(), &key, &elsewhere).is_err());
}

#[test]
fn non_members_and_removed_members_cannot_sign_notes() {
    let alice = DeviceIdentity::generate();
    let bob = DeviceIdentity::generate();
    let eve = DeviceIdentity::generate();
    let mut space = create_space(&alice, Policy::default());
    space.act(&alice, Action::Add { member: member("bob", &bob, Role::Member) }).unwrap();
    let bob_epoch = space.log.state().epoch;
    let key = EpochKey::generate();
    let by_eve = seal_note(
        &eve,
        &key,
        header(space.id(), bob_epoch, &eve, NoteKind::Text),
        &NoteBody::text("eve", "x", Pose::default()),
    );
    assert!(matches!(open_note(space.log.state(), &key, &by_eve), Err(CryptoError::NotAMember)));

    space.act(&alice, Action::Remove { handle: "bob".parse().unwrap() }).unwrap();
    let after = space.log.state().epoch;
    assert!(after > bob_epoch);
    let new_key = EpochKey::generate();
    let by_removed_bob = seal_note(
        &bob,
        &new_key,
        header(space.id(), after, &bob, NoteKind::Text),
        &NoteBody::text("bob", "still here", Pose::default()),
    );
    assert!(matches!(
        open_note(space.log.state(), &new_key, &by_removed_bob),
        Err(CryptoError::NotAMember)
    ));
    // What bob wrote while a member still opens.
    let old = seal_note(
        &bob,
        &key,
        header(space.id(), bob_epoch, &bob, NoteKind::Text),
        &NoteBody::text("bob", "hello", Pose::default()),
    );
    assert!(open_note(space.log.state(), &key, &old).is_ok());
}

#[test]
fn forged_reordered_replayed_or_unauthorized_ops_are_rejected() {
    let alice = DeviceIdentity::generate();
    let bob = DeviceIdentity::generate();
    let carol = DeviceIdentity::generate();
    let mut space = create_space(&alice, Policy::default());
    space.act(&alice, Action::Add { member: member("bob", &bob, Role::Member) }).unwrap();
    space.act(&alice, Action::Add { member: member("carol", &carol, Role::Reader) }).unwrap();
    assert!(MembershipLog::replay(&space.ops).is_ok());

    // Forged: a bit flipped in a signature or in a body.
    let mut forged = space.ops.clone();
    forged[1].signature.0[0] ^= 1;
    assert!(matches!(MembershipLog::replay(&forged), Err(CryptoError::BadSignature)));
    let mut tampered = space.ops.clone();
    let last = tampered[2].body.len() - 1;
    tampered[2].body[last] ^= 1;
    assert!(MembershipLog::replay(&tampered).is_err());
    // Reordered.
    let mut reordered = space.ops.clone();
    reordered.swap(1, 2);
    assert!(MembershipLog::replay(&reordered).is_err());
    // Replayed: the same op twice.
    let mut replayed = space.ops.clone();
    replayed.push(space.ops[2].clone());
    assert!(MembershipLog::replay(&replayed).is_err());
    // Unauthorized: a member (not owner) tries to add someone.
    let dave = DeviceIdentity::generate();
    assert!(matches!(
        space.act(&bob, Action::Add { member: member("dave", &dave, Role::Owner) }),
        Err(CryptoError::Op(cairn_proto::membership::OpError::NotAllowed))
    ));
    // An outsider signing a well-formed op.
    assert!(space.act(&dave, Action::Remove { handle: "bob".parse().unwrap() }).is_err());
    // The last owner cannot leave the space ownerless.
    assert!(space.act(&alice, Action::Remove { handle: "alice".parse().unwrap() }).is_err());
    assert!(MembershipLog::replay(&space.ops).is_ok(), "failed ops changed nothing");
}

#[test]
fn a_member_adds_and_removes_its_own_devices_and_only_an_owner_those_of_others() {
    let alice = DeviceIdentity::generate();
    let (bob_phone, bob_laptop) = (DeviceIdentity::generate(), DeviceIdentity::generate());
    let carol = DeviceIdentity::generate();
    let mut space = create_space(&alice, Policy::default());
    space.act(&alice, Action::Add { member: member("bob", &bob_phone, Role::Member) }).unwrap();
    space.act(&alice, Action::Add { member: member("carol", &carol, Role::Reader) }).unwrap();
    let epoch = space.log.state().epoch;
    let add_laptop =
        Action::AddDevice { handle: "bob".parse().unwrap(), device: bob_laptop.keys() };

    // Another member may not add a device to bob; bob's own device may.
    assert!(matches!(
        space.act(&carol, add_laptop.clone()),
        Err(CryptoError::Op(cairn_proto::membership::OpError::NotAllowed))
    ));
    space.act(&bob_phone, add_laptop.clone()).unwrap();
    let state = space.log.state();
    assert_eq!(state.epoch, epoch, "a device of a member who already reads needs no new key");
    assert_eq!(state.members["bob"].devices.len(), 2);
    assert!(state.was_member_device(&bob_laptop.id(), epoch));
    assert!(!state.was_member_device(&bob_laptop.id(), 0), "not before the epoch it joined in");
    // Twice, or a device some member already has: refused.
    assert!(space.act(&bob_phone, add_laptop.clone()).is_err());
    assert!(
        space
            .act(
                &alice,
                Action::AddDevice { handle: "alice".parse().unwrap(), device: carol.keys() }
            )
            .is_err()
    );
    // The new device signs notes that open for everyone, in the current epoch.
    let key = EpochKey::generate();
    let by_laptop = seal_note(
        &bob_laptop,
        &key,
        header(space.id(), epoch, &bob_laptop, NoteKind::Text),
        &NoteBody::text("bob", "from the laptop", Pose::default()),
    );
    assert!(open_note(space.log.state(), &key, &by_laptop).is_ok());

    // Removing: not by another member; not a member's last device; by bob himself.
    let remove_laptop =
        Action::RemoveDevice { handle: "bob".parse().unwrap(), device: bob_laptop.id() };
    assert!(space.act(&carol, remove_laptop.clone()).is_err());
    assert!(
        space
            .act(
                &alice,
                Action::RemoveDevice { handle: "carol".parse().unwrap(), device: carol.id() }
            )
            .is_err(),
        "a member keeps at least one device"
    );
    space.act(&bob_phone, remove_laptop.clone()).unwrap();
    let after = space.log.state().epoch;
    assert!(after > epoch, "a removed device must not read what follows: a new epoch");
    assert!(!space.log.state().current_devices().contains(&bob_laptop.id()));
    assert!(space.log.state().current_devices().contains(&bob_phone.id()));
    let new_key = EpochKey::generate();
    let late = seal_note(
        &bob_laptop,
        &new_key,
        header(space.id(), after, &bob_laptop, NoteKind::Text),
        &NoteBody::text("bob", "still here?", Pose::default()),
    );
    assert!(matches!(open_note(space.log.state(), &new_key, &late), Err(CryptoError::NotAMember)));
    assert!(open_note(space.log.state(), &key, &by_laptop).is_ok(), "what it wrote before stays");
    assert!(space.act(&bob_phone, remove_laptop).is_err(), "not a device of bob any more");
    // An owner manages anyone's devices; the log replays to the same state.
    space.act(&alice, add_laptop).unwrap();
    assert!(space.log.state().was_member_device(&bob_laptop.id(), after));
    let replayed = MembershipLog::replay(&space.ops).unwrap();
    assert_eq!(replayed.state().members, space.log.state().members);
    assert_eq!(replayed.state().epoch, space.log.state().epoch);
}

#[test]
fn history_follows_the_space_policy() {
    for history in [true, false] {
        let alice = DeviceIdentity::generate();
        let bob = DeviceIdentity::generate();
        let mut space =
            create_space(&alice, Policy { history_for_new_members: history, ..Policy::default() });
        space.act(&alice, Action::Add { member: member("bob", &bob, Role::Member) }).unwrap();
        let readable = space.log.state().readable_epochs(&Handle::from_static("bob"));
        if history {
            assert_eq!(readable, vec![0, 1]);
        } else {
            assert_eq!(readable, vec![1]);
        }
    }
}

#[test]
fn envelopes_reject_tampering_and_the_wrong_recipient() {
    let alice = DeviceIdentity::generate();
    let bob = DeviceIdentity::generate();
    let eve = DeviceIdentity::generate();
    let key = EpochKey::generate();
    let env =
        wrap_epoch_key(&alice, SpaceId([1; 16]), 3, &bob.id(), &bob.keys().agree, &key).unwrap();
    assert!(unwrap_epoch_key(&eve, &env).is_err());
    let mut redirected = env.clone();
    redirected.recipient = eve.id();
    assert!(unwrap_epoch_key(&eve, &redirected).is_err());
    for i in 0..env.wrapped.len() {
        let mut bad = env.clone();
        bad.wrapped[i] ^= 1;
        // Re-signed by the creator: only the HPKE layer stands between.
        bad.signature = alice.sign(&sign::envelope_payload(
            &bad.space,
            bad.epoch,
            &bad.recipient,
            &bad.creator,
            &bad.wrapped,
        ));
        assert!(unwrap_epoch_key(&bob, &bad).is_err(), "byte {i}");
    }
    let mut moved = env.clone();
    moved.epoch = 4;
    moved.signature = alice.sign(&sign::envelope_payload(
        &moved.space,
        4,
        &moved.recipient,
        &moved.creator,
        &moved.wrapped,
    ));
    assert!(unwrap_epoch_key(&bob, &moved).is_err(), "an envelope moved to another epoch");
}

#[test]
fn media_truncation_reordering_swapping_and_extension_are_rejected() {
    let data: Vec<u8> = (0..(3 * CHUNK_SIZE + 1000)).map(|i| (i * 7 % 251) as u8).collect();
    let (key, ct, hash) = encrypt_blob(&data);
    assert_eq!(decrypt_blob(&key, &ct, Some(&hash)).unwrap(), data);
    let chunk = CHUNK_SIZE + 16;
    // Truncated at a chunk boundary and mid-chunk.
    assert!(decrypt_blob(&key, &ct[..2 * chunk], None).is_err());
    assert!(decrypt_blob(&key, &ct[..ct.len() - 1], None).is_err());
    assert!(decrypt_blob(&key, &[], None).is_err());
    // Reordered chunks.
    let mut swapped = ct.clone();
    let (a, b) = swapped.split_at_mut(chunk);
    a.swap_with_slice(&mut b[..chunk]);
    assert!(decrypt_blob(&key, &swapped, None).is_err());
    // A chunk from another blob under another key, and extension after the last chunk.
    let (_, other, _) = encrypt_blob(&data);
    let mut spliced = ct.clone();
    spliced[chunk..2 * chunk].copy_from_slice(&other[chunk..2 * chunk]);
    assert!(decrypt_blob(&key, &spliced, None).is_err());
    let mut extended = ct.clone();
    extended.extend_from_slice(&ct[..chunk]);
    assert!(decrypt_blob(&key, &extended, None).is_err());
    // Wrong address.
    assert!(decrypt_blob(&key, &ct, Some(&MediaHash([0; 32]))).is_err());
    // Exact multiple of the chunk size, and empty, round-trip.
    for len in [0, CHUNK_SIZE, 2 * CHUNK_SIZE] {
        let (k, c, h) = encrypt_blob(&data[..len]);
        assert_eq!(decrypt_blob(&k, &c, Some(&h)).unwrap(), &data[..len]);
    }
}

/// The whole-blob paths (written straight into their output, on several threads
/// from 1 MiB up) give exactly the streaming encryptor's bytes and address, and their
/// errors say what was wrong: a wrong key is not reported as a wrong address.
#[test]
fn whole_blob_encryption_matches_the_stream_on_both_sides_of_the_thread_threshold() {
    let data: Vec<u8> = (0..(20 * CHUNK_SIZE + 5)).map(|i| (i * 13 % 253) as u8).collect();
    for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 16 * CHUNK_SIZE, 16 * CHUNK_SIZE + 1, data.len()]
    {
        let key = MediaKey::generate();
        let (ct, hash) = encrypt_blob_with(&key, &data[..len]);
        let mut enc = MediaEncryptor::new(&key);
        let mut streamed = Vec::new();
        let mut chunks = data[..len].chunks(CHUNK_SIZE).peekable();
        while let Some(part) = chunks.next() {
            let last = chunks.peek().is_none() && part.len() < CHUNK_SIZE;
            enc.seal_chunk(part, last, &mut streamed);
        }
        if len % CHUNK_SIZE == 0 {
            enc.seal_chunk(&[], true, &mut streamed);
        }
        assert_eq!(ct, streamed, "{len} bytes");
        assert_eq!(hash, enc.hash(), "{len} bytes");
        assert_eq!(ct.len(), cairn_crypto::media::sealed_len(len));
        assert_eq!(decrypt_blob(&key, &ct, Some(&hash)).unwrap(), &data[..len]);
        // The right address under the wrong key: a decryption failure, not an address one.
        let wrong = decrypt_blob(&MediaKey::generate(), &ct, Some(&hash)).unwrap_err();
        assert!(matches!(wrong, CryptoError::DecryptFailed), "{len} bytes: {wrong}");
        let mut flipped = ct.clone();
        flipped[len / 2] ^= 1;
        let e = decrypt_blob(&key, &flipped, Some(&hash)).unwrap_err();
        assert!(e.to_string().contains("address"), "{len} bytes: {e}");
        let e = decrypt_blob(&key, &flipped, None).unwrap_err();
        assert!(matches!(e, CryptoError::DecryptFailed), "{len} bytes: {e}");
    }
    // Cut at a chunk boundary: the last full chunk only opens as non-final.
    let key = MediaKey::generate();
    let (ct, _) = encrypt_blob_with(&key, &data);
    let cut = &ct[..2 * (CHUNK_SIZE + 16)];
    assert!(matches!(decrypt_blob(&key, cut, None), Err(CryptoError::Truncated)));
    assert!(decrypt_blob(&key, &ct[..ct.len() - 30], None).is_err());
    assert!(matches!(decrypt_blob(&key, &ct[..10], None), Err(CryptoError::Truncated)));
}

#[test]
fn streaming_decryption_accepts_any_slicing() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let (key, ct, _) = encrypt_blob(&data);
    for piece in [1usize, 1000, CHUNK_SIZE + 16, 100_000] {
        let mut dec = MediaDecryptor::new(&key);
        let mut out = Vec::new();
        for part in ct.chunks(piece) {
            dec.push(part, &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        assert_eq!(out, data, "piece {piece}");
    }
}

#[test]
fn an_addressed_stream_gives_out_only_opened_chunks_and_refuses_another_address() {
    let data: Vec<u8> = (0..(3 * CHUNK_SIZE + 500) as u32).map(|i| (i % 251) as u8).collect();
    let (key, ct, hash) = encrypt_blob(&data);
    // The right address: the same plaintext, chunk by chunk as the chunks complete.
    let mut dec = MediaDecryptor::addressed(&key, hash);
    let mut out = Vec::new();
    dec.push(&ct[..media::SEALED_CHUNK_SIZE + 1], &mut out).unwrap();
    assert_eq!(out, data[..CHUNK_SIZE], "a whole chunk comes out once it is known not last");
    dec.push(&ct[media::SEALED_CHUNK_SIZE + 1..], &mut out).unwrap();
    dec.finish(&mut out).unwrap();
    assert_eq!(out, data);
    // Another address: refused as such at the end.
    let mut dec = MediaDecryptor::addressed(&key, MediaHash([7; 32]));
    let mut out = Vec::new();
    dec.push(&ct, &mut out).unwrap();
    assert!(matches!(dec.finish(&mut out), Err(CryptoError::WrongAddress)));
    // A chunk changed in flight: nothing from it comes out.
    let mut bad = ct.clone();
    bad[media::SEALED_CHUNK_SIZE + 10] ^= 1;
    let mut dec = MediaDecryptor::addressed(&key, hash);
    let mut out = Vec::new();
    assert!(dec.push(&bad, &mut out).is_err());
    assert_eq!(out, data[..CHUNK_SIZE], "only the chunk before the damage");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let id = DeviceIdentity::generate();
    let secret = id.to_bytes();
    let dbg = format!("{id:?} {:?} {:?}", EpochKey::from_bytes([0xAB; 32]), MediaKey::generate());
    assert!(!dbg.contains("ab, ab") && !dbg.contains("171"), "{dbg}");
    assert!(dbg.contains("redacted"));
    let hexed = hex::encode(&secret[..]);
    assert!(!dbg.contains(&hexed[..16]));
    // And the identity round-trips through its stable form.
    assert_eq!(DeviceIdentity::from_bytes(&secret).unwrap().keys(), id.keys());
}

#[test]
fn device_lists_verify_and_reject_forgeries() {
    let first = DeviceIdentity::generate();
    let second = DeviceIdentity::generate();
    let records = vec![
        DeviceRecord {
            keys: first.keys(),
            added_by: None,
            signature: first
                .sign(&sign::add_device_payload(&Handle::from_static("alice"), &first.keys())),
            revoked: false,
        },
        DeviceRecord {
            keys: second.keys(),
            added_by: Some(first.id()),
            signature: first
                .sign(&sign::add_device_payload(&Handle::from_static("alice"), &second.keys())),
            revoked: false,
        },
    ];
    assert_eq!(verify_device_list(&Handle::from_static("alice"), &records).unwrap().len(), 2);
    assert!(
        verify_device_list(&Handle::from_static("mallory"), &records).is_err(),
        "list moved to another user"
    );
    let mut slipped = records.clone();
    let eve = DeviceIdentity::generate();
    slipped.push(DeviceRecord {
        keys: eve.keys(),
        added_by: Some(eve.id()),
        signature: eve.sign(&sign::add_device_payload(&Handle::from_static("alice"), &eve.keys())),
        revoked: false,
    });
    assert!(
        verify_device_list(&Handle::from_static("alice"), &slipped).is_err(),
        "a server slipped in a device"
    );
    // Safety codes: stable, order independent, and different for different devices.
    let a = safety_code(&Handle::from_static("alice"), &[first.keys(), second.keys()]);
    assert_eq!(a, safety_code(&Handle::from_static("alice"), &[second.keys(), first.keys()]));
    assert_ne!(a, safety_code(&Handle::from_static("alice"), &[first.keys(), eve.keys()]));
    assert_eq!(a.len(), 6 * 5 + 5);
}

#[test]
fn decoders_of_untrusted_input_return_errors_on_garbage() {
    let mut seed = 0x9E3779B97F4A7C15u64;
    let alice = DeviceIdentity::generate();
    let space = create_space(&alice, Policy::default());
    let key = EpochKey::generate();
    for len in 0..2000usize {
        let bytes: Vec<u8> = (0..len % 300)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = cairn_proto::decode::<NoteBody>(&bytes);
        let _ = cairn_proto::decode::<KeyEnvelope>(&bytes);
        let _ = cairn_proto::decode::<ServerFrame>(&bytes);
        let _ = cairn_proto::decode::<ClientFrame>(&bytes);
        let _ = MembershipLog::replay(&[SignedOp {
            body: bytes.clone(),
            signature: Signature([0; 64]),
        }]);
        let _ = DeviceIdentity::from_bytes(&bytes);
        let _ = decrypt_blob(&MediaKey::generate(), &bytes, None);
        let note = SealedNote {
            header: header(space.id(), 0, &alice, NoteKind::Text),
            ciphertext: bytes.clone(),
            signature: Signature([0; 64]),
        };
        assert!(open_note(space.log.state(), &key, &note).is_err());
        let env = KeyEnvelope {
            space: space.id(),
            epoch: 0,
            recipient: alice.id(),
            creator: alice.id(),
            wrapped: bytes.clone(),
            signature: alice.sign(&sign::envelope_payload(
                &space.id(),
                0,
                &alice.id(),
                &alice.id(),
                &bytes,
            )),
        };
        assert!(unwrap_epoch_key(&alice, &env).is_err());
    }
}

fn arb_body() -> impl Strategy<Value = NoteBody> {
    (
        ".{0,200}",
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::array::uniform3(-100f32..100.0),
        proptest::option::of(any::<[u8; 16]>()),
        any::<u64>(),
    )
        .prop_map(|(text, waveform, position, reply, created_at)| NoteBody {
            waveform,
            reply_to: reply.map(NoteId),
            created_at,
            ..NoteBody::text("alice", &text, Pose { position, rotation: [0.0, 0.0, 0.0, 1.0] })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn seal_open_round_trips_for_arbitrary_notes(body in arb_body(), id in any::<[u8; 16]>()) {
        let alice = DeviceIdentity::generate();
        let space = create_space(&alice, Policy::default());
        let key = EpochKey::generate();
        let mut h = header(space.id(), 0, &alice, NoteKind::Text);
        h.note_id = NoteId(id);
        let sealed = seal_note(&alice, &key, h, &body);
        prop_assert_eq!(open_note(space.log.state(), &key, &sealed).unwrap(), body);
    }

    #[test]
    fn membership_log_invariants(actions in proptest::collection::vec((0u8..4, 0usize..4, 0u8..3), 0..20)) {
        // Random sequences of adds/removes/role changes by the owner: every accepted log
        // replays to the same state, epochs only grow, and a space always keeps an owner.
        let owner = DeviceIdentity::generate();
        let people: Vec<DeviceIdentity> = (0..4).map(|_| DeviceIdentity::generate()).collect();
        let mut space = create_space(&owner, Policy::default());
        let mut last_epoch = 0;
        for (kind, who, role) in actions {
            let handle: Handle = format!("user{who}").parse().unwrap();
            let role = [Role::Reader, Role::Member, Role::Owner][role as usize];
            let action = match kind {
                0 => Action::Add { member: member(&handle, &people[who], role) },
                1 => Action::Remove { handle },
                2 => Action::SetRole { handle, role },
                _ => Action::SetPolicy { policy: Policy { history_for_new_members: role == Role::Owner, ..Policy::default() } },
            };
            let _ = space.act(&owner, action);
            let s = space.log.state();
            prop_assert!(s.epoch >= last_epoch);
            last_epoch = s.epoch;
            prop_assert!(s.members.values().any(|m| m.role == Role::Owner));
            prop_assert!(s.has_epoch(s.epoch));
            for d in s.current_devices() { prop_assert!(s.was_member_device(&d, s.epoch)); }
        }
        let replayed = MembershipLog::replay(&space.ops).unwrap();
        prop_assert_eq!(replayed.state().head, space.log.state().head);
        prop_assert_eq!(&replayed.state().members, &space.log.state().members);
    }
}

#[test]
fn an_anchor_travels_with_its_offset_and_one_written_without_an_offset_still_reads() {
    use cairn_crypto::{Pose, SpatialAnchor};
    let anchor = SpatialAnchor {
        kind: "msft".into(),
        id: b"cairn-7".to_vec(),
        offset: Pose { position: [0.0, 1.2, 0.3], rotation: [0.0, 0.0, 0.0, 1.0] },
    };
    let back: SpatialAnchor = cairn_proto::decode(&cairn_proto::encode(&anchor)).unwrap();
    assert_eq!(back, anchor);
    // {"kind": "fb", "id": h'0707'}: a note's anchor from before offsets existed.
    #[derive(serde::Serialize)]
    struct Old {
        kind: String,
        #[serde(with = "serde_bytes")]
        id: Vec<u8>,
    }
    let old = cairn_proto::encode(&Old { kind: "fb".into(), id: vec![7, 7] });
    let read: SpatialAnchor = cairn_proto::decode(&old).unwrap();
    assert_eq!((read.kind.as_str(), read.id.as_slice()), ("fb", &[7u8, 7][..]));
    assert_eq!(read.offset, Pose::default(), "no offset: the anchor's own pose");
}

/// An op that starts an epoch must confirm its key, and no other op may carry one: the log
/// refuses both, so every epoch a reader sees has a key it can check.
#[test]
fn key_confirmations_are_required_exactly_on_epoch_ops() {
    let alice = DeviceIdentity::generate();
    let bob = DeviceIdentity::generate();
    let space = create_space(&alice, Policy::default());
    let add = Action::Add { member: member("bob", &bob, Role::Member) };
    let unconfirmed = sign_op(&alice, &space.log.next_op(&alice, add, None));
    assert!(space.log.clone().append(&unconfirmed).is_err());
    let policy = Action::SetPolicy { policy: Policy::default() };
    let key = EpochKey::generate();
    let stray = sign_op(&alice, &space.log.next_op(&alice, policy, Some(&key)));
    assert!(space.log.clone().append(&stray).is_err());
    // The key a reader is handed must match the confirmation.
    assert!(check_epoch_key(space.log.state(), 0, &space.keys[&0]).is_ok());
    assert!(check_epoch_key(space.log.state(), 0, &key).is_err());
}

fn kitchen() -> PlaceRecord {
    PlaceRecord {
        name: "Kitchen".into(),
        description: "the two top corners of the door to the hall".into(),
        marks: vec![
            PlaceMark { name: "left corner".into(), position: [0.0, 2.0, 0.0] },
            PlaceMark { name: "right corner".into(), position: [0.9, 2.0, 0.0] },
        ],
    }
}

/// A place record and a note's place pose travel sealed; a reader refuses a place without
/// its record, a record on any other kind, and a record no device could align with.
#[test]
fn a_place_and_a_note_in_it_round_trip_and_a_broken_place_is_refused() {
    let alice = DeviceIdentity::generate();
    let space = create_space(&alice, Policy::default());
    let key = EpochKey::generate();
    let seal =
        |kind, body: &NoteBody| seal_note(&alice, &key, header(space.id(), 0, &alice, kind), body);
    let mut place = NoteBody::text("alice", "", Pose::default());
    place.kind = NoteKind::Place;
    place.place_record = Some(kitchen());
    let opened = open_note(space.log.state(), &key, &seal(NoteKind::Place, &place)).unwrap();
    assert_eq!(opened.place_record, Some(kitchen()));

    let mut note = NoteBody::text("alice", "the basil", Pose::default());
    let at = Pose { position: [0.4, 1.1, -0.3], rotation: [0.0, 0.38268343, 0.0, 0.9238795] };
    note.place = Some(PlacePose { place: NoteId([9; 16]), pose: at });
    let opened = open_note(space.log.state(), &key, &seal(NoteKind::Text, &note)).unwrap();
    assert_eq!(opened.place, note.place);

    // A body without a place encodes exactly as before places existed (no new keys).
    let plain = NoteBody::text("alice", "x", Pose::default());
    let cbor = cairn_proto::encode(&plain);
    assert!(!cbor.windows(5).any(|w| w == b"place"), "no place keys in a plain body");

    let refused = |kind, body: &NoteBody| {
        let e = open_note(space.log.state(), &key, &seal(kind, body)).unwrap_err();
        assert!(matches!(e, CryptoError::Malformed { .. }), "{e}");
        e.to_string()
    };
    let mut bare = place.clone();
    bare.place_record = None;
    assert!(refused(NoteKind::Place, &bare).contains("without its record"));
    let mut text_with_record = note.clone();
    text_with_record.place_record = Some(kitchen());
    assert!(refused(NoteKind::Text, &text_with_record).contains("place record on a note"));
    let broken = |f: &dyn Fn(&mut PlaceRecord)| {
        let mut b = place.clone();
        f(b.place_record.as_mut().unwrap());
        refused(NoteKind::Place, &b)
    };
    assert!(broken(&|r| r.marks.truncate(1)).contains("2 to 8 reference marks"));
    assert!(broken(&|r| r.marks[1].position = r.marks[0].position).contains("same point"));
    assert!(broken(&|r| r.marks[1].position[0] = f32::NAN).contains("not a position"));
    assert!(broken(&|r| r.name = " ".into()).contains("name"));
    assert!(broken(&|r| r.marks[0].name.clear()).contains("mark 1 needs a name"));
}

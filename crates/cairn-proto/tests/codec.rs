//! The codec: round trips, limits, and every way bytes can be wrong.

use cairn_proto::*;
use proptest::prelude::*;

fn frame(request: Request) -> ClientFrame {
    ClientFrame { id: 7, request }
}

#[test]
fn every_request_kind_round_trips() {
    let dev = DeviceId([1; 32]);
    let keys = DeviceKeys { sign: dev, agree: AgreeKey([2; 32]) };
    let space = SpaceId([3; 16]);
    let sig = Signature([4; 64]);
    let op = SignedOp { body: vec![1, 2, 3], signature: sig };
    let note = SealedNote {
        header: NoteHeader {
            space,
            epoch: 2,
            sender: dev,
            note_id: NoteId([5; 16]),
            kind: NoteKind::Voice,
            expires_at: Some(9),
            media: vec![MediaHash([6; 32])],
        },
        ciphertext: vec![7; 100],
        signature: sig,
    };
    // A note's entry encoded by reference is the owned entry's CBOR, byte for byte.
    let item = EntryItem::encode_note(&note);
    assert_eq!(item, encode(&EntryItem::Note(note.clone())));
    assert_eq!(decode::<EntryItem>(&item).unwrap(), EntryItem::Note(note.clone()));
    let requests = vec![
        Request::Hello { versions: vec![1, 2], client: "t".into() },
        Request::Register {
            handle: "a".parse().unwrap(),
            device: keys,
            invite: Some("i".into()),
            signature: sig,
            self_signature: sig,
        },
        Request::Login { device: dev, signature: sig },
        Request::Resume { token: "x.y".into() },
        Request::ListDevices { handle: "a".parse().unwrap() },
        Request::AddDevice { device: keys, signature: sig },
        Request::RevokeDevice { device: dev, signature: sig },
        Request::CreateSpace { op: op.clone() },
        Request::ChangeMembership { op },
        Request::GetMembership { space, from: 3 },
        Request::ListSpaces,
        Request::PutEnvelopes {
            envelopes: vec![KeyEnvelope {
                space,
                epoch: 1,
                recipient: dev,
                creator: dev,
                wrapped: vec![1; 80],
                signature: sig,
            }],
        },
        Request::GetEnvelopes { space },
        Request::PostNote { note },
        Request::DeleteNote { space, note_id: NoteId([5; 16]), signature: sig },
        Request::Sync { space, after: 0, limit: 500 },
    ];
    for r in requests {
        let f = frame(r);
        assert_eq!(decode::<ClientFrame>(&encode(&f)).unwrap(), f);
    }
}

#[test]
fn ids_travel_as_byte_strings_of_exact_length() {
    let bytes = encode(&SpaceId([9; 16]));
    assert_eq!(bytes[0], 0x50, "major type 2, length 16");
    assert!(decode::<SpaceId>(&encode(&serde_bytes::Bytes::new(&[1; 15]))).is_err());
    assert!(decode::<SpaceId>(&encode(&serde_bytes::Bytes::new(&[1; 17]))).is_err());
    assert!(
        decode::<SpaceId>(&encode(&vec![1u8; 16])).is_err(),
        "an array of integers is not a byte string"
    );
    assert_eq!(SpaceId::from_hex(&SpaceId([0xab; 16]).to_hex()), Some(SpaceId([0xab; 16])));
    assert_eq!(SpaceId::from_hex("zz"), None);
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let good = encode(&frame(Request::ListSpaces));
    assert!(matches!(
        decode::<ClientFrame>(&[good.clone(), vec![0]].concat()),
        Err(DecodeError::Trailing(1))
    ));
    assert!(decode::<ClientFrame>(&good[..good.len() - 1]).is_err());
    assert!(decode::<ClientFrame>(&[]).is_err());
    assert!(decode::<ClientFrame>(&vec![0x81; 10_000]).is_err(), "deep nesting is refused");
    assert!(matches!(
        decode::<ClientFrame>(&vec![0; MAX_FRAME_BYTES + 1]),
        Err(DecodeError::TooLarge(..))
    ));
    // A byte string claiming to be 4 GiB long, in 9 bytes.
    assert!(
        decode::<ClientFrame>(&[0xa2, 0x62, b'i', b'd', 0x5b, 0, 0, 0, 1, 0, 0, 0, 0]).is_err()
    );
}

#[test]
fn handles_are_checked() {
    for ok in ["alice", "a", "bob.smith", "x_1-2", &"a".repeat(32)] {
        assert_eq!(Handle::new(ok).map(String::from).as_deref(), Ok(ok));
    }
    for bad in ["", "Alice", ".dot", "-dash", "with space", "ünï", &"a".repeat(33), "a/b"] {
        assert_eq!(Handle::new(bad), Err(BadHandle), "{bad}");
    }
}

/// A handle is checked where it is decoded: a frame naming a bad one is malformed, and
/// so is a signed operation's member.
#[test]
fn a_frame_with_a_bad_handle_does_not_decode() {
    let frame = ClientFrame {
        id: 1,
        request: Request::ListDevices { handle: Handle::new("alice").unwrap() },
    };
    let good = encode(&frame);
    assert_eq!(decode::<ClientFrame>(&good).unwrap(), frame);
    let at = good.windows(5).position(|w| w == b"alice").unwrap();
    for bad in [&b"Alice"[..], b"al ce", b".lice"] {
        let mut bytes = good.clone();
        bytes[at..at + 5].copy_from_slice(bad);
        let e = decode::<ClientFrame>(&bytes).unwrap_err().to_string();
        assert!(e.contains("a handle has 1 to 32 characters"), "{e}");
    }
}

#[test]
fn signing_payloads_are_domain_separated() {
    let space = SpaceId([1; 16]);
    let id = NoteId([2; 16]);
    let payloads = [
        sign::delete_payload(&space, &id),
        sign::op_payload(&[1, 2]),
        sign::login_payload(&Challenge([0; 32]), &DeviceId([0; 32])),
        sign::add_device_payload(
            &Handle::from_static("a"),
            &DeviceKeys { sign: DeviceId([0; 32]), agree: AgreeKey([0; 32]) },
        ),
    ];
    for (i, a) in payloads.iter().enumerate() {
        for b in &payloads[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

proptest! {
    #[test]
    fn notes_round_trip(epoch in any::<u64>(), expires in proptest::option::of(any::<u64>()), body in proptest::collection::vec(any::<u8>(), 0..2000), id in any::<u64>()) {
        let f = frame(Request::PostNote { note: SealedNote {
            header: NoteHeader { space: SpaceId([1; 16]), epoch, sender: DeviceId([2; 32]), note_id: NoteId([3; 16]), kind: NoteKind::Text, expires_at: expires, media: vec![] },
            ciphertext: body,
            signature: Signature([4; 64]),
        }});
        let f = ClientFrame { id, ..f };
        prop_assert_eq!(decode::<ClientFrame>(&encode(&f)).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ClientFrame>(&bytes);
        let _ = decode::<ServerFrame>(&bytes);
        let _ = decode::<MembershipOp>(&bytes);
    }
}

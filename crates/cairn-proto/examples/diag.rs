//! Prints example messages in CBOR diagnostic notation (RFC 8949 §8) for docs/PROTOCOL.md:
//! `cargo run -p cairn-proto --example diag`.

use cairn_proto::*;
use ciborium::Value;

fn diag(v: &Value) -> String {
    match v {
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Bytes(b) if b.len() > 12 => {
            format!("h'{}…'({} bytes)", hex::encode(&b[..6]), b.len())
        }
        Value::Bytes(b) => format!("h'{}'", hex::encode(b)),
        Value::Float(f) => format!("{f:?}"),
        Value::Text(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Tag(t, v) => format!("{t}({})", diag(v)),
        Value::Array(a) => format!("[{}]", a.iter().map(diag).collect::<Vec<_>>().join(", ")),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", diag(k), diag(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "?".into(),
    }
}

fn show<T: serde::Serialize>(title: &str, value: &T) {
    let bytes = encode(value);
    let v: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
    println!("{title} ({} bytes):\n    {}\n", bytes.len(), diag(&v));
}

fn main() {
    let dev = DeviceId([0xd1; 32]);
    let keys = DeviceKeys { sign: dev, agree: AgreeKey([0xa9; 32]) };
    let space = SpaceId([0x5a; 16]);
    let note_id = NoteId([0x4e; 16]);
    show(
        "hello",
        &ClientFrame {
            id: 1,
            request: Request::Hello {
                versions: vec![PROTOCOL_VERSION],
                client: "cairn-client 0.1.0".into(),
            },
        },
    );
    show(
        "welcome",
        &ServerFrame::Response {
            id: 1,
            result: Ok(Response::Welcome {
                version: PROTOCOL_VERSION,
                server: "cairn-server 0.1.0".into(),
                challenge: Challenge([7; 32]),
                limits: Limits {
                    max_frame_bytes: 524288,
                    max_note_bytes: 393216,
                    max_media_bytes: 67108864,
                    sync_page: 500,
                },
            }),
        },
    );
    show(
        "register",
        &ClientFrame {
            id: 2,
            request: Request::Register {
                handle: "alice".parse().unwrap(),
                device: keys,
                invite: None,
                signature: Signature([1; 64]),
                self_signature: Signature([2; 64]),
            },
        },
    );
    show(
        "login",
        &ClientFrame {
            id: 2,
            request: Request::Login { device: dev, signature: Signature([1; 64]) },
        },
    );
    show(
        "session",
        &ServerFrame::Response {
            id: 2,
            result: Ok(Response::Session(Session {
                handle: "alice".parse().unwrap(),
                device: dev,
                token: "a16…f0.9c…".into(),
                expires_at: 1_790_000_000_000,
            })),
        },
    );
    let op = MembershipOp {
        space,
        index: 0,
        prev: OpHash::default(),
        actor: dev,
        at: 1_790_000_000_000,
        action: Action::Create {
            name: "kitchen".into(),
            owner: Member {
                handle: "alice".parse().unwrap(),
                role: Role::Owner,
                devices: vec![keys],
            },
            policy: Policy::default(),
        },
        key_confirm: Some(KeyConfirm([0xcf; 32])),
    };
    show("membership op body (signed as [\"cairn/op/v1\", body])", &op);
    show(
        "create_space",
        &ClientFrame {
            id: 3,
            request: Request::CreateSpace {
                op: SignedOp { body: encode(&op), signature: Signature([3; 64]) },
            },
        },
    );
    show(
        "op_accepted",
        &ServerFrame::Response { id: 3, result: Ok(Response::OpAccepted { index: 0, epoch: 0 }) },
    );
    let laptop = DeviceKeys { sign: DeviceId([0xd2; 32]), agree: AgreeKey([0xaa; 32]) };
    show(
        "membership op body: alice's phone adds her laptop to the space",
        &MembershipOp {
            space,
            index: 7,
            prev: OpHash([0x6f; 32]),
            actor: dev,
            at: 1_790_000_100_000,
            action: Action::AddDevice { handle: "alice".parse().unwrap(), device: laptop },
            key_confirm: None,
        },
    );
    let header = NoteHeader {
        space,
        epoch: 0,
        sender: dev,
        note_id,
        kind: NoteKind::Text,
        expires_at: None,
        media: vec![],
    };
    let note = SealedNote {
        header: header.clone(),
        ciphertext: vec![0xc7; 120],
        signature: Signature([4; 64]),
    };
    show("post_note", &ClientFrame { id: 4, request: Request::PostNote { note: note.clone() } });
    show(
        "posted",
        &ServerFrame::Response {
            id: 4,
            result: Ok(Response::Posted { seq: 42, duplicate: false }),
        },
    );
    show("sync", &ClientFrame { id: 5, request: Request::Sync { space, after: 41, limit: 500 } });
    show(
        "entries",
        &ServerFrame::Response {
            id: 5,
            result: Ok(Response::Entries {
                space,
                entries: vec![SpaceEntry {
                    seq: 42,
                    stored_at: 1_790_000_000_123,
                    item: EntryItem::Note(note),
                }],
                more: false,
            }),
        },
    );
    show(
        "event: entry (tombstone)",
        &ServerFrame::Event(Event::Entry {
            space,
            entry: SpaceEntry {
                seq: 43,
                stored_at: 1_790_000_000_456,
                item: EntryItem::Tombstone {
                    note_id,
                    by: Some(dev),
                    signature: Some(Signature([5; 64])),
                },
            },
        }),
    );
    show(
        "envelope",
        &KeyEnvelope {
            space,
            epoch: 0,
            recipient: dev,
            creator: dev,
            wrapped: vec![0xee; 80],
            signature: Signature([6; 64]),
        },
    );
    show(
        "error",
        &ServerFrame::Response {
            id: 6,
            result: Err(ProtoError::new(ErrorCode::Forbidden, "not a member of this space")),
        },
    );
    show(
        "note signature payload",
        &("cairn/note/v1", &header, serde_bytes::Bytes::new(&[0xc7; 120])),
    );
}

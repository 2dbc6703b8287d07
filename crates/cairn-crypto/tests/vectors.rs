//! Known-answer vectors for another implementation: `docs/vectors/*.json`. Every value is
//! computed here from fixed inputs and must equal the file; then the file's own bytes are
//! opened (note, envelope, media) with nothing but the file's inputs. Run with
//! `CAIRN_WRITE_VECTORS=1` to write the files after a deliberate change of the scheme.
//! docs/PROTOCOL.md §9 says how another implementation uses them.

use cairn_crypto::*;
use cairn_proto::*;
use serde_json::{Value, json};
use std::path::PathBuf;

fn h(bytes: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(bytes))
}

fn unhex(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string")))
        .unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn arr<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    unhex(v, field).try_into().unwrap_or_else(|_| panic!("{field} is not {N} bytes"))
}

const SIGN_SEED: [u8; 32] = [0x11; 32];
const AGREE_SECRET: [u8; 32] = [0x22; 32];
const RECIPIENT_SIGN_SEED: [u8; 32] = [0x33; 32];
const RECIPIENT_AGREE_SECRET: [u8; 32] = [0x44; 32];
const SPACE: SpaceId = SpaceId([0x5a; 16]);

fn sender() -> DeviceIdentity {
    DeviceIdentity::from_secrets(&SIGN_SEED, &AGREE_SECRET)
}

fn device_json(id: &DeviceIdentity, sign_seed: [u8; 32], agree_secret: [u8; 32]) -> Value {
    json!({
        "sign_seed": h(sign_seed),
        "agree_secret": h(agree_secret),
        "device_id": h(id.id().0),
        "agree_public": h(id.keys().agree.0),
    })
}

fn note_vectors() -> Value {
    let me = sender();
    let epoch_key = EpochKey::from_bytes([0x77; 32]);
    let header = NoteHeader {
        space: SPACE,
        epoch: 3,
        sender: me.id(),
        note_id: NoteId([0x4e; 16]),
        kind: NoteKind::Text,
        expires_at: None,
        media: vec![],
    };
    let body = NoteBody {
        created_at: 1_790_000_000_000,
        ..NoteBody::text(
            "alice",
            "basil is on the sill",
            Pose { position: [1.0, 1.5, -2.0], rotation: [0.0, 0.0, 0.0, 1.0] },
        )
    };
    let nonce = [0x0c; 12];
    let sealed = seal_note_with_nonce(&me, &epoch_key, header.clone(), &body, nonce);
    json!({
        "about": "A text note sealed by `sender` under `epoch_key`. note_key = HKDF-SHA256(salt \"cairn/note-key/v1\", ikm epoch_key, info sender || note_id); ciphertext = nonce || AES-256-GCM(note_key, nonce, body_cbor, aad); signature by the sender over signature_payload. The body's author must be the handle that owns the sender device in the space's log (here: alice).",
        "sender": device_json(&me, SIGN_SEED, AGREE_SECRET),
        "epoch_key": h(epoch_key.as_bytes()),
        "header_cbor": h(encode(&header)),
        "body_cbor": h(encode(&body)),
        "note_key": h(*note_key(&epoch_key, &header)),
        "nonce": h(nonce),
        "aad": h(associated_data(&header)),
        "ciphertext": h(&sealed.ciphertext),
        "signature_payload": h(sign::note_payload(&header, &sealed.ciphertext)),
        "signature": h(sealed.signature.0),
        "sealed_note_cbor": h(encode(&sealed)),
    })
}

fn envelope_vectors() -> Value {
    let creator = sender();
    let recipient = DeviceIdentity::from_secrets(&RECIPIENT_SIGN_SEED, &RECIPIENT_AGREE_SECRET);
    let epoch_key = EpochKey::from_bytes([0x77; 32]);
    json!({
        "about": "An envelope of `epoch_key` for `recipient`, made by `creator`. HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; info = CBOR [\"cairn/epoch-key/v1\", space, epoch, recipient]; aad = creator's device id. HPKE's sender is randomized: open `envelope_cbor` with the recipient's secret and expect `epoch_key`, then check it against `key_confirm` (HKDF-SHA256(salt \"cairn/key-confirm/v1\", ikm key, info space || be64(epoch))), the value the op starting the epoch carries.",
        "creator": device_json(&creator, SIGN_SEED, AGREE_SECRET),
        "recipient": device_json(&recipient, RECIPIENT_SIGN_SEED, RECIPIENT_AGREE_SECRET),
        "space": h(SPACE.0),
        "epoch": 3,
        "epoch_key": h(epoch_key.as_bytes()),
        "info": h(hpke_info(&SPACE, 3, &recipient.id())),
        "key_confirm": h(key_confirmation(&epoch_key, &SPACE, 3).0),
    })
}

/// The envelope itself is randomized: it is written once and then only opened.
fn envelope_sample() -> KeyEnvelope {
    let recipient = DeviceIdentity::from_secrets(&RECIPIENT_SIGN_SEED, &RECIPIENT_AGREE_SECRET);
    let keys = recipient.keys();
    wrap_epoch_key(&sender(), SPACE, 3, &keys.sign, &keys.agree, &EpochKey::from_bytes([0x77; 32]))
        .unwrap()
}

fn media_vectors() -> Value {
    let key = MediaKey::from_bytes([0x6d; 32]);
    let blob = |plain: &[u8]| {
        let (ciphertext, hash) = encrypt_blob_with(&key, plain);
        let leaves: Vec<Value> =
            ciphertext.chunks(ADDRESS_PIECE).map(|c| h(address_leaf(c))).collect();
        json!({"plaintext_len": plain.len(), "address": h(hash.0), "leaves": leaves, "ciphertext_len": ciphertext.len(), "first_32": h(&ciphertext[..32.min(ciphertext.len())]), "last_32": h(&ciphertext[ciphertext.len().saturating_sub(32)..])})
    };
    let hello = encrypt_blob_with(&key, b"hello");
    let pattern: Vec<u8> = (0..CHUNK_SIZE + 10).map(|i| (i % 251) as u8).collect();
    let exact: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
    json!({
        "about": "STREAM media encryption under `key`: 64 KiB chunks, chunk i sealed with AES-256-GCM, nonce 0x00*7 || be32(i) || last, no aad; the address is SHA-256(0x01 || leaf_0 || leaf_1 || ...), leaf_i = SHA-256(0x00 || sealed chunk i) (the ciphertext cut into pieces of 65552 bytes, the last shorter). `pattern` plaintexts are byte i = i mod 251.",
        "key": h([0x6d; 32]),
        "hello": {"plaintext": h(b"hello"), "ciphertext": h(&hello.0), "address": h(hello.1.0)},
        "empty": {"ciphertext": h(encrypt_blob_with(&key, b"").0)},
        "pattern_one_chunk_exactly": blob(&exact),
        "pattern_two_chunks": blob(&pattern),
    })
}

fn signature_vectors() -> Value {
    let me = sender();
    let keys = me.keys();
    let challenge = Challenge([0x07; 32]);
    let header = NoteHeader {
        space: SPACE,
        epoch: 0,
        sender: me.id(),
        note_id: NoteId([0x4e; 16]),
        kind: NoteKind::Text,
        expires_at: Some(1_790_000_600_000),
        media: vec![MediaHash([0xab; 32])],
    };
    let op = MembershipOp {
        space: SPACE,
        index: 0,
        prev: OpHash::default(),
        actor: me.id(),
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
        key_confirm: Some(key_confirmation(&EpochKey::from_bytes([0x77; 32]), &SPACE, 0)),
    };
    let op_body = encode(&op);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("register", sign::register_payload(&challenge, &Handle::from_static("alice"), &keys)),
        ("login", sign::login_payload(&challenge, &me.id())),
        ("add_device", sign::add_device_payload(&Handle::from_static("alice"), &keys)),
        ("revoke_device", sign::revoke_device_payload(&Handle::from_static("alice"), &me.id())),
        ("op", sign::op_payload(&op_body)),
        ("note", sign::note_payload(&header, b"ciphertext")),
        ("delete", sign::delete_payload(&SPACE, &NoteId([0x4e; 16]))),
        ("envelope", sign::envelope_payload(&SPACE, 0, &me.id(), &me.id(), b"wrapped")),
    ];
    let mut out = serde_json::Map::new();
    for (name, payload) in payloads {
        out.insert(
            name.into(),
            json!({"payload": h(&payload), "signature": h(me.sign(&payload).0)}),
        );
    }
    json!({
        "about": "Every signature payload: the CBOR encoding of an array whose first element is the domain string, signed with Ed25519 (RFC 8032) by `device`. Inputs: challenge 07*32, handle \"alice\", space 5a*16, note id 4e*16, the device's own keys, `op_body` (a create op, whose SHA-256 is `op_hash`), `note_header` and the ciphertext \"ciphertext\", the wrapped bytes \"wrapped\".",
        "device": device_json(&me, SIGN_SEED, AGREE_SECRET),
        "challenge": h(challenge.0),
        "op_body": h(&op_body),
        "op_hash": h(sha256(&op_body)),
        "note_header": h(encode(&header)),
        "payloads": Value::Object(out),
    })
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors")
}

fn check(name: &str, computed: Value) -> Value {
    let path = dir().join(format!("{name}.json"));
    if std::env::var_os("CAIRN_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CAIRN_WRITE_VECTORS=1 writes it)", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    if let (Value::Object(c), Value::Object(s)) = (&computed, &stored) {
        for (k, v) in c {
            assert_eq!(Some(v), s.get(k), "{name}.json: {k} differs from what the code computes");
        }
    }
    stored
}

#[test]
fn note_vector_matches_and_opens() {
    let v = check("note", note_vectors());
    // From the file alone: the sender's keys, the epoch key and the sealed note.
    let s = &v["sender"];
    let me = DeviceIdentity::from_secrets(&arr(s, "sign_seed"), &arr(s, "agree_secret"));
    assert_eq!(me.id().0, arr::<32>(s, "device_id"));
    let sealed: SealedNote = decode(&unhex(&v, "sealed_note_cbor")).unwrap();
    let key = EpochKey::from_bytes(arr(&v, "epoch_key"));
    let op = MembershipOp {
        space: SPACE,
        index: 0,
        prev: OpHash::default(),
        actor: me.id(),
        at: 0,
        action: Action::Create {
            name: "kitchen".into(),
            owner: Member {
                handle: "alice".parse().unwrap(),
                role: Role::Owner,
                devices: vec![me.keys()],
            },
            policy: Policy::default(),
        },
        key_confirm: Some(key_confirmation(&key, &SPACE, 0)),
    };
    let mut log = MembershipLog::replay(&[sign_op(&me, &op)]).unwrap();
    // Epochs 1 and 2 change nothing here; the note is of epoch 3, which starts with a remove.
    for i in 1..3 {
        let set = Action::SetPolicy { policy: Policy::default() };
        log.append(&sign_op(&me, &log.next_op(&me, set, None))).unwrap();
        assert_eq!(log.state().len, i + 1);
    }
    let bob = DeviceIdentity::generate();
    let add = Action::Add {
        member: Member {
            handle: "bob".parse().unwrap(),
            role: Role::Member,
            devices: vec![bob.keys()],
        },
    };
    log.append(&sign_op(&me, &log.next_op(&me, add, Some(&key)))).unwrap();
    assert_eq!(log.state().epoch, 3);
    let body = open_note(log.state(), &key, &sealed).unwrap();
    assert_eq!(encode(&body), unhex(&v, "body_cbor"));
    assert_eq!(body.text, "basil is on the sill");
}

#[test]
fn envelope_vector_matches_and_opens() {
    let v = check("envelope", envelope_vectors());
    let path = dir().join("envelope_sample.cbor.hex");
    if std::env::var_os("CAIRN_WRITE_VECTORS").is_some() {
        std::fs::write(&path, hex::encode(encode(&envelope_sample())) + "\n").unwrap();
    }
    let bytes = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    let envelope: KeyEnvelope = decode(&bytes).unwrap();
    let r = &v["recipient"];
    let me = DeviceIdentity::from_secrets(&arr(r, "sign_seed"), &arr(r, "agree_secret"));
    let key = unwrap_epoch_key(&me, &envelope).unwrap();
    assert_eq!(key.as_bytes(), &arr::<32>(&v, "epoch_key"));
    assert_eq!(
        key_confirmation(&key, &envelope.space, envelope.epoch).0,
        arr::<32>(&v, "key_confirm")
    );
}

#[test]
fn media_vector_matches_and_decrypts() {
    let v = check("media", media_vectors());
    let key = MediaKey::from_bytes(arr(&v, "key"));
    let hello = &v["hello"];
    let plain =
        decrypt_blob(&key, &unhex(hello, "ciphertext"), Some(&MediaHash(arr(hello, "address"))))
            .unwrap();
    assert_eq!(plain, b"hello");
    // The address by its definition, with plain SHA-256 calls: one piece, one leaf.
    let leaf = sha256(&[&[0x00][..], &unhex(hello, "ciphertext")].concat());
    assert_eq!(sha256(&[&[0x01][..], &leaf[..]].concat()), arr::<32>(hello, "address"));
    for name in ["pattern_one_chunk_exactly", "pattern_two_chunks"] {
        let blob = &v[name];
        let mut root = vec![0x01];
        for leaf in blob["leaves"].as_array().unwrap() {
            root.extend(hex::decode(leaf.as_str().unwrap()).unwrap());
        }
        assert_eq!(sha256(&root), arr::<32>(blob, "address"), "{name}");
    }
    assert!(decrypt_blob(&key, &unhex(&v["empty"], "ciphertext"), None).unwrap().is_empty());
}

#[test]
fn signature_vectors_match_and_verify() {
    let v = check("signatures", signature_vectors());
    let id = DeviceId(arr(&v["device"], "device_id"));
    for (name, p) in v["payloads"].as_object().unwrap() {
        let sig = Signature(arr(p, "signature"));
        verify_signature(&id, &unhex(p, "payload"), &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

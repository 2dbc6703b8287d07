//! Sealing and opening 1 KB notes; media encryption of 16 MiB against plain AES-256-GCM
//! over the same bytes (the target: at least 0.9x), measured in the same run.
//! `cargo bench -p cairn-crypto`; figures go into docs/BENCHMARKS.md.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use cairn_crypto::*;
use cairn_proto::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn space_of(owner: &DeviceIdentity) -> MembershipLog {
    let op = MembershipOp {
        space: SpaceId([1; 16]),
        index: 0,
        prev: OpHash::default(),
        actor: owner.id(),
        at: 0,
        action: Action::Create {
            name: "bench".into(),
            owner: Member {
                handle: "a".parse().unwrap(),
                role: Role::Owner,
                devices: vec![owner.keys()],
            },
            policy: Policy::default(),
        },
        key_confirm: Some(key_confirmation(&EpochKey::generate(), &SpaceId([1; 16]), 0)),
    };
    MembershipLog::replay(&[sign_op(owner, &op)]).unwrap()
}

fn notes(c: &mut Criterion) {
    let me = DeviceIdentity::generate();
    let log = space_of(&me);
    let key = EpochKey::generate();
    let body = NoteBody::text("alice", &"x".repeat(1024), Pose::default());
    let header = NoteHeader {
        space: SpaceId([1; 16]),
        epoch: 0,
        sender: me.id(),
        note_id: NoteId([2; 16]),
        kind: NoteKind::Text,
        expires_at: None,
        media: vec![],
    };
    let mut g = c.benchmark_group("note_1k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal", |b| {
        b.iter(|| seal_note(&me, &key, black_box(header.clone()), black_box(&body)))
    });
    let sealed = seal_note(&me, &key, header.clone(), &body);
    g.bench_function("open", |b| {
        b.iter(|| open_note(log.state(), &key, black_box(&sealed)).unwrap())
    });
    g.finish();
}

fn media(c: &mut Criterion) {
    let data = vec![0x5au8; 16 * 1024 * 1024];
    let mut g = c.benchmark_group("media_16MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    // The ceiling: one AES-256-GCM pass over the same bytes, in place, one tag.
    let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
    let mut buf = data.clone();
    g.bench_function("plain_aes256gcm", |b| {
        b.iter(|| {
            let tag = cipher
                .encrypt_inout_detached(&[0u8; 12].into(), &[], buf.as_mut_slice().into())
                .unwrap();
            black_box(tag);
        })
    });
    // SHA-256 alone over the same bytes: the cost of content addressing.
    g.bench_function("sha256", |b| b.iter(|| black_box(sha256(black_box(&data)))));
    let key = MediaKey::generate();
    g.bench_function("stream_encrypt", |b| {
        b.iter(|| black_box(cairn_crypto::media::encrypt_blob_with(&key, black_box(&data))))
    });
    let (ct, hash) = cairn_crypto::media::encrypt_blob_with(&key, &data);
    g.bench_function("stream_decrypt", |b| {
        b.iter(|| decrypt_blob(&key, black_box(&ct), Some(&hash)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, notes, media);
criterion_main!(benches);

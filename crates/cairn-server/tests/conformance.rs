//! The storage conformance suite: one generic function that every backend must pass.
//! SQLite and PostgreSQL (a database of its own per run) run it here.

use cairn_proto::*;
use cairn_server::storage::postgres::{PgStore, TempDatabase};
use cairn_server::storage::{MembersAfter, Posted, Store, StoreError, sqlite::SqliteStore};
use std::sync::Arc;

fn id16(n: u8) -> [u8; 16] {
    [n; 16]
}

fn record(n: u8, added_by: Option<u8>) -> DeviceRecord {
    DeviceRecord {
        keys: DeviceKeys { sign: DeviceId([n; 32]), agree: AgreeKey([n ^ 0xff; 32]) },
        added_by: added_by.map(|b| DeviceId([b; 32])),
        signature: Signature([n; 64]),
        revoked: false,
    }
}

fn sealed(
    space: SpaceId,
    note: u8,
    sender: u8,
    expires_at: Option<u64>,
    media: Vec<MediaHash>,
) -> SealedNote {
    SealedNote {
        header: NoteHeader {
            space,
            epoch: 0,
            sender: DeviceId([sender; 32]),
            note_id: NoteId(id16(note)),
            kind: NoteKind::Text,
            expires_at,
            media,
        },
        ciphertext: vec![note; 40],
        signature: Signature([note; 64]),
    }
}

/// Every behaviour the server relies on, against a fresh store.
pub async fn conformance(store: Arc<dyn Store>) {
    // Secrets are stable.
    let s1 = store.secret("tokens").await.unwrap();
    assert_eq!(store.secret("tokens").await.unwrap(), s1);
    assert_ne!(store.secret("other").await.unwrap(), s1);

    // Users and devices.
    store.register("alice", &record(1, None), None, false, 1).await.unwrap();
    assert!(matches!(
        store.register("alice", &record(2, None), None, false, 1).await,
        Err(StoreError::HandleTaken)
    ));
    assert!(matches!(
        store.register("bob", &record(1, None), None, false, 1).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.register("bob", &record(2, None), None, true, 1).await,
        Err(StoreError::InviteRequired)
    ));
    store.create_invite("inv").await.unwrap();
    store.register("bob", &record(2, None), Some("inv"), true, 1).await.unwrap();
    assert!(matches!(
        store.register("carol", &record(3, None), Some("inv"), true, 1).await,
        Err(StoreError::InviteRequired)
    ));
    store.register("carol", &record(3, None), None, false, 1).await.unwrap();
    store.add_device("alice", &record(4, Some(1))).await.unwrap();
    assert_eq!(store.devices("alice").await.unwrap(), vec![record(1, None), record(4, Some(1))]);
    assert_eq!(store.device_owner(&DeviceId([4; 32])).await.unwrap().unwrap().handle, "alice");
    store.revoke_device("alice", &DeviceId([4; 32])).await.unwrap();
    assert!(store.device_owner(&DeviceId([4; 32])).await.unwrap().unwrap().revoked);
    assert!(matches!(
        store.revoke_device("bob", &DeviceId([1; 32])).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.devices("nobody").await.unwrap().is_empty());

    // Membership ops: append in order, conflicts on races.
    let space = SpaceId(id16(9));
    let op = |i: u8| SignedOp { body: vec![i; 10], signature: Signature([i; 64]) };
    let after = |m: &[(&str, Role)], epoch| MembersAfter {
        members: m.iter().map(|(h, r)| (h.to_string(), *r)).collect(),
        removed: vec![],
        epoch,
    };
    store.append_op(&space, 0, &op(0), &after(&[("alice", Role::Owner)], 0)).await.unwrap();
    assert!(matches!(
        store.append_op(&space, 0, &op(0), &after(&[], 0)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .append_op(&space, 1, &op(1), &after(&[("alice", Role::Owner), ("bob", Role::Member)], 1))
        .await
        .unwrap();
    assert!(matches!(
        store.append_op(&space, 1, &op(7), &after(&[], 1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append_op(&space, 3, &op(3), &after(&[], 1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append_op(&SpaceId(id16(99)), 1, &op(1), &after(&[], 1)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.ops(&space, 0).await.unwrap(), vec![op(0), op(1)]);
    assert_eq!(store.ops(&space, 1).await.unwrap(), vec![op(1)]);
    let bob_spaces = store.spaces_of("bob").await.unwrap();
    assert_eq!(bob_spaces.len(), 1);
    assert_eq!((bob_spaces[0].role, bob_spaces[0].epoch, bob_spaces[0].ops), (Role::Member, 1, 2));
    assert!(store.spaces_of("carol").await.unwrap().is_empty());
    // An op writes what it changed: a role changed, a member added, one removed.
    let changing = SpaceId(id16(11));
    let first = after(&[("alice", Role::Owner), ("dave", Role::Member)], 0);
    store.append_op(&changing, 0, &op(0), &first).await.unwrap();
    let change = MembersAfter {
        members: vec![("dave".into(), Role::Reader), ("erin".into(), Role::Member)],
        removed: vec!["alice".into()],
        epoch: 1,
    };
    store.append_op(&changing, 1, &op(1), &change).await.unwrap();
    let dave = store.spaces_of("dave").await.unwrap();
    assert_eq!((dave.len(), dave[0].role, dave[0].epoch), (1, Role::Reader, 1));
    assert_eq!(store.spaces_of("erin").await.unwrap().len(), 1);
    let alice_spaces = store.spaces_of("alice").await.unwrap();
    assert!(alice_spaces.iter().all(|s| s.space != changing), "{alice_spaces:?}");

    // Notes: sequence numbers in order, idempotent by note id, per space.
    let other = SpaceId(id16(10));
    store.append_op(&other, 0, &op(0), &after(&[("carol", Role::Owner)], 0)).await.unwrap();
    let p1 = store.post_note(&sealed(space, 1, 1, None, vec![]), 100).await.unwrap();
    let p2 = store.post_note(&sealed(space, 2, 2, None, vec![]), 101).await.unwrap();
    let o1 = store.post_note(&sealed(other, 1, 3, None, vec![]), 102).await.unwrap();
    assert_eq!((p1.entry.seq, p2.entry.seq, o1.entry.seq), (1, 2, 1));
    let again = store.post_note(&sealed(space, 1, 1, None, vec![]), 200).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.entry, p1.entry);
    assert!(matches!(
        store.post_note(&sealed(SpaceId(id16(98)), 1, 1, None, vec![]), 1).await,
        Err(StoreError::NotFound)
    ));
    let (entries, more) = store.entries(&space, 0, 10, 300).await.unwrap();
    assert!(!more);
    assert_eq!(entries, vec![p1.entry.clone(), p2.entry.clone()]);
    let (page, more) = store.entries(&space, 0, 1, 300).await.unwrap();
    assert!(more);
    assert_eq!(page, vec![p1.entry.clone()]);
    assert_eq!(store.note_sender(&space, &NoteId(id16(2))).await.unwrap(), Some(DeviceId([2; 32])));

    // Concurrent posts get distinct, gap-free sequence numbers.
    let mut joins = Vec::new();
    for n in 20..70u8 {
        let store = store.clone();
        joins.push(tokio::spawn(async move {
            store.post_note(&sealed(space, n, 1, None, vec![]), 400).await.unwrap().entry.seq
        }));
    }
    let mut seqs: Vec<u64> = Vec::new();
    for j in joins {
        seqs.push(j.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (3..53).collect::<Vec<_>>());

    // Delete: the note's entry becomes a tombstone and a tombstone entry is appended.
    let t = store
        .delete_note(&space, &NoteId(id16(2)), &DeviceId([2; 32]), &Signature([5; 64]), 500)
        .await
        .unwrap();
    assert_eq!(t.entry.seq, 53);
    let tomb = EntryItem::Tombstone {
        note_id: NoteId(id16(2)),
        by: Some(DeviceId([2; 32])),
        signature: Some(Signature([5; 64])),
    };
    assert_eq!(t.entry.item, tomb);
    let (entries, _) = store.entries(&space, 1, 1, 600).await.unwrap();
    assert_eq!(entries[0].item, tomb);
    assert!(matches!(
        store
            .delete_note(&space, &NoteId(id16(2)), &DeviceId([2; 32]), &Signature([5; 64]), 500)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.note_sender(&space, &NoteId(id16(2))).await.unwrap(), None);
    assert!(
        store.post_note(&sealed(space, 2, 2, None, vec![]), 700).await.unwrap().duplicate,
        "deleted ids stay taken"
    );

    // Expiry: read as tombstones at once, purged into tombstone entries by the sweep.
    let e = store.post_note(&sealed(other, 5, 3, Some(1_000), vec![]), 900).await.unwrap();
    let (entries, _) = store.entries(&other, e.entry.seq - 1, 10, 999).await.unwrap();
    assert!(matches!(entries[0].item, EntryItem::Note(_)));
    let (entries, _) = store.entries(&other, e.entry.seq - 1, 10, 1_000).await.unwrap();
    assert!(
        matches!(entries[0].item, EntryItem::Tombstone { .. }),
        "expired reads as a tombstone before the sweep"
    );
    let purged = store.purge_expired(1_000).await.unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].space, other);
    assert!(store.purge_expired(2_000).await.unwrap().is_empty());

    // Envelopes: by recipient, never replaced; a different one for a taken (epoch,
    // recipient) is counted as kept, an identical one is not.
    let env = |epoch: u64, to: u8, byte: u8| KeyEnvelope {
        space,
        epoch,
        recipient: DeviceId([to; 32]),
        creator: DeviceId([1; 32]),
        wrapped: vec![byte; 80],
        signature: Signature([1; 64]),
    };
    assert_eq!(store.put_envelopes(&[env(0, 2, 1), env(1, 2, 2), env(1, 3, 3)]).await.unwrap(), 0);
    assert_eq!(store.put_envelopes(&[env(1, 2, 4), env(2, 2, 5)]).await.unwrap(), 1);
    assert_eq!(store.put_envelopes(&[env(1, 2, 2)]).await.unwrap(), 0);
    assert_eq!(
        store.envelopes(&space, &DeviceId([2; 32])).await.unwrap(),
        vec![env(0, 2, 1), env(1, 2, 2), env(2, 2, 5)]
    );
    assert!(store.envelopes(&other, &DeviceId([2; 32])).await.unwrap().is_empty());

    // Media: uploader reads; members read once a live note references it; GC after grace.
    let h = MediaHash([0xaa; 32]);
    store.record_media(&h, "alice", 10, 1_000).await.unwrap();
    assert!(store.media_readable_by(&h, "alice").await.unwrap());
    assert!(!store.media_readable_by(&h, "bob").await.unwrap());
    store.post_note(&sealed(space, 80, 1, None, vec![h]), 1_100).await.unwrap();
    assert!(store.media_readable_by(&h, "bob").await.unwrap());
    assert!(!store.media_readable_by(&h, "carol").await.unwrap());
    let orphan = MediaHash([0xbb; 32]);
    store.record_media(&orphan, "carol", 10, 1_000).await.unwrap();
    assert_eq!(store.collect_media(1_000).await.unwrap(), vec![], "within grace");
    assert_eq!(store.collect_media(5_000).await.unwrap(), vec![orphan], "referenced blobs stay");
    assert!(!store.media_readable_by(&orphan, "carol").await.unwrap());
    // Deleting the referencing note makes the blob collectable.
    store
        .delete_note(&space, &NoteId(id16(80)), &DeviceId([1; 32]), &Signature([0; 64]), 1_200)
        .await
        .unwrap();
    assert_eq!(store.collect_media(5_000).await.unwrap(), vec![h]);
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("c.db")).unwrap());
    conformance(store).await;
}

#[tokio::test]
async fn sqlite_store_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.register("alice", &record(1, None), None, false, 1).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.devices("alice").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stored_role_the_server_does_not_know_is_an_error_not_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("INSERT INTO spaces (id) VALUES (?1)", [&id16(5)[..]]).unwrap();
        c.execute(
            "INSERT INTO members (space, handle, role) VALUES (?1, 'alice', 'admin')",
            [&id16(5)[..]],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    match store.spaces_of("alice").await {
        Err(StoreError::Backend(why)) => {
            assert!(why.to_string().contains("no role is called \"admin\""), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_role_has_one_text_form_both_ways() {
    for role in [Role::Reader, Role::Member, Role::Owner] {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        assert_eq!(role.to_string(), role.as_str());
    }
    assert!("Owner".parse::<Role>().is_err(), "exactly the stored form");
    assert!("".parse::<Role>().is_err());
}

/// A fresh database on the local PostgreSQL; panics (never skips) when there is none.
async fn temp_database() -> TempDatabase {
    TempDatabase::create().await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn postgres_store_conforms() {
    let db = temp_database().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url, 8).await.unwrap());
    conformance(store).await;
}

/// Three stores with pools of their own stand for three nodes. They start together (the
/// migrations run once), then post into one space at once, each note id sent through two
/// different nodes: every note is stored once, and the sequence numbers are 1..=n.
#[tokio::test]
async fn postgres_sequences_stay_gap_free_and_ids_idempotent_across_nodes() {
    let db = temp_database().await;
    let nodes: Vec<Arc<PgStore>> = futures_util::future::join_all(
        (0..3).map(|_| async { Arc::new(PgStore::connect(&db.url, 4).await.unwrap()) }),
    )
    .await;
    let space = SpaceId(id16(1));
    let op = SignedOp { body: vec![0; 10], signature: Signature([0; 64]) };
    let after =
        MembersAfter { members: vec![("alice".into(), Role::Owner)], removed: vec![], epoch: 0 };
    nodes[0].append_op(&space, 0, &op, &after).await.unwrap();
    // The same index appended through another node is a conflict, not a second op.
    assert!(matches!(
        nodes[1].append_op(&space, 0, &op, &after).await,
        Err(StoreError::Conflict(_))
    ));
    let mut joins = Vec::new();
    for n in 0..120u8 {
        for copy in 0..2usize {
            let node = nodes[(n as usize + copy) % 3].clone();
            joins.push(tokio::spawn(async move {
                let posted = node.post_note(&sealed(space, n, 1, None, vec![]), 10).await.unwrap();
                (n, posted)
            }));
        }
    }
    let mut by_note: std::collections::HashMap<u8, Vec<Posted>> = Default::default();
    for j in joins {
        let (n, posted) = j.await.unwrap();
        by_note.entry(n).or_default().push(posted);
    }
    let mut seqs = Vec::new();
    for (n, posts) in &by_note {
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[0].entry, posts[1].entry, "note {n} stored twice");
        assert_eq!(posts.iter().filter(|p| !p.duplicate).count(), 1, "note {n}");
        seqs.push(posts[0].entry.seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=120).collect::<Vec<_>>());
    let (entries, more) = nodes[2].entries(&space, 0, 500, 20).await.unwrap();
    assert!(!more);
    assert_eq!(entries.len(), 120);
    // Deletes from two nodes at once: one tombstone.
    let (note, by, sig) = (NoteId(id16(5)), DeviceId([1; 32]), Signature([0; 64]));
    let (a, b) = tokio::join!(
        nodes[0].delete_note(&space, &note, &by, &sig, 30),
        nodes[1].delete_note(&space, &note, &by, &sig, 30),
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    assert_eq!(nodes[2].heads(&[space]).await.unwrap()[0].head, 121);
}

#[tokio::test]
async fn postgres_is_required_not_skipped() {
    // A server that is not there is an error that names the cause.
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/postgres", 2).await.err().unwrap();
    assert!(err.to_string().contains("storage backend"), "{err}");
}

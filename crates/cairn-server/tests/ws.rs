//! The server over loopback with real WebSocket clients.

mod common;
use cairn_proto::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_member_receives_a_post_live_and_a_non_member_can_do_nothing() {
    let t = start().await;
    let url = t.server.ws_url();
    let (alice, bob, carol) = (Device::new(), Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let mut b = Client::register(&url, "bob", &bob).await;
    let mut c = Client::register(&url, "carol", &carol).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    // Bob hears of his membership.
    assert!(matches!(b.next_event(WAIT).await, Some(Event::Membership { .. })));

    // Alice's device is connected twice.
    let mut a2 = Client::login(&url, &alice).await.unwrap();
    while a.next_event(Duration::from_millis(300)).await.is_some() {}

    let n = note(&alice, space.id, space.epoch, b"ciphertext-1");
    let (seq, dup) = post(&mut a, &n).await.unwrap();
    assert_eq!((seq, dup), (1, false));
    for (who, c) in [("bob", &mut b), ("alice's other connection", &mut a2)] {
        match c.next_event(WAIT).await {
            Some(Event::Entry { space: s, entry }) => {
                assert_eq!(s, space.id);
                assert_eq!(entry.seq, 1);
                assert_eq!(entry.item, EntryItem::Note(n.clone()));
            }
            other => panic!("{who} got {other:?}"),
        }
    }
    // The connection that posted has its answer, not the entry again.
    let echo = a.next_event(Duration::from_millis(300)).await;
    assert!(echo.is_none(), "the poster's connection got {echo:?}");
    // Carol: no event, no read, no post, no sync, no log, no envelopes.
    assert!(c.next_event(Duration::from_millis(300)).await.is_none());
    let err = |r: Result<Response, ProtoError>| r.unwrap_err().code;
    assert_eq!(
        err(c.request(Request::Sync { space: space.id, after: 0, limit: 10 }).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        post(&mut c, &note(&carol, space.id, 0, b"x")).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        err(c.request(Request::GetMembership { space: space.id, from: 0 }).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        err(c.request(Request::GetEnvelopes { space: space.id }).await),
        ErrorCode::Forbidden
    );
    // Carol cannot post as alice either.
    assert_eq!(
        post(&mut c, &note(&alice, space.id, 0, b"x")).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn reconnecting_and_syncing_from_a_cursor_gets_exactly_the_missed_notes_once_in_order() {
    // 1,208 posts back to back would meet the rate limits (200 a second per connection, 500
    // per user: a fast machine posts faster than that), which is not what this test is about
    // (hostile.rs tests the limits).
    let t = start_with(|c| {
        c.rate_per_connection = 100_000;
        c.rate_per_user = 100_000;
    })
    .await;
    let url = t.server.ws_url();
    let (alice, bob) = (Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let b = Client::register(&url, "bob", &bob).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    for i in 0..5 {
        post(&mut a, &note(&alice, space.id, space.epoch, format!("before {i}").as_bytes()))
            .await
            .unwrap();
    }
    drop(b); // bob goes away at cursor 5
    let mut sent = Vec::new();
    for i in 0..1203 {
        let n = note(&alice, space.id, space.epoch, format!("missed {i}").as_bytes());
        post(&mut a, &n).await.unwrap();
        sent.push(n);
    }
    let mut b = Client::login(&url, &bob).await.unwrap();
    let got = sync_all(&mut b, space.id, 5).await.unwrap();
    assert_eq!(got.len(), sent.len());
    for (i, (entry, n)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(entry.seq, 6 + i as u64);
        assert_eq!(entry.item, EntryItem::Note(n.clone()));
    }
    // Caught up: nothing more, and the next live note arrives.
    assert!(sync_all(&mut b, space.id, got.last().unwrap().seq).await.unwrap().is_empty());
    post(&mut a, &note(&alice, space.id, space.epoch, b"live")).await.unwrap();
    match b.next_event(WAIT).await {
        Some(Event::Entry { entry, .. }) => assert_eq!(entry.seq, 6 + 1203),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_retry_with_the_same_note_id_is_idempotent() {
    let t = start().await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    let n = note(&alice, space.id, 0, b"once");
    assert_eq!(post(&mut a, &n).await.unwrap(), (1, false));
    post(&mut a, &note(&alice, space.id, 0, b"other")).await.unwrap();
    // The retry may come on another connection.
    let mut a2 = Client::login(&url, &alice).await.unwrap();
    assert_eq!(post(&mut a2, &n).await.unwrap(), (1, true));
    assert_eq!(sync_all(&mut a2, space.id, 0).await.unwrap().len(), 2);
}

#[tokio::test]
async fn delete_by_author_or_owner_leaves_a_tombstone_that_syncs() {
    let t = start().await;
    let url = t.server.ws_url();
    let (alice, bob, dave) = (Device::new(), Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let mut b = Client::register(&url, "bob", &bob).await;
    let mut d = Client::register(&url, "dave", &dave).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    space.add(&mut a, &alice, "dave", &dave, Role::Member).await;
    let by_bob = note(&bob, space.id, space.epoch, b"bob's");
    let by_bob_2 = note(&bob, space.id, space.epoch, b"bob's second");
    post(&mut b, &by_bob).await.unwrap();
    post(&mut b, &by_bob_2).await.unwrap();
    let del = |dev: &Device, n: &SealedNote| Request::DeleteNote {
        space: space.id,
        note_id: n.header.note_id,
        signature: dev.sign(&sign::delete_payload(&space.id, &n.header.note_id)),
    };
    // Dave, a member but not the author, may not.
    assert_eq!(d.request(del(&dave, &by_bob)).await.unwrap_err().code, ErrorCode::Forbidden);
    // Bob, the author, may; alice, an owner, may.
    b.request(del(&bob, &by_bob)).await.unwrap();
    a.request(del(&alice, &by_bob_2)).await.unwrap();
    assert_eq!(b.request(del(&bob, &by_bob)).await.unwrap_err().code, ErrorCode::NotFound);
    let entries = sync_all(&mut d, space.id, 0).await.unwrap();
    let tombstones =
        entries.iter().filter(|e| matches!(e.item, EntryItem::Tombstone { .. })).count();
    assert_eq!(tombstones, 4, "two notes replaced, two tombstone entries appended");
    assert!(entries.iter().all(|e| !matches!(e.item, EntryItem::Note(_))), "no ciphertext left");
    // A retry of a deleted note does not bring it back.
    assert!(post(&mut b, &by_bob).await.unwrap().1);
    assert!(
        sync_all(&mut d, space.id, 0)
            .await
            .unwrap()
            .iter()
            .all(|e| !matches!(e.item, EntryItem::Note(_)))
    );
}

#[tokio::test]
async fn expired_notes_are_purged_and_never_served_again() {
    let t = start_with(|c| c.sweep_interval_s = 1).await;
    let url = t.server.ws_url();
    let (alice, bob) = (Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let mut b = Client::register(&url, "bob", &bob).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    let _ = b.next_event(WAIT).await;
    let id = NoteId([3; 16]);
    let short =
        note_with(&alice, space.id, space.epoch, id, b"soon gone", Some(now_ms() + 700), vec![]);
    post(&mut a, &short).await.unwrap();
    post(&mut a, &note(&alice, space.id, space.epoch, b"stays")).await.unwrap();
    let _ = b.next_event(WAIT).await;
    let _ = b.next_event(WAIT).await;
    // Already-expired notes are refused.
    let stale =
        note_with(&alice, space.id, space.epoch, NoteId([4; 16]), b"x", Some(now_ms() - 1), vec![]);
    assert_eq!(post(&mut a, &stale).await.unwrap_err().code, ErrorCode::BadRequest);
    // The sweep turns it into a tombstone and tells bob.
    match b.next_event(Duration::from_secs(5)).await {
        Some(Event::Entry { entry, .. }) => {
            assert_eq!(entry.item, EntryItem::Tombstone { note_id: id, by: None, signature: None })
        }
        other => panic!("{other:?}"),
    }
    let entries = sync_all(&mut b, space.id, 0).await.unwrap();
    assert!(!entries.iter().any(|e| e.item == EntryItem::Note(short.clone())));
    assert_eq!(entries.len(), 3);
}

#[tokio::test]
async fn a_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = cairn_server::Config::for_data_dir(dir.path());
    let server = cairn_server::start(config.clone()).await.unwrap();
    let alice = Device::new();
    let mut a = Client::register(&server.ws_url(), "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let n = note(&alice, space.id, 0, format!("n{i}").as_bytes());
        post(&mut a, &n).await.unwrap();
        sent.push(n);
    }
    drop(a);
    server.shutdown().await.unwrap();
    let server = cairn_server::start(config).await.unwrap();
    let mut a = Client::login(&server.ws_url(), &alice).await.unwrap();
    let got = sync_all(&mut a, space.id, 0).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.item.clone()).collect::<Vec<_>>(),
        sent.into_iter().map(EntryItem::Note).collect::<Vec<_>>()
    );
    // The membership survived too: alice can still post.
    post(&mut a, &note(&alice, space.id, 0, b"after restart")).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn membership_is_enforced_by_role_signature_and_chain() {
    let t = start().await;
    let url = t.server.ws_url();
    let (alice, bob, carol, eve) = (Device::new(), Device::new(), Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let mut b = Client::register(&url, "bob", &bob).await;
    let mut c = Client::register(&url, "carol", &carol).await;
    let _e = Client::register(&url, "eve", &eve).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    space.add(&mut a, &alice, "carol", &carol, Role::Reader).await;
    // A reader reads but does not post.
    assert_eq!(
        post(&mut c, &note(&carol, space.id, space.epoch, b"x")).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert!(sync_all(&mut c, space.id, 0).await.is_ok());
    // A member may not change membership.
    let by_bob = space.op(
        &bob,
        Action::Add {
            member: Member {
                handle: "eve".parse().unwrap(),
                role: Role::Owner,
                devices: vec![eve.keys()],
            },
        },
    );
    assert_eq!(
        b.request(Request::ChangeMembership { op: by_bob }).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    // A forged signature.
    let mut forged = space.op(&alice, Action::Remove { handle: "bob".parse().unwrap() });
    forged.signature.0[0] ^= 1;
    assert_eq!(
        a.request(Request::ChangeMembership { op: forged }).await.unwrap_err().code,
        ErrorCode::BadSignature
    );
    // A stale op (wrong index / prev) conflicts.
    let mut stale = space.op(&alice, Action::Remove { handle: "bob".parse().unwrap() });
    let mut op: MembershipOp = decode(&stale.body).unwrap();
    op.index -= 1;
    stale = signed_op(&alice, &op);
    assert_eq!(
        a.request(Request::ChangeMembership { op: stale }).await.unwrap_err().code,
        ErrorCode::Conflict
    );
    // Adding a device that is not the named user's is refused.
    let wrong = space.op(
        &alice,
        Action::Add {
            member: Member {
                handle: "eve".parse().unwrap(),
                role: Role::Member,
                devices: vec![bob.keys()],
            },
        },
    );
    assert_eq!(
        a.request(Request::ChangeMembership { op: wrong }).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    // A member adds a device of its own, once the server knows it as his...
    let bob_laptop = Device::new();
    let add_laptop =
        Action::AddDevice { handle: "bob".parse().unwrap(), device: bob_laptop.keys() };
    let early = space.op(&bob, add_laptop.clone());
    assert_eq!(
        b.request(Request::ChangeMembership { op: early }).await.unwrap_err().code,
        ErrorCode::BadRequest,
        "not one of bob's devices yet"
    );
    b.request(Request::AddDevice {
        device: bob_laptop.keys(),
        signature: bob
            .sign(&sign::add_device_payload(&Handle::from_static("bob"), &bob_laptop.keys())),
    })
    .await
    .unwrap();
    // Signed in but not in the space yet: it reads nothing new and may not post (the
    // members would reject its notes).
    let mut l = Client::login(&url, &bob_laptop).await.unwrap();
    assert_eq!(
        post(&mut l, &note(&bob_laptop, space.id, space.epoch, b"early")).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    // ...but not to someone else, and not a device that is someone else's.
    let by_carol = space.op(&carol, add_laptop.clone());
    assert_eq!(
        c.request(Request::ChangeMembership { op: by_carol }).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    let not_his =
        space.op(&bob, Action::AddDevice { handle: "bob".parse().unwrap(), device: eve.keys() });
    assert_eq!(
        b.request(Request::ChangeMembership { op: not_his }).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    let space_id = space.id;
    let for_laptop = |epoch: u64| envelope(&bob, space_id, epoch, &bob_laptop);
    let epoch = space.epoch;
    assert_eq!(
        b.request(Request::PutEnvelopes { envelopes: vec![for_laptop(epoch)] })
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest,
        "not a member device yet"
    );
    space.act(&mut b, &bob, add_laptop).await.unwrap();
    assert_eq!(space.epoch, epoch, "no new epoch for a member's own new device");
    // The laptop is a member device now: bob's phone may hand it the keys it holds, and it
    // posts.
    b.request(Request::PutEnvelopes { envelopes: vec![for_laptop(epoch)] }).await.unwrap();
    post(&mut l, &note(&bob_laptop, space.id, space.epoch, b"from the laptop")).await.unwrap();
    space
        .act(
            &mut b,
            &bob,
            Action::RemoveDevice { handle: "bob".parse().unwrap(), device: bob_laptop.id() },
        )
        .await
        .unwrap();
    assert!(space.epoch > epoch, "removing a device starts a new epoch");
    assert_eq!(
        b.request(Request::PutEnvelopes { envelopes: vec![for_laptop(space.epoch)] })
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest,
        "no keys for a removed device"
    );
    // Removal: bob can no longer sync or post, and learns of it.
    space.act(&mut a, &alice, Action::Remove { handle: "bob".parse().unwrap() }).await.unwrap();
    loop {
        match b.next_event(WAIT).await {
            Some(Event::Membership { op, .. }) => {
                let op: MembershipOp = decode(&op.body).unwrap();
                if matches!(op.action, Action::Remove { .. }) {
                    break;
                }
            }
            Some(_) => continue,
            None => panic!("bob was not told"),
        }
    }
    assert_eq!(
        b.request(Request::Sync { space: space.id, after: 0, limit: 1 }).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        post(&mut b, &note(&bob, space.id, space.epoch, b"x")).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    // The whole log is there for members to verify.
    let Response::Membership { ops, .. } =
        a.request(Request::GetMembership { space: space.id, from: 0 }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(ops.len() as u64, space.len);
    let Response::Spaces { spaces } = a.request(Request::ListSpaces).await.unwrap() else {
        panic!()
    };
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].epoch, space.epoch);
}

#[tokio::test]
async fn key_envelopes_reach_only_their_recipient() {
    let t = start().await;
    let url = t.server.ws_url();
    let (alice, bob, carol) = (Device::new(), Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let mut b = Client::register(&url, "bob", &bob).await;
    let mut c = Client::register(&url, "carol", &carol).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    space.add(&mut a, &alice, "carol", &carol, Role::Member).await;
    let env = |to: &Device| envelope(&alice, space.id, space.epoch, to);
    a.request(Request::PutEnvelopes { envelopes: vec![env(&bob), env(&carol)] }).await.unwrap();
    let Response::Envelopes { envelopes } =
        b.request(Request::GetEnvelopes { space: space.id }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(envelopes, vec![env(&bob)]);
    let Response::Envelopes { envelopes } =
        c.request(Request::GetEnvelopes { space: space.id }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(envelopes, vec![env(&carol)]);
    // A forged envelope signature is refused.
    let mut bad = env(&bob);
    bad.wrapped[0] ^= 1;
    assert_eq!(
        a.request(Request::PutEnvelopes { envelopes: vec![bad] }).await.unwrap_err().code,
        ErrorCode::BadSignature
    );
}

#[tokio::test]
async fn registration_login_resume_devices_and_invites() {
    let t = start_with(|c| c.invite_only = true).await;
    let url = t.server.ws_url();
    let alice = Device::new();
    assert_eq!(
        Client::try_register(&url, "alice", &alice, None).await.err().unwrap().code,
        ErrorCode::InviteRequired
    );
    t.server.state.store.create_invite("tok-1").await.unwrap();
    let mut a = Client::try_register(&url, "alice", &alice, Some("tok-1".into())).await.unwrap();
    // An invite works once.
    assert_eq!(
        Client::try_register(&url, "other", &Device::new(), Some("tok-1".into()))
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::InviteRequired
    );
    t.server.state.store.create_invite("tok-2").await.unwrap();
    assert_eq!(
        Client::try_register(&url, "alice", &Device::new(), Some("tok-2".into()))
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::HandleTaken
    );
    // (A register naming a handle that breaks the rules is malformed: `limits.rs`.)

    // A second device, signed in by the first; it can log in.
    let laptop = Device::new();
    a.request(Request::AddDevice {
        device: laptop.keys(),
        signature: alice
            .sign(&sign::add_device_payload(&Handle::from_static("alice"), &laptop.keys())),
    })
    .await
    .unwrap();
    let mut l = Client::login(&url, &laptop).await.unwrap();
    let Response::Devices { devices, .. } =
        l.request(Request::ListDevices { handle: "alice".parse().unwrap() }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[1].added_by, Some(alice.id()));
    // A login signature over the wrong challenge fails.
    let mut x = Client::connect(&url).await;
    let bad = laptop.sign(&sign::login_payload(&Challenge([0; 32]), &laptop.id()));
    assert_eq!(
        x.request(Request::Login { device: laptop.id(), signature: bad }).await.unwrap_err().code,
        ErrorCode::BadSignature
    );
    // Resume with the token.
    let token = l.session.clone().unwrap().token;
    let mut r = Client::connect(&url).await;
    assert!(matches!(
        r.request(Request::Resume { token: token.clone() }).await.unwrap(),
        Response::Session(_)
    ));
    let mut tampered = token.clone();
    tampered.replace_range(0..2, "00");
    let mut r2 = Client::connect(&url).await;
    assert_eq!(
        r2.request(Request::Resume { token: tampered }).await.unwrap_err().code,
        ErrorCode::Unauthenticated
    );
    // Revoking the laptop ends its sessions and logins.
    a.request(Request::RevokeDevice {
        device: laptop.id(),
        signature: alice
            .sign(&sign::revoke_device_payload(&Handle::from_static("alice"), &laptop.id())),
    })
    .await
    .unwrap();
    assert_eq!(Client::expect_close(&mut l.ws).await.map(u16::from), Some(1013));
    assert_eq!(Client::login(&url, &laptop).await.err().unwrap().code, ErrorCode::Unauthenticated);
    let mut r3 = Client::connect(&url).await;
    assert_eq!(
        r3.request(Request::Resume { token }).await.unwrap_err().code,
        ErrorCode::Unauthenticated
    );
}

#[tokio::test]
async fn media_upload_download_range_limits_and_authorization() {
    let t = start_with(|c| c.max_media_bytes = 100_000).await;
    let (url, http) = (t.server.ws_url(), t.server.http_url());
    let (alice, bob, carol) = (Device::new(), Device::new(), Device::new());
    let mut a = Client::register(&url, "alice", &alice).await;
    let b = Client::register(&url, "bob", &bob).await;
    let c = Client::register(&url, "carol", &carol).await;
    let mut space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    space.add(&mut a, &alice, "bob", &bob, Role::Member).await;
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let hash = MediaHash::of(&blob);
    let token = |c: &Client| format!("Bearer {}", c.session.as_ref().unwrap().token);
    let http_client = reqwest::Client::new();
    let put = |body: Vec<u8>, h: &MediaHash, auth: Option<String>| {
        let mut r = http_client.put(format!("{http}/v1/media/{h}")).body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    assert_eq!(put(blob.clone(), &hash, None).await.unwrap().status(), 401);
    assert_eq!(
        put(blob[1..].to_vec(), &hash, Some(token(&a))).await.unwrap().status(),
        400,
        "hash mismatch"
    );
    // The address is the hash tree over the blob's chunks, not SHA-256 of the whole blob.
    let plain_sha256 = MediaHash({
        use sha2::Digest;
        sha2::Sha256::digest(&blob).into()
    });
    assert_eq!(
        put(blob.clone(), &plain_sha256, Some(token(&a))).await.unwrap().status(),
        400,
        "plain SHA-256 is not the address"
    );
    let big = vec![0u8; 100_001];
    let big_hash = MediaHash::of(&big);
    assert_eq!(put(big, &big_hash, Some(token(&a))).await.unwrap().status(), 413);
    assert_eq!(put(blob.clone(), &hash, Some(token(&a))).await.unwrap().status(), 201);
    assert_eq!(put(blob.clone(), &hash, Some(token(&a))).await.unwrap().status(), 201, "dedup");
    let get = |auth: String, range: Option<&str>| {
        let mut r =
            http_client.get(format!("{http}/v1/media/{hash}")).header("authorization", auth);
        if let Some(range) = range {
            r = r.header("range", range);
        }
        r.send()
    };
    // Before any note references it, only the uploader may fetch it.
    assert_eq!(get(token(&b), None).await.unwrap().status(), 404);
    let full = get(token(&a), None).await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap().to_vec(), blob);
    // Bob cannot reference a blob he did not upload.
    let mut bc = Client::login(&url, &bob).await.unwrap();
    let bobs = note_with(&bob, space.id, space.epoch, NoteId([5; 16]), b"x", None, vec![hash]);
    assert_eq!(post(&mut bc, &bobs).await.unwrap_err().code, ErrorCode::Forbidden);
    // Once alice's note references it, bob (a member) may fetch it, with Range; carol may not.
    post(
        &mut a,
        &note_with(&alice, space.id, space.epoch, NoteId([6; 16]), b"x", None, vec![hash]),
    )
    .await
    .unwrap();
    let part = get(token(&b), Some("bytes=1000-1999")).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().to_vec(), blob[1000..2000].to_vec());
    assert_eq!(get(token(&c), None).await.unwrap().status(), 404);
    assert_eq!(
        http_client
            .get(format!("{http}/v1/media/zz"))
            .header("authorization", token(&a))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // Nothing half-written is left behind.
    assert_eq!(std::fs::read_dir(t.dir.path().join("media/tmp")).unwrap().count(), 0);
    drop(b);
}

#[tokio::test]
async fn health_metrics_and_graceful_shutdown_with_1001() {
    let t = start().await;
    let http = t.server.http_url();
    assert_eq!(
        reqwest::get(format!("{http}/healthz")).await.unwrap().text().await.unwrap(),
        "ok\n"
    );
    let alice = Device::new();
    let mut a = Client::register(&t.server.ws_url(), "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    post(&mut a, &note(&alice, space.id, 0, b"x")).await.unwrap();
    let metrics = reqwest::get(format!("{http}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cairn_connections 1"), "{metrics}");
    assert!(metrics.contains("cairn_notes_posted_total 1"));
    assert!(metrics.contains("cairn_commit_seconds_count 1"));
    assert!(metrics.contains("cairn_delivery_seconds_bucket"));
    t.server.state.shutdown.cancel();
    assert_eq!(Client::expect_close(&mut a.ws).await.map(u16::from), Some(1001));
}

#[tokio::test]
async fn pipelined_posts_are_answered_in_order_and_a_delete_never_overtakes_its_post() {
    let t = start().await;
    let alice = Device::new();
    let mut a = Client::register(&t.server.ws_url(), "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    let notes: Vec<SealedNote> =
        (0..200).map(|i| note(&alice, space.id, 0, format!("p{i}").as_bytes())).collect();
    let mut ids = Vec::new();
    for n in &notes {
        ids.push(a.send(Request::PostNote { note: n.clone() }).await);
    }
    let last = notes.last().unwrap().header.note_id;
    ids.push(
        a.send(Request::DeleteNote {
            space: space.id,
            note_id: last,
            signature: alice.sign(&sign::delete_payload(&space.id, &last)),
        })
        .await,
    );
    let mut answers = Vec::new();
    while answers.len() < ids.len() {
        match a.read_frame().await.unwrap() {
            ServerFrame::Response { id, result } => answers.push((id, result.unwrap())),
            ServerFrame::Event(_) => {}
        }
    }
    assert_eq!(
        answers.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids,
        "answers in request order"
    );
    let mut seqs: Vec<u64> = answers[..200]
        .iter()
        .map(|(_, r)| match r {
            Response::Posted { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert!(
        matches!(answers[200].1, Response::Posted { seq: 201, .. }),
        "the delete ran after its post"
    );
}

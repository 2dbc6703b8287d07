//! The malicious server: the real server behind a proxy that rewrites what it serves to one
//! client (bob). For each tampering: what bob's honest client says (an error, or a refusal,
//! naming the problem), and that nothing it stores or shows is affected: what it had stays,
//! what it refused is not kept, and the honest server's answer is still taken afterwards.
//! docs/SECURITY.md lists these.

use cairn_client::{Change, Client, Draft};
use cairn_crypto::*;
use cairn_proto::*;

mod support;
use support::{TamperProxy, World};

/// Alice's space with bob in it and one note from alice; bob has not synced yet and talks
/// to the server through the proxy.
struct Scene {
    w: World,
    proxy: TamperProxy,
    alice: Client,
    bob: Client,
    space: SpaceId,
}

async fn scene() -> Scene {
    let w = World::new().await;
    let mut alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let space = alice.create_space("kitchen", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    alice.post(&space, Draft::text("basil is on the sill", [1.0, 1.4, -2.0])).await.unwrap();
    let proxy = TamperProxy::start(w.url()).await;
    bob.set_server(&proxy.url()).unwrap();
    bob.connect().await.unwrap();
    Scene { w, proxy, alice, bob, space }
}

fn texts(c: &Client, space: &SpaceId) -> Vec<Result<String, String>> {
    c.notes(space)
        .unwrap()
        .into_iter()
        .map(|n| n.body.map(|b| b.text).ok_or(n.error.unwrap_or_default()))
        .collect()
}

fn refusals(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Refused { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Rewrites every answer of one kind.
fn on_response(proxy: &TamperProxy, mut f: impl FnMut(&mut Response) + Send + 'static) {
    proxy.set(move |frame| {
        if let ServerFrame::Response { result: Ok(r), .. } = frame {
            f(r)
        }
    });
}

/// The honest server again: bob's next sync takes what it serves.
fn honest(proxy: &TamperProxy) {
    proxy.set(|_| {});
}

#[tokio::test]
async fn a_forged_membership_op_is_refused_and_the_log_stays_as_it_was() {
    let Scene { w: _w, proxy, mut alice, mut bob, space } = scene().await;
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);
    // The server slips a reader of its own into the log: alice's next op, altered.
    let carol = _w.user("carol").await;
    alice.invite(&space, &Handle::from_static("carol"), Role::Member).await.unwrap();
    let carol_device = carol.device();
    on_response(&proxy, move |r| {
        if let Response::Membership { ops, .. } = r {
            for op in ops {
                let mut decoded: MembershipOp = decode(&op.body).unwrap();
                if let Action::Add { member } = &mut decoded.action {
                    member.role = Role::Owner;
                    member.devices[0].sign = carol_device;
                    op.body = encode(&decoded);
                }
            }
        }
    });
    let e = bob.sync().await.unwrap_err();
    assert!(e.to_string().contains("signature does not verify"), "{e}");
    let view = &bob.spaces().unwrap()[0];
    assert_eq!(view.members.len(), 2, "{:?}", view.members);
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);

    honest(&proxy);
    bob.sync().await.unwrap();
    let members: Vec<_> = bob.spaces().unwrap()[0].members.clone();
    assert!(members.contains(&(Handle::from_static("carol"), Role::Member)), "{members:?}");
}

#[tokio::test]
async fn a_reordered_log_is_refused_and_nothing_is_stored() {
    let Scene { w, proxy, mut alice, mut bob, space } = scene().await;
    let _carol = w.user("carol").await;
    alice.invite(&space, &Handle::from_static("carol"), Role::Reader).await.unwrap();
    on_response(&proxy, |r| {
        if let Response::Membership { ops, .. } = r
            && ops.len() > 2
        {
            ops.swap(1, 2);
        }
    });
    let e = bob.sync().await.unwrap_err();
    assert!(e.to_string().contains("does not follow"), "{e}");
    assert!(bob.spaces().unwrap().is_empty());
    assert!(bob.notes(&space).unwrap().is_empty());

    honest(&proxy);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);
}

#[tokio::test]
async fn an_envelope_for_another_device_is_refused_and_a_good_one_is_taken_later() {
    let Scene { w, proxy, alice: _alice, mut bob, space } = scene().await;
    let other = w.user("carol").await.device();
    on_response(&proxy, move |r| {
        if let Response::Envelopes { envelopes } = r {
            for e in envelopes {
                e.recipient = other;
            }
        }
    });
    let changes = bob.sync().await.unwrap();
    let said = refusals(&changes);
    assert!(!said.is_empty() && said.iter().all(|m| m.contains("refused the key envelope")));
    assert!(bob.store().epoch_key(space, 0).unwrap().is_none());
    let shown = texts(&bob, &space);
    assert!(shown[0].as_ref().unwrap_err().contains("no key for epoch"), "{shown:?}");

    honest(&proxy);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);
}

/// The heart of it: a well-formed envelope, properly signed, for bob, of a key the space's
/// log does not confirm. Bob refuses it whoever signed it, and never seals with it.
#[tokio::test]
async fn a_planted_epoch_key_is_refused_whoever_signed_it() {
    let Scene { w: _w, proxy, alice: _alice, mut bob, space } = scene().await;
    let bob_keys = bob.identity().keys();
    let server_device = DeviceIdentity::generate();
    let planted = EpochKey::generate();
    on_response(&proxy, move |r| {
        if let Response::Envelopes { envelopes } = r {
            for e in envelopes {
                *e = wrap_epoch_key(
                    &server_device,
                    e.space,
                    e.epoch,
                    &bob_keys.sign,
                    &bob_keys.agree,
                    &planted,
                )
                .unwrap();
            }
        }
    });
    let changes = bob.sync().await.unwrap();
    let said = refusals(&changes);
    assert!(!said.is_empty(), "{changes:?}");
    for m in &said {
        assert!(m.contains("not the one its membership op confirms"), "{m}");
    }
    for epoch in 0..4 {
        assert!(bob.store().epoch_key(space, epoch).unwrap().is_none());
    }
    let e = bob.post(&space, Draft::text("with the planted key?", [0.0; 3])).await.unwrap_err();
    assert!(e.to_string().contains("has not received the space's current key"), "{e}");

    honest(&proxy);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);
    bob.post(&space, Draft::text("with the real key", [0.0; 3])).await.unwrap();
}

/// The sync of the space goes on past it: the kitchen's own note is still shown.
#[tokio::test]
async fn a_note_from_another_space_is_refused() {
    let Scene { w: _w, proxy, mut alice, mut bob, space } = scene().await;
    let other = alice.create_space("attic", Policy::default()).await.unwrap();
    alice.invite(&other, &Handle::from_static("bob"), Role::Member).await.unwrap();
    let attic_note = alice.post(&other, Draft::text("the attic key", [0.0; 3])).await.unwrap();
    let from_attic = alice.store().note(&other, &attic_note.note_id).unwrap().unwrap();
    assert!(from_attic.seq.is_some());
    // The server copies the attic's note into the kitchen's sequence.
    let stolen = std::sync::Arc::new(std::sync::Mutex::new(None::<SealedNote>));
    let seen = stolen.clone();
    on_response(&proxy, move |r| {
        if let Response::Entries { space: s, entries, .. } = r {
            let mut seen = seen.lock().unwrap();
            if *s == other {
                if let Some(EntryItem::Note(n)) = entries.first().map(|e| &e.item) {
                    *seen = Some(n.clone());
                }
            } else if let Some(n) = seen.clone() {
                let seq = entries.last().map_or(1, |e| e.seq + 1);
                entries.push(SpaceEntry { seq, stored_at: now_ms(), item: EntryItem::Note(n) });
            }
        }
    });
    // The attic first (so the proxy holds its note), then the kitchen with it inserted.
    bob.sync_space(&other).await.unwrap();
    let changes = bob.sync_space(&space).await.unwrap();
    let said = refusals(&changes);
    assert_eq!(said.len(), 1, "{changes:?}");
    assert!(said[0].contains("of another space"), "{}", said[0]);
    assert!(bob.notes(&space).unwrap().iter().all(|n| n.note_id != attic_note.note_id));
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);

    honest(&proxy);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, &space), vec![Ok("basil is on the sill".into())]);
}

#[tokio::test]
async fn a_note_with_a_flipped_bit_is_shown_as_unverifiable_and_sync_goes_on() {
    let Scene { w: _w, proxy, mut alice, mut bob, space } = scene().await;
    alice.post(&space, Draft::text("second note", [0.0; 3])).await.unwrap();
    on_response(&proxy, |r| {
        if let Response::Entries { entries, .. } = r
            && let Some(EntryItem::Note(n)) = entries.first_mut().map(|e| &mut e.item)
        {
            let last = n.ciphertext.len() - 1;
            n.ciphertext[last] ^= 0x01;
        }
    });
    bob.sync().await.unwrap();
    let shown = texts(&bob, &space);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0].as_ref().unwrap_err().contains("signature does not verify"), "{shown:?}");
    assert_eq!(shown[1], Ok("second note".into()));
    assert!(bob.search("basil").unwrap().is_empty());
}

#[tokio::test]
async fn an_old_device_list_is_refused() {
    let Scene { w, proxy, mut alice, mut bob, space: _ } = scene().await;
    let first = bob.safety_code(&Handle::from_static("alice")).await.unwrap();
    let laptop = Client::init_joining(
        &w.home("alice-laptop"),
        &w.url(),
        &Handle::from_static("alice"),
        None,
    )
    .unwrap();
    alice.add_device(laptop.identity().keys()).await.unwrap();
    let second = bob.safety_code(&Handle::from_static("alice")).await.unwrap();
    assert_ne!(first, second);
    // The server serves alice's list as it was before the laptop.
    on_response(&proxy, |r| {
        if let Response::Devices { handle, devices } = r
            && handle == "alice"
        {
            devices.truncate(1);
        }
    });
    let e = bob.safety_code(&Handle::from_static("alice")).await.unwrap_err();
    assert!(e.to_string().contains("old device list of alice"), "{e}");
    // Nor may a revoked device come back to life.
    honest(&proxy);
    alice.revoke_device(laptop.device()).await.unwrap();
    bob.safety_code(&Handle::from_static("alice")).await.unwrap();
    on_response(&proxy, |r| {
        if let Response::Devices { devices, .. } = r {
            for d in devices {
                d.revoked = false;
            }
        }
    });
    let e = bob.safety_code(&Handle::from_static("alice")).await.unwrap_err();
    assert!(e.to_string().contains("revoked and is live again"), "{e}");
}

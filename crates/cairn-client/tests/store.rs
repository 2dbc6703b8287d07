//! The local store and profile on their own: keys at rest, the media cache's size limit,
//! search input that must never be parsed as query syntax.

use cairn_client::identity::{open_identity, seal_identity};
use cairn_client::store::{LocalNote, LocalStore};
use cairn_crypto::{DeviceIdentity, NoteBody, Pose};
use cairn_proto::*;

#[test]
fn device_keys_sealed_under_a_passphrase_need_it() {
    let id = DeviceIdentity::generate();
    let sealed = seal_identity(&id, Some("correct horse")).unwrap();
    assert!(
        !sealed.windows(32).any(|w| w == &id.to_bytes()[6..38]),
        "the secret keys are not stored in the clear"
    );
    assert_eq!(open_identity(&sealed, Some("correct horse")).unwrap().keys(), id.keys());
    assert!(
        open_identity(&sealed, Some("wrong")).unwrap_err().to_string().contains("wrong passphrase")
    );
    assert!(open_identity(&sealed, None).unwrap_err().to_string().contains("CAIRN_PASSPHRASE"));
    let plain = seal_identity(&id, None).unwrap();
    assert_eq!(open_identity(&plain, None).unwrap().keys(), id.keys());
    assert!(open_identity(&[9, 9, 9], None).is_err(), "damaged keys give an error");
}

#[test]
#[cfg(unix)]
fn the_store_is_readable_by_its_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    let _store = LocalStore::open(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn the_media_cache_evicts_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("cairn.db")).unwrap();
    for i in 0..5u8 {
        store.media_touch(&MediaHash([i; 32]), 100).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    store.media_touch(&MediaHash([0; 32]), 100).unwrap(); // used again: now the newest
    let evicted = store.media_evict(300).unwrap();
    assert_eq!(evicted, vec![MediaHash([1; 32]), MediaHash([2; 32])]);
    assert!(store.media_evict(300).unwrap().is_empty());
}

#[test]
fn search_treats_input_as_words_never_as_query_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("cairn.db")).unwrap();
    let note = |id: u8, text: &str| LocalNote {
        space: SpaceId([1; 16]),
        note_id: NoteId([id; 16]),
        seq: Some(u64::from(id)),
        sender: DeviceId([2; 32]),
        body: Some(NoteBody::text("alice", text, Pose::default())),
        error: None,
        deleted: false,
        read: false,
        stored_at: 0,
    };
    store.put_note(&note(1, "the heron comes at dawn"), None).unwrap();
    store.put_note(&note(2, "an owl at dusk"), None).unwrap();
    assert_eq!(store.search("heron").unwrap().len(), 1);
    assert_eq!(store.search("HERON dawn").unwrap().len(), 1);
    for hostile in ["\"", "heron OR", "NEAR(", "*", "a\"b", "owl AND (", "-", ")"] {
        assert!(store.search(hostile).is_ok(), "{hostile:?} must not be an error");
    }
    store.delete_note(&SpaceId([1; 16]), &NoteId([1; 16])).unwrap();
    assert!(store.search("heron").unwrap().is_empty(), "deleted notes leave the index");
}

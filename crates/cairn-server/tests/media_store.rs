//! The media-store conformance suite: the filesystem store and the PostgreSQL store keep
//! and serve the same bytes under the same checks.

use bytes::Bytes;
use cairn_proto::MediaHash;
use cairn_server::blobs::fs::FsMediaStore;
use cairn_server::blobs::postgres::{CHUNK, PgMediaStore};
use cairn_server::blobs::{ByteStream, MediaError, MediaStore};
use cairn_server::storage::postgres::{PgStore, TempDatabase};
use futures_util::StreamExt;

fn hash(bytes: &[u8]) -> MediaHash {
    MediaHash::of(bytes)
}

/// `bytes` as a body arriving in pieces of `piece` bytes.
fn body(bytes: &[u8], piece: usize) -> ByteStream {
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        bytes.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(pieces).boxed()
}

/// A body that breaks off after `bytes`.
fn broken(bytes: &[u8]) -> ByteStream {
    let first: Result<Bytes, std::io::Error> = Ok(Bytes::copy_from_slice(bytes));
    futures_util::stream::iter([first, Err(std::io::Error::other("connection reset"))]).boxed()
}

async fn read(store: &dyn MediaStore, h: &MediaHash, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = store.read(h, start, end).await.unwrap();
    while let Some(piece) = s.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

async fn media_conformance(store: &dyn MediaStore) {
    // Larger than two database chunks, arriving in pieces that straddle chunk borders.
    let blob: Vec<u8> = (0..(2 * CHUNK + 12_345) as u32).map(|i| (i * 7 % 251) as u8).collect();
    let h = hash(&blob);
    let max = 4 * CHUNK as u64;
    assert_eq!(store.size(&h).await.unwrap(), None);

    // Wrong hash, over the limit, broken off: refused, and nothing is kept.
    assert!(matches!(
        store.put(&h, body(&blob[1..], 7000), max).await,
        Err(MediaError::HashMismatch)
    ));
    assert!(matches!(
        store.put(&h, body(&blob, 7000), 1000).await,
        Err(MediaError::TooLarge(1000))
    ));
    assert!(matches!(
        store.put(&h, broken(&blob[..5000]), max).await,
        Err(MediaError::Interrupted)
    ));
    assert_eq!(store.size(&h).await.unwrap(), None);

    assert_eq!(store.put(&h, body(&blob, 7000), max).await.unwrap(), blob.len() as u64);
    assert_eq!(store.size(&h).await.unwrap(), Some(blob.len() as u64));
    assert_eq!(read(store, &h, 0, blob.len() as u64).await, blob);
    // Ranges inside one chunk, across chunk borders, and the tail.
    for (a, b) in [
        (0, 10),
        (1000, 2000),
        (CHUNK - 5, CHUNK + 5),
        (CHUNK, 2 * CHUNK + 1),
        (blob.len() - 3, blob.len()),
    ] {
        assert_eq!(read(store, &h, a as u64, b as u64).await, blob[a..b], "range {a}..{b}");
    }

    // Storing it again checks the body and keeps one copy; a wrong body is still refused.
    assert_eq!(store.put(&h, body(&blob, 65_536), max).await.unwrap(), blob.len() as u64);
    let mut wrong = blob.clone();
    wrong[10] ^= 1;
    assert!(matches!(
        store.put(&h, body(&wrong, 65_536), max).await,
        Err(MediaError::HashMismatch)
    ));
    assert_eq!(read(store, &h, 0, blob.len() as u64).await, blob);

    // An empty blob is a blob.
    let empty = hash(b"");
    assert_eq!(store.put(&empty, body(b"", 1), max).await.unwrap(), 0);
    assert_eq!(store.size(&empty).await.unwrap(), Some(0));

    store.delete(&[h, empty]).await.unwrap();
    assert_eq!(store.size(&h).await.unwrap(), None);
    store.delete(&[h]).await.unwrap();
}

#[tokio::test]
async fn the_filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsMediaStore::open(dir.path().join("media")).unwrap();
    media_conformance(&store).await;
    assert_eq!(std::fs::read_dir(dir.path().join("media/tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn the_postgres_store_conforms() {
    let db = TempDatabase::create().await.unwrap_or_else(|e| panic!("{e}"));
    let records = PgStore::connect(&db.url, 4).await.unwrap();
    let store = PgMediaStore::new(records.pool().clone());
    media_conformance(&store).await;
    // Nothing half-written is left: refused uploads rolled back, deletes cascaded.
    let client = records.pool().get().await.unwrap();
    let chunks: i64 =
        client.query_one("SELECT count(*) FROM media_chunks", &[]).await.unwrap().get(0);
    assert_eq!(chunks, 0);
}

//! A media blob's address ([`MediaHash`]): a two-level SHA-256 tree over the blob's sealed
//! chunks, so that the chunks of one blob can be hashed on several cores at once (SHA-256
//! of a whole blob runs on one core, and is slower there than the blob's AES-GCM).
//!
//! The blob's bytes are cut into pieces of [`ADDRESS_PIECE`] bytes, the last one shorter (a
//! sealed blob's pieces are exactly its sealed chunks). Then
//!
//! ```text
//! leaf_i  = SHA-256(0x00 || piece_i)
//! address = SHA-256(0x01 || leaf_0 || leaf_1 || ... || leaf_n-1)
//! ```
//!
//! The prefixes keep a leaf from ever standing for an address. Two blobs with the same
//! address have the same leaves in the same order (or SHA-256 has a collision), so the
//! same pieces, so the same bytes: the pieces' lengths are fixed by their positions.
//!
//! Both ends compute it: the uploader (cairn-crypto, chunk by chunk as it seals), the server
//! (as an upload streams in) and every reader (as a download streams in). This is the one
//! hash the wire protocol defines outside signatures, so it lives beside [`MediaHash`].

use crate::MediaHash;
use sha2::{Digest, Sha256};

/// Bytes per piece: one sealed media chunk, 64 KiB of plaintext and its 16-byte tag.
pub const ADDRESS_PIECE: usize = 64 * 1024 + 16;

const LEAF: u8 = 0x00;
const ROOT: u8 = 0x01;

/// The leaf of one piece.
pub fn address_leaf(piece: &[u8]) -> [u8; 32] {
    debug_assert!(piece.len() <= ADDRESS_PIECE);
    let mut h = Sha256::new();
    h.update([LEAF]);
    h.update(piece);
    h.finalize().into()
}

/// The address from every piece's leaf, in order.
pub fn address_from_leaves<'a>(leaves: impl IntoIterator<Item = &'a [u8; 32]>) -> MediaHash {
    let mut root = Sha256::new();
    root.update([ROOT]);
    for leaf in leaves {
        root.update(leaf);
    }
    MediaHash(root.finalize().into())
}

impl MediaHash {
    /// The address of `blob`, on this thread.
    pub fn of(blob: &[u8]) -> MediaHash {
        let mut h = AddressHasher::new();
        h.update(blob);
        h.finish()
    }
}

/// The address of bytes that arrive in any slicing (an upload, a download).
#[derive(Clone)]
pub struct AddressHasher {
    root: Sha256,
    leaf: Sha256,
    /// Bytes in the piece being hashed.
    filled: usize,
}

impl Default for AddressHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl AddressHasher {
    pub fn new() -> Self {
        let mut root = Sha256::new();
        root.update([ROOT]);
        AddressHasher { root, leaf: Self::fresh_leaf(), filled: 0 }
    }

    fn fresh_leaf() -> Sha256 {
        let mut leaf = Sha256::new();
        leaf.update([LEAF]);
        leaf
    }

    /// Takes the next bytes of the blob.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = data.len().min(ADDRESS_PIECE - self.filled);
            self.leaf.update(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == ADDRESS_PIECE {
                self.close_piece();
            }
        }
    }

    fn close_piece(&mut self) {
        let leaf = std::mem::replace(&mut self.leaf, Self::fresh_leaf());
        self.root.update(leaf.finalize());
        self.filled = 0;
    }

    /// The address of everything taken.
    pub fn finish(mut self) -> MediaHash {
        if self.filled > 0 {
            self.close_piece();
        }
        MediaHash(self.root.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, spelled out with plain SHA-256 calls.
    fn by_hand(blob: &[u8]) -> [u8; 32] {
        let mut root = vec![ROOT];
        for piece in blob.chunks(ADDRESS_PIECE) {
            root.extend_from_slice(&Sha256::digest([&[LEAF][..], piece].concat()));
        }
        Sha256::digest(&root).into()
    }

    #[test]
    fn any_slicing_gives_the_definitions_address() {
        let blob: Vec<u8> = (0..3 * ADDRESS_PIECE + 77).map(|i| (i % 251) as u8).collect();
        for len in [0, 1, ADDRESS_PIECE - 1, ADDRESS_PIECE, ADDRESS_PIECE + 1, blob.len()] {
            let expected = by_hand(&blob[..len]);
            assert_eq!(MediaHash::of(&blob[..len]).0, expected, "{len} bytes at once");
            for step in [1000, 65_536, ADDRESS_PIECE, 100_000] {
                let mut h = AddressHasher::new();
                blob[..len].chunks(step).for_each(|part| h.update(part));
                assert_eq!(h.finish().0, expected, "{len} bytes in steps of {step}");
            }
            let leaves: Vec<_> = blob[..len].chunks(ADDRESS_PIECE).map(address_leaf).collect();
            assert_eq!(address_from_leaves(&leaves).0, expected, "{len} bytes from leaves");
        }
    }

    #[test]
    fn the_address_is_not_plain_sha256_and_every_piece_counts() {
        let blob = vec![5u8; 2 * ADDRESS_PIECE];
        assert_ne!(MediaHash::of(&blob).0, <[u8; 32]>::from(Sha256::digest(&blob)));
        // The same bytes with one more at the end: a new last piece, a new address.
        let mut longer = blob.clone();
        longer.push(5);
        assert_ne!(MediaHash::of(&blob), MediaHash::of(&longer));
        // An empty blob has no leaves, which is not the address of one empty piece.
        assert_ne!(MediaHash::of(&[]).0, by_hand_one_empty_piece());
    }

    fn by_hand_one_empty_piece() -> [u8; 32] {
        let leaf = Sha256::digest([LEAF]);
        Sha256::digest([&[ROOT][..], &leaf[..]].concat()).into()
    }
}

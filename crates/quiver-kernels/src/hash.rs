//! Hashing of key values: one fixed-seed ahash so partitions and runs agree on every hash.

use ahash::RandomState;

/// Fixed seeds: hashes are stable across runs and threads, which partitioning relies on.
const STATE: RandomState = RandomState::with_seeds(
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
);

/// Hash of a fixed-width value.
#[inline(always)]
pub fn hash_value<T: std::hash::Hash>(value: &T) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    STATE.hash_one(value)
}

/// Hash of a byte string. Keys of up to 16 bytes (most group keys) take a two-load
/// folded-multiply path, keys of up to 32 bytes a four-load one; longer keys go through ahash.
#[inline(always)]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    let len = bytes.len();
    if len > 32 {
        return STATE.hash_one(bytes);
    }
    if len > 16 {
        return hash_medium(bytes);
    }
    let (a, b) = short_key_words(bytes);
    hash_short_words(a, b, len)
}

/// [`hash_bytes`] of a key of 17 to 32 bytes: four 8-byte loads (overlapping for keys under 32
/// bytes) cover every byte. Inline, where ahash's streaming hasher was a call and a loop per key.
#[inline(always)]
fn hash_medium(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let word = |at: usize| -> u64 {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(buf)
    };
    let front = folded_multiply(
        word(0) ^ 0x243f_6a88_85a3_08d3,
        word(8) ^ 0x1319_8a2e_0370_7344,
    );
    let back = folded_multiply(
        word(len - 16) ^ 0xa409_3822_299f_31d0,
        word(len - 8) ^ 0x082e_fa98_ec4e_6c89 ^ len as u64,
    );
    folded_multiply(front ^ 0x4528_21e6_38d0_1377, back ^ 0xbe54_66cf_34e9_0c6c)
}

/// [`hash_bytes`] of a key of `len ≤ 16` bytes whose [`short_key_words`] are `(a, b)`: lets a
/// caller that already holds the words skip loading the key again.
#[inline(always)]
pub fn hash_short_words(a: u64, b: u64, len: usize) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    folded_multiply(
        a ^ 0x243f_6a88_85a3_08d3,
        b ^ 0x1319_8a2e_0370_7344 ^ len as u64,
    )
}

/// Hash of a key of `len ≤ 24` bytes from three words that determine it: its first 8 bytes
/// (zero-padded), bytes 8 to 16 (0 for keys of up to 16 bytes) and its last 8 bytes (0 for keys
/// under 8 bytes). For keys of up to 16 bytes (`middle` 0) it equals [`hash_short_words`], so a
/// caller may take either path by length; one formula for every length up to 24 lets a caller
/// hash keys of mixed lengths without a branch on the length. The middle word enters through
/// one 64-bit product folded into the head (a second 128-bit product cost lookups of mixed
/// keys 5–15%; slot displacement on sampled key sets stayed that of random keys).
#[inline(always)]
pub fn hash_key_words(head: u64, middle: u64, tail: u64, len: usize) -> u64 {
    /// Odd, so multiplying by it maps distinct middle words to distinct words, and 0 to 0.
    const MIDDLE_FACTOR: u64 = 0xbe54_66cf_34e9_0c6d;
    hash_short_words(head ^ middle.wrapping_mul(MIDDLE_FACTOR), tail, len)
}

/// Two words that together determine a key of at most 16 bytes (given its length).
#[inline(always)]
pub fn short_key_words(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    let word = |at: usize| -> u64 {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(buf)
    };
    let half = |at: usize| -> u64 {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(buf))
    };
    if len >= 8 {
        (word(0), word(len - 8))
    } else if len >= 4 {
        (half(0), half(len - 4))
    } else if len > 0 {
        let packed = u64::from(bytes[0])
            | (u64::from(bytes[len / 2]) << 8)
            | (u64::from(bytes[len - 1]) << 16);
        (packed, 0)
    } else {
        (0, 0)
    }
}

#[inline(always)]
const fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = (a as u128).wrapping_mul(b as u128);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Byte-string equality with the short-key case inlined (no `memcmp` call).
#[inline(always)]
pub fn bytes_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        return short_key_words(a) == short_key_words(b);
    }
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_words_determine_the_key() {
        let keys: Vec<Vec<u8>> = (0..=16)
            .flat_map(|len| [vec![b'a'; len], (0..len as u8).collect::<Vec<u8>>()])
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(bytes_equal(a, b), a == b, "{a:?} {b:?}");
            }
        }
        assert!(!bytes_equal(b"abc", b"aXc"));
        assert!(!bytes_equal(b"abcd", b"abce"));
    }

    #[test]
    fn key_words_hash_like_short_words_and_read_every_byte() {
        let words = |key: &[u8]| -> (u64, u64, u64) {
            let word = |bytes: &[u8]| {
                let mut buf = [0u8; 8];
                buf[..bytes.len()].copy_from_slice(bytes);
                u64::from_le_bytes(buf)
            };
            let len = key.len();
            let head = word(&key[..len.min(8)]);
            let middle = if len > 16 { word(&key[8..16]) } else { 0 };
            let tail = if len >= 8 { word(&key[len - 8..]) } else { 0 };
            (head, middle, tail)
        };
        let hash = |key: &[u8]| {
            let (head, middle, tail) = words(key);
            hash_key_words(head, middle, tail, key.len())
        };
        for len in 0..=24 {
            let key: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37) | 1).collect();
            let (head, middle, tail) = words(&key);
            if len <= 16 {
                // Either formula may hash a short key: they agree.
                assert_eq!(middle, 0);
                assert_eq!(
                    hash(&key),
                    hash_short_words(head, tail, len),
                    "length {len}"
                );
            }
            if cfg!(feature = "force-hash-collisions") {
                continue;
            }
            for at in 0..len {
                let mut other = key.clone();
                other[at] ^= 0x40;
                assert_ne!(hash(&other), hash(&key), "length {len}, byte {at}");
            }
            let mut longer = key.clone();
            longer.push(0);
            if longer.len() <= 24 {
                assert_ne!(hash(&longer), hash(&key), "length {len} and {}", len + 1);
            }
        }
    }

    #[test]
    fn every_byte_of_a_key_changes_its_hash() {
        // Each path (short, four words, ahash) must read every byte: a key that differs from
        // another in one byte, at any position, hashes differently.
        for len in 0..=40 {
            let key: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let hash = hash_bytes(&key);
            for at in 0..len {
                for flip in [1u8, 0x80] {
                    let mut other = key.clone();
                    other[at] ^= flip;
                    if !cfg!(feature = "force-hash-collisions") {
                        assert_ne!(hash_bytes(&other), hash, "length {len}, byte {at}");
                    }
                }
            }
            // Keys of other lengths with the same leading bytes differ too.
            let mut longer = key.clone();
            longer.push(0);
            if !cfg!(feature = "force-hash-collisions") {
                assert_ne!(hash_bytes(&longer), hash, "length {len} and {}", len + 1);
            }
        }
    }
}

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
/// folded-multiply path; longer keys go through ahash.
#[inline(always)]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    let len = bytes.len();
    if len > 16 {
        return STATE.hash_one(bytes);
    }
    let (a, b) = short_key_words(bytes);
    hash_short_words(a, b, len)
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
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a).wrapping_mul(u128::from(b));
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
}

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

/// Hash of a byte string.
#[inline(always)]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    STATE.hash_one(bytes)
}

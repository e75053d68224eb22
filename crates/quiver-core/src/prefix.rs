//! Fixed-width prefixes of byte strings, the form in which parsers hand short keys to kernels.

/// The first 16 bytes of `bytes` as two little-endian words, zero past the end.
///
/// A parser that has the words loaded already passes them on with the key, so a hash table can
/// hash and compare keys of up to 16 bytes (together with their length) without reading them
/// again.
#[inline]
pub fn prefix_words(bytes: &[u8]) -> [u64; 2] {
    let mut padded = [0u8; 16];
    let used = bytes.len().min(16);
    padded[..used].copy_from_slice(&bytes[..used]);
    let word = u128::from_le_bytes(padded);
    [word as u64, (word >> 64) as u64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_little_endian_and_zero_padded() {
        assert_eq!(prefix_words(b""), [0, 0]);
        assert_eq!(prefix_words(b"ab"), [0x6261, 0]);
        assert_eq!(
            prefix_words(b"0123456789abcdefXYZ"),
            [
                u64::from_le_bytes(*b"01234567"),
                u64::from_le_bytes(*b"89abcdef")
            ]
        );
    }
}

//! The crate's non-cryptographic hashing: [`Digest`] for identities (stage layouts,
//! builds, usable in constants) and [`checksum`] for the checksums that tie a wire slot
//! to its contents. Both detect accidents (a stray write, a stale slot), not adversaries.

/// A 64-bit streaming hash: FNV-1a's constants, fed a word at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Digest(u64);

impl Digest {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Mixes in one word. The rotation spreads every input bit over the whole state,
    /// which the bare FNV step does not for words.
    pub(crate) const fn word(self, value: u64) -> Self {
        Self((self.0 ^ value).wrapping_mul(Self::PRIME).rotate_left(23))
    }

    /// Mixes in a string's bytes (usable in constants).
    pub(crate) const fn str(mut self, text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self = self.word(bytes[i] as u64);
            i += 1;
        }
        self.word(bytes.len() as u64)
    }

    pub(crate) const fn finish(self) -> u64 {
        self.0
    }
}

/// The checksum of `bytes` together with `key` (words the slot must also match: its
/// request number, index, status). The bytes go through XXH3, which reads them several
/// words at a time: a wire slot's checksum is computed twice per task and per stage, and
/// [`Digest`], one word after the other, took 1.3 us for an 8 KiB task (XXH3: 0.31 us).
pub(crate) fn checksum(key: &[u64], bytes: &[u8]) -> u64 {
    key.iter()
        .fold(Digest::new(), |digest, &word| digest.word(word))
        .word(xxhash_rust::xxh3::xxh3_64(bytes))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::{checksum, Digest};

    #[test]
    fn every_character_and_its_place_count() {
        assert_ne!(
            Digest::new().str("ab").finish(),
            Digest::new().str("ba").finish()
        );
        assert_ne!(
            Digest::new().str("ab").finish(),
            Digest::new().str("ab\0").finish()
        );
    }

    #[test]
    fn a_checksum_of_small_tasks_covers_every_byte_and_the_length() {
        let base = checksum(&[], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_ne!(base, checksum(&[], &[1, 2, 3, 4, 5, 6, 7, 8, 8]));
        assert_ne!(base, checksum(&[], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]));
    }

    #[test]
    fn a_checksum_covers_every_byte_the_length_and_the_key() {
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let base = checksum(&[7, 1], &data);
        let mut flipped = data.clone();
        flipped[5000] ^= 1;
        assert_ne!(base, checksum(&[7, 1], &flipped));
        assert_ne!(base, checksum(&[7, 1], &data[..8191]));
        assert_ne!(base, checksum(&[8, 1], &data));
        assert_ne!(base, checksum(&[7, 2], &data));
        assert_eq!(base, checksum(&[7, 1], &data.clone()));
    }
}

//! The one non-cryptographic hash of the crate: identities (stage layouts, builds) and
//! the checksums that tie a wire slot to its contents. It detects accidents (a stray
//! write, a stale slot), not adversaries.

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

    /// Mixes in `bytes` (and their length, so that trailing zeros count).
    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self = self.word(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.word(u64::from_le_bytes(tail)).word(bytes.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn every_byte_and_the_length_count() {
        let base = Digest::new().bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).finish();
        assert_ne!(
            base,
            Digest::new().bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 8]).finish()
        );
        assert_ne!(
            base,
            Digest::new()
                .bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
                .finish()
        );
        assert_ne!(
            Digest::new().str("ab").finish(),
            Digest::new().str("ba").finish()
        );
    }
}

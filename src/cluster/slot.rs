//! Hash slots: which of the 16384 slots a key lives in.
//!
//! Redis Cluster maps a key to `CRC16(key) mod 16384`, where CRC16 is the XMODEM variant
//! (polynomial 0x1021, initial value 0) and only the *hash tag* is hashed when the key has
//! one: the bytes between the first `{` and the first `}` after it, if that span is not empty.
//! This module owns that mapping and nothing else; it does no I/O.

use std::fmt;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A hash slot, always below [`SLOT_COUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Slot(u16);

impl Slot {
    /// The slot numbered `n`, or `None` when `n` is not below [`SLOT_COUNT`].
    pub fn new(n: u16) -> Option<Slot> {
        (n < SLOT_COUNT).then_some(Slot(n))
    }

    /// The slot `key` hashes to, honouring hash tags.
    pub fn of(key: &[u8]) -> Slot {
        Slot(crc16(hash_tag(key)) % SLOT_COUNT)
    }

    /// The slot number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The part of `key` that is hashed: the content of the first `{...}` when non-empty,
/// otherwise the whole key (so `{}` and `foo{}{bar}` hash whole).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// CRC16-XMODEM lookup table, built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16-XMODEM of `data`, the checksum Redis Cluster uses for key slots.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_spec_reference_vector() {
        // The Redis cluster specification gives "123456789" -> 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn known_keys_land_in_the_slots_redis_reports() {
        // Values answered by CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(Slot::of(b"foo").get(), 12182);
        assert_eq!(Slot::of(b"bar").get(), 5061);
        assert_eq!(Slot::of(b"user:123:name").get(), Slot::of(b"user:123:name").get());
        assert_eq!(Slot::of(b"").get(), 0);
    }

    #[test]
    fn hash_tag_edge_cases_follow_the_spec() {
        // Same tag, same slot: the seed's {user:123}:profile and {user:123}:tags.
        assert_eq!(Slot::of(b"{user:123}:profile"), Slot::of(b"user:123"));
        assert_eq!(Slot::of(b"{user:123}:tags"), Slot::of(b"{user:123}:profile"));
        // `{}` is an empty tag: the whole key is hashed.
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        // An opening brace with no closing brace: whole key.
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        // A closing brace before the first opening one does not count.
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b"}{x}"), b"x");
        // Only the first tag counts.
        assert_eq!(hash_tag(b"{a}{b}"), b"a");
        // The tag ends at the first `}` after the first `{`.
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
    }

    #[test]
    fn slot_new_rejects_out_of_range() {
        assert!(Slot::new(16383).is_some());
        assert!(Slot::new(16384).is_none());
    }
}

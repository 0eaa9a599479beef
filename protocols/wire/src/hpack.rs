//! HPACK (RFC 7541) header blocks checked for validity, without building header fields.
//!
//! [`HpackCheck`] follows a connection's header blocks the way a decoder does, but keeps only
//! what validity depends on: the size of each dynamic table entry (for indexes, eviction and
//! the table size limit) and the decoded length of each string. It never allocates per field.
//! The HTTP/2 guard (`crate::h2guard`) runs it beside the HTTP/2 library's own decoder, which
//! reports every decoding error as a PROTOCOL_ERROR; RFC 9113 §4.3 calls for
//! COMPRESSION_ERROR.
//!
//! Where the RFC leaves room (how large an integer may be), the check is the more lenient of
//! the two readings: a block the library accepts must never be called invalid here.

use std::collections::VecDeque;

/// RFC 7541 §4.1: "The size of an entry is the sum of its name's length in octets [...], its
/// value's length in octets, and 32."
const ENTRY_OVERHEAD: usize = 32;

/// Name lengths of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAME_LENGTHS: [u8; 61] = {
    const NAMES: [&str; 61] = [
        ":authority",
        ":method",
        ":method",
        ":path",
        ":path",
        ":scheme",
        ":scheme",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        ":status",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "accept",
        "access-control-allow-origin",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "cookie",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "link",
        "location",
        "max-forwards",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "refresh",
        "retry-after",
        "server",
        "set-cookie",
        "strict-transport-security",
        "transfer-encoding",
        "user-agent",
        "vary",
        "via",
        "www-authenticate",
    ];
    let mut lengths = [0u8; 61];
    let mut i = 0;
    while i < 61 {
        lengths[i] = NAMES[i].len() as u8;
        i += 1;
    }
    lengths
};

/// Why a header block is not valid HPACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// §2.3.3: an index of 0 or past the static and dynamic tables.
    Index,
    /// §5.1: an integer that does not fit, or a block that ends inside one.
    Integer,
    /// §5.2: a string longer than what is left of the block.
    Truncated,
    /// §5.2: a Huffman string with EOS, padding longer than 7 bits or not of ones.
    Huffman,
    /// §4.2, §6.3: a table size update above the limit, after a field, or ending the block.
    SizeUpdate,
}

/// One connection's decoding state: see the module docs.
#[derive(Debug)]
pub struct HpackCheck {
    /// `(name length, value length)` of each dynamic entry, newest first (index 62).
    entries: VecDeque<(usize, usize)>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The table's current maximum, set by size updates.
    max_size: usize,
    /// SETTINGS_HEADER_TABLE_SIZE: what a size update may ask for.
    allowed: usize,
    /// Scratch space for Huffman strings.
    decoded: Vec<u8>,
    /// The last few Huffman strings found valid, with their decoded lengths. Clients send the
    /// same literals again and again (a `user-agent` not indexed, a cookie), and validity is a
    /// function of the bytes alone.
    recent: [(Vec<u8>, usize); RECENT_STRINGS],
    /// The slot of `recent` to overwrite next.
    next_recent: usize,
}

/// How many valid Huffman strings [`HpackCheck`] remembers.
const RECENT_STRINGS: usize = 4;
/// Longer strings are not remembered.
const RECENT_MAX_LEN: usize = 256;

impl HpackCheck {
    /// The state at the start of a connection whose decoder allows `allowed` bytes of table.
    pub fn new(allowed: usize) -> HpackCheck {
        HpackCheck {
            entries: VecDeque::new(),
            size: 0,
            max_size: allowed,
            allowed,
            decoded: Vec::new(),
            recent: Default::default(),
            next_recent: 0,
        }
    }

    /// Check one complete header block (all its fragments, in order), updating the table.
    ///
    /// After an error the state is unspecified: the connection ends.
    pub fn block(&mut self, block: &[u8]) -> Result<(), HpackError> {
        let mut rest = block;
        let mut seen_field = false;
        let mut last_was_update = false;
        while let Some(&first) = rest.first() {
            last_was_update = false;
            if first & 0x80 != 0 {
                // §6.1: indexed header field.
                let index = integer(&mut rest, 7)?;
                self.name_length(index)?;
            } else if first & 0x40 != 0 {
                // §6.2.1: literal with incremental indexing.
                let name = self.literal_name(&mut rest, 6)?;
                let value = self.string(&mut rest)?;
                self.insert(name, value);
            } else if first & 0x20 != 0 {
                // §6.3: dynamic table size update. §4.2: "This dynamic table size update MUST
                // occur at the beginning of the first header block following the change".
                if seen_field {
                    return Err(HpackError::SizeUpdate);
                }
                let max = integer(&mut rest, 5)?;
                if max > self.allowed {
                    return Err(HpackError::SizeUpdate);
                }
                self.max_size = max;
                self.evict_to(max);
                last_was_update = true;
                continue;
            } else {
                // §6.2.2, §6.2.3: literal without indexing, never indexed.
                self.literal_name(&mut rest, 4)?;
                self.string(&mut rest)?;
            }
            seen_field = true;
        }
        if last_was_update {
            // A block of size updates alone carries no field: the update did not precede one.
            return Err(HpackError::SizeUpdate);
        }
        Ok(())
    }

    /// The name length of table entry `index` (1-based: static, then dynamic).
    fn name_length(&self, index: usize) -> Result<usize, HpackError> {
        match index {
            0 => Err(HpackError::Index),
            1..=61 => Ok(usize::from(STATIC_NAME_LENGTHS[index - 1])),
            _ => self
                .entries
                .get(index - 62)
                .map(|&(name, _)| name)
                .ok_or(HpackError::Index),
        }
    }

    /// A literal's name: an index into the tables, or (index 0) a string. Its length.
    fn literal_name(&mut self, rest: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
        match integer(rest, prefix)? {
            0 => self.string(rest),
            index => self.name_length(index),
        }
    }

    /// A string literal (§5.2); its decoded length.
    fn string(&mut self, rest: &mut &[u8]) -> Result<usize, HpackError> {
        let huffman = rest.first().is_some_and(|b| b & 0x80 != 0);
        let len = integer(rest, 7)?;
        let Some((bytes, after)) = rest.split_at_checked(len) else {
            return Err(HpackError::Truncated);
        };
        *rest = after;
        if !huffman {
            return Ok(len);
        }
        if let Some((_, len)) = self.recent.iter().find(|(known, _)| known == bytes) {
            return Ok(*len);
        }
        // The decoder refuses EOS and unknown codes. §5.2: "A padding strictly longer than 7
        // bits MUST be treated as a decoding error. A padding not corresponding to the most
        // significant bits of the code for the EOS symbol MUST be treated as a decoding error."
        // The padding is what the decoded symbols' codes leave of the last octet.
        self.decoded.clear();
        httlib_huffman::decode(
            bytes,
            &mut self.decoded,
            httlib_huffman::DecoderSpeed::FiveBits,
        )
        .map_err(|_| HpackError::Huffman)?;
        let code_bits: usize = self
            .decoded
            .iter()
            .map(|&b| usize::from(httlib_huffman::encoder::table::ENCODE_TABLE[usize::from(b)].0))
            .sum();
        let padding = (bytes.len() * 8)
            .checked_sub(code_bits)
            .ok_or(HpackError::Huffman)?;
        if padding > 7 {
            return Err(HpackError::Huffman);
        }
        let ones = (1u8 << padding) - 1;
        if padding > 0 && bytes.last().is_none_or(|&last| last & ones != ones) {
            return Err(HpackError::Huffman);
        }
        let len = self.decoded.len();
        if bytes.len() <= RECENT_MAX_LEN {
            let slot = &mut self.recent[self.next_recent];
            slot.0.clear();
            slot.0.extend_from_slice(bytes);
            slot.1 = len;
            self.next_recent = (self.next_recent + 1) % RECENT_STRINGS;
        }
        Ok(len)
    }

    /// §4.4: add an entry, evicting the oldest ones to make room; an entry larger than the
    /// table empties it and is not added.
    fn insert(&mut self, name: usize, value: usize) {
        let size = name + value + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.entries.push_front((name, value));
        self.size += size;
    }

    /// Evict the oldest entries until the table holds at most `limit` bytes.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some((name, value)) = self.entries.pop_back() else {
                break;
            };
            self.size -= name + value + ENTRY_OVERHEAD;
        }
    }
}

/// §5.1: an integer with an N-bit prefix, consumed from `rest`.
fn integer(rest: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, mut tail) = rest.split_first().ok_or(HpackError::Integer)?;
    let mask = (1u8 << prefix) - 1;
    let mut value = usize::from(first & mask);
    if value == usize::from(mask) {
        // Continuation octets, 7 bits each, least significant first. No legitimate value
        // needs more than 32 bits (the HTTP/2 library stops at five octets too).
        let mut shift = 0u32;
        loop {
            let (&byte, after) = tail.split_first().ok_or(HpackError::Integer)?;
            tail = after;
            let bits = u64::from(byte & 0x7f) << shift;
            value = value
                .checked_add(usize::try_from(bits).map_err(|_| HpackError::Integer)?)
                .filter(|&v| v <= u32::MAX as usize)
                .ok_or(HpackError::Integer)?;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(HpackError::Integer);
            }
        }
    }
    *rest = tail;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(blocks: &[&[u8]]) -> Result<(), HpackError> {
        let mut check = HpackCheck::new(4096);
        blocks.iter().try_for_each(|b| check.block(b))
    }

    #[test]
    fn the_examples_of_rfc_7541_appendix_c_are_valid() {
        // C.3: requests without Huffman coding, sharing one dynamic table.
        let c3: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x0fwww.example.com",
            b"\x82\x86\x84\xbe\x58\x08no-cache",
            b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value",
        ];
        assert_eq!(check(&c3), Ok(()));
        // C.4: the same with Huffman coding.
        let c4: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        assert_eq!(check(&c4), Ok(()));
    }

    #[test]
    fn indexes_must_name_an_entry() {
        assert_eq!(check(&[b"\x80"]), Err(HpackError::Index));
        assert_eq!(check(&[b"\xbe"]), Err(HpackError::Index));
        assert_eq!(check(&[b"\xbd"]), Ok(()));
        // A literal's name index is checked the same way.
        assert_eq!(check(&[b"\x7e\x01x"]), Err(HpackError::Index));
    }

    #[test]
    fn entries_are_evicted_oldest_first() {
        let mut check = HpackCheck::new(4096);
        // Entries of 32 + 10 + 1 bytes (`:authority: a`) in a table shrunk to 80: only the
        // newest of two stays.
        check.block(b"\x3f\x31\x82").unwrap(); // size update to 31 + 49
        check.block(b"\x41\x01a\x41\x01b").unwrap();
        assert_eq!(check.block(b"\xbe"), Ok(()));
        assert_eq!(check.block(b"\xbf"), Err(HpackError::Index));
        // An entry larger than the whole table empties it.
        let mut large = b"\x41\x7f\x00".to_vec(); // a value of 127 bytes
        large.extend([b'a'; 127]);
        check.block(&large).unwrap();
        assert_eq!(check.block(b"\xbe"), Err(HpackError::Index));
    }

    #[test]
    fn size_updates_come_first_and_within_the_limit() {
        assert_eq!(check(&[b"\x20\x82"]), Ok(()));
        assert_eq!(check(&[b"\x82\x20"]), Err(HpackError::SizeUpdate));
        assert_eq!(check(&[b"\x20"]), Err(HpackError::SizeUpdate));
        // 4097 = 31 + 4066 = 0x1f, then 0xe2 0x1f.
        assert_eq!(check(&[b"\x3f\xe2\x1f\x82"]), Err(HpackError::SizeUpdate));
        assert_eq!(check(&[b"\x3f\xe1\x1f\x82"]), Ok(()));
    }

    #[test]
    fn integers_and_strings_must_fit() {
        assert_eq!(
            check(&[b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]),
            Err(HpackError::Integer)
        );
        assert_eq!(check(&[b"\xff"]), Err(HpackError::Integer));
        assert_eq!(check(&[b"\x40\x05ab"]), Err(HpackError::Truncated));
    }

    #[test]
    fn huffman_strings_must_be_canonical() {
        // `a` is 00011: with three bits of ones padding it is valid.
        assert_eq!(check(&[b"\x7a\x81\x1f"]), Ok(()));
        // Padding of zeros, padding longer than 7 bits, and EOS inside the string.
        assert_eq!(check(&[b"\x7a\x81\x18"]), Err(HpackError::Huffman));
        assert_eq!(check(&[b"\x7a\x82\x1f\xff"]), Err(HpackError::Huffman));
        assert_eq!(
            check(&[b"\x7a\x84\xff\xff\xff\xff"]),
            Err(HpackError::Huffman)
        );
        // A remembered valid string does not let a different, invalid one pass.
        assert_eq!(
            check(&[b"\x7a\x81\x1f", b"\x7a\x81\x1f", b"\x7a\x82\x1f\xff"]),
            Err(HpackError::Huffman)
        );
    }
}

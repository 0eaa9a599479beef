//! HPACK (RFC 7541): the header compression of HTTP/2.
//!
//! * [`Decoder`] turns a client's header blocks into fields, keeping the dynamic table the
//!   client's encoder shares with us. Every decoding error is reported, so the connection can
//!   end with COMPRESSION_ERROR (RFC 9113 §4.3): bad indexes, integers that do not fit, strings
//!   past the block, Huffman codes with EOS or bad padding (§5.2), misplaced or oversized table
//!   size updates (§4.2, §6.3).
//! * [`Encoder`] writes response header blocks. It indexes only the few fields whose values
//!   repeat across responses (`server`, `date`, `content-type`, ...), remembering for each the
//!   last value it inserted, so a repeated value costs one comparison and one octet on the wire;
//!   everything else is a literal without indexing, with the static table's name index when
//!   there is one. Strings are sent raw: Huffman coding would save a few octets at a cost per
//!   bit on every response.
//!
//! Where the RFC leaves room (how large an integer may be), the decoder is lenient: an
//! integer of up to 32 bits is accepted.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};

/// RFC 7541 §4.1: "The size of an entry is the sum of its name's length in octets [...], its
/// value's length in octets, and 32."
const ENTRY_OVERHEAD: usize = 32;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

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

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoding state of one connection: the dynamic table the client's encoder fills.
#[derive(Debug)]
pub struct Decoder {
    /// Dynamic entries, newest first (index 62).
    entries: VecDeque<Entry>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The table's current maximum, set by size updates.
    max_size: usize,
    /// SETTINGS_HEADER_TABLE_SIZE: what a size update may ask for.
    allowed: usize,
    /// Scratch space for Huffman-coded names and values.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// The last few Huffman strings decoded, coded and plain. Clients send the same literals
    /// again and again (a `user-agent` or `:path` they do not index), and decoding is a
    /// function of the bytes alone.
    recent: Recent,
}

/// How many decoded Huffman strings [`Decoder`] remembers, and up to what coded length.
const RECENT_STRINGS: usize = 4;
const RECENT_MAX_LEN: usize = 128;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    /// (coded, decoded)
    slots: [(Vec<u8>, Vec<u8>); RECENT_STRINGS],
    next: usize,
}

impl Recent {
    fn find(&self, coded: &[u8]) -> Option<&[u8]> {
        self.slots
            .iter()
            .find(|(c, _)| !c.is_empty() && c == coded)
            .map(|(_, d)| &d[..])
    }

    fn remember(&mut self, coded: &[u8], decoded: &[u8]) {
        if coded.len() > RECENT_MAX_LEN {
            return;
        }
        let slot = &mut self.slots[self.next];
        slot.0.clear();
        slot.0.extend_from_slice(coded);
        slot.1.clear();
        slot.1.extend_from_slice(decoded);
        self.next = (self.next + 1) % RECENT_STRINGS;
    }
}

impl Decoder {
    /// The state at the start of a connection whose decoder allows `allowed` bytes of table.
    pub fn new(allowed: usize) -> Decoder {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: allowed,
            allowed,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
            recent: Recent::default(),
        }
    }

    /// Decode one complete header block (all its fragments, in order), updating the table and
    /// calling `field(name, value)` for each field in order.
    ///
    /// After an error the state is unspecified: the connection ends.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut rest = block;
        let mut seen_field = false;
        let mut last_was_update = false;
        while let Some(&first) = rest.first() {
            last_was_update = false;
            if first & 0x80 != 0 {
                // §6.1: indexed header field.
                let index = integer(&mut rest, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                // §6.2.1: literal with incremental indexing.
                let index = integer(&mut rest, 6)?;
                let name: Box<[u8]> = match index {
                    0 => string(&mut rest, 7, &mut self.name_buf, &mut self.recent)?.into(),
                    index => self.entry(index)?.0.into(),
                };
                let value: Box<[u8]> =
                    string(&mut rest, 7, &mut self.value_buf, &mut self.recent)?.into();
                field(&name, &value);
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
                let index = integer(&mut rest, 4)?;
                let Decoder {
                    entries,
                    name_buf,
                    value_buf,
                    recent,
                    ..
                } = self;
                let name = match index {
                    0 => string(&mut rest, 7, name_buf, recent)?,
                    index => entry(entries, index)?.0,
                };
                let value = string(&mut rest, 7, value_buf, recent)?;
                field(name, value);
            }
            seen_field = true;
        }
        if last_was_update {
            // A block of size updates alone carries no field: the update did not precede one.
            return Err(HpackError::SizeUpdate);
        }
        Ok(())
    }

    /// Table entry `index` (1-based: static, then dynamic).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        entry(&self.entries, index)
    }

    /// §4.4: add an entry, evicting the oldest ones to make room; an entry larger than the
    /// table empties it and is not added.
    fn insert(&mut self, name: Box<[u8]>, value: Box<[u8]>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
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
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// Entry `index` of the static table followed by `dynamic`.
fn entry(dynamic: &VecDeque<Entry>, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
    match index {
        0 => Err(HpackError::Index),
        1..=61 => {
            let (name, value) = STATIC[index - 1];
            Ok((name.as_bytes(), value.as_bytes()))
        }
        _ => dynamic
            .get(index - 62)
            .map(|(name, value)| (&name[..], &value[..]))
            .ok_or(HpackError::Index),
    }
}

/// A string literal (§5.2), consumed from `rest`: the raw bytes of the block, or the Huffman
/// decoding of them in `scratch`. Its length has a `prefix`-bit prefix, the bit above it being
/// the Huffman flag: 7 in HPACK; QPACK also has names with a 3-bit prefix (RFC 9204 §4.1.2).
pub(crate) fn string<'r, 'b: 'r, 's: 'r>(
    rest: &mut &'b [u8],
    prefix: u8,
    scratch: &'s mut Vec<u8>,
    recent: &mut Recent,
) -> Result<&'r [u8], HpackError> {
    let huffman = rest.first().is_some_and(|b| b & (1 << prefix) != 0);
    let len = integer(rest, prefix)?;
    let Some((bytes, after)) = rest.split_at_checked(len) else {
        return Err(HpackError::Truncated);
    };
    *rest = after;
    if !huffman {
        return Ok(bytes);
    }
    if let Some(decoded) = recent.find(bytes) {
        scratch.clear();
        scratch.extend_from_slice(decoded);
        return Ok(scratch);
    }
    // The decoder refuses EOS and unknown codes. §5.2: "A padding strictly longer than 7
    // bits MUST be treated as a decoding error. A padding not corresponding to the most
    // significant bits of the code for the EOS symbol MUST be treated as a decoding error."
    // The padding is what the decoded symbols' codes leave of the last octet.
    scratch.clear();
    httlib_huffman::decode(bytes, scratch, httlib_huffman::DecoderSpeed::FiveBits)
        .map_err(|_| HpackError::Huffman)?;
    let code_bits: usize = scratch
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
    recent.remember(bytes, scratch);
    Ok(scratch)
}

/// How many response fields [`Encoder`] indexes: values that repeat from one response to the
/// next. Each has a slot remembering the last value inserted for it.
const INDEXED: usize = 10;

/// For a response field name: its [`INDEXED`] slot, if it is indexed, and its index in the
/// static table, if it is there. One `match` answers both.
fn name_info(name: &str) -> (Option<usize>, Option<usize>) {
    match name {
        "server" => Known::Server.index(),
        "date" => Known::Date.index(),
        "content-type" => (Some(2), Some(31)),
        "alt-svc" => Known::AltSvc.index(),
        "accept-ranges" => (Some(4), Some(18)),
        "last-modified" => (Some(5), Some(44)),
        "etag" => (Some(6), Some(34)),
        "vary" => (Some(7), Some(59)),
        "cache-control" => (Some(8), Some(24)),
        "content-encoding" => (Some(9), Some(26)),
        "content-length" => Known::ContentLength.index(),
        "content-range" => (None, Some(30)),
        "location" => (None, Some(46)),
        "allow" => (None, Some(22)),
        "age" => (None, Some(21)),
        "expires" => (None, Some(36)),
        "set-cookie" => (None, Some(55)),
        "via" => (None, Some(60)),
        "link" => (None, Some(45)),
        "content-language" => (None, Some(27)),
        "content-disposition" => (None, Some(25)),
        "content-location" => (None, Some(29)),
        "retry-after" => (None, Some(53)),
        "strict-transport-security" => (None, Some(56)),
        "access-control-allow-origin" => (None, Some(20)),
        "www-authenticate" => (None, Some(61)),
        "proxy-authenticate" => (None, Some(48)),
        "refresh" => (None, Some(52)),
        _ => (None, None),
    }
}

/// A field every response of a session carries, named without a string comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Server,
    Date,
    ContentLength,
    AltSvc,
}

impl Known {
    /// The field name, lowercase.
    pub fn name(self) -> &'static str {
        self.info().0
    }

    /// The name, its [`INDEXED`] slot and its static-table index ([`name_info`] answers the
    /// same for the name from here).
    fn info(self) -> (&'static str, Option<usize>, Option<usize>) {
        let (slot, static_index) = self.index();
        let name = match self {
            Known::Server => "server",
            Known::Date => "date",
            Known::ContentLength => "content-length",
            Known::AltSvc => "alt-svc",
        };
        (name, slot, static_index)
    }

    const fn index(self) -> (Option<usize>, Option<usize>) {
        match self {
            Known::Server => (Some(0), Some(54)),
            Known::Date => (Some(1), Some(33)),
            Known::ContentLength => (None, Some(28)),
            Known::AltSvc => (Some(3), None),
        }
    }
}

/// Largest entry the encoder inserts; longer values go as literals and leave the table to the
/// short, repeated ones.
const MAX_INDEXED_ENTRY: usize = 256;

/// The encoding state of one connection: our half of the dynamic table the client decodes.
#[derive(Debug)]
pub struct Encoder {
    /// The table's maximum: the client's SETTINGS_HEADER_TABLE_SIZE, at most 4096.
    max_size: usize,
    /// A size update owed at the start of the next block (§4.2), after the client lowered it.
    update: Option<usize>,
    size: usize,
    /// Sizes of the live entries, newest first.
    live: VecDeque<usize>,
    /// Entries ever inserted.
    inserted: u64,
    /// Per [`INDEXED`] name: the last value inserted and its insertion number.
    slots: [Option<(Vec<u8>, u64)>; INDEXED],
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            max_size: 4096,
            update: None,
            size: 0,
            live: VecDeque::new(),
            inserted: 0,
            slots: Default::default(),
        }
    }
}

impl Encoder {
    /// The client's SETTINGS_HEADER_TABLE_SIZE changed: our table stays within it (and within
    /// 4096), announced by a size update at the start of the next block.
    pub fn set_max_table_size(&mut self, peer: u32) {
        let max = usize::try_from(peer).unwrap_or(usize::MAX).min(4096);
        if max < self.max_size {
            self.max_size = max;
            self.evict_to(max);
            self.update = Some(self.update.map_or(max, |u| u.min(max)));
        }
    }

    /// Start a block: a size update if one is owed.
    pub fn begin(&mut self, out: &mut BytesMut) {
        if let Some(max) = self.update.take() {
            put_integer(out, 0x20, 5, max);
        }
    }

    /// `:status`, from the static table when it is there.
    pub fn status(&mut self, code: u16, out: &mut BytesMut) {
        let index = match code {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => {
                out.put_u8(0x08); // literal without indexing, name index 8 (:status)
                let mut digits = itoa::Buffer::new();
                put_string(out, digits.format(code).as_bytes());
                return;
            }
        };
        out.put_u8(0x80 | index);
    }

    /// One regular field. `name` must be lowercase (as `http::HeaderName` is).
    pub fn field(&mut self, name: &str, value: &[u8], out: &mut BytesMut) {
        let (slot, static_index) = name_info(name);
        self.encode(name, slot, static_index, value, out);
    }

    /// One of the fields a session adds to every response, without looking its name up.
    pub fn known(&mut self, field: Known, value: &[u8], out: &mut BytesMut) {
        let (name, slot, static_index) = field.info();
        self.encode(name, slot, static_index, value, out);
    }

    fn encode(
        &mut self,
        name: &str,
        slot: Option<usize>,
        static_index: Option<usize>,
        value: &[u8],
        out: &mut BytesMut,
    ) {
        if let Some(slot) = slot {
            let size = name.len() + value.len() + ENTRY_OVERHEAD;
            if size <= MAX_INDEXED_ENTRY && size <= self.max_size {
                if let Some((last, seq)) = &self.slots[slot]
                    && self.inserted - seq <= self.live.len() as u64
                    && last.as_slice() == value
                {
                    // Index of the entry inserted `seq`-th: the newest is 62.
                    let index = 62 + (self.inserted - 1 - *seq) as usize;
                    put_integer(out, 0x80, 7, index);
                    return;
                }
                // §6.2.1: literal with incremental indexing.
                put_literal(out, 0x40, 6, static_index, name, value);
                self.evict_to(self.max_size - size);
                self.live.push_front(size);
                self.size += size;
                let (last, seq) = self.slots[slot].get_or_insert_default();
                last.clear();
                last.extend_from_slice(value);
                *seq = self.inserted;
                self.inserted += 1;
                return;
            }
        }
        // §6.2.2: literal without indexing.
        put_literal(out, 0x00, 4, static_index, name, value);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(size) = self.live.pop_back() else {
                break;
            };
            self.size -= size;
        }
    }
}

/// §5.1: `value` with an N-bit prefix, the other bits of the first octet being `flags`.
pub(crate) fn put_integer(out: &mut BytesMut, flags: u8, prefix: u8, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 128 {
        out.put_u8((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.put_u8(rest as u8);
}

/// §6.2: a literal field of the kind `flags` and name-index `prefix` say: the name by its
/// static index when it has one, else as a string; then the value.
fn put_literal(
    out: &mut BytesMut,
    flags: u8,
    prefix: u8,
    static_index: Option<usize>,
    name: &str,
    value: &[u8],
) {
    match static_index {
        Some(index) => put_integer(out, flags, prefix, index),
        None => {
            out.put_u8(flags);
            put_string(out, name.as_bytes());
        }
    }
    put_string(out, value);
}

/// §5.2: a raw (not Huffman-coded) string literal.
fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    put_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// §5.1: an integer with an N-bit prefix, consumed from `rest`.
pub(crate) fn integer(rest: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, mut tail) = rest.split_first().ok_or(HpackError::Integer)?;
    // QPACK's Required Insert Count has a prefix of all 8 bits (RFC 9204 §4.5.1.1).
    let mask = ((1u16 << prefix) - 1) as u8;
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
        let mut decoder = Decoder::new(4096);
        blocks.iter().try_for_each(|b| decoder.decode(b, |_, _| {}))
    }

    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut out = Vec::new();
        decoder.decode(block, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        })?;
        Ok(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A known field is encoded exactly as the same field by name, and decodes to it.
    #[test]
    fn known_fields_agree_with_their_names() {
        for (known, value) in [
            (Known::Server, "switchyard"),
            (Known::Date, "Fri, 04 Dec 2026 23:24:04 GMT"),
            (Known::ContentLength, "1024"),
            (Known::AltSvc, "h3=\":443\"; ma=86400"),
        ] {
            let (name, slot, static_index) = known.info();
            assert_eq!((slot, static_index), name_info(name), "{name}");
            let (mut by_name, mut by_known) = (Encoder::default(), Encoder::default());
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            for _ in 0..2 {
                by_name.field(name, value.as_bytes(), &mut a);
                by_known.known(known, value.as_bytes(), &mut b);
            }
            assert_eq!(a, b, "{name}");
            let mut decoder = Decoder::new(4096);
            assert_eq!(
                fields(&mut decoder, &a).unwrap(),
                pairs(&[(name, value), (name, value)])
            );
        }
    }

    #[test]
    fn the_examples_of_rfc_7541_appendix_c_decode_to_their_fields() {
        // C.3: requests without Huffman coding, sharing one dynamic table; C.4: the same
        // requests with Huffman coding.
        let c3: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x0fwww.example.com",
            b"\x82\x86\x84\xbe\x58\x08no-cache",
            b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value",
        ];
        let c4: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        for blocks in [c3, c4] {
            let mut decoder = Decoder::new(4096);
            assert_eq!(fields(&mut decoder, blocks[0]), Ok(pairs(&base)));
            let mut second = base.to_vec();
            second.push(("cache-control", "no-cache"));
            assert_eq!(fields(&mut decoder, blocks[1]), Ok(pairs(&second)));
            let third = [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ];
            assert_eq!(fields(&mut decoder, blocks[2]), Ok(pairs(&third)));
            // C.3.3 / C.4.3: three entries, 164 octets.
            assert_eq!(decoder.size, 164);
        }
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
        let mut decoder = Decoder::new(4096);
        // Entries of 32 + 10 + 1 bytes (`:authority: a`) in a table shrunk to 80: only the
        // newest of two stays.
        decoder.decode(b"\x3f\x31\x82", |_, _| {}).unwrap(); // size update to 31 + 49
        decoder.decode(b"\x41\x01a\x41\x01b", |_, _| {}).unwrap();
        assert_eq!(
            fields(&mut decoder, b"\xbe"),
            Ok(pairs(&[(":authority", "b")]))
        );
        assert_eq!(check_with(&mut decoder, b"\xbf"), Err(HpackError::Index));
        // An entry larger than the whole table empties it.
        let mut large = b"\x41\x7f\x00".to_vec(); // a value of 127 bytes
        large.extend([b'a'; 127]);
        decoder.decode(&large, |_, _| {}).unwrap();
        assert_eq!(check_with(&mut decoder, b"\xbe"), Err(HpackError::Index));
    }

    fn check_with(decoder: &mut Decoder, block: &[u8]) -> Result<(), HpackError> {
        decoder.decode(block, |_, _| {})
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
        // A remembered string decodes the same again, and does not let a different, invalid
        // one pass.
        let mut decoder = Decoder::new(4096);
        for _ in 0..2 {
            assert_eq!(
                fields(&mut decoder, b"\x7a\x81\x1f"),
                Ok(pairs(&[("user-agent", "a")]))
            );
        }
        assert_eq!(
            check_with(&mut decoder, b"\x7a\x82\x1f\xff"),
            Err(HpackError::Huffman)
        );
    }

    fn encode(encoder: &mut Encoder, status: u16, list: &[(&str, &str)]) -> BytesMut {
        let mut out = BytesMut::new();
        encoder.begin(&mut out);
        encoder.status(status, &mut out);
        for (name, value) in list {
            encoder.field(name, value.as_bytes(), &mut out);
        }
        out
    }

    #[test]
    fn encoded_responses_decode_to_the_same_fields_and_repeats_are_one_octet() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::new(4096);
        let first = [
            ("server", "switchyard"),
            ("date", "Fri, 04 Dec 2026 20:00:00 GMT"),
            ("content-type", "text/html"),
            ("content-length", "1024"),
            ("x-custom", "one"),
        ];
        let block = encode(&mut encoder, 200, &first);
        let mut expected = vec![(":status", "200")];
        expected.extend(first);
        assert_eq!(fields(&mut decoder, &block), Ok(pairs(&expected)));
        // Same values again: server, date and content-type are one octet each.
        let again = encode(&mut encoder, 200, &first[..3]);
        assert_eq!(again.len(), 4);
        assert_eq!(fields(&mut decoder, &again), Ok(pairs(&expected[..4])));
        // A new date is inserted; the old one is no longer referenced, the others still are.
        let next = [
            ("server", "switchyard"),
            ("date", "Fri, 04 Dec 2026 20:00:01 GMT"),
            ("content-type", "text/html"),
        ];
        let block = encode(&mut encoder, 404, &next);
        let mut expected = vec![(":status", "404")];
        expected.extend(next);
        assert_eq!(fields(&mut decoder, &block), Ok(pairs(&expected)));
        let block = encode(&mut encoder, 418, &next);
        expected[0] = (":status", "418");
        assert_eq!(block.len(), 1 + 4 + 3);
        assert_eq!(fields(&mut decoder, &block), Ok(pairs(&expected)));
    }

    #[test]
    fn a_smaller_peer_table_is_announced_and_respected() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::new(4096);
        let list = [("server", "switchyard"), ("etag", "\"abc\"")];
        let block = encode(&mut encoder, 200, &list);
        fields(&mut decoder, &block).unwrap();
        // The client lowers its table to 50 octets: one entry of 48 fits, two do not.
        encoder.set_max_table_size(50);
        let mut small = Decoder::new(50);
        small.entries = decoder.entries.clone();
        small.size = decoder.size;
        for _ in 0..3 {
            let block = encode(&mut encoder, 200, &list);
            let mut expected = vec![(":status", "200")];
            expected.extend(list);
            assert_eq!(fields(&mut small, &block), Ok(pairs(&expected)));
            assert!(small.size <= 50);
        }
        // Table size 0: nothing is indexed any more.
        encoder.set_max_table_size(0);
        let block = encode(&mut encoder, 200, &list);
        fields(&mut small, &block).unwrap();
        assert_eq!(small.size, 0);
    }
}

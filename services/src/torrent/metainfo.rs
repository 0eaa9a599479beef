//! BitTorrent v1 metainfo for one served file (BEP 3), its web seed (BEP 19) and magnet link
//! (BEP 9). Pure functions: bytes in, bytes out.
//!
//! The info dictionary is serialised by `librqbit-bencode` from `librqbit-core`'s
//! `TorrentMetaV1Info`; its SHA-1 is the info-hash. The outer dictionary is written here around
//! those exact bytes, so the info-hash always matches what a client hashes.

use librqbit_buffers::ByteBufOwned;
use librqbit_core::Id20;
use librqbit_core::torrent_metainfo::TorrentMetaV1Info;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::{Digest, Sha1};
use switchyard_conf::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};

/// The automatic piece length stays within these bounds (what common torrent creators pick).
pub const AUTO_MIN_PIECE: u32 = 256 * 1024;
pub const AUTO_MAX_PIECE: u32 = 4 * 1024 * 1024;
/// The automatic piece length aims at about this many pieces.
const TARGET_PIECES: u64 = 1500;

/// The usual heuristic: the smallest power of two giving at most ~1500 pieces, clamped to
/// 256 KiB ..= 4 MiB (a 256 MiB file gets 256 KiB pieces, a 4 GiB file 4 MiB ones).
pub fn auto_piece_length(len: u64) -> u32 {
    let wanted = len.div_ceil(TARGET_PIECES).max(1).next_power_of_two();
    wanted.clamp(u64::from(AUTO_MIN_PIECE), u64::from(AUTO_MAX_PIECE)) as u32
}

/// What a single-file info dictionary holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub length: u64,
    pub piece_length: u32,
    /// 20 bytes of SHA-1 per piece, in order.
    pub pieces: Vec<u8>,
}

/// Why stored info bytes were not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInfo(pub String);

impl Info {
    /// Bencode the info dictionary (keys sorted, as BEP 3 requires).
    pub fn encode(&self) -> Vec<u8> {
        let info = TorrentMetaV1Info::<ByteBufOwned> {
            name: Some(ByteBufOwned::from(self.name.as_bytes().to_vec())),
            pieces: ByteBufOwned::from(self.pieces.clone()),
            piece_length: self.piece_length,
            length: Some(self.length),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(self.pieces.len() + self.name.len() + 64);
        // Writing into a Vec cannot fail; the types have no maps with non-string keys.
        if let Err(e) = librqbit_bencode::bencode_serialize_to_writer(&info, &mut out) {
            unreachable!("bencoding an info dictionary into memory failed: {e}");
        }
        out
    }

    /// Parse info bytes (from the on-disk cache) and check they describe a single file.
    pub fn decode(bytes: &[u8]) -> Result<Info, BadInfo> {
        let info: TorrentMetaV1Info<ByteBufOwned> =
            librqbit_bencode::from_bytes(bytes).map_err(|e| BadInfo(e.to_string()))?;
        let length = info.length.ok_or_else(|| BadInfo("no length".into()))?;
        let name = info
            .name
            .as_ref()
            .and_then(|n| std::str::from_utf8(n.as_ref()).ok())
            .ok_or_else(|| BadInfo("no UTF-8 name".into()))?
            .to_owned();
        let pl = info.piece_length;
        if !pl.is_power_of_two() || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl) {
            return Err(BadInfo(format!("piece length {pl}")));
        }
        let pieces = info.pieces.as_ref().to_vec();
        if pieces.len() as u64 != length.div_ceil(u64::from(pl)) * 20 {
            return Err(BadInfo("piece count does not match the length".into()));
        }
        Ok(Info {
            name,
            length,
            piece_length: pl,
            pieces,
        })
    }
}

/// SHA-1 of the bencoded info dictionary (BEP 3).
pub fn info_hash(info_bytes: &[u8]) -> Id20 {
    Id20::new(Sha1::digest(info_bytes).into())
}

/// The `.torrent` file: `announce`, `created by`, `info` (exactly `info_bytes`) and, when
/// given, `url-list` with the web seed (BEP 19). Keys in sorted order.
pub fn torrent_file(info_bytes: &[u8], announce: &str, web_seed: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(info_bytes.len() + 256);
    out.push(b'd');
    put_str(&mut out, b"announce");
    put_str(&mut out, announce.as_bytes());
    put_str(&mut out, b"created by");
    put_str(&mut out, b"Switchyard");
    put_str(&mut out, b"info");
    out.extend_from_slice(info_bytes);
    if let Some(url) = web_seed {
        put_str(&mut out, b"url-list");
        out.push(b'l');
        put_str(&mut out, url.as_bytes());
        out.push(b'e');
    }
    out.push(b'e');
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

/// Characters kept as they are in magnet parameters (RFC 3986 unreserved).
const MAGNET_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `magnet:?xt=urn:btih:HEX&dn=NAME&xl=LEN&tr=ANNOUNCE&ws=WEBSEED` (BEP 9, with the `ws`
/// web-seed parameter clients such as libtorrent and aria2 read).
pub fn magnet(hash: &Id20, name: &str, length: u64, announce: &str, web_seed: &str) -> String {
    let enc = |s: &str| utf8_percent_encode(s, MAGNET_KEEP).to_string();
    format!(
        "magnet:?xt=urn:btih:{}&dn={}&xl={length}&tr={}&ws={}",
        hash.as_string(),
        enc(name),
        enc(announce),
        enc(web_seed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use librqbit_core::torrent_metainfo::torrent_from_bytes;

    fn info() -> Info {
        Info {
            name: "big file.iso".into(),
            length: 300_000,
            piece_length: 262_144,
            pieces: vec![7; 40],
        }
    }

    #[test]
    fn piece_length_heuristic() {
        let cases = [
            (0, 256 * 1024),
            (1, 256 * 1024),
            (256 << 20, 256 * 1024),
            (1 << 30, 1 << 20),
            (4 << 30, 4 << 20),
            (100 << 30, 4 << 20),
        ];
        for (len, expected) in cases {
            assert_eq!(auto_piece_length(len), expected, "{len}");
        }
    }

    #[test]
    fn info_round_trips_and_is_canonical() {
        let bytes = info().encode();
        assert_eq!(
            &bytes[..],
            &b"d6:lengthi300000e4:name12:big file.iso12:piece lengthi262144e6:pieces40:\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07e"[..]
        );
        assert_eq!(Info::decode(&bytes), Ok(info()));
        let mut wrong = info();
        wrong.pieces.truncate(20);
        assert!(Info::decode(&wrong.encode()).is_err());
        assert!(Info::decode(b"d4:name1:xe").is_err());
    }

    #[test]
    fn torrent_file_parses_with_librqbit_and_hashes_match() {
        let bytes = info().encode();
        let torrent = torrent_file(
            &bytes,
            "http://127.0.0.1:8080/announce",
            Some("http://127.0.0.1:8080/big%20file.iso"),
        );
        let parsed = torrent_from_bytes(&torrent).expect("valid torrent");
        assert_eq!(parsed.info_hash, info_hash(&bytes));
        assert_eq!(
            parsed.announce.as_ref().map(|a| a.as_ref().to_vec()),
            Some(b"http://127.0.0.1:8080/announce".to_vec())
        );
        let needle = b"8:url-listl36:http://127.0.0.1:8080/big%20file.isoe";
        assert!(torrent.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn magnet_carries_hash_name_tracker_and_web_seed() {
        let hash = info_hash(b"x");
        let m = magnet(
            &hash,
            "a b&c.iso",
            5,
            "http://h:1/announce",
            "http://h:1/a%20b",
        );
        assert_eq!(
            m,
            format!(
                "magnet:?xt=urn:btih:{}&dn=a%20b%26c.iso&xl=5&tr=http%3A%2F%2Fh%3A1%2Fannounce&ws=http%3A%2F%2Fh%3A1%2Fa%2520b",
                hash.as_string()
            )
        );
    }
}

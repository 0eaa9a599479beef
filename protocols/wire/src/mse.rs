//! BitTorrent Message Stream Encryption (MSE, also "protocol encryption"), the receiving side.
//!
//! Many clients (aria2c, libtorrent, qBittorrent by default) open a peer connection with an
//! MSE handshake instead of the plain `\x13BitTorrent protocol`, and fall back to plain only
//! after it fails, a second later. The exchange, as the specification numbers it (A is the
//! connecting peer, B is us):
//!
//! 1. A→B: Diffie-Hellman Ya (96 bytes), PadA (0 to 512 random bytes)
//! 2. B→A: Yb, PadB
//! 3. A→B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!    ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4. B→A: ENCRYPT(VC, crypto_select, len(PadD), PadD), then the payload stream
//!
//! S is the shared DH secret, SKEY the info-hash, HASH SHA-1, ENCRYPT RC4 keyed with
//! HASH('keyA', S, SKEY) from A and HASH('keyB', S, SKEY) from B, the first 1024 bytes of each
//! keystream discarded; VC is eight zero bytes. IA is A's first payload (its BitTorrent
//! handshake). B selects plaintext when A offers it (the payload then flows unencrypted, as
//! aria2c and libtorrent ask by default), else RC4.
//!
//! [`Responder`] is sans-IO: it is fed the bytes received so far, says what to send, and ends
//! with the info-hash, the decrypted initial payload and, for RC4, the ciphers. Randomness
//! (the private key, PadB) comes from the caller.

use bytes::{Buf, BytesMut};
use num_bigint::BigUint;
use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

/// The 768-bit MSE prime (the specification's P); the generator is 2.
const PRIME: [u8; 96] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];
/// Length of Ya, Yb and S.
pub const KEY_LEN: usize = 96;
/// Longest PadA, PadB, PadC, PadD.
pub const MAX_PAD: usize = 512;
/// The longest IA we take: a BitTorrent handshake is 68 bytes; a client may add a message or
/// two, nothing like this.
pub const MAX_INITIAL: usize = 16 * 1024;
/// Bytes the caller should hand as randomness to [`Responder::new`]: the private key, then
/// one byte choosing PadB's length, then PadB's bytes.
pub const RANDOM_LEN: usize = PRIVATE_LEN + 1 + MAX_PAD;
/// The specification recommends private keys of 160 bits.
const PRIVATE_LEN: usize = 20;
const VC: [u8; 8] = [0; 8];
const CRYPTO_PLAINTEXT: u32 = 0x01;
const CRYPTO_RC4: u32 = 0x02;

/// The handshake failed: the connection is not (or not for us) an MSE peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MseError {
    /// Ya is not a valid public key (0, 1, P-1 or not below P).
    BadKey,
    /// HASH('req1', S) did not come within PadA's bound.
    NoSync,
    /// SKEY is none of the torrents we seed.
    UnknownTorrent,
    /// VC was not eight zero bytes (a wrong key, or not MSE).
    BadVerification,
    /// A pad or IA longer than allowed.
    TooLong,
    /// The peer offers neither plaintext nor RC4.
    NoCommonMethod,
}

impl std::fmt::Display for MseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MseError::BadKey => "MSE: invalid public key",
            MseError::NoSync => "MSE: no synchronisation hash within the padding bound",
            MseError::UnknownTorrent => "MSE: unknown info-hash",
            MseError::BadVerification => "MSE: verification constant mismatch",
            MseError::TooLong => "MSE: padding or initial payload too long",
            MseError::NoCommonMethod => "MSE: no common crypto method",
        })
    }
}

impl std::error::Error for MseError {}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes (Yb and PadB), then feed more input.
    Send(Vec<u8>),
    /// Feed more input.
    Need,
    /// The handshake is complete.
    Done(Box<Established>),
}

/// A completed handshake.
pub struct Established {
    pub info_hash: [u8; 20],
    /// Step 4, to send before anything else.
    pub reply: Vec<u8>,
    /// The peer's initial payload, decrypted, followed by whatever it sent after it (decrypted
    /// too under RC4): the start of the peer-wire stream.
    pub initial: Vec<u8>,
    /// RC4 both ways from here on; `None` when plaintext was selected.
    pub cipher: Option<Cipher>,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("initial", &self.initial.len())
            .field("rc4", &self.cipher.is_some())
            .finish()
    }
}

/// The two RC4 streams of an established connection.
pub struct Cipher {
    decrypt: Rc4<U20>,
    encrypt: Rc4<U20>,
}

impl Cipher {
    /// Decrypt bytes received, in place.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.decrypt.apply_keystream(buf);
    }

    /// Encrypt bytes to send, in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.encrypt.apply_keystream(buf);
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(RC4)")
    }
}

enum State {
    /// Waiting for Ya.
    PublicKey,
    /// Looking for HASH('req1', S) after PadA.
    Sync,
    /// HASH('req2', SKEY) xor HASH('req3', S).
    Torrent,
    /// VC, crypto_provide, len(PadC).
    Header,
    PadC {
        len: usize,
    },
    InitialLength,
    Initial {
        len: usize,
    },
    Done,
}

/// The receiving side of one MSE handshake.
pub struct Responder {
    private: BigUint,
    pad_b: Vec<u8>,
    state: State,
    secret: [u8; KEY_LEN],
    info_hash: [u8; 20],
    keys: Option<Cipher>,
    provide: u32,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Responder {
    /// `random` must hold [`RANDOM_LEN`] bytes from a cryptographic source.
    pub fn new(random: &[u8; RANDOM_LEN]) -> Responder {
        let (private, rest) = random.split_at(PRIVATE_LEN);
        let pad_len = usize::from(rest[0]) * MAX_PAD / 255;
        Responder {
            private: BigUint::from_bytes_be(private),
            pad_b: rest[1..=pad_len].to_vec(),
            state: State::PublicKey,
            secret: [0; KEY_LEN],
            info_hash: [0; 20],
            keys: None,
            provide: 0,
        }
    }

    /// Advance with `input` (everything received and not yet consumed; consumed bytes are
    /// removed from it). `torrent` maps HASH('req2', SKEY) to the info-hash it was made from,
    /// for the torrents we seed.
    pub fn poll(
        &mut self,
        input: &mut BytesMut,
        torrent: impl Fn(&[u8; 20]) -> Option<[u8; 20]>,
    ) -> Result<Step, MseError> {
        loop {
            match self.state {
                State::PublicKey => {
                    if input.len() < KEY_LEN {
                        return Ok(Step::Need);
                    }
                    let prime = BigUint::from_bytes_be(&PRIME);
                    let ya = BigUint::from_bytes_be(&input[..KEY_LEN]);
                    let one = BigUint::from(1u8);
                    if ya <= one || ya >= &prime - &one {
                        return Err(MseError::BadKey);
                    }
                    input.advance(KEY_LEN);
                    self.secret = to_key(&ya.modpow(&self.private, &prime));
                    let yb = to_key(&BigUint::from(2u8).modpow(&self.private, &prime));
                    let mut out = Vec::with_capacity(KEY_LEN + self.pad_b.len());
                    out.extend_from_slice(&yb);
                    out.extend_from_slice(&self.pad_b);
                    self.state = State::Sync;
                    return Ok(Step::Send(out));
                }
                State::Sync => {
                    // PadA is at most MAX_PAD bytes: the hash ends within MAX_PAD + 20 of Ya.
                    let sync = hash(&[b"req1", &self.secret]);
                    let window = input.len().min(MAX_PAD + 20);
                    match memchr::memmem::find(&input[..window], &sync) {
                        Some(at) => {
                            input.advance(at + 20);
                            self.state = State::Torrent;
                        }
                        None if window == MAX_PAD + 20 => return Err(MseError::NoSync),
                        None => return Ok(Step::Need),
                    }
                }
                State::Torrent => {
                    let Some(masked) = input.get(..20) else {
                        return Ok(Step::Need);
                    };
                    let req3 = hash(&[b"req3", &self.secret]);
                    let mut req2 = [0u8; 20];
                    for (i, b) in req2.iter_mut().enumerate() {
                        *b = masked[i] ^ req3[i];
                    }
                    self.info_hash = torrent(&req2).ok_or(MseError::UnknownTorrent)?;
                    input.advance(20);
                    let key_a = hash(&[b"keyA", &self.secret, &self.info_hash]);
                    let key_b = hash(&[b"keyB", &self.secret, &self.info_hash]);
                    self.keys = Some(Cipher {
                        decrypt: rc4_discarding(&key_a),
                        encrypt: rc4_discarding(&key_b),
                    });
                    self.state = State::Header;
                }
                State::Header => {
                    let Some(mut header) = self.take::<14>(input) else {
                        return Ok(Step::Need);
                    };
                    self.decrypt(&mut header);
                    if header[..8] != VC {
                        return Err(MseError::BadVerification);
                    }
                    self.provide =
                        u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
                    let len = usize::from(u16::from_be_bytes([header[12], header[13]]));
                    if len > MAX_PAD {
                        return Err(MseError::TooLong);
                    }
                    self.state = State::PadC { len };
                }
                State::PadC { len } => {
                    if input.len() < len {
                        return Ok(Step::Need);
                    }
                    let mut pad = input.split_to(len);
                    self.decrypt(&mut pad);
                    self.state = State::InitialLength;
                }
                State::InitialLength => {
                    let Some(mut len) = self.take::<2>(input) else {
                        return Ok(Step::Need);
                    };
                    self.decrypt(&mut len);
                    let len = usize::from(u16::from_be_bytes(len));
                    if len > MAX_INITIAL {
                        return Err(MseError::TooLong);
                    }
                    self.state = State::Initial { len };
                }
                State::Initial { len } => {
                    if input.len() < len {
                        return Ok(Step::Need);
                    }
                    let mut initial = input.split_to(len).to_vec();
                    self.decrypt(&mut initial);
                    let select = if self.provide & CRYPTO_PLAINTEXT != 0 {
                        CRYPTO_PLAINTEXT
                    } else if self.provide & CRYPTO_RC4 != 0 {
                        CRYPTO_RC4
                    } else {
                        return Err(MseError::NoCommonMethod);
                    };
                    let mut keys = self.keys.take().expect("set in State::Torrent");
                    let mut reply = Vec::with_capacity(14);
                    reply.extend_from_slice(&VC);
                    reply.extend_from_slice(&select.to_be_bytes());
                    reply.extend_from_slice(&0u16.to_be_bytes());
                    keys.encrypt(&mut reply);
                    // What followed IA is already the payload stream, in the selected mode.
                    let mut rest = input.split().to_vec();
                    let cipher = (select == CRYPTO_RC4).then(|| {
                        keys.decrypt(&mut rest);
                        keys
                    });
                    initial.extend_from_slice(&rest);
                    self.state = State::Done;
                    return Ok(Step::Done(Box::new(Established {
                        info_hash: self.info_hash,
                        reply,
                        initial,
                        cipher,
                    })));
                }
                State::Done => return Ok(Step::Need),
            }
        }
    }

    fn take<const N: usize>(&self, input: &mut BytesMut) -> Option<[u8; N]> {
        let bytes: [u8; N] = input.get(..N)?.try_into().ok()?;
        input.advance(N);
        Some(bytes)
    }

    fn decrypt(&mut self, buf: &mut [u8]) {
        if let Some(keys) = &mut self.keys {
            keys.decrypt(buf);
        }
    }
}

/// HASH('req2', SKEY): how the connecting peer names the torrent it wants.
pub fn torrent_key(info_hash: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", info_hash])
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A 96-byte big-endian key, left-padded with zeros.
fn to_key(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn rc4_discarding(key: &[u8; 20]) -> Rc4<U20> {
    let mut rc4 = Rc4::<U20>::new(key.into());
    let mut discard = [0u8; 1024];
    rc4.apply_keystream(&mut discard);
    rc4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connecting side, as a client implements it, to drive the responder.
    struct Initiator {
        private: BigUint,
        pad_a: Vec<u8>,
    }

    impl Initiator {
        fn hello(&self) -> Vec<u8> {
            let prime = BigUint::from_bytes_be(&PRIME);
            let mut out = to_key(&BigUint::from(2u8).modpow(&self.private, &prime)).to_vec();
            out.extend_from_slice(&self.pad_a);
            out
        }

        /// Step 3 for `info_hash`, after reading Yb; and A's ciphers.
        fn request(
            &self,
            yb: &[u8],
            info_hash: &[u8; 20],
            provide: u32,
            initial: &[u8],
        ) -> (Vec<u8>, Rc4<U20>, Rc4<U20>) {
            let prime = BigUint::from_bytes_be(&PRIME);
            let secret = to_key(&BigUint::from_bytes_be(yb).modpow(&self.private, &prime));
            let mut out = hash(&[b"req1", &secret]).to_vec();
            let req2 = torrent_key(info_hash);
            let req3 = hash(&[b"req3", &secret]);
            out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
            let mut enc = rc4_discarding(&hash(&[b"keyA", &secret, info_hash]));
            let dec = rc4_discarding(&hash(&[b"keyB", &secret, info_hash]));
            let mut tail = VC.to_vec();
            tail.extend_from_slice(&provide.to_be_bytes());
            tail.extend_from_slice(&3u16.to_be_bytes());
            tail.extend_from_slice(b"pad");
            tail.extend_from_slice(&(initial.len() as u16).to_be_bytes());
            tail.extend_from_slice(initial);
            enc.apply_keystream(&mut tail);
            out.extend_from_slice(&tail);
            (out, enc, dec)
        }
    }

    const HASH: [u8; 20] = [7; 20];

    fn known(k: &[u8; 20]) -> Option<[u8; 20]> {
        (*k == torrent_key(&HASH)).then_some(HASH)
    }

    fn random(seed: u8) -> [u8; RANDOM_LEN] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    /// Runs a whole handshake, feeding the responder `chunk` bytes at a time.
    fn handshake(provide: u32, chunk: usize) -> (Established, Rc4<U20>, Rc4<U20>) {
        let a = Initiator {
            private: BigUint::from_bytes_be(&[0x5a; 20]),
            pad_a: vec![0xaa; 77],
        };
        let mut b = Responder::new(&random(3));
        let mut input = BytesMut::new();
        let mut pending = a.hello();
        let mut yb = None;
        loop {
            let n = chunk.min(pending.len());
            input.extend_from_slice(&pending[..n]);
            pending.drain(..n);
            match b.poll(&mut input, known).expect("handshake") {
                Step::Send(bytes) => {
                    assert!(bytes.len() >= KEY_LEN && bytes.len() <= KEY_LEN + MAX_PAD);
                    let (req, enc, dec) = a.request(
                        &bytes[..KEY_LEN],
                        &HASH,
                        provide,
                        b"\x13BitTorrent protocol",
                    );
                    pending.extend_from_slice(&req);
                    yb = Some((enc, dec));
                }
                Step::Need => assert!(!pending.is_empty(), "stalled"),
                Step::Done(done) => {
                    let (enc, dec) = yb.expect("Yb was sent");
                    return (*done, enc, dec);
                }
            }
        }
    }

    /// The torrent store indexes torrents by this value: Python's
    /// hashlib.sha1(b"req2" + bytes(range(20))).
    #[test]
    fn torrent_key_is_sha1_of_req2_and_the_info_hash() {
        let hex: String = torrent_key(&std::array::from_fn(|i| i as u8))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "4321b2c3fbde0a4fa12ca762484f5b8dc9cf4b5f");
    }

    #[test]
    fn plaintext_is_selected_when_offered() {
        for chunk in [1, 7, 96, 4096] {
            let (done, _enc, mut dec) = handshake(CRYPTO_PLAINTEXT | CRYPTO_RC4, chunk);
            assert_eq!(done.info_hash, HASH);
            assert_eq!(done.initial, b"\x13BitTorrent protocol");
            assert!(done.cipher.is_none());
            let mut reply = done.reply.clone();
            dec.apply_keystream(&mut reply);
            assert_eq!(&reply[..8], &VC);
            assert_eq!(reply[8..12], CRYPTO_PLAINTEXT.to_be_bytes());
        }
    }

    #[test]
    fn rc4_when_it_is_all_the_peer_offers() {
        let (done, mut enc, mut dec) = handshake(CRYPTO_RC4, 5);
        let mut cipher = done.cipher.expect("rc4 selected");
        let mut reply = done.reply.clone();
        dec.apply_keystream(&mut reply);
        assert_eq!(reply[8..12], CRYPTO_RC4.to_be_bytes());
        // Both directions continue the keystreams.
        let mut from_a = *b"interested";
        enc.apply_keystream(&mut from_a);
        cipher.decrypt(&mut from_a);
        assert_eq!(&from_a, b"interested");
        let mut from_b = *b"unchoke";
        cipher.encrypt(&mut from_b);
        dec.apply_keystream(&mut from_b);
        assert_eq!(&from_b, b"unchoke");
    }

    #[test]
    fn unknown_torrent_and_bad_keys_are_refused() {
        let a = Initiator {
            private: BigUint::from_bytes_be(&[9; 20]),
            pad_a: Vec::new(),
        };
        let mut b = Responder::new(&random(1));
        let mut input = BytesMut::from(&a.hello()[..]);
        let Ok(Step::Send(yb)) = b.poll(&mut input, known) else {
            panic!("Yb expected");
        };
        let (req, _, _) = a.request(&yb[..KEY_LEN], &[1; 20], CRYPTO_PLAINTEXT, b"x");
        input.extend_from_slice(&req);
        assert_eq!(
            b.poll(&mut input, known).err(),
            Some(MseError::UnknownTorrent)
        );

        for bad in [[0u8; KEY_LEN], [0xff; KEY_LEN]] {
            let mut b = Responder::new(&random(2));
            let mut input = BytesMut::from(&bad[..]);
            assert_eq!(b.poll(&mut input, known).err(), Some(MseError::BadKey));
        }
    }

    #[test]
    fn garbage_after_the_key_finds_no_sync_within_the_bound() {
        let mut b = Responder::new(&random(4));
        let mut input = BytesMut::from(&[0x42u8; KEY_LEN][..]);
        assert!(matches!(b.poll(&mut input, known), Ok(Step::Send(_))));
        for _ in 0..MAX_PAD {
            input.extend_from_slice(&[0x17]);
            match b.poll(&mut input, known) {
                Ok(Step::Need) => {}
                Err(e) => {
                    assert_eq!(e, MseError::NoSync);
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
        input.extend_from_slice(&[0x17; 32]);
        assert_eq!(b.poll(&mut input, known).err(), Some(MseError::NoSync));
    }
}

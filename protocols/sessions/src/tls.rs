//! TLS termination: from a sniffed ClientHello to a decrypted stream and the protocol it chose.
//!
//! The acceptor has already read the first bytes of the connection (the start of a ClientHello)
//! and hands them back through [`crate::io::Prefixed`]; [`TlsTerminator::accept`] runs the
//! handshake on that stream within a deadline and reports the ALPN outcome, which picks the
//! session (HTTP/2 for `h2`, HTTP/1.1 otherwise). rustls does the protocol work; this module
//! only decides *which* certificate answers and *how* sessions resume:
//!
//! - TLS 1.3 and TLS 1.2, with rustls' *ring* provider (no process-wide provider is installed).
//! - ALPN `h2` then `http/1.1`. A client that offers neither gets rustls' `no_application_protocol`
//!   alert (RFC 7301 §3.2); a client that offers no ALPN at all is [`Alpn::None`].
//! - SNI: exact names first, then `*.suffix` for exactly one more label (`*.example.com` answers
//!   `a.example.com`, neither `example.com` nor `a.b.example.com`), else the default certificate.
//!   Without a configured default, a self-signed certificate for `localhost`, `127.0.0.1` and
//!   `::1` is generated and its SHA-256 fingerprint logged, so a user can pin or compare it.
//! - Resumption: a server-side session cache (TLS 1.2 session IDs, TLS 1.3 stateful tickets)
//!   and, when enabled, stateless tickets whose keys rotate every 6 hours.
//!
//! One terminator is built at start and cloned into every worker: clones share the session
//! cache and the ticket keys, so a client resumes whichever worker accepts it next time.
//! It refuses to do anything but terminate: no client certificates, no 0-RTT early data (its
//! replay risk is not worth a round trip for our requests), no HTTP.
//!
//! Reload: the certificates are one swappable set ([`TlsTerminator::load_certificates`], then
//! [`TlsTerminator::install`]). rustls asks the set at every handshake, the QUIC endpoint's
//! included (its configuration is a clone of ours and shares the resolver), so a renewed
//! certificate answers the next handshake while established connections go on undisturbed.
//! The session cache and ticket keys are kept, so clients still resume across a reload.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use switchyard_conf::{CertFile, CertPair, TlsConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The names the generated self-signed certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// ALPN protocol IDs we offer, in our order of preference (RFC 7301, RFC 9113 §3.2).
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Everything TLS needs, built once at start; a reload swaps its certificates. Cheap to clone;
/// clones share the certificates, the session cache and the ticket keys.
#[derive(Clone)]
pub struct TlsTerminator {
    acceptor: TlsAcceptor,
    config: Arc<ServerConfig>,
    /// The resolver in `config`, for reloads to swap its set.
    certificates: Arc<Certificates>,
    /// The generated default certificate, when the configuration names none.
    self_signed: Option<SelfSigned>,
}

/// A certificate generated at start, and the fingerprint users compare it by.
#[derive(Debug, Clone)]
struct SelfSigned {
    key: Arc<CertifiedKey>,
    der: CertificateDer<'static>,
    /// Lowercase hex SHA-256 of `der`.
    fingerprint: String,
}

impl fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("alpn", &[ALPN_H2, ALPN_HTTP11].map(String::from_utf8_lossy))
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The application protocol the handshake settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`: HTTP/2 over TLS (RFC 9113 §3.2).
    H2,
    /// `http/1.1`.
    Http11,
    /// The client offered no ALPN; speak HTTP/1.1.
    None,
}

impl Alpn {
    /// What the server selected; `None` when nothing was negotiated. rustls only selects one of
    /// the protocols we configured, so anything else cannot happen and reads as `None`.
    fn from_selected(protocol: Option<&[u8]>) -> Alpn {
        match protocol {
            Some(ALPN_H2) => Alpn::H2,
            Some(ALPN_HTTP11) => Alpn::Http11,
            _ => Alpn::None,
        }
    }
}

impl TlsTerminator {
    /// From the config: the default certificate (or a generated self-signed one for localhost,
    /// 127.0.0.1 and ::1, whose SHA-256 fingerprint is logged and returned by
    /// [`fingerprint`](Self::fingerprint)), SNI certificates, TLS 1.3 and 1.2, ALPN `h2` and
    /// `http/1.1`, a session cache of `session_cache` entries, tickets when enabled.
    ///
    /// Certificate files are read again here (validation read them once): a file that changed
    /// or vanished since is reported as [`TlsError::is_config`].
    pub fn new(cfg: &TlsConfig) -> Result<TlsTerminator, TlsError> {
        let self_signed = match &cfg.default_cert {
            Some(_) => None,
            None => {
                let generated = self_signed()?;
                tracing::info!(
                    "no tls.cert configured: generated a self-signed certificate for {}, \
                     SHA-256 fingerprint {}",
                    SELF_SIGNED_NAMES.join(", "),
                    generated.fingerprint
                );
                Some(generated)
            }
        };
        let resolver = SniResolver::from_config(cfg, self_signed.as_ref())?;
        let mut terminator = TlsTerminator::with_resolver(resolver, cfg)?;
        terminator.self_signed = self_signed;
        Ok(terminator)
    }

    /// A reload's first step: read and check the certificate files `cfg` names (the default and
    /// the SNI ones) into a set that does not answer yet, so that a reload can fail before it
    /// changes anything. Without `tls.cert`, the certificate generated at start stays the
    /// default; a configuration that drops `tls.cert` after starting with one is refused, as a
    /// certificate generated now would be unknown to every client (a restart does that).
    ///
    /// Only certificates change on reload: `session_cache` and `tickets` keep their values from
    /// start, and with them every session a client may resume.
    pub fn load_certificates(&self, cfg: &TlsConfig) -> Result<CertificateSet, TlsError> {
        let resolver = SniResolver::from_config(cfg, self.self_signed.as_ref())?;
        Ok(CertificateSet {
            resolver,
            count: 1 + cfg.certificates.len(),
        })
    }

    /// A reload's last step: `set` answers every handshake from now on, over TCP and QUIC.
    /// Established connections keep the keys they agreed.
    pub fn install(&self, set: CertificateSet) {
        self.certificates.0.store(Arc::new(set.resolver));
    }

    /// The rustls configuration around a certificate resolver.
    fn with_resolver(resolver: SniResolver, cfg: &TlsConfig) -> Result<TlsTerminator, TlsError> {
        let certificates = Arc::new(Certificates(ArcSwap::from_pointee(resolver)));
        let provider = Arc::new(ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::setup(format_args!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        config.session_storage = if cfg.session_cache == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(cfg.session_cache)
        };
        if cfg.tickets {
            config.ticketer = ring::Ticketer::new()
                .map_err(|e| TlsError::setup(format_args!("session ticket keys: {e}")))?;
        }
        if !cfg.tickets && cfg.session_cache == 0 {
            // TLS 1.3 tickets would be stateful ones, stored nowhere: do not send useless ones.
            config.send_tls13_tickets = 0;
        }
        let config = Arc::new(config);
        Ok(TlsTerminator {
            acceptor: TlsAcceptor::from(Arc::clone(&config)),
            config,
            certificates,
            self_signed: None,
        })
    }

    /// Lowercase hex SHA-256 of the generated self-signed certificate's DER, when one was
    /// generated (no `tls.cert` configured).
    pub fn fingerprint(&self) -> Option<&str> {
        self.self_signed.as_ref().map(|s| s.fingerprint.as_str())
    }

    /// The generated self-signed certificate (DER), when one was generated: for clients that
    /// should trust it, and for the QUIC endpoint to present the same one.
    pub fn self_signed_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.self_signed.as_ref().map(|s| &s.der)
    }

    /// The rustls configuration, e.g. to reuse its certificate resolver and session storage
    /// for QUIC.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Handshake on an accepted stream within `timeout`; returns the stream and the negotiated
    /// ALPN. On failure the stream is dropped (closed); rustls has sent the peer an alert when
    /// the protocol calls for one.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        timeout: Duration,
    ) -> Result<(TlsStream<S>, Alpn), TlsError> {
        let stream = match tokio::time::timeout(timeout, self.acceptor.accept(io)).await {
            Err(_) => return Err(TlsError::timeout(timeout)),
            Ok(Err(e)) => return Err(TlsError::handshake(e)),
            Ok(Ok(stream)) => stream,
        };
        let alpn = Alpn::from_selected(stream.get_ref().1.alpn_protocol());
        Ok((stream, alpn))
    }
}

/// A configured pair, loaded with the same check as validation; errors name the config key
/// (`PREFIX.cert` or `PREFIX.key`) and the file.
fn load(pair: &CertPair, prefix: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    pair.load().map(Arc::new).map_err(|e| {
        let key = match e.file() {
            CertFile::Cert => "cert",
            CertFile::Key => "key",
        };
        TlsError::certificate(format_args!("{prefix}.{key}: {e}"))
    })
}

/// A fresh key pair and a self-signed certificate for [`SELF_SIGNED_NAMES`].
fn self_signed() -> Result<SelfSigned, TlsError> {
    let failed = |e: &dyn fmt::Display| {
        TlsError::setup(format_args!(
            "cannot generate a self-signed certificate: {e}"
        ))
    };
    let names = SELF_SIGNED_NAMES.map(str::to_owned).to_vec();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| failed(&e))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Switchyard self-signed (localhost)",
    );
    let key_pair = rcgen::KeyPair::generate().map_err(|e| failed(&e))?;
    let cert = params.self_signed(&key_pair).map_err(|e| failed(&e))?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing_key = ring::sign::any_supported_type(&key).map_err(|e| failed(&e))?;
    let key = Arc::new(CertifiedKey::new(vec![der.clone()], signing_key));
    let fingerprint = hex_sha256(&der);
    Ok(SelfSigned {
        key,
        der,
        fingerprint,
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Certificates read for a reload and not answering yet: from
/// [`TlsTerminator::load_certificates`], for [`TlsTerminator::install`].
#[derive(Debug)]
pub struct CertificateSet {
    resolver: SniResolver,
    count: usize,
}

impl CertificateSet {
    /// How many certificates the set holds: the default one and the SNI ones.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// The certificates answering handshakes, replaced whole by a reload.
#[derive(Debug)]
struct Certificates(ArcSwap<SniResolver>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.0.load().pick(client_hello.server_name())))
    }
}

/// Picks the certificate for a ClientHello's server name (SNI).
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    /// Lowercase names as configured.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored as `example.com`: the name minus its first label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// The files `cfg` names, loaded; `generated` is the default when `cfg` names none.
    fn from_config(
        cfg: &TlsConfig,
        generated: Option<&SelfSigned>,
    ) -> Result<SniResolver, TlsError> {
        let default = match (&cfg.default_cert, generated) {
            (Some(pair), _) => load(pair, "tls")?,
            (None, Some(generated)) => Arc::clone(&generated.key),
            (None, None) => {
                return Err(TlsError::setup(format_args!(
                    "tls.cert: removed since start; a certificate is generated only at start"
                )));
            }
        };
        let mut sni = Vec::with_capacity(cfg.certificates.len());
        for (i, entry) in cfg.certificates.iter().enumerate() {
            let key = load(&entry.pair, &format!("tls.certificate[{i}]"))?;
            sni.push((entry.names.as_slice(), key));
        }
        Ok(SniResolver::new(default, sni))
    }

    /// `sni` in configuration order; a name listed twice keeps its first certificate.
    fn new(default: Arc<CertifiedKey>, sni: Vec<(&[String], Arc<CertifiedKey>)>) -> SniResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (names, key) in sni {
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| Arc::clone(&key));
            }
        }
        SniResolver {
            default,
            exact,
            wildcard,
        }
    }

    /// The certificate for `server_name` (already lowercase: rustls normalises SNI).
    fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// Why TLS could not be set up (the operator's to fix) or a handshake failed (the peer's).
#[derive(Debug)]
pub struct TlsError {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A configured certificate or key file cannot be used.
    Certificate,
    /// rustls or the certificate generator refused to start.
    Setup,
    /// The peer did not finish the handshake in time.
    HandshakeTimeout,
    /// The handshake failed: bad ClientHello, no common parameters, peer alert, EOF.
    Handshake,
}

impl TlsError {
    fn certificate(message: fmt::Arguments<'_>) -> Self {
        TlsError {
            kind: Kind::Certificate,
            message: format!("bad certificate file: {message}"),
        }
    }

    fn setup(message: fmt::Arguments<'_>) -> Self {
        TlsError {
            kind: Kind::Setup,
            message: format!("TLS setup failed: {message}"),
        }
    }

    fn timeout(after: Duration) -> Self {
        TlsError {
            kind: Kind::HandshakeTimeout,
            message: format!(
                "TLS handshake timed out after {}",
                humantime::format_duration(after)
            ),
        }
    }

    fn handshake(e: io::Error) -> Self {
        TlsError {
            kind: Kind::Handshake,
            message: format!("TLS handshake failed: {e}"),
        }
    }

    /// The configuration is at fault (certificate files, or TLS could not be set up): fail
    /// start-up or reload, never a connection.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Certificate | Kind::Setup)
    }

    /// The peer did not complete the handshake within the deadline.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::HandshakeTimeout
    }

    /// The peer's handshake failed (including a timeout): close this connection only.
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake | Kind::HandshakeTimeout)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

#[cfg(test)]
mod tests {
    //! Real handshakes between the terminator and a rustls client over an in-memory pipe.

    use super::*;
    use rustls::client::ClientConfig;
    use rustls::{HandshakeKind, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
    use rustls_pki_types::ServerName;
    use switchyard_conf::SniCert;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream as ClientStream;

    const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

    /// A self-signed certificate for `names`: the server's key and the client's trust anchor.
    fn generated(names: &[&str]) -> (Arc<CertifiedKey>, CertificateDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names).expect("generate certificate");
        let der = cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
        let signing_key = ring::sign::any_supported_type(&key).expect("ring loads rcgen keys");
        (
            Arc::new(CertifiedKey::new(vec![der.clone()], signing_key)),
            der,
        )
    }

    /// A terminator with a default certificate for `localhost`, one for `a.test` and one for
    /// `*.b.test`, and the three certificates a client should see.
    struct Sites {
        terminator: TlsTerminator,
        default: CertificateDer<'static>,
        a: CertificateDer<'static>,
        b: CertificateDer<'static>,
    }

    impl Sites {
        fn new(cfg: &TlsConfig) -> Sites {
            let (default_key, default) = generated(&["localhost"]);
            let (a_key, a) = generated(&["a.test"]);
            let (b_key, b) = generated(&["*.b.test"]);
            let a_names = ["a.test".to_owned()];
            let b_names = ["*.b.test".to_owned()];
            let resolver = SniResolver::new(
                default_key,
                vec![(&a_names[..], a_key), (&b_names[..], b_key)],
            );
            let terminator = TlsTerminator::with_resolver(resolver, cfg).expect("terminator");
            Sites {
                terminator,
                default,
                a,
                b,
            }
        }

        fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
            client(&[&self.default, &self.a, &self.b], versions, H2_H1)
        }
    }

    fn client(
        roots: &[&CertificateDer<'static>],
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add((*root).clone()).expect("trust anchor");
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("client versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// One connection over an in-memory pipe. The server writes "ok" once the handshake is
    /// done and the client reads it, so the client has also taken in whatever followed the
    /// handshake (TLS 1.3 session tickets) before the connection is dropped.
    async fn connect(
        terminator: &TlsTerminator,
        client: &Arc<ClientConfig>,
        name: &str,
    ) -> (
        Result<Alpn, TlsError>,
        io::Result<ClientStream<DuplexStream>>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = async {
            let (mut stream, alpn) = terminator.accept(server_io, Duration::from_secs(5)).await?;
            // A client that gave up already is the client side's failure to report.
            let _ = stream.write_all(b"ok").await;
            let _ = stream.flush().await;
            Ok::<_, TlsError>((stream, alpn))
        };
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let client = async {
            let mut stream = TlsConnector::from(Arc::clone(client))
                .connect(name, client_io)
                .await?;
            let mut ok = [0u8; 2];
            stream.read_exact(&mut ok).await?;
            assert_eq!(&ok, b"ok");
            Ok(stream)
        };
        let (server, client) = tokio::join!(server, client);
        (server.map(|(_stream, alpn)| alpn), client)
    }

    /// The end-entity certificate the client was shown.
    fn seen(stream: &ClientStream<DuplexStream>) -> CertificateDer<'static> {
        let certs = stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificates");
        certs[0].clone()
    }

    #[tokio::test]
    async fn alpn_selects_h2_or_http11() {
        let sites = Sites::new(&TlsConfig::default());
        let cases: &[(&[&[u8]], Alpn)] = &[
            (&[b"h2", b"http/1.1"], Alpn::H2),
            (&[b"http/1.1", b"h2"], Alpn::H2),
            (&[b"http/1.1"], Alpn::Http11),
            (&[], Alpn::None),
        ];
        for (offered, want) in cases {
            let client = client(&[&sites.default], BOTH, offered);
            let (server, client) = connect(&sites.terminator, &client, "localhost").await;
            assert_eq!(server.expect("handshake"), *want, "offered {offered:?}");
            let client = client.expect("client handshake");
            let chosen = client.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let expected = match want {
                Alpn::H2 => Some(b"h2".to_vec()),
                Alpn::Http11 => Some(b"http/1.1".to_vec()),
                Alpn::None => None,
            };
            assert_eq!(chosen, expected, "offered {offered:?}");
        }
    }

    #[tokio::test]
    async fn a_client_offering_only_unknown_protocols_is_refused() {
        let sites = Sites::new(&TlsConfig::default());
        let client = client(&[&sites.default], BOTH, &[b"spdy/3.1"]);
        let (server, client) = connect(&sites.terminator, &client, "localhost").await;
        let err = server.expect_err("no common protocol");
        assert!(err.is_handshake() && !err.is_timeout(), "{err}");
        assert!(
            err.to_string().starts_with("TLS handshake failed: "),
            "{err}"
        );
        assert!(client.is_err(), "the client sees the alert");
    }

    #[tokio::test]
    async fn sni_picks_the_certificate() {
        let sites = Sites::new(&TlsConfig::default());
        let config = sites.client(BOTH);
        let cases = [
            ("a.test", &sites.a),
            ("x.b.test", &sites.b),
            ("localhost", &sites.default),
        ];
        for (name, want) in cases {
            let (server, client) = connect(&sites.terminator, &config, name).await;
            assert_eq!(server.expect("handshake"), Alpn::H2, "{name}");
            assert_eq!(seen(&client.expect("client handshake")), *want, "{name}");
        }

        // No SNI at all: the default certificate (which the client checks for "localhost").
        let mut no_sni = (*config).clone();
        no_sni.enable_sni = false;
        let (server, client) = connect(&sites.terminator, &Arc::new(no_sni), "localhost").await;
        server.expect("handshake");
        assert_eq!(seen(&client.expect("client handshake")), sites.default);
    }

    #[test]
    fn sni_names_match_exactly_or_one_wildcard_label() {
        let (default, _) = generated(&["localhost"]);
        let (exact, _) = generated(&["a.test"]);
        let (wild, _) = generated(&["*.a.test"]);
        let (deeper, _) = generated(&["x.a.test"]);
        let exact_names = ["a.test".to_owned(), "Upper.Test".to_owned()];
        let wild_names = ["*.a.test".to_owned()];
        let deeper_names = ["x.a.test".to_owned()];
        let resolver = SniResolver::new(
            Arc::clone(&default),
            vec![
                (&exact_names[..], Arc::clone(&exact)),
                (&wild_names[..], Arc::clone(&wild)),
                (&deeper_names[..], Arc::clone(&deeper)),
            ],
        );
        let cases: &[(Option<&str>, &Arc<CertifiedKey>)] = &[
            (None, &default),
            (Some("a.test"), &exact),
            (Some("upper.test"), &exact),
            (Some("y.a.test"), &wild),
            (Some("x.a.test"), &deeper), // an exact name beats a wildcard
            (Some("z.y.a.test"), &default), // a wildcard covers one label only
            (Some("test"), &default),
            (Some("other.test"), &default),
            (Some(""), &default),
        ];
        for (name, want) in cases {
            assert!(Arc::ptr_eq(resolver.pick(*name), want), "{name:?}");
        }
    }

    #[tokio::test]
    async fn tls12_and_tls13_both_work() {
        let sites = Sites::new(&TlsConfig::default());
        let cases = [
            (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
            (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        ];
        for (version, want) in cases {
            let config = sites.client(&[version]);
            let (server, client) = connect(&sites.terminator, &config, "a.test").await;
            assert_eq!(server.expect("handshake"), Alpn::H2, "{want:?}");
            let client = client.expect("client handshake");
            assert_eq!(client.get_ref().1.protocol_version(), Some(want));
            assert_eq!(seen(&client), sites.a, "{want:?}");
        }
    }

    /// Two connections from one client configuration (which keeps its sessions); the kind of
    /// the second handshake.
    async fn second_handshake(
        cfg: &TlsConfig,
        version: &'static SupportedProtocolVersion,
    ) -> HandshakeKind {
        let sites = Sites::new(cfg);
        let config = sites.client(&[version]);
        for attempt in 0..2 {
            let (server, client) = connect(&sites.terminator, &config, "a.test").await;
            server.expect("handshake");
            let client = client.expect("client handshake");
            let kind = client.get_ref().1.handshake_kind().expect("handshake done");
            if attempt == 1 {
                return kind;
            }
            assert_eq!(
                kind,
                HandshakeKind::Full,
                "the first handshake is a full one"
            );
        }
        unreachable!("two attempts")
    }

    #[tokio::test]
    async fn sessions_resume_with_tickets_or_with_the_cache() {
        let tickets_only = TlsConfig {
            session_cache: 0,
            tickets: true,
            ..TlsConfig::default()
        };
        let cache_only = TlsConfig {
            session_cache: 16,
            tickets: false,
            ..TlsConfig::default()
        };
        for (name, cfg) in [("tickets", &tickets_only), ("cache", &cache_only)] {
            for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                assert_eq!(
                    second_handshake(cfg, version).await,
                    HandshakeKind::Resumed,
                    "{name}, {:?}",
                    version.version
                );
            }
        }
    }

    #[tokio::test]
    async fn without_tickets_or_cache_every_handshake_is_full() {
        let neither = TlsConfig {
            session_cache: 0,
            tickets: false,
            ..TlsConfig::default()
        };
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            assert_eq!(
                second_handshake(&neither, version).await,
                HandshakeKind::Full,
                "{:?}",
                version.version
            );
        }
    }

    /// A fresh certificate for `names` in PEM files `DIR/STEM.pem` and `DIR/STEM.key`, as a
    /// configuration names them, and the DER a client should be shown.
    fn pem_files(
        dir: &std::path::Path,
        stem: &str,
        names: &[&str],
    ) -> (CertPair, CertificateDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names).expect("generate certificate");
        let pair = CertPair {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write certificate");
        std::fs::write(&pair.key, signing_key.serialize_pem()).expect("write key");
        (pair, cert.der().clone())
    }

    #[tokio::test]
    async fn a_reload_answers_new_handshakes_with_new_certificates_and_keeps_sessions() {
        let dir = tempfile::tempdir().expect("scratch");
        let (old_pair, old) = pem_files(dir.path(), "old", &["localhost"]);
        let (new_pair, new) = pem_files(dir.path(), "new", &["localhost"]);
        let (a_pair, a) = pem_files(dir.path(), "a", &["a.test"]);
        let start = TlsConfig {
            default_cert: Some(old_pair),
            ..TlsConfig::default()
        };
        let terminator = TlsTerminator::new(&start).expect("terminator");
        // The QUIC endpoint's view: a clone of the configuration taken at start.
        let quic = TlsTerminator {
            acceptor: TlsAcceptor::from(Arc::new((**terminator.server_config()).clone())),
            ..terminator.clone()
        };
        // Each client configuration keeps its own sessions: `fresh()` has none.
        let fresh = || client(&[&old, &new, &a], &[&rustls::version::TLS13], H2_H1);
        let shown = async |terminator: &TlsTerminator, config: &Arc<ClientConfig>, name: &str| {
            let (server, client) = connect(terminator, config, name).await;
            server.expect("handshake");
            let client = client.expect("client handshake");
            let kind = client.get_ref().1.handshake_kind().expect("handshake done");
            (seen(&client), kind)
        };
        let returning = fresh();
        assert_eq!(
            shown(&terminator, &returning, "localhost").await,
            (old.clone(), HandshakeKind::Full)
        );

        // A set with an unreadable file is refused, naming the key; nothing changes.
        let reloaded = TlsConfig {
            default_cert: Some(new_pair),
            certificates: vec![SniCert {
                names: vec!["a.test".to_owned()],
                pair: a_pair.clone(),
            }],
            ..start.clone()
        };
        let mut broken = reloaded.clone();
        broken.certificates[0].pair.cert = dir.path().join("missing.pem");
        let err = terminator
            .load_certificates(&broken)
            .expect_err("a missing file");
        assert!(
            err.is_config() && err.to_string().contains("tls.certificate[0].cert: "),
            "{err}"
        );
        // Loaded is not installed yet.
        let set = terminator.load_certificates(&reloaded).expect("new set");
        assert_eq!(set.count(), 2);
        assert_eq!(shown(&terminator, &fresh(), "localhost").await.0, old);

        terminator.install(set);
        for answering in [&terminator, &quic] {
            for (name, want) in [("localhost", &new), ("a.test", &a)] {
                assert_eq!(
                    shown(answering, &fresh(), name).await,
                    (want.clone(), HandshakeKind::Full),
                    "{name}"
                );
            }
        }
        // The session from before the reload still resumes (a resumed TLS 1.3 handshake sends
        // no certificate: the client keeps trusting the one it verified).
        assert_eq!(
            shown(&terminator, &returning, "localhost").await.1,
            HandshakeKind::Resumed
        );
        // A configuration that drops tls.cert after starting with one is refused.
        let dropped = TlsConfig {
            default_cert: None,
            ..reloaded
        };
        let err = terminator
            .load_certificates(&dropped)
            .expect_err("no default certificate");
        assert!(
            err.is_config() && err.to_string().contains("tls.cert: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_reload_without_tls_cert_keeps_the_generated_certificate() {
        let dir = tempfile::tempdir().expect("scratch");
        let terminator = TlsTerminator::new(&TlsConfig::default()).expect("terminator");
        let generated = terminator
            .self_signed_certificate()
            .expect("generated")
            .clone();
        let (a_pair, a) = pem_files(dir.path(), "a", &["a.test"]);
        let with_sni = TlsConfig {
            certificates: vec![SniCert {
                names: vec!["a.test".to_owned()],
                pair: a_pair,
            }],
            ..TlsConfig::default()
        };
        terminator.install(terminator.load_certificates(&with_sni).expect("set"));
        let config = client(&[&generated, &a], BOTH, H2_H1);
        for (name, want) in [("localhost", &generated), ("a.test", &a)] {
            let (server, client) = connect(&terminator, &config, name).await;
            server.expect("handshake");
            assert_eq!(seen(&client.expect("client handshake")), *want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let sites = Sites::new(&TlsConfig::default());
        let (_client, server_io) = tokio::io::duplex(1024);
        let started = std::time::Instant::now();
        let err = sites
            .terminator
            .accept(server_io, Duration::from_millis(50))
            .await
            .expect_err("nothing was sent");
        assert!(
            err.is_timeout() && err.is_handshake() && !err.is_config(),
            "{err}"
        );
        assert_eq!(err.to_string(), "TLS handshake timed out after 50ms");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn garbage_instead_of_a_client_hello_fails_cleanly() {
        let sites = Sites::new(&TlsConfig::default());
        let garbage: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            // A handshake record header, then a body that is no ClientHello.
            &[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0xff, 0xff, 0xff, 0xff],
            // A record longer than TLS allows.
            &[0x16, 0x03, 0x01, 0xff, 0xff],
        ];
        for bytes in garbage {
            let (mut client, server_io) = tokio::io::duplex(1024);
            client.write_all(bytes).await.expect("write");
            let err = sites
                .terminator
                .accept(server_io, Duration::from_secs(5))
                .await
                .expect_err("not TLS");
            assert!(err.is_handshake() && !err.is_timeout(), "{bytes:?}: {err}");
            assert!(
                err.to_string().starts_with("TLS handshake failed: "),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn the_sniffed_bytes_are_replayed_through_prefixed() {
        let sites = Sites::new(&TlsConfig::default());
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let config = sites.client(BOTH);
        let name = ServerName::try_from("a.test").expect("name");
        let client = tokio::spawn(async move {
            let mut stream = TlsConnector::from(config).connect(name, client_io).await?;
            let mut ok = [0u8; 2];
            stream.read_exact(&mut ok).await?;
            Ok::<_, io::Error>(ok)
        });
        // What the acceptor does: read the first bytes to sniff them, then hand them back.
        let mut first = [0u8; 5];
        server_io
            .read_exact(&mut first)
            .await
            .expect("sniffed bytes");
        assert_eq!(&first[..2], &[0x16, 0x03]);
        let stream = crate::io::Prefixed::new(bytes::BytesMut::from(&first[..]), server_io);
        let (mut stream, alpn) = sites
            .terminator
            .accept(stream, Duration::from_secs(5))
            .await
            .expect("handshake");
        assert_eq!(alpn, Alpn::H2);
        stream.write_all(b"ok").await.expect("write");
        stream.flush().await.expect("flush");
        let ok = client
            .await
            .expect("client task")
            .expect("client handshake");
        assert_eq!(&ok, b"ok");
    }

    #[tokio::test]
    async fn without_a_certificate_a_self_signed_one_is_generated() {
        let terminator = TlsTerminator::new(&TlsConfig::default()).expect("terminator");
        let der = terminator
            .self_signed_certificate()
            .expect("generated")
            .clone();
        let fingerprint = terminator.fingerprint().expect("fingerprint");
        assert_eq!(fingerprint.len(), 64);
        assert!(
            fingerprint
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_eq!(fingerprint, hex_sha256(&der));
        let config = client(&[&der], BOTH, H2_H1);
        for name in SELF_SIGNED_NAMES {
            let (server, client) = connect(&terminator, &config, name).await;
            assert_eq!(server.expect("handshake"), Alpn::H2, "{name}");
            assert_eq!(seen(&client.expect("client trusts it")), der, "{name}");
        }
        let other = TlsTerminator::new(&TlsConfig::default()).expect("terminator");
        assert_ne!(
            other.fingerprint(),
            terminator.fingerprint(),
            "a new key each start"
        );
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_unreadable_certificate_file_is_a_config_error() {
        let cfg = TlsConfig {
            default_cert: Some(CertPair {
                cert: "/nonexistent/switchyard/cert.pem".into(),
                key: "/nonexistent/switchyard/key.pem".into(),
            }),
            ..TlsConfig::default()
        };
        let err = TlsTerminator::new(&cfg).expect_err("no such file");
        assert!(err.is_config() && !err.is_handshake(), "{err}");
        assert_eq!(
            err.to_string(),
            "bad certificate file: tls.cert: /nonexistent/switchyard/cert.pem: No such file or \
             directory (os error 2)"
        );
    }
}

//! Certificate files: a PEM chain and its private key, read and checked against each other.
//!
//! Validation loads every configured pair once, so that `switchyard check` and start-up both
//! report an unreadable file, a file without the expected PEM block, or a key that belongs to
//! another certificate, before any client sees a failed handshake. The TLS terminator loads
//! the pairs again with the same [`CertPair::load`] when it builds its configuration.
//!
//! Keys are loaded with rustls' *ring* provider, the one Switchyard's TLS uses: PKCS#8
//! (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`);
//! RSA, ECDSA P-256/P-384 and Ed25519. This module checks that files belong together; it does
//! not judge the certificate (expiry, names, issuer): clients do that.

use crate::CertPair;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io::Read;
use std::path::Path;

/// Larger than any certificate chain or key: such a file is a mistake, not a certificate.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Which file of a [`CertPair`] a [`CertError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFile {
    /// The certificate chain (`cert`).
    Cert,
    /// The private key (`key`).
    Key,
}

/// Why a certificate pair cannot be used. Always the operator's to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    file: CertFile,
    message: String,
}

impl CertError {
    fn new(file: CertFile, message: String) -> Self {
        CertError { file, message }
    }

    /// The file at fault, so the caller can point at the key that names it.
    pub fn file(&self) -> CertFile {
        self.file
    }
}

/// The message names the file, e.g. `certs/site.pem: No such file or directory (os error 2)`.
impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CertError {}

impl CertPair {
    /// Read the chain (end-entity certificate first) and the key, and check that the key is
    /// the private half of the end-entity certificate's public key.
    pub fn load(&self) -> Result<CertifiedKey, CertError> {
        let chain = read_chain(&self.cert)?;
        let key = read_key(&self.key)?;
        let signing_key = any_supported_type(&key).map_err(|e| {
            CertError::new(
                CertFile::Key,
                format!("{}: unsupported private key: {e}", self.key.display()),
            )
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(CertError::new(
                    CertFile::Key,
                    format!(
                        "{} is not the private key of the certificate in {}",
                        self.key.display(),
                        self.cert.display()
                    ),
                ))
            }
            // The key cannot tell its public half: nothing to compare, as rustls itself decides.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e) => Err(CertError::new(
                CertFile::Cert,
                format!("{}: invalid certificate: {e}", self.cert.display()),
            )),
        }
    }
}

/// Every `CERTIFICATE` block of the file, in order; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let error = |message: String| CertError::new(CertFile::Cert, message);
    let pem = read_small(path).map_err(error)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("{}: not a valid PEM file: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(error(format!(
            "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        )));
    }
    Ok(chain)
}

/// The first private key block of the file, whatever its encoding.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let error = |message: String| CertError::new(CertFile::Key, message);
    let pem = read_small(path).map_err(error)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => error(format!(
            "{}: no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \
             \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)",
            path.display()
        )),
        e => error(format!("{}: not a valid PEM file: {e}", path.display())),
    })
}

/// The whole file, refusing anything larger than [`MAX_PEM_BYTES`] (or endless, like a device).
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let io_error = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{}: larger than {} KiB, not a PEM file",
            path.display(),
            MAX_PEM_BYTES / 1024
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// A self-signed certificate and its PKCS#8 key, as PEM text.
    fn generate(name: &str) -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn pair(cert: PathBuf, key: PathBuf) -> CertPair {
        CertPair { cert, key }
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate("example.com");
        let loaded = pair(
            write(dir.path(), "c.pem", &cert),
            write(dir.path(), "k.pem", &key),
        )
        .load()
        .unwrap();
        assert_eq!(loaded.cert.len(), 1);
        assert_eq!(loaded.keys_match(), Ok(()));
    }

    #[test]
    fn one_file_may_hold_both() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate("example.com");
        let both = write(dir.path(), "both.pem", &format!("{key}{cert}"));
        assert!(pair(both.clone(), both).load().is_ok());
    }

    #[test]
    fn the_whole_chain_is_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, key) = generate("leaf.example");
        let (other, _) = generate("ca.example");
        let loaded = pair(
            write(dir.path(), "chain.pem", &format!("{leaf}{other}")),
            write(dir.path(), "k.pem", &key),
        )
        .load()
        .unwrap();
        assert_eq!(loaded.cert.len(), 2);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = generate("a.example");
        let (_, other_key) = generate("b.example");
        let cert = write(dir.path(), "c.pem", &cert);
        let key = write(dir.path(), "k.pem", &other_key);
        let err = pair(cert.clone(), key.clone()).load().unwrap_err();
        assert_eq!(err.file(), CertFile::Key);
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not the private key of the certificate in {}",
                key.display(),
                cert.display()
            )
        );
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate("a.example");
        let cert = write(dir.path(), "c.pem", &cert);
        let key = write(dir.path(), "k.pem", &key);
        let absent = dir.path().join("absent.pem");

        let err = pair(absent.clone(), key).load().unwrap_err();
        assert_eq!(err.file(), CertFile::Cert);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: No such file or directory", absent.display())),
            "{err}"
        );
        let err = pair(cert, absent.clone()).load().unwrap_err();
        assert_eq!(err.file(), CertFile::Key);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", absent.display())),
            "{err}"
        );
    }

    #[test]
    fn files_without_the_expected_block_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate("a.example");
        let cert = write(dir.path(), "c.pem", &cert);
        let key = write(dir.path(), "k.pem", &key);

        // Swapped: the key file has no certificate, the certificate file no key.
        let err = pair(key.clone(), key.clone()).load().unwrap_err();
        assert_eq!(err.file(), CertFile::Cert);
        assert!(err.to_string().contains("no certificate found"), "{err}");
        let err = pair(cert.clone(), cert.clone()).load().unwrap_err();
        assert_eq!(err.file(), CertFile::Key);
        assert!(err.to_string().contains("no private key found"), "{err}");

        let garbage = write(
            dir.path(),
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = pair(garbage.clone(), key).load().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: not a valid PEM file: ", garbage.display())),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_that_is_not_x509_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = generate("a.example");
        // Valid PEM and base64, but not a certificate inside.
        let bogus = write(
            dir.path(),
            "c.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = pair(bogus.clone(), write(dir.path(), "k.pem", &key))
            .load()
            .unwrap_err();
        assert_eq!(err.file(), CertFile::Cert);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: invalid certificate: ", bogus.display())),
            "{err}"
        );
    }

    #[test]
    fn a_huge_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let big = write(dir.path(), "big.pem", &"x".repeat(2 * 1024 * 1024));
        let (_, key) = generate("a.example");
        let err = pair(big.clone(), write(dir.path(), "k.pem", &key))
            .load()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: larger than 1024 KiB, not a PEM file", big.display())
        );
    }
}

//! `[tls] extra_roots`: additional trust anchors for `wss://` relays that
//! use a private CA. Read by the monitor when the config is loaded (the
//! worker reads no file); handed to the worker as DER over IPC.

use std::io::Read;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Largest `extra_roots` file, bytes; it also bounds what crosses IPC.
pub const MAX_EXTRA_ROOTS_BYTES: u64 = 64 * 1024;

/// Reads the PEM file at `path` and returns its certificates as DER, each
/// checked to be usable as a trust anchor (`rustls::RootCertStore::add`).
///
/// # Errors
/// A sentence: the file cannot be read, is over [`MAX_EXTRA_ROOTS_BYTES`],
/// holds no `CERTIFICATE` block, a block is not valid PEM, or a certificate
/// is not a usable trust anchor.
pub(crate) fn load_extra_roots(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut pem = Vec::new();
    file.take(MAX_EXTRA_ROOTS_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if pem.len() as u64 > MAX_EXTRA_ROOTS_BYTES {
        return Err(format!("it is over {MAX_EXTRA_ROOTS_BYTES} bytes"));
    }
    parse_extra_roots(&pem)
}

/// [`load_extra_roots`] on the file's bytes.
pub(crate) fn parse_extra_roots(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut roots = Vec::new();
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a valid PEM file: {e}"))?;
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {} is not a trust anchor: {e}", roots.len() + 1))?;
        roots.push(cert.as_ref().to_vec());
    }
    if roots.is_empty() {
        return Err("it holds no CERTIFICATE block".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_files_without_certificates_and_garbage() {
        assert!(parse_extra_roots(b"")
            .unwrap_err()
            .contains("no CERTIFICATE"));
        assert!(parse_extra_roots(b"hello")
            .unwrap_err()
            .contains("no CERTIFICATE"));
        let broken = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(parse_extra_roots(broken).is_err());
        let not_a_cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_extra_roots(not_a_cert).is_err());
    }
}

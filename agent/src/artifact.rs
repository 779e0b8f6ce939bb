//! Artifact hashing: SHA-256 of a file, as a directive's `hash` tag names
//! it (`docs/PROTOCOL.md` section 3, `hash`). Used by the
//! monitor before an upgrade hook runs and by `govctl hash`; no secret, no
//! network.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};

/// Read size while hashing, bytes.
const CHUNK_BYTES: usize = 64 * 1024;

/// SHA-256 of the file at `path`, read in 64 KiB chunks (never whole into
/// memory). Blocking: from async code call it through
/// `tokio::task::spawn_blocking`.
///
/// Symlinks are followed. The file is opened non-blocking so that a FIFO
/// cannot stall the caller, then must be a regular file.
///
/// # Errors
/// The I/O error from opening or reading (`NotFound` when it does not
/// exist); `InvalidInput` when `path` is not a regular file (a directory,
/// FIFO, device or socket).
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::options()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits() | OFlag::O_NOCTTY.bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => hasher.update(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

//! The host's ed25519 identity: created at first start in the data dir with
//! mode 0600, reused after. A key file with the wrong permissions or contents
//! is an error, never silently replaced: replacing it would change the node id.

use ed25519_dalek::{SigningKey, VerifyingKey};
use maxwell_gossip::NodeId;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the key file inside the data dir.
pub const KEY_FILE: &str = "node.key";
/// First line of a key file, so a stray file is not mistaken for a key.
const HEADER: &str = "maxwell-ed25519-secret-v1";

/// Errors loading or creating the host key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The data dir could not be created or read.
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is readable by others than its owner.
    #[error("key file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {path})")]
    Permissions { path: PathBuf, mode: u32 },
    /// The key file does not hold a maxwell key.
    #[error(
        "key file {path} is not a maxwell key ({problem}); move it away to create a new identity"
    )]
    Malformed {
        path: PathBuf,
        problem: &'static str,
    },
    /// No randomness for a new key.
    #[error("no randomness from the OS for a new key: {0}")]
    Random(String),
}

/// This host's key pair and the node id derived from it.
#[derive(Debug)]
pub struct Identity {
    key: SigningKey,
    id: NodeId,
}

impl Identity {
    /// Loads `DATA_DIR/node.key`, or creates it (and the dir, mode 0700) if absent.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let dir_err = |source| IdentityError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        if !data_dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(dir_err)?;
        }
        let path = data_dir.join(KEY_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => Self::load(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }

    fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let malformed = |problem| IdentityError::Malformed {
            path: path.to_path_buf(),
            problem,
        };
        if meta.len() > 4096 {
            return Err(malformed("too large"));
        }
        let text = fs::read_to_string(path).map_err(|_| malformed("not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed("missing header line"));
        }
        let hex = lines
            .next()
            .ok_or_else(|| malformed("missing key line"))?
            .trim();
        let seed = parse_hex32(hex).ok_or_else(|| malformed("key line is not 64 hex digits"))?;
        Ok(Self::from_seed(seed))
    }

    fn create(path: &Path) -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        let identity = Self::from_seed(seed);
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        // create_new: never overwrite a key another process just wrote.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let body = format!("{HEADER}\n{}\n", hex(&seed));
        file.write_all(body.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        tracing::info!(path = %path.display(), id = %identity.id, "created a new host key");
        Ok(identity)
    }

    /// Builds an identity from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = NodeId::from_verifying_key(&key.verifying_key());
        Self { key, id }
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signing key, for signing reports.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let a = Identity::load_or_create(&data).expect("create");
        let path = data.join(KEY_FILE);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&data).expect("meta").permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let b = Identity::load_or_create(&data).expect("load");
        assert_eq!(a.id(), b.id());
        assert_eq!(a.public_key(), b.public_key());
        assert!(a.id().matches(&a.public_key()));
    }

    #[test]
    fn loose_permissions_are_an_error_and_the_file_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        let before = fs::read(&path).expect("read");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Identity::load_or_create(dir.path()).expect_err("0644 refused");
        assert!(
            matches!(err, IdentityError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        assert_eq!(fs::read(&path).expect("read"), before, "never replaced");
    }

    #[test]
    fn bad_contents_are_an_error_and_the_file_is_kept() {
        for contents in [
            "hello\n".to_string(),
            format!("{HEADER}\n"),
            format!("{HEADER}\nzz{}\n", "0".repeat(62)),
            format!("{HEADER}\n{}\n", "ab".repeat(31)),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(KEY_FILE);
            fs::write(&path, &contents).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = Identity::load_or_create(dir.path()).expect_err("malformed");
            assert!(
                matches!(err, IdentityError::Malformed { .. }),
                "{contents:?}: {err}"
            );
            assert_eq!(fs::read_to_string(&path).expect("read"), contents);
        }
    }

    #[test]
    fn seed_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        let seed = [0x5au8; 32];
        fs::write(&path, format!("{HEADER}\n{}\n", hex(&seed))).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let id = Identity::load_or_create(dir.path()).expect("load");
        assert_eq!(id.id(), Identity::from_seed(seed).id());
    }
}

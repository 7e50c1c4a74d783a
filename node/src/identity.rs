//! The host's ed25519 identity: created at first start in the data dir with
//! mode 0600, reused after. A key file with the wrong permissions or contents
//! is an error, never silently replaced: replacing it would change the node id.
//! The one exception is an empty file, which holds no identity (an older
//! version could leave one after a crash or on a full disk): it is replaced,
//! with a warning.

use crate::datadir::{DataDir, DataDirError};
use crate::fsutil::Replace;
use ed25519_dalek::{SigningKey, VerifyingKey};
use maxwell_gossip::KeyedNodeId;
use maxwell_gossip::NodeId;
use std::path::PathBuf;

/// Name of the key file inside the data dir.
pub const KEY_FILE: &str = "node.key";
/// First line of a key file, so a stray file is not mistaken for a key.
const HEADER: &str = "maxwell-ed25519-secret-v1";

/// Errors loading or creating the host key; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("key file {0}")]
    Io(#[from] DataDirError),
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
    /// Loads `DATA_DIR/node.key`, or creates it atomically if absent (or empty).
    pub fn load_or_create(dir: &DataDir) -> Result<Self, IdentityError> {
        let path = dir.file(KEY_FILE);
        let Some(read) = dir.read_secret(KEY_FILE, 4096).map_err(|e| match e {
            DataDirError::File { err, .. } if err.kind() == std::io::ErrorKind::InvalidData => {
                IdentityError::Malformed {
                    path: path.clone(),
                    problem: "too large",
                }
            }
            DataDirError::Exposed { path, mode } => IdentityError::Permissions { path, mode },
            e => e.into(),
        })?
        else {
            return Self::create(dir);
        };
        if read.bytes.is_empty() {
            tracing::warn!(path = %path.display(), "the key file is empty (an interrupted first start): creating the host key");
            std::fs::remove_file(&path).map_err(|err| DataDirError::File {
                path: path.clone(),
                err,
            })?;
            return Self::create(dir);
        }
        let malformed = |problem| IdentityError::Malformed {
            path: path.clone(),
            problem,
        };
        let text = String::from_utf8(read.bytes).map_err(|_| malformed("not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed("missing header line"));
        }
        let hex = lines
            .next()
            .ok_or_else(|| malformed("missing key line"))?
            .trim();
        let seed = maxwell_types::hex::decode::<32>(hex)
            .ok_or_else(|| malformed("key line is not 64 hex digits"))?;
        Ok(Self::from_seed(seed))
    }

    fn create(dir: &DataDir) -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        let identity = Self::from_seed(seed);
        // Replace::No: never overwrite a key, even one that appeared meanwhile.
        let body = format!("{HEADER}\n{}\n", maxwell_types::hex::encode(&seed));
        dir.write(KEY_FILE, body.as_bytes(), Replace::No)?;
        tracing::info!(path = %dir.file(KEY_FILE).display(), id = %identity.id, "created a new host key");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn open(path: &std::path::Path) -> DataDir {
        crate::datadir::open_when_free(path).expect("data dir")
    }

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let a = Identity::load_or_create(&open(&data)).expect("create");
        let path = data.join(KEY_FILE);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&data).expect("meta").permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let b = Identity::load_or_create(&open(&data)).expect("load");
        assert_eq!(a.id(), b.id());
        assert_eq!(a.public_key(), b.public_key());
        assert!(a.id().matches(&a.public_key()));
    }

    #[test]
    fn loose_permissions_are_an_error_and_the_file_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(&open(dir.path())).expect("create");
        let path = dir.path().join(KEY_FILE);
        let before = fs::read(&path).expect("read");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Identity::load_or_create(&open(dir.path())).expect_err("0644 refused");
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
            "k".repeat(100_000),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(KEY_FILE);
            fs::write(&path, &contents).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = Identity::load_or_create(&open(dir.path())).expect_err("malformed");
            assert!(
                matches!(err, IdentityError::Malformed { .. }),
                "{}: {err}",
                contents.len()
            );
            assert!(err.to_string().len() < 300, "{err}");
            assert_eq!(fs::read_to_string(&path).expect("read"), contents);
        }
    }

    #[test]
    fn an_empty_key_holds_no_identity_and_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, "").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let a = Identity::load_or_create(&open(dir.path())).expect("replaced");
        let b = Identity::load_or_create(&open(dir.path())).expect("reused");
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn a_directory_or_a_link_is_not_a_key_and_says_so_in_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        fs::create_dir(&path).expect("mkdir");
        let err = Identity::load_or_create(&open(dir.path())).expect_err("a dir");
        let text = err.to_string();
        assert!(
            text.contains("is a directory, not a regular file"),
            "{text}"
        );
        assert!(!text.contains("mode"), "{text}");
        fs::remove_dir(&path).expect("rmdir");
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "x").expect("write");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");
        let err = Identity::load_or_create(&open(dir.path())).expect_err("a link");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn seed_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        let seed = [0x5au8; 32];
        fs::write(
            &path,
            format!("{HEADER}\n{}\n", maxwell_types::hex::encode(&seed)),
        )
        .expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let id = Identity::load_or_create(&open(dir.path())).expect("load");
        assert_eq!(id.id(), Identity::from_seed(seed).id());
    }
}

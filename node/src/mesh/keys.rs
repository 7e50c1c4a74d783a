//! The cluster key file: the shared secret that seals every gossip
//! datagram (see `docs/protocol.md` §10). Every host of a cluster holds the
//! same file; a host without it can neither join nor disturb the mesh.
//!
//! Format: one key per line, 64 hex digits each, `#` comments and blank
//! lines allowed. The first key seals; every key opens. Rotation: add the
//! new key second on every host, then move it first everywhere, then drop
//! the old one. The file must not be readable by group or others.

use crate::datadir::{DataDir, DataDirError};
use crate::fsutil::{self, Links};
use maxwell_gossip::seal::{ClusterKey, Keyring};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The key file's name in the data dir, where it is looked for by default.
pub const FILE_NAME: &str = "cluster.key";

/// Most keys a file may hold.
const MAX_KEYS: usize = 16;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the cluster key {path}")]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("cannot write the cluster key {path}")]
    Write {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("the cluster key {path} may be read by group or others (mode {mode:o}); chmod 600 it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the cluster key {path}, line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
    #[error("the cluster key {path} holds no key")]
    Empty { path: PathBuf },
    #[error("the cluster key {path} holds two keys with the same id; generate another with `maxwell keygen`")]
    Collision { path: PathBuf },
    #[error(
        "gossip.seeds are set but there is no cluster key: copy {FILE_NAME} from a member \
         into {dir} (or set gossip.cluster_key_file); `maxwell keygen` makes a new one"
    )]
    Missing { dir: PathBuf },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot draw a random key: {0}")]
    Random(String),
}

/// A new key file's text: one fresh random key.
pub fn generate() -> Result<String, KeyError> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!(
        "# maxwell cluster key: copy this file to every host of the cluster (mode 600)\n{}\n",
        maxwell_types::hex::encode(&secret)
    ))
}

/// Writes a new key file, `dir/cluster.key` (mode 600, never over one that
/// exists), for hosts to share; returns its path.
pub fn create(dir: &Path) -> Result<PathBuf, KeyError> {
    let path = dir.join(FILE_NAME);
    fsutil::write_atomic(
        dir,
        FILE_NAME,
        generate()?.as_bytes(),
        0o600,
        fsutil::Replace::No,
    )
    .map_err(|err| KeyError::Write {
        path: path.clone(),
        err,
    })?;
    Ok(path)
}

/// Parses a key file's text into the keyring of cluster `cluster_id`.
pub fn parse(text: &str, cluster_id: &str, path: &Path) -> Result<Keyring, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |problem| KeyError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let secret = maxwell_types::hex::decode::<32>(line)
            .ok_or_else(|| malformed("a key is 64 hex digits"))?;
        if keys.len() == MAX_KEYS {
            return Err(malformed("more than 16 keys"));
        }
        keys.push(ClusterKey::derive(&secret, cluster_id));
    }
    let mut ids: Vec<u8> = keys.iter().map(ClusterKey::id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < keys.len() {
        return Err(KeyError::Collision {
            path: path.to_path_buf(),
        });
    }
    let mut keys = keys.into_iter();
    let primary = keys.next().ok_or_else(|| KeyError::Empty {
        path: path.to_path_buf(),
    })?;
    Ok(Keyring::new(primary, keys.collect()))
}

/// Reads the key file at `path` (mode 600 or stricter).
pub fn load(path: &Path, cluster_id: &str) -> Result<Keyring, KeyError> {
    let read =
        fsutil::read_regular(path, 64 * 1024, Links::Follow).map_err(|err| KeyError::Read {
            path: path.to_path_buf(),
            err,
        })?;
    let mode = read.meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = String::from_utf8(read.bytes).map_err(|_| KeyError::Malformed {
        path: path.to_path_buf(),
        line: 0,
        problem: "not text",
    })?;
    parse(&text, cluster_id, path)
}

/// The agent's keyring: the configured file; else `DATA_DIR/cluster.key`;
/// else, for a node that founds a mesh (no seeds), a new key written there.
pub fn for_agent(
    file: Option<&Path>,
    has_seeds: bool,
    cluster_id: &str,
    dir: &DataDir,
) -> Result<(Keyring, PathBuf), KeyError> {
    if let Some(path) = file {
        return Ok((load(path, cluster_id)?, path.to_path_buf()));
    }
    let path = dir.file(FILE_NAME);
    if path.exists() {
        return Ok((load(&path, cluster_id)?, path));
    }
    if has_seeds {
        return Err(KeyError::Missing {
            dir: dir.path().to_path_buf(),
        });
    }
    dir.write(FILE_NAME, generate()?.as_bytes(), fsutil::Replace::No)?;
    tracing::info!(path = %path.display(), "created a new cluster key: copy it to every host that is to join this one");
    Ok((load(&path, cluster_id)?, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn a_key_file_parses_with_comments_and_names_each_key_by_its_content() {
        let p = Path::new("k");
        let one = parse(&format!("# c\n\n{A}\n{B}\n"), "maxwell", p).expect("parses");
        let other = parse(&format!("{B}\n{A}\n"), "maxwell", p).expect("parses");
        assert_eq!(format!("{one:?}").len(), format!("{other:?}").len());
        let id = |k| {
            ClusterKey::derive(
                &maxwell_types::hex::decode::<32>(k).expect("hex"),
                "maxwell",
            )
            .id()
        };
        assert_ne!(id(A), id(B));
        assert!(matches!(
            parse("", "maxwell", p),
            Err(KeyError::Empty { .. })
        ));
        let bad = parse("abc\n", "maxwell", p).expect_err("short");
        assert!(bad.to_string().contains("line 1"), "{bad}");
        assert!(matches!(
            parse(&format!("{A}\n{A}\n"), "maxwell", p),
            Err(KeyError::Collision { .. })
        ));
    }

    #[test]
    fn a_joiner_without_a_key_is_told_where_to_put_it_and_a_founder_makes_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = DataDir::open(tmp.path()).expect("dir");
        let err = for_agent(None, true, "maxwell", &dir).expect_err("no key");
        assert!(err.to_string().contains("copy cluster.key"), "{err}");
        let (_, path) = for_agent(None, false, "maxwell", &dir).expect("made");
        assert_eq!(path, dir.file(FILE_NAME));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for_agent(None, true, "maxwell", &dir).expect("now it joins with it");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = for_agent(None, true, "maxwell", &dir).expect_err("exposed");
        assert!(matches!(err, KeyError::Exposed { .. }), "{err}");
    }
}

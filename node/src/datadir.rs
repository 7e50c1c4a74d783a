//! The data dir (`/var/lib/maxwell`): the host key, the API token, the
//! generation, and the lock that makes one agent its only user.
//!
//! Rules, checked once at start (docs/operations.md, "Security"):
//! - the dir is created with mode 0700; an existing one must be owned by the
//!   agent's user and writable by no one else, or the agent refuses to start;
//! - the dir itself is `flock`ed for the life of the process, and `lock`
//!   holds the holder's PID: a second agent on the same dir refuses to start
//!   and names it;
//! - every file is opened with `O_NOFOLLOW`, must be a regular file, and is
//!   written through [`fsutil::write_atomic`];
//! - temporary files a crash left behind are removed once the lock is held.

use crate::fsutil::{self, excerpt, Links, Replace};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "lock";
/// The last generation handed out.
pub const GENERATION_FILE: &str = "generation";
/// Generations are Unix milliseconds; anything past 2^53 is not one (and
/// would lose precision in JSON).
pub const MAX_GENERATION: u64 = 1 << 53;

/// Errors opening or using the data dir; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The dir could not be created, read or checked.
    #[error("data dir {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    /// The dir is not a directory, or others could write into it.
    #[error("data dir {path}: {problem}")]
    Unsafe { path: PathBuf, problem: String },
    /// Another agent holds the lock.
    #[error("data dir {path} is in use by another maxwell agent{}; stop it, or give this one its own --data-dir", pid.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    /// A file in the dir could not be read or written.
    #[error("{path}: {err}")]
    File { path: PathBuf, err: io::Error },
    /// A secret file is readable by others than its owner.
    #[error(
        "{path} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {path})"
    )]
    Exposed { path: PathBuf, mode: u32 },
    /// The generation file does not hold a generation.
    #[error("{path} {problem}; remove it to start again from the clock")]
    BadGeneration { path: PathBuf, problem: String },
}

/// The opened, checked and locked data dir.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// The dir, held open for the `flock`; closing it releases the lock.
    _lock: File,
}

impl DataDir {
    /// Creates (mode 0700) or checks the dir, then takes its lock.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let io_err = |err| DataDirError::Io {
            path: path.to_path_buf(),
            err,
        };
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_err)?;
        }
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let unsafe_dir = |problem: String| DataDirError::Unsafe {
            path: path.to_path_buf(),
            problem,
        };
        if !meta.is_dir() {
            return Err(unsafe_dir(format!(
                "is {}, not a directory",
                fsutil::kind_of(&meta)
            )));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(unsafe_dir(format!(
                "has mode {mode:04o}: others could plant files in it; chmod go-w {}",
                path.display()
            )));
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(unsafe_dir(format!(
                "is owned by uid {}, not by this agent's uid {euid}",
                meta.uid()
            )));
        }
        let lock = take_lock(path)?;
        let removed = fsutil::remove_stale_tmp(path);
        if removed > 0 {
            tracing::info!(path = %path.display(), removed, "removed temporary files left by an interrupted write");
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads `name` (a regular file, not a link, at most `max` bytes);
    /// `Ok(None)` when absent.
    pub fn read(&self, name: &str, max: usize) -> Result<Option<fsutil::FileRead>, DataDirError> {
        match fsutil::read_regular(&self.file(name), max, Links::Refuse) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(DataDirError::File {
                path: self.file(name),
                err,
            }),
        }
    }

    /// Reads a secret, like [`DataDir::read`], refusing a file that group
    /// or others may read ([`DataDirError::Exposed`]).
    pub fn read_secret(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Option<fsutil::FileRead>, DataDirError> {
        let read = self.read(name, max)?;
        if let Some(r) = &read {
            let mode = r.meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(DataDirError::Exposed {
                    path: self.file(name),
                    mode,
                });
            }
        }
        Ok(read)
    }

    /// Writes `name` atomically and durably (see [`fsutil::write_atomic`]).
    pub fn write(&self, name: &str, bytes: &[u8], replace: Replace) -> Result<(), DataDirError> {
        fsutil::write_atomic(&self.path, name, bytes, 0o600, replace).map_err(|err| {
            DataDirError::File {
                path: self.file(name),
                err,
            }
        })
    }

    /// Removes `name`; a file that is not there is no error.
    pub fn remove(&self, name: &str) -> Result<(), DataDirError> {
        match std::fs::remove_file(self.file(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(DataDirError::File {
                path: self.file(name),
                err,
            }),
            _ => Ok(()),
        }
    }

    /// A generation larger than any this data dir handed out before, even if
    /// the clock stepped back: peers refuse a lower one as a replay. It is
    /// recorded before it is used; if it cannot be, the agent must not start.
    pub fn next_generation(&self, now_ms: u64) -> Result<u64, DataDirError> {
        let path = self.file(GENERATION_FILE);
        let bad = |problem: String| DataDirError::BadGeneration {
            path: path.clone(),
            problem,
        };
        let last = match self.read(GENERATION_FILE, 64)? {
            None => None,
            Some(r) => {
                let text = String::from_utf8_lossy(&r.bytes);
                match text.trim().parse::<u64>() {
                    Ok(g) if g < MAX_GENERATION => Some(g),
                    Ok(g) => return Err(bad(format!("holds {g}, beyond any generation (2^53)"))),
                    Err(_) => {
                        return Err(bad(format!(
                            "holds {}, not a generation",
                            excerpt(text.trim(), 24)
                        )))
                    }
                }
            }
        };
        let generation = last
            .map_or(now_ms, |l| now_ms.max(l + 1))
            .min(MAX_GENERATION - 1);
        self.write(
            GENERATION_FILE,
            format!("{generation}\n").as_bytes(),
            Replace::Yes,
        )?;
        Ok(generation)
    }
}

/// Locks the directory itself (a lock file could be deleted from under us)
/// and records our PID in `lock`, for the next agent's error message.
fn take_lock(dir: &Path) -> Result<File, DataDirError> {
    let io_err = |err| DataDirError::Io {
        path: dir.to_path_buf(),
        err,
    };
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err)?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = fsutil::read_regular(&dir.join(LOCK_FILE), 32, Links::Refuse)
                .ok()
                .and_then(|r| String::from_utf8_lossy(&r.bytes).trim().parse().ok());
            return Err(DataDirError::Locked {
                path: dir.to_path_buf(),
                pid,
            });
        }
        return Err(io_err(err));
    }
    let pid = format!("{}\n", std::process::id());
    fsutil::write_atomic(dir, LOCK_FILE, pid.as_bytes(), 0o600, Replace::Yes).map_err(|err| {
        DataDirError::File {
            path: dir.join(LOCK_FILE),
            err,
        }
    })?;
    Ok(handle)
}

/// Opens `dir` once its last opener has let go: a child another test
/// forked may hold the directory's descriptor (and so its lock) for the
/// moment until it execs.
#[cfg(test)]
pub(crate) fn open_when_free(dir: &Path) -> Result<DataDir, DataDirError> {
    for _ in 0..200 {
        match DataDir::open(dir) {
            Err(DataDirError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
    DataDir::open(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_is_refused_and_told_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDir::open(dir.path()).expect("first");
        let err = DataDir::open(dir.path()).expect_err("second");
        let text = err.to_string();
        assert!(
            text.contains(&format!("PID {}", std::process::id())),
            "{text}"
        );
        drop(first);
        open_when_free(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn unsafe_dirs_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = DataDir::open(dir.path()).expect_err("world-writable");
        assert!(err.to_string().contains("mode 0777"), "{err}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").expect("write");
        let err = DataDir::open(&file).expect_err("a file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn generations_grow_and_bad_files_are_refused_in_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::open(dir.path()).expect("open");
        assert_eq!(d.next_generation(1000).expect("first"), 1000);
        assert_eq!(d.next_generation(500).expect("clock back"), 1001);
        std::fs::write(d.file(GENERATION_FILE), "x".repeat(40)).expect("write");
        let err = d.next_generation(5).expect_err("garbage").to_string();
        assert!(err.contains("not a generation") && err.len() < 200, "{err}");
        assert_eq!(err.lines().count(), 1);
        std::fs::write(d.file(GENERATION_FILE), format!("{}\n", u64::MAX)).expect("write");
        let err = d.next_generation(5).expect_err("u64::MAX").to_string();
        assert!(err.contains("beyond any generation"), "{err}");
        std::fs::write(d.file(GENERATION_FILE), "y".repeat(100_000)).expect("write");
        let err = d.next_generation(5).expect_err("huge").to_string();
        assert!(
            err.contains("larger than 64 bytes") && err.len() < 200,
            "{err}"
        );
    }
}

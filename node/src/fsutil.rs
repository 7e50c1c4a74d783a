//! File access that cannot hang or be redirected: bounded reads of regular
//! files only, and atomic, durable writes.
//!
//! - [`read_regular`] opens with `O_NONBLOCK` (a FIFO cannot stall the open)
//!   and, on request, `O_NOFOLLOW`; it refuses anything that is not a regular
//!   file and reads at most a given number of bytes.
//! - [`write_atomic`] writes a temporary file beside the target
//!   (`O_EXCL | O_NOFOLLOW`, so a planted symlink is never followed), fsyncs
//!   it, moves it into place, then fsyncs the directory: a crash or a full
//!   disk leaves the old file or the new one, never half of either.

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Whether the last path component may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (sysfs, where hwmon entries are links into the device tree).
    Follow,
    /// Refuse it with `ELOOP` (files the agent owns in its data dir).
    Refuse,
}

/// The file, read: its metadata (from the open descriptor) and its bytes.
#[derive(Debug)]
pub struct FileRead {
    pub meta: Metadata,
    pub bytes: Vec<u8>,
}

/// Reads a regular file of at most `max_bytes`. Anything else (a directory,
/// a FIFO, a socket, a device) is an error of kind `InvalidInput` saying what
/// it is; a larger file is `InvalidData`.
pub fn read_regular(path: &Path, max_bytes: usize, links: Links) -> io::Result<FileRead> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) && links == Links::Refuse {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symlink; refusing to follow it",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_of(&meta)),
        ));
    }
    let mut bytes = Vec::new();
    let cap = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    (&mut file).take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {max_bytes} bytes"),
        ));
    }
    Ok(FileRead { meta, bytes })
}

/// [`read_regular`] for a text file: bytes that are not UTF-8 are an error of
/// kind `InvalidData`.
pub fn read_text(path: &Path, max_bytes: usize, links: Links) -> io::Result<String> {
    String::from_utf8(read_regular(path, max_bytes, links)?.bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

/// What kind of file `meta` describes, for error messages.
pub fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Whether [`write_atomic`] may replace an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it (the generation file).
    Yes,
    /// Fail with `AlreadyExists` (the host key: never overwrite one).
    No,
}

/// Writes `bytes` to `dir/name` with `mode`, atomically and durably.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    replace: Replace,
) -> io::Result<()> {
    let target = dir.join(name);
    let tmp = tmp_path(dir, name);
    // Only a file this call created is removed on failure.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        match replace {
            Replace::Yes => std::fs::rename(&tmp, &target),
            // link(2) fails if the target exists: no window where it is replaced.
            Replace::No => {
                std::fs::hard_link(&tmp, &target).and_then(|()| std::fs::remove_file(&tmp))
            }
        }?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `.NAME.tmp.PID`: unique to this process, recognisable by [`remove_stale_tmp`].
fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp.{}", std::process::id()))
}

/// Removes temporary files a crashed [`write_atomic`] left in `dir`. Call it
/// only while holding the dir's lock. Returns how many were removed.
pub fn remove_stale_tmp(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name: OsString = entry.file_name();
        let b = name.as_bytes();
        let ours = b.starts_with(b".") && b.windows(5).any(|w| w == b".tmp.");
        if ours && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// At most `max` characters of `text`, on one line, with how much was cut:
/// errors quote values without echoing 100 kB of them.
pub fn excerpt(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    let total = text.chars().count();
    if total > max {
        format!("{one_line:?}… ({} bytes in all)", text.len())
    } else {
        format!("{one_line:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("cstr");
        // SAFETY: a valid path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo, 16, Links::Follow).expect_err("a FIFO is refused");
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let err = read_regular(dir.path(), 16, Links::Follow).expect_err("a dir is refused");
        assert!(err.to_string().contains("a directory"), "{err}");

        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789").expect("write");
        assert_eq!(
            read_regular(&file, 10, Links::Refuse).expect("read").bytes,
            b"0123456789"
        );
        let err = read_regular(&file, 9, Links::Refuse).expect_err("too large");
        assert!(err.to_string().contains("larger than 9"), "{err}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert!(read_regular(&link, 16, Links::Follow).is_ok());
        let err = read_regular(&link, 16, Links::Refuse).expect_err("link refused");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn atomic_writes_never_follow_a_planted_link_and_never_replace_by_accident() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        // An attacker plants our temporary name as a link to the victim.
        std::os::unix::fs::symlink(&victim, tmp_path(dir.path(), "generation")).expect("plant");
        let err = write_atomic(dir.path(), "generation", b"1\n", 0o600, Replace::Yes);
        assert!(err.is_err(), "the planted link must not be followed");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(remove_stale_tmp(dir.path()), 1);

        write_atomic(dir.path(), "key", b"a", 0o600, Replace::No).expect("first write");
        let mode = std::fs::metadata(dir.path().join("key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_atomic(dir.path(), "key", b"b", 0o600, Replace::No).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("key")).expect("read"), b"a");
        write_atomic(dir.path(), "gen", b"1", 0o600, Replace::Yes).expect("write");
        write_atomic(dir.path(), "gen", b"2", 0o600, Replace::Yes).expect("replace");
        assert_eq!(std::fs::read(dir.path().join("gen")).expect("read"), b"2");
        assert_eq!(remove_stale_tmp(dir.path()), 0, "nothing left behind");
    }

    #[test]
    fn excerpts_are_short_and_say_how_long_the_value_was() {
        assert_eq!(excerpt("12", 8), "\"12\"");
        let long = "x".repeat(100_000);
        let e = excerpt(&long, 16);
        assert!(e.len() < 60 && e.contains("100000 bytes"), "{e}");
        assert!(!excerpt("a\nb", 8).contains('\n'));
    }
}

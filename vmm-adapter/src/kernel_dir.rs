//! Linux guest kernels load only from one configured directory.
//!
//! A spec names its kernel by a relative path inside that directory; the
//! file is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`,
//! so no `..`, absolute symlink or `/proc` magic link can lead outside it,
//! whatever the directory holds. Where the kernel lacks `openat2`, each
//! component is opened with `O_NOFOLLOW` instead (no symlinks at all).
//! Whatever an API caller names, the agent opens nothing outside the dir.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Whether `name` is a plain relative path: normal components only.
pub fn is_plain_relative(name: &Path) -> bool {
    !name.as_os_str().is_empty() && name.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Opens `name` beneath `dir`; it must resolve inside `dir` and be a
/// regular file.
pub fn open_beneath(dir: &Path, name: &Path) -> io::Result<File> {
    if !is_plain_relative(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a plain relative path",
        ));
    }
    let base = File::open(dir)?;
    let file = match openat2(&base, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => open_nofollow(&base, name)?,
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "resolves outside the kernel directory",
            ))
        }
        other => other?,
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(file)
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn openat2(base: &File, name: &Path) -> io::Result<File> {
    let path = cstr(name)?;
    // SAFETY: `open_how` is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, NUL-terminated path, a live `open_how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            base.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// The fallback: component by component, never following a symlink.
fn open_nofollow(base: &File, name: &Path) -> io::Result<File> {
    let parts: Vec<_> = name.components().collect();
    let mut dir = base.try_clone()?;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags = libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NONBLOCK
            | if last {
                libc::O_RDONLY
            } else {
                libc::O_DIRECTORY | libc::O_RDONLY
            };
        let c = cstr(Path::new(part.as_os_str()))?;
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        dir = unsafe { File::from_raw_fd(fd) };
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_dir_open() {
        let root = tempfile::tempdir().expect("tempdir");
        let kernels = root.path().join("kernels");
        std::fs::create_dir_all(kernels.join("v6")).expect("mkdir");
        std::fs::write(kernels.join("v6/vmlinux"), b"\x7fELF").expect("write");
        std::fs::write(root.path().join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink("v6/vmlinux", kernels.join("current")).expect("link in");
        std::os::unix::fs::symlink(root.path().join("secret"), kernels.join("escape"))
            .expect("link out");
        std::os::unix::fs::symlink("../secret", kernels.join("dotdot")).expect("link up");

        assert!(open_beneath(&kernels, Path::new("v6/vmlinux")).is_ok());
        assert!(
            open_beneath(&kernels, Path::new("current")).is_ok(),
            "a link that stays inside"
        );
        for bad in [
            "escape",
            "dotdot",
            "../secret",
            "/etc/passwd",
            "v6",
            "missing",
            "",
        ] {
            assert!(open_beneath(&kernels, Path::new(bad)).is_err(), "{bad}");
        }
        let base = File::open(&kernels).expect("dir");
        assert!(open_nofollow(&base, Path::new("v6/vmlinux")).is_ok());
        assert!(
            open_nofollow(&base, Path::new("current")).is_err(),
            "no links at all"
        );
    }
}

//! Reading the files a user names (a library, a catalog) without trusting what they are: a FIFO,
//! a device such as /dev/zero, or a file larger than any library must fail at once with a clear
//! reason, never hang or fill memory.

use std::{
    fs::OpenOptions,
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use crate::errors::{Error, Result};

/// Reads the regular file at `path`, at most `max_bytes` of it (larger: [`Error::TooLarge`]).
/// `what` names the file in errors ("library", "catalog").
pub(crate) fn read_regular(path: &Path, max_bytes: u64, what: &'static str) -> Result<Vec<u8>> {
    let (file, meta) = open_regular(path, max_bytes, what)?;
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let mut data = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(max_bytes + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > max_bytes {
        return Err(Error::TooLarge {
            path: path.into(),
            what,
            size: data.len() as u64,
            max: max_bytes,
        });
    }
    Ok(data)
}

/// The bytes of a regular file, mapped (an empty file has none to map).
pub(crate) struct Mapped(Option<memmap2::Mmap>);

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

/// Maps the regular file at `path` read-only, checked as [`read_regular`] checks it. A library
/// is tens of MB of which resolution reads the symbol tables only: mapped, the rest is never
/// touched (a 65 MB ttnn library: ≈ 60 ms of reading saved while a process waits, stopped).
/// Library files are replaced (a new inode), not rewritten in place; one truncated while
/// mapped would fault the reader.
pub(crate) fn map_regular(path: &Path, max_bytes: u64, what: &'static str) -> Result<Mapped> {
    let (file, meta) = open_regular(path, max_bytes, what)?;
    if meta.len() == 0 {
        return Ok(Mapped(None));
    }
    // SAFETY: a private read-only view of a regular file; see above for a file cut short.
    let map =
        unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.map_err(|source| {
            Error::Io {
                path: path.into(),
                source,
            }
        })?;
    Ok(Mapped(Some(map)))
}

/// Opens `path` if it is a regular file of at most `max_bytes`.
fn open_regular(
    path: &Path,
    max_bytes: u64,
    what: &'static str,
) -> Result<(std::fs::File, std::fs::Metadata)> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It
    // changes nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::NotRegularFile {
            path: path.into(),
            kind,
            what,
        });
    }
    if meta.len() > max_bytes {
        return Err(Error::TooLarge {
            path: path.into(),
            what,
            size: meta.len(),
            max: max_bytes,
        });
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tt-tracer-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let p = scratch("fifo");
        let _ = std::fs::remove_file(&p);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&p, 1 << 20, "catalog").unwrap_err();
        assert!(
            matches!(err, Error::NotRegularFile { kind: "a FIFO", .. }),
            "{err}"
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn dev_zero_is_refused() {
        let err = read_regular(Path::new("/dev/zero"), 1 << 20, "library").unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotRegularFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_under_it_is_read() {
        let p = scratch("big");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        assert!(matches!(
            read_regular(&p, 99, "catalog"),
            Err(Error::TooLarge {
                size: 100,
                max: 99,
                ..
            })
        ));
        assert_eq!(read_regular(&p, 100, "catalog").unwrap().len(), 100);
        assert_eq!(
            &map_regular(&p, 100, "library").unwrap()[..],
            &[7u8; 100][..]
        );
        assert!(matches!(
            map_regular(&p, 99, "library"),
            Err(Error::TooLarge { .. })
        ));
        std::fs::write(&p, []).unwrap();
        assert!(map_regular(&p, 100, "library").unwrap().is_empty());
        assert!(matches!(
            map_regular(Path::new("/dev/zero"), 100, "library"),
            Err(Error::NotRegularFile { .. })
        ));
    }
}

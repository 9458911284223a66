//! Outputs that are never left half-written, and never replace what is not a regular file.
//!
//! [`Output::create`] decides how a path is written:
//! - `-`: standard output, written directly;
//! - an existing character device or FIFO (`/dev/null`, a pipe): opened and written
//!   directly; it is never replaced, `--force` or not;
//! - a regular file (new, or existing with `force`): written to an unnamed temporary file
//!   in the destination folder (`O_TMPFILE`) that is linked to its name only by
//!   [`Output::commit`], so an interrupted or failed write, even `SIGKILL`, leaves nothing.
//!   Where the filesystem has no unnamed files, a named `.sparsewire-*.tmp` file beside the
//!   destination is used instead: removed on drop, by [`remove_pending`] (for a signal
//!   handler) and by [`sweep_stale`] at the next run;
//! - anything else (a directory, a socket, a block device, an existing file without
//!   `force`): refused with an [`OutputError`] naming it.
//!
//! Files are created with mode 0666 less the umask, like any tool's output.
//! `SPARSEWIRE_NAMED_TEMP=1` forces the named fallback (to test it on a filesystem that has
//! unnamed files).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why an output cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    #[error("{path} already exists (pass --force to overwrite it)")]
    Exists { path: PathBuf },
    #[error("{path} is the input; refusing to overwrite it")]
    IsInput { path: PathBuf },
    #[error("{path} is a directory; give a file name")]
    IsDirectory { path: PathBuf },
    #[error("{path} is a {kind}, not a regular file; refusing to replace it")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is a {kind}, not a folder; refusing to replace it")]
    NotAFolder { path: PathBuf, kind: &'static str },
    #[error("{path}: the folder was removed while the output was being written")]
    FolderRemoved { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| {
        // Committing into a folder that no longer exists.
        let gone = source.kind() == io::ErrorKind::NotFound
            && path
                .parent()
                .is_some_and(|d| !d.as_os_str().is_empty() && !d.exists());
        if gone {
            OutputError::FolderRemoved {
                path: path.to_path_buf(),
            }
        } else {
            OutputError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Named temporary files not yet committed or removed (for [`remove_pending`]). A file is
/// created and registered under this lock, so a handler never misses one in between.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every named temporary file this process has open; for a SIGINT/SIGTERM handler
/// that runs on its own thread (as `ctrlc`'s does) and exits the process next (unnamed
/// temporary files need nothing: the kernel frees them). It waits for a file being created
/// to be registered, and afterwards no named temporary file can be created (creating one
/// blocks), so none appears between this call and the exit.
pub fn remove_pending() {
    let mut p = pending();
    for path in p.drain(..) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(path);
        } else {
            let _ = std::fs::remove_file(path);
        }
    }
    // Held until the process exits.
    std::mem::forget(p);
}

/// Prefix of named temporary files.
const TMP_PREFIX: &str = ".sparsewire-";

/// Removes named temporary files left in `dir` by processes that no longer run (a crash
/// or SIGKILL while the fallback path was in use). Returns how many were removed.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(TMP_PREFIX)
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Another run's (or this one's) file in use: not stale.
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(e.path())
        } else {
            std::fs::remove_file(e.path())
        };
        if removed.is_ok() {
            n += 1;
        }
    }
    n
}

enum Target {
    Stdout(io::Stdout),
    Direct(BufWriter<File>),
    /// Unnamed (`O_TMPFILE`): linked into place at commit.
    #[cfg(target_os = "linux")]
    Unnamed {
        file: BufWriter<File>,
        dir: PathBuf,
        force: bool,
    },
    /// Named temporary beside the destination: renamed into place at commit.
    Named {
        file: BufWriter<File>,
        tmp: PathBuf,
        force: bool,
    },
}

/// An output being written; nothing appears at its path until [`Output::commit`].
pub struct Output {
    path: PathBuf,
    target: Option<Target>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("path", &self.path).finish()
    }
}

/// What is at `path` now.
fn kind_of(path: &Path) -> Option<&'static str> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return Some("character device");
        }
        if t.is_fifo() {
            return Some("FIFO");
        }
        if t.is_block_device() {
            return Some("block device");
        }
        if t.is_socket() {
            return Some("socket");
        }
    }
    Some(if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    })
}

/// Refuses an output that is the input, a directory, something that is not a regular
/// file (other than a character device or FIFO, which are written directly), or an
/// existing file without `force`.
pub fn check_output(input: Option<&Path>, output: &Path, force: bool) -> Result<(), OutputError> {
    if output == Path::new("-") {
        return Ok(());
    }
    if let (Some(Ok(a)), Ok(b)) = (input.map(Path::canonicalize), output.canonicalize()) {
        if a == b {
            return Err(OutputError::IsInput {
                path: output.to_path_buf(),
            });
        }
    }
    match kind_of(output) {
        None | Some("character device") | Some("FIFO") => Ok(()),
        Some("directory") => Err(OutputError::IsDirectory {
            path: output.to_path_buf(),
        }),
        Some("file") if force => Ok(()),
        Some("file") => Err(OutputError::Exists {
            path: output.to_path_buf(),
        }),
        Some(kind) => Err(OutputError::NotRegular {
            path: output.to_path_buf(),
            kind,
        }),
    }
}

impl Output {
    /// Prepares to write `path` (see the module docs for what each kind of path gets).
    pub fn create(path: &Path, force: bool) -> Result<Output, OutputError> {
        check_output(None, path, force)?;
        let target = if path == Path::new("-") {
            Target::Stdout(io::stdout())
        } else if matches!(kind_of(path), Some("character device") | Some("FIFO")) {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            Target::Direct(BufWriter::with_capacity(1 << 20, f))
        } else {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                return Err(OutputError::Io {
                    path: dir,
                    source: io::Error::new(io::ErrorKind::NotFound, "no such folder"),
                });
            }
            sweep_stale(&dir);
            Self::temporary(dir, force)?
        };
        Ok(Output {
            path: path.to_path_buf(),
            target: Some(target),
        })
    }

    fn temporary(dir: PathBuf, force: bool) -> Result<Target, OutputError> {
        #[cfg(target_os = "linux")]
        if std::env::var_os("SPARSEWIRE_NAMED_TEMP").is_none_or(|v| v != "1") {
            use rustix::fs::{Mode, OFlags, CWD};
            match rustix::fs::openat(
                CWD,
                &dir,
                OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ) {
                Ok(fd) => {
                    return Ok(Target::Unnamed {
                        file: BufWriter::with_capacity(1 << 20, File::from(fd)),
                        dir,
                        force,
                    })
                }
                // No unnamed files on this filesystem: fall back to a named one.
                Err(e)
                    if [
                        rustix::io::Errno::OPNOTSUPP,
                        rustix::io::Errno::ISDIR,
                        rustix::io::Errno::INVAL,
                    ]
                    .contains(&e) => {}
                Err(e) => return Err(io_err(&dir)(e.into())),
            }
        }
        let (file, tmp) = Self::named_temp(&dir)?;
        Ok(Target::Named {
            file: BufWriter::with_capacity(1 << 20, file),
            tmp,
            force,
        })
    }

    /// A new named temporary file in `dir`, registered for [`remove_pending`].
    fn named_temp(dir: &Path) -> Result<(File, PathBuf), OutputError> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o666);
        for attempt in 0u32..64 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let tmp = dir.join(format!(
                "{TMP_PREFIX}{}-{:08x}{attempt}.tmp",
                std::process::id(),
                nanos
            ));
            let mut p = pending();
            match opts.open(&tmp) {
                Ok(f) => {
                    p.push(tmp.clone());
                    return Ok((f, tmp));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(dir)(e)),
            }
        }
        Err(io_err(dir)(io::Error::other(
            "could not pick a temporary file name",
        )))
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the output appear at its path, complete.
    pub fn commit(mut self) -> Result<(), OutputError> {
        let path = self.path.clone();
        let target = self.target.take().expect("committed once");
        let sync = |w: BufWriter<File>| -> Result<File, OutputError> {
            let f = w.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
            f.sync_all().map_err(io_err(&path))?;
            Ok(f)
        };
        match target {
            Target::Stdout(mut s) => s.flush().map_err(io_err(&path)),
            Target::Direct(mut w) => w.flush().map_err(io_err(&path)),
            #[cfg(target_os = "linux")]
            Target::Unnamed { file, dir, force } => {
                use rustix::fs::{AtFlags, CWD};
                use std::os::fd::AsRawFd;
                let f = sync(file)?;
                let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
                let link = |to: &Path| {
                    rustix::fs::linkat(CWD, proc_path.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW)
                };
                if !force {
                    return link(&path).map_err(|e| {
                        if e == rustix::io::Errno::EXIST {
                            OutputError::Exists { path: path.clone() }
                        } else {
                            io_err(&path)(e.into())
                        }
                    });
                }
                // Replace: link under a temporary name, then rename over the destination.
                let (tmp_file, tmp) = Self::named_temp(&dir)?;
                drop(tmp_file);
                let _ = std::fs::remove_file(&tmp);
                let res = link(&tmp)
                    .map_err(|e| io_err(&tmp)(e.into()))
                    .and_then(|()| std::fs::rename(&tmp, &path).map_err(io_err(&path)));
                forget_pending(&tmp);
                if res.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                res
            }
            Target::Named { file, tmp, force } => {
                let res = sync(file).and_then(|_| {
                    if force {
                        std::fs::rename(&tmp, &path).map_err(io_err(&path))
                    } else {
                        // Never replace: a hard link fails if the name exists.
                        std::fs::hard_link(&tmp, &path).map_err(|e| {
                            if e.kind() == io::ErrorKind::AlreadyExists {
                                OutputError::Exists { path: path.clone() }
                            } else {
                                io_err(&path)(e)
                            }
                        })
                    }
                });
                let _ = std::fs::remove_file(&tmp);
                forget_pending(&tmp);
                res
            }
        }
    }
}

fn forget_pending(tmp: &Path) {
    pending().retain(|x| x != tmp);
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(Target::Named { tmp, .. }) = self.target.take() {
            let _ = std::fs::remove_file(&tmp);
            forget_pending(&tmp);
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.target.as_mut().expect("not committed") {
            Target::Stdout(s) => s.write(buf),
            Target::Direct(w) => w.write(buf),
            #[cfg(target_os = "linux")]
            Target::Unnamed { file, .. } => file.write(buf),
            Target::Named { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.target.as_mut().expect("not committed") {
            Target::Stdout(s) => s.flush(),
            Target::Direct(w) => w.flush(),
            #[cfg(target_os = "linux")]
            Target::Unnamed { file, .. } => file.flush(),
            Target::Named { file, .. } => file.flush(),
        }
    }
}

/// An output folder (a model directory): written as a temporary folder beside the
/// destination (`.sparsewire-<pid>-<n>.tmp`, registered for [`remove_pending`] and swept by
/// [`sweep_stale`]) and renamed into place by [`OutputDir::commit`], so the folder appears
/// complete or not at all; with `force`, an existing folder is replaced only then. A path
/// that exists and is not a folder is refused.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    tmp: Option<PathBuf>,
    force: bool,
}

impl OutputDir {
    /// Prepares to write the folder `path`.
    pub fn create(path: &Path, force: bool) -> Result<OutputDir, OutputError> {
        match kind_of(path) {
            None => {}
            Some("directory") if force => {}
            Some("directory") => {
                return Err(OutputError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Some(kind) => {
                return Err(OutputError::NotAFolder {
                    path: path.to_path_buf(),
                    kind,
                })
            }
        }
        let parent = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(OutputError::Io {
                path: parent,
                source: io::Error::new(io::ErrorKind::NotFound, "no such folder"),
            });
        }
        sweep_stale(&parent);
        for attempt in 0u32..64 {
            let tmp = parent.join(format!("{TMP_PREFIX}{}-d{attempt}.tmp", std::process::id()));
            let mut p = pending();
            match std::fs::create_dir(&tmp) {
                Ok(()) => {
                    p.push(tmp.clone());
                    return Ok(OutputDir {
                        path: path.to_path_buf(),
                        tmp: Some(tmp),
                        force,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&parent)(e)),
            }
        }
        Err(io_err(&parent)(io::Error::other(
            "could not pick a temporary folder name",
        )))
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary folder to write into until [`Self::commit`].
    pub fn staging(&self) -> &Path {
        self.tmp.as_deref().expect("not committed")
    }

    /// Makes the folder appear at its path, complete (replacing an existing one with
    /// `force`).
    pub fn commit(mut self) -> Result<(), OutputError> {
        let tmp = self.tmp.take().expect("committed once");
        let path = self.path.clone();
        let res = (|| {
            if self.force && path.is_dir() {
                let old = tmp.with_extension("old.tmp");
                // Both renames under the lock: a signal handler waits for them, so it never
                // sees the old folder moved aside and the new one not yet in place. A folder
                // left as `old` (killed before its removal) is swept at the next run.
                let res = {
                    let _p = pending();
                    std::fs::rename(&path, &old).map_err(io_err(&path))?;
                    let res = std::fs::rename(&tmp, &path).map_err(io_err(&path));
                    if res.is_err() {
                        // Put the old folder back.
                        let _ = std::fs::rename(&old, &path);
                    }
                    res
                };
                if res.is_ok() {
                    let _ = std::fs::remove_dir_all(&old);
                }
                res
            } else if kind_of(&path).is_some() {
                Err(OutputError::Exists { path: path.clone() })
            } else {
                std::fs::rename(&tmp, &path).map_err(io_err(&path))
            }
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        forget_pending(&tmp);
        res
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_dir_all(&tmp);
            forget_pending(&tmp);
        }
    }
}

/// Writes `bytes` to `path` through an [`Output`].
pub fn write_file(path: &Path, bytes: &[u8], force: bool) -> Result<(), OutputError> {
    let mut out = Output::create(path, force)?;
    out.write_all(bytes).map_err(io_err(path))?;
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_before_commit_and_nothing_is_left_after_a_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        let mut o = Output::create(&p, false).unwrap();
        o.write_all(&vec![7u8; 3 << 20]).unwrap();
        assert!(!p.exists());
        // On Linux the file being written has no name at all (O_TMPFILE).
        #[cfg(target_os = "linux")]
        assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));
        drop(o);
        assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));
        write_file(&p, b"one", false).unwrap();
        assert!(matches!(
            write_file(&p, b"two", false),
            Err(OutputError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_file(&p, b"three", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert_eq!(listing(d.path()), ["out.bin"]);
        assert!(matches!(
            write_file(d.path(), b"x", true),
            Err(OutputError::IsDirectory { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_not_replaced_and_modes_follow_the_umask() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        write_file(Path::new("/dev/null"), b"gone", true).unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        write_file(&p, b"x", false).unwrap();
        // The same mode as any file created under this umask (not a temp file's 0600).
        let plain = d.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&plain));
    }

    #[test]
    fn stale_named_temporaries_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // pid 0 never runs a user process.
        std::fs::write(d.path().join(".sparsewire-0-deadbeef0.tmp"), b"x").unwrap();
        std::fs::write(d.path().join("keep.tmp"), b"x").unwrap();
        // A running process's file (here this one's) is in use, not stale.
        let live = format!(".sparsewire-{}-0a0a0a0a0.tmp", std::process::id());
        std::fs::write(d.path().join(&live), b"x").unwrap();
        assert_eq!(sweep_stale(d.path()), 1);
        assert_eq!(listing(d.path()), [live.as_str(), "keep.tmp"]);
    }

    #[test]
    fn output_folders_appear_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out");
        // Dropped before commit: nothing left.
        let o = OutputDir::create(&path, false).unwrap();
        std::fs::write(o.staging().join("a"), b"1").unwrap();
        drop(o);
        assert!(listing(d.path()).is_empty());
        // Committed: the folder with its files.
        let o = OutputDir::create(&path, false).unwrap();
        std::fs::write(o.staging().join("a"), b"1").unwrap();
        o.commit().unwrap();
        assert_eq!(listing(&path), ["a"]);
        // Exists without force; replaced whole with it.
        assert!(matches!(
            OutputDir::create(&path, false),
            Err(OutputError::Exists { .. })
        ));
        let o = OutputDir::create(&path, true).unwrap();
        std::fs::write(o.staging().join("b"), b"2").unwrap();
        o.commit().unwrap();
        assert_eq!(listing(&path), ["b"]);
        assert_eq!(listing(d.path()), ["out"]);
        // A file is not a folder, force or not.
        let file = d.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            OutputDir::create(&file, true),
            Err(OutputError::NotAFolder { .. })
        ));
        // A stale temporary folder of a dead process is swept.
        std::fs::create_dir(d.path().join(".sparsewire-4294967-d0.tmp")).unwrap();
        assert_eq!(sweep_stale(d.path()), 1);
        assert_eq!(listing(d.path()), ["f", "out"]);
    }
}

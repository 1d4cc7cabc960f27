//! Private directories for snapshots, worked on through their descriptors.
//!
//! A [`PrivateDir`] is an open directory that was checked when it was
//! opened: a real directory (not a symlink), owned by this user, writable by
//! nobody else. Everything below it is done relative to that descriptor
//! (`openat`, `mkdirat`, `renameat`, `unlinkat`) with `O_NOFOLLOW`, so that
//! no component can be swapped between a check and its use, and a symlink
//! planted under a name snapc uses is refused, never followed.
//!
//! What it creates is private whatever the umask: directories 0700 and
//! files 0600 (set explicitly after creation). Files are written atomically
//! (a new temporary file, fsync, rename, fsync of the directory), and a
//! tree can be synced, checked or removed without following links.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Uid, UnlinkatFlags, unlinkat};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a private directory, or something in it, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// It is not what snapc would have created: a symlink, another kind of
    /// file, someone else's, or writable by others.
    #[error("{path}: {reason}; refusing to use it")]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A name that is not a single plain path component.
    #[error("{name:?} is not a plain file name")]
    BadName {
        /// The name.
        name: String,
    },
    /// A system call failed.
    #[error("{path}: {op}: {errno}")]
    Sys {
        /// The path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl DirError {
    /// The system error, if that is what this is.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl From<DirError> for std::io::Error {
    fn from(e: DirError) -> Self {
        match e.errno() {
            Some(errno) => std::io::Error::new(std::io::Error::from(errno).kind(), e.to_string()),
            None => std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()),
        }
    }
}

/// Mode of the directories snapc creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files snapc creates.
pub const FILE_MODE: u32 = 0o600;

/// The most bytes [`PrivateDir::read_file`] reads (metadata, not snapshots).
pub const MAX_READ: u64 = 16 << 20;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn kind_name(k: SFlag) -> &'static str {
    match k {
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        _ => "a device",
    }
}

/// "uid 1001 (name)" for messages.
fn owner_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Why `st` is not something this user alone controls, if it is not.
fn unsafe_reason(st: &FileStat, want: SFlag) -> Option<String> {
    let k = kind(st);
    let me = Uid::effective().as_raw();
    let mode = st.st_mode & 0o7777;
    if k != want {
        return Some(format!(
            "{}, not {} (symlinks are not followed)",
            kind_name(k),
            kind_name(want)
        ));
    }
    if st.st_uid != me {
        return Some(format!(
            "owned by {}, not by this user ({}), mode {mode:04o}",
            owner_name(st.st_uid),
            owner_name(me)
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "owned by {}, mode {mode:04o}: others may write to it",
            owner_name(st.st_uid)
        ));
    }
    None
}

/// Whether `name` is one plain path component.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// An open, checked, private directory.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
    /// This opening created it (it was empty then).
    created: bool,
}

impl PrivateDir {
    /// Opens `path`, creating it (0700) when `create` and it does not exist,
    /// and checks it: a real directory owned by this user that nobody else
    /// may write to. Only the last component is checked; its parents are
    /// the caller's choice.
    pub fn open(path: impl Into<PathBuf>, create: bool) -> Result<Self, DirError> {
        let path = path.into();
        let cwd = nix::fcntl::AT_FDCWD;
        Self::open_at(cwd, &path, path.clone(), create)
    }

    /// `name` in this directory, created (0700) when `create` and missing,
    /// checked as [`open`](Self::open) does.
    pub fn open_sub(&self, name: &str, create: bool) -> Result<Self, DirError> {
        let path = self.child(name)?;
        Self::open_at(self.fd.as_fd(), Path::new(name), path, create)
    }

    /// Creates `name` (0700) in this directory; an error if it exists.
    pub fn create_sub(&self, name: &str) -> Result<Self, DirError> {
        let path = self.child(name)?;
        let sys = |op, errno| DirError::Sys {
            path: path.clone(),
            op,
            errno,
        };
        nix::sys::stat::mkdirat(self.fd.as_fd(), name, Mode::S_IRWXU)
            .map_err(|e| sys("mkdir", e))?;
        Self::opened(self.fd.as_fd(), Path::new(name), path.clone(), true)
    }

    fn open_at<Fd: AsFd>(
        at: Fd,
        name: &Path,
        path: PathBuf,
        create: bool,
    ) -> Result<Self, DirError> {
        let sys = |op, errno| DirError::Sys {
            path: path.clone(),
            op,
            errno,
        };
        let created = create
            && match nix::sys::stat::mkdirat(at.as_fd(), name, Mode::S_IRWXU) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(sys("mkdir", e)),
            };
        Self::opened(at, name, path, created)
    }

    /// Opens and checks `name` in `at`, which this caller just created if
    /// `created`.
    fn opened<Fd: AsFd>(
        at: Fd,
        name: &Path,
        path: PathBuf,
        created: bool,
    ) -> Result<Self, DirError> {
        let sys = |op, errno| DirError::Sys {
            path: path.clone(),
            op,
            errno,
        };
        let fd = match openat(at.as_fd(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(errno @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                // Say what is there instead.
                let st = fstatat(at.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| sys("lstat", e))?;
                return Err(match unsafe_reason(&st, SFlag::S_IFDIR) {
                    Some(reason) => DirError::Unsafe { path, reason },
                    None => sys("open", errno),
                });
            }
            Err(e) => return Err(sys("open", e)),
        };
        let st = fstat(&fd).map_err(|e| sys("fstat", e))?;
        if let Some(reason) = unsafe_reason(&st, SFlag::S_IFDIR) {
            return Err(DirError::Unsafe { path, reason });
        }
        // The umask may have taken bits away from one just made (never
        // added any); set through the descriptor checked above.
        if created && st.st_mode & 0o7777 != DIR_MODE {
            fchmod(&fd, Mode::from_bits_truncate(DIR_MODE)).map_err(|e| sys("chmod", e))?;
        }
        Ok(Self { fd, path, created })
    }

    /// Whether this opening created the directory (it was empty then).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The directory's path (for messages, and for handing to code that
    /// works by path inside it: its parents are this user's).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `name` in this directory, if `name` is a plain name.
    pub fn child(&self, name: &str) -> Result<PathBuf, DirError> {
        if !plain_name(name) {
            return Err(DirError::BadName { name: name.into() });
        }
        Ok(self.path.join(name))
    }

    fn sys(&self, name: &str, op: &'static str) -> impl Fn(Errno) -> DirError + use<> {
        let path = self.path.join(name);
        move |errno| DirError::Sys {
            path: path.clone(),
            op,
            errno,
        }
    }

    /// `name`'s status, without following a symlink; `None` if absent.
    pub fn stat(&self, name: &str) -> Result<Option<FileStat>, DirError> {
        self.child(name)?;
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.sys(name, "lstat")(e)),
        }
    }

    /// Whether `name` is a directory (not a symlink to one).
    pub fn is_dir(&self, name: &str) -> bool {
        matches!(self.stat(name), Ok(Some(st)) if kind(&st) == SFlag::S_IFDIR)
    }

    /// Whether `name` is a regular file (not a symlink to one).
    pub fn is_file(&self, name: &str) -> bool {
        matches!(self.stat(name), Ok(Some(st)) if kind(&st) == SFlag::S_IFREG)
    }

    /// Creates the file `name` (0600, must not exist, never through a
    /// symlink) for writing.
    pub fn create_file(&self, name: &str) -> Result<File, DirError> {
        self.child(name)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(self.fd.as_fd(), name, flags, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(self.sys(name, "create"))?;
        // The umask may have taken bits away.
        fchmod(&fd, Mode::from_bits_truncate(FILE_MODE)).map_err(self.sys(name, "chmod"))?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `name` for reading after checking it is this
    /// user's and writable by nobody else.
    pub fn open_file(&self, name: &str) -> Result<File, DirError> {
        let path = self.child(name)?;
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::ELOOP => DirError::Unsafe {
                path: path.clone(),
                reason: "a symlink (symlinks are not followed)".into(),
            },
            errno => DirError::Sys {
                path: path.clone(),
                op: "open",
                errno,
            },
        })?;
        let st = fstat(&fd).map_err(self.sys(name, "fstat"))?;
        if let Some(reason) = unsafe_reason(&st, SFlag::S_IFREG) {
            return Err(DirError::Unsafe { path, reason });
        }
        Ok(File::from(fd))
    }

    /// The contents of the regular file `name` (checked as
    /// [`open_file`](Self::open_file) does), at most [`MAX_READ`] bytes.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, DirError> {
        let f = self.open_file(name)?;
        let mut out = Vec::new();
        f.take(MAX_READ)
            .read_to_end(&mut out)
            .map_err(|e| self.sys(name, "read")(io_errno(&e)))?;
        Ok(out)
    }

    /// Replaces `name` with `bytes` so that a crash leaves the old or the
    /// new content, never a mix: a new temporary file (0600), fsync,
    /// rename, fsync of the directory.
    pub fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), DirError> {
        self.replace(name, bytes, true)
    }

    /// Replaces `name` with `bytes` so that a reader sees the old or the new
    /// content, never a mix (a new temporary file, renamed), without making
    /// either durable: for files that need not outlive a crash.
    pub fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<(), DirError> {
        self.replace(name, bytes, false)
    }

    fn replace(&self, name: &str, bytes: &[u8], durable: bool) -> Result<(), DirError> {
        self.child(name)?;
        let tmp = format!(".{name}.tmp.{}", std::process::id());
        // A temporary left by an earlier crash of this pid.
        let _ = unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let result = (|| {
            let mut f = self.create_file(&tmp)?;
            f.write_all(bytes)
                .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
                .map_err(|e| self.sys(&tmp, "write")(io_errno(&e)))?;
            self.rename(&tmp, self, name)?;
            if durable { self.sync() } else { Ok(()) }
        })();
        if result.is_err() {
            let _ = unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Renames `from` here to `to` in `dir` (replacing a file there).
    pub fn rename(&self, from: &str, dir: &PrivateDir, to: &str) -> Result<(), DirError> {
        self.child(from)?;
        dir.child(to)?;
        nix::fcntl::renameat(self.fd.as_fd(), from, dir.fd.as_fd(), to)
            .map_err(self.sys(from, "rename"))
    }

    /// Renames `from` here to `to` in `dir`; an error (EEXIST) if `to` exists.
    pub fn rename_new(&self, from: &str, dir: &PrivateDir, to: &str) -> Result<(), DirError> {
        self.child(from)?;
        dir.child(to)?;
        use nix::fcntl::{RenameFlags, renameat2};
        match renameat2(
            self.fd.as_fd(),
            from,
            dir.fd.as_fd(),
            to,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            // A file system without RENAME_NOREPLACE: check, then rename
            // (the directory is private, nobody else adds names to it).
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                if dir.stat(to)?.is_some() {
                    return Err(dir.sys(to, "rename")(Errno::EEXIST));
                }
                self.rename(from, dir, to)
            }
            r => r.map_err(self.sys(from, "rename")),
        }
    }

    /// Removes the file (or symlink, unfollowed) `name`; absent is fine.
    pub fn remove_file(&self, name: &str) -> Result<(), DirError> {
        self.child(name)?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.sys(name, "unlink")(e)),
        }
    }

    /// Removes the directory `name` if it is empty; whether it did
    /// (absent or not empty: false).
    pub fn remove_empty_dir(&self, name: &str) -> Result<bool, DirError> {
        self.child(name)?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT | Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
            Err(e) => Err(self.sys(name, "rmdir")(e)),
        }
    }

    /// Removes `name` and, if it is a directory, everything under it,
    /// without following symlinks; absent is fine.
    pub fn remove_tree(&self, name: &str) -> Result<(), DirError> {
        self.child(name)?;
        self.remove_tree_os(OsStr::new(name))
    }

    fn remove_tree_os(&self, name: &OsStr) -> Result<(), DirError> {
        let sys = |op, errno| DirError::Sys {
            path: self.path.join(name),
            op,
            errno,
        };
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR | Errno::EPERM) => {}
            Err(e) => return Err(sys("unlink", e)),
        }
        match openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                let sub = Self {
                    fd,
                    path: self.path.join(name),
                    created: false,
                };
                for (entry, _) in sub.raw_entries()? {
                    sub.remove_tree_os(&entry)?;
                }
            }
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(sys("open", e)),
        }
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(sys("rmdir", e)),
        }
    }

    /// Every name in this directory (not `.` and `..`) with its kind as
    /// `lstat` sees it: from the directory entry where the file system
    /// records it (no `lstat` per name), else from `lstat`.
    fn raw_entries(&self) -> Result<Vec<(OsString, SFlag)>, DirError> {
        use rustix::fs::FileType;
        // A descriptor of its own (the listing moves its position).
        let fd = openat(self.fd.as_fd(), ".", DIR_FLAGS, Mode::empty())
            .map_err(self.sys(".", "open"))?;
        let mut dir =
            rustix::fs::Dir::new(fd).map_err(|e| self.sys(".", "readdir")(errno_of(e)))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.sys(".", "readdir")(errno_of(e)))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let known = match entry.file_type() {
                FileType::Fifo => Some(SFlag::S_IFIFO),
                FileType::CharacterDevice => Some(SFlag::S_IFCHR),
                FileType::Directory => Some(SFlag::S_IFDIR),
                FileType::BlockDevice => Some(SFlag::S_IFBLK),
                FileType::RegularFile => Some(SFlag::S_IFREG),
                FileType::Symlink => Some(SFlag::S_IFLNK),
                FileType::Socket => Some(SFlag::S_IFSOCK),
                FileType::Unknown => None,
            };
            if let Some(k) = known {
                out.push((name.to_owned(), k));
                continue;
            }
            match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => out.push((name.to_owned(), kind(&st))),
                Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(DirError::Sys {
                        path: self.path.join(name),
                        op: "lstat",
                        errno: e,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The names in this directory (not `.` and `..`) with their kinds, as
    /// `lstat` sees them; names that are not UTF-8 (snapc makes none) are
    /// left out.
    pub fn entries(&self) -> Result<Vec<(String, SFlag)>, DirError> {
        Ok(self
            .raw_entries()?
            .into_iter()
            .filter_map(|(n, k)| Some((n.into_string().ok()?, k)))
            .collect())
    }

    fn sub_os(&self, name: &OsStr) -> Result<Self, DirError> {
        let path = self.path.join(name);
        Self::open_at(self.fd.as_fd(), Path::new(name), path, false)
    }

    /// fsyncs the directory.
    pub fn sync(&self) -> Result<(), DirError> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(self.sys(".", "fsync"))
    }

    /// fsyncs every file and directory under this one, and this one.
    pub fn sync_tree(&self) -> Result<(), DirError> {
        self.sync_entries()?;
        self.sync()
    }

    /// fsyncs every file and directory under this one (not this one).
    pub fn sync_entries(&self) -> Result<(), DirError> {
        for (name, k) in self.raw_entries()? {
            if k == SFlag::S_IFDIR {
                self.sub_os(&name)?.sync_tree()?;
            } else if k == SFlag::S_IFREG {
                let sys = |op, errno| DirError::Sys {
                    path: self.path.join(&name),
                    op,
                    errno,
                };
                let fd = openat(
                    self.fd.as_fd(),
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|e| sys("open", e))?;
                nix::unistd::fsync(&fd).map_err(|e| sys("fsync", e))?;
            }
        }
        Ok(())
    }

    /// Writes `bytes` to `name`, which must not exist (created 0600, never
    /// through a symlink), and fsyncs the file: a new file has no old
    /// content a crash could mix with the new, so no temporary is needed.
    /// Its name is durable once the caller fsyncs this directory.
    pub fn write_new_synced(&self, name: &str, bytes: &[u8]) -> Result<(), DirError> {
        let mut f = self.create_file(name)?;
        let done = f.write_all(bytes).and_then(|()| f.sync_all());
        if let Err(e) = done {
            let _ = unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir);
            return Err(self.sys(name, "write")(io_errno(&e)));
        }
        Ok(())
    }

    /// Checks that everything under this directory is this user's and
    /// writable by nobody else (symlinks included, never followed).
    pub fn check_tree(&self) -> Result<(), DirError> {
        for (name, k) in self.raw_entries()? {
            if k == SFlag::S_IFDIR {
                self.sub_os(&name)?.check_tree()?;
                continue;
            }
            let path = self.path.join(&name);
            let st = fstatat(
                self.fd.as_fd(),
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| DirError::Sys {
                path: path.clone(),
                op: "lstat",
                errno,
            })?;
            let me = Uid::effective().as_raw();
            if st.st_uid != me {
                return Err(DirError::Unsafe {
                    path,
                    reason: format!("{} owned by {}", kind_name(k), owner_name(st.st_uid)),
                });
            }
            if k != SFlag::S_IFLNK && st.st_mode & 0o022 != 0 {
                return Err(DirError::Unsafe {
                    path,
                    reason: format!(
                        "{}, mode {:04o}: others may write to it",
                        kind_name(k),
                        st.st_mode & 0o7777
                    ),
                });
            }
        }
        Ok(())
    }

    /// The bytes of the regular files under this directory.
    pub fn tree_size(&self) -> u64 {
        self.raw_entries()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, k)| match k {
                SFlag::S_IFDIR => self.sub_os(&name).map_or(0, |d| d.tree_size()),
                SFlag::S_IFREG => fstatat(
                    self.fd.as_fd(),
                    name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0)),
                _ => 0,
            })
            .sum()
    }

    /// Free bytes on the directory's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        let v = nix::sys::statvfs::fstatvfs(self.fd.as_fd()).ok()?;
        Some(v.blocks_available().saturating_mul(v.fragment_size()))
    }

    /// An exclusive `flock` on this directory, if nobody else holds one
    /// (`None` then); held until the lock is dropped. A process that holds
    /// it is alive: the kernel releases it when the process ends.
    pub fn try_lock(&self) -> Result<Option<DirLock>, DirError> {
        use nix::fcntl::{Flock, FlockArg};
        let fd = openat(self.fd.as_fd(), ".", DIR_FLAGS, Mode::empty())
            .map_err(self.sys(".", "open"))?;
        match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(DirLock(lock))),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(self.sys(".", "flock")(e)),
        }
    }

    /// An exclusive `flock` on the file `name` (created 0600 if missing
    /// and `create`, never through a symlink), if nobody else holds one
    /// (`None` then, and when it does not exist and may not be created).
    /// The lock is on the file the name has now: a holder that removed the
    /// name before this caller locked its old file is noticed and the
    /// lock taken again on the new one, so two callers never both hold it.
    pub fn try_lock_file(&self, name: &str, create: bool) -> Result<Option<FileLock>, DirError> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.child(name)?;
        let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        for _ in 0..16 {
            let fd = match openat(self.fd.as_fd(), name, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if !create => return Ok(None),
                Err(e) => return Err(self.sys(name, "open")(e)),
            };
            let st = fstat(&fd).map_err(self.sys(name, "fstat"))?;
            if let Some(reason) = unsafe_reason(&st, SFlag::S_IFREG) {
                return Err(DirError::Unsafe { path, reason });
            }
            let lock = match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(self.sys(name, "flock")(e)),
            };
            match self.stat(name)? {
                Some(now) if now.st_ino == st.st_ino && now.st_dev == st.st_dev => {
                    return Ok(Some(FileLock(lock)));
                }
                _ => continue,
            }
        }
        Err(self.sys(name, "flock")(Errno::EAGAIN))
    }

    /// Whether the directory was removed (its link count fell to 0).
    pub fn is_removed(&self) -> bool {
        fstat(&self.fd).is_ok_and(|st| st.st_nlink == 0)
    }
}

/// An exclusive `flock` held on a file ([`PrivateDir::try_lock_file`]).
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] nix::fcntl::Flock<OwnedFd>);

/// An exclusive `flock` held on a directory ([`PrivateDir::try_lock`]).
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] nix::fcntl::Flock<OwnedFd>);

fn errno_of(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        // Other tests of this binary create nothing meanwhile that a
        // umask of 0 would harm; restored at once.
        let old = nix::sys::stat::umask(Mode::empty());
        let d = PrivateDir::open(t.path().join("store"), true);
        let sub = d.as_ref().map(|d| d.open_sub("job", true).is_ok());
        let file = d
            .as_ref()
            .map(|d| d.write_atomically("meta", b"one").is_ok());
        nix::sys::stat::umask(old);
        assert_eq!((sub.ok(), file.ok()), (Some(true), Some(true)));
        let d = d.unwrap();
        assert_eq!(mode(d.path()), 0o700);
        assert_eq!(mode(&d.path().join("job")), 0o700);
        assert_eq!(mode(&d.path().join("meta")), 0o600);
        d.write_atomically("meta", b"two").unwrap();
        assert_eq!(d.read_file("meta").unwrap(), b"two");
        let names: Vec<String> = d.entries().unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
    }

    #[test]
    fn symlinks_are_refused_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let d = PrivateDir::open(t.path().join("d"), true).unwrap();
        symlink(&victim, d.path().join(".probe")).unwrap();
        symlink(t.path(), d.path().join("sub")).unwrap();
        assert!(d.create_file(".probe").is_err());
        assert!(d.read_file(".probe").is_err());
        let e = d.open_sub("sub", true).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        d.write_atomically(".probe", b"x").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        d.remove_tree("sub").unwrap();
        assert!(t.path().exists(), "the link's target stays");
        let e = PrivateDir::open(d.path().join("nope/.."), false).unwrap_err();
        assert!(matches!(e, DirError::Sys { .. }), "{e}");
        assert!(d.open_sub("..", false).is_err());
        assert!(d.open_sub("a/b", true).is_err());
    }

    #[test]
    fn open_refuses_what_others_may_write() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("open");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = PrivateDir::open(&p, true).unwrap_err().to_string();
        assert!(e.contains("0777") && e.contains("others may write"), "{e}");
        let f = t.path().join("file");
        std::fs::write(&f, b"").unwrap();
        let e = PrivateDir::open(&f, true).unwrap_err().to_string();
        assert!(e.contains("a regular file"), "{e}");
    }

    #[test]
    fn trees_are_synced_checked_sized_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let d = PrivateDir::open(t.path().join("d"), true).unwrap();
        let s = d.open_sub("a", true).unwrap();
        s.create_file("x").unwrap().write_all(b"12345").unwrap();
        s.open_sub("b", true).unwrap();
        d.sync_tree().unwrap();
        d.check_tree().unwrap();
        assert_eq!(d.tree_size(), 5);
        std::fs::set_permissions(s.path().join("x"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        assert!(d.check_tree().is_err());
        d.create_sub("c").unwrap();
        assert!(d.create_sub("c").is_err());
        d.rename_new("c", &d, "e").unwrap();
        assert!(d.rename_new("a", &d, "e").is_err());
        d.remove_tree("a").unwrap();
        d.remove_tree("a").unwrap();
        assert!(!d.is_dir("a") && d.is_dir("e"));
    }

    #[test]
    fn a_lock_file_has_one_holder() {
        let t = tempfile::tempdir().unwrap();
        let d = PrivateDir::open(t.path().join("d"), true).unwrap();
        assert!(
            d.try_lock_file("j.lock", false).unwrap().is_none(),
            "absent"
        );
        let held = d.try_lock_file("j.lock", true).unwrap().expect("free");
        assert!(d.try_lock_file("j.lock", true).unwrap().is_none(), "held");
        // The holder removes the name: the next caller locks a new file.
        d.remove_file("j.lock").unwrap();
        assert!(d.try_lock_file("j.lock", true).unwrap().is_some());
        drop(held);
        symlink(t.path(), d.path().join("k.lock")).unwrap();
        assert!(d.try_lock_file("k.lock", true).is_err());
    }
}

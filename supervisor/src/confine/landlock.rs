//! Landlock filesystem confinement (and, from ABI 6, signal and abstract-socket
//! scoping) for the agent process.
//!
//! [`prepare`] runs in the supervisor before fork: it opens every listed path and
//! builds the ruleset (a kernel fd). [`restrict`] runs in the child after fork:
//! a few opens (see below), a `prctl` and `landlock_restrict_self`; it
//! allocates nothing.
//!
//! Landlock grants are additive down a hierarchy: a `read_only` path inside a
//! `read_write` tree stays writable. [`prepare`] warns about that case.
//! Network rights are not handled here: the network namespace confines the network.
//!
//! # Rules, mounts and the new root
//!
//! A rule attaches to the inode the path resolves to when it is opened, not to
//! the path string. To decide an access the kernel walks up the path actually
//! used, crossing mounts, and unions the rules it meets, except that it skips
//! mountpoint directories ("hidden" by what is mounted on them). For a
//! supervisor that opens rules before fork and builds the new root after it:
//!
//! - a rule on a directory covers it wherever it is bind-mounted later (same
//!   inode), and covers filesystems mounted later on its subdirectories (the
//!   walk goes through it);
//! - a rule on a directory that later becomes a mountpoint does not cover the
//!   filesystem mounted on it (a fresh procfs on `<root>/proc`, a tmpfs on
//!   `<root>/tmp`): add those with [`PreparedRuleset::add_after_mount`], which
//!   opens them inside the child, once its mounts exist.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ::landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
};

use super::ConfineError;

/// Newest Landlock ABI whose semantics this module was written against. Newer
/// kernels are used at this level; a crate update that knows a newer ABI does not
/// silently change what is denied.
/// V8 adds only a thread-sync flag (unused: the child is single-threaded), V9 the
/// `ResolveUnix` right (part of "all rights" for read_write, denied elsewhere), V10
/// UDP rights and quiet rules (network and audit: unused).
const MAX_ABI: i32 = 10;

/// Paths the agent may use. Anything not listed (or beneath a listed directory)
/// is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsRules {
    /// Read files, list directories, execute.
    pub read_only: Vec<PathBuf>,
    /// Every filesystem right the kernel knows.
    pub read_write: Vec<PathBuf>,
}

/// What to do when Landlock or a listed path is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compat {
    /// Run with whatever the kernel supports; skip paths that cannot be opened
    /// and say so in the returned warnings.
    BestEffort,
    /// Fail if the kernel has no Landlock at all or if a listed path cannot be
    /// opened. An older ABI is accepted (it enforces fewer rights; the warnings
    /// say which).
    HardRequirement,
}

/// How much of the ruleset the kernel enforces after [`restrict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestrictStatus {
    /// Every right requested for this kernel's ABI is enforced.
    FullyEnforced,
    /// Landlock is active but the kernel dropped some requested rights.
    PartiallyEnforced,
    /// Landlock is not active (only possible with [`Compat::BestEffort`]).
    NotEnforced,
}

/// A ruleset ready to be applied in the child: one kernel fd (close-on-exec) and
/// the after-mount paths, already converted to C strings. [`restrict`] consumes
/// it without allocating or freeing.
#[derive(Debug)]
pub struct PreparedRuleset {
    ruleset: Option<RulesetCreated>,
    compat: Compat,
    abi: i32,
    /// Opened in the child by [`restrict`]: (path, rights for a directory).
    after_mount: Vec<(CString, BitFlags<AccessFs>)>,
}

impl PreparedRuleset {
    /// Landlock ABI in use (the kernel's, capped at the newest one this module
    /// knows); 0 when Landlock is unavailable.
    pub fn abi(&self) -> i32 {
        self.abi
    }

    /// The compatibility mode the ruleset was prepared with.
    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// Adds rules for paths that only exist once the child has built its mounts
    /// (a fresh procfs, a tmpfs): they are opened by [`restrict`], in the
    /// child's final mount namespace and relative to its root. Call before fork.
    ///
    /// Paths must be absolute. A path that cannot be opened in the child makes
    /// [`restrict`] fail whatever the [`Compat`] mode: the child mounted it
    /// itself, so its absence is a bug, not a host difference. Without Landlock
    /// (best effort) the paths are ignored.
    pub fn add_after_mount(&mut self, rules: &FsRules) -> Result<(), ConfineError> {
        let abi = ABI::from(self.abi);
        let lists = [
            (&rules.read_only, AccessFs::from_read(abi)),
            (&rules.read_write, AccessFs::from_all(abi)),
        ];
        for (paths, access) in lists {
            for path in paths {
                let bad = |reason: &str| ConfineError::LandlockPath {
                    path: path.clone(),
                    reason: reason.to_owned(),
                };
                if !path.is_absolute() {
                    return Err(bad("is not an absolute path"));
                }
                let c = CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| bad("contains a NUL byte"))?;
                self.after_mount.push((c, access));
            }
        }
        Ok(())
    }
}

/// The kernel's Landlock ABI version, or the errno explaining its absence.
fn kernel_abi() -> Result<i32, i32> {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attr and size 0 only
    // returns the ABI version; no memory is read or written.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v < 0 {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOSYS))
    } else {
        Ok(i32::try_from(v).unwrap_or(i32::MAX))
    }
}

fn unavailable_reason(errno: i32) -> &'static str {
    match errno {
        libc::EOPNOTSUPP => "built in but not enabled at boot",
        _ => "not built into this kernel",
    }
}

/// Opens every path and builds the ruleset. Call before fork.
///
/// Returns warnings for the operator, one line each: skipped paths (best effort),
/// a missing or old Landlock, read-only paths made writable by an enclosing
/// read-write path.
pub fn prepare(
    rules: &FsRules,
    compat: Compat,
) -> Result<(PreparedRuleset, Vec<String>), ConfineError> {
    let mut warnings = Vec::new();

    let kernel = match kernel_abi() {
        Ok(v) => v,
        Err(errno) => {
            let reason = unavailable_reason(errno);
            if compat == Compat::HardRequirement {
                return Err(ConfineError::LandlockUnavailable { reason });
            }
            warnings.push(format!(
                "landlock: not available ({reason}); the agent runs without filesystem confinement"
            ));
            return Ok((
                PreparedRuleset {
                    ruleset: None,
                    compat,
                    abi: 0,
                    after_mount: Vec::new(),
                },
                warnings,
            ));
        }
    };
    let abi_num = kernel.min(MAX_ABI);
    let abi = ABI::from(abi_num);
    if abi < ABI::V2 {
        warnings.push(format!(
            "landlock: kernel ABI {abi_num}: files cannot be renamed or linked across directories"
        ));
    }
    if abi < ABI::V3 {
        warnings.push(format!(
            "landlock: kernel ABI {abi_num}: truncating files outside read_write paths is not blocked"
        ));
    }
    if abi < ABI::V5 {
        warnings.push(format!(
            "landlock: kernel ABI {abi_num}: ioctl on devices outside read_write paths is not blocked"
        ));
    }
    if abi < ABI::V6 {
        warnings.push(format!(
            "landlock: kernel ABI {abi_num}: signals and abstract unix sockets are not scoped to the sandbox"
        ));
    }

    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file_rights = AccessFs::from_file(abi);

    // Best effort at the crate level: the rights requested are exactly this ABI's,
    // so nothing is degraded in practice; our own `Compat` decides what is fatal.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(ConfineError::LandlockRuleset)?;
    let scopes = Scope::from_all(abi);
    if !scopes.is_empty() {
        ruleset = ruleset
            .scope(scopes)
            .map_err(ConfineError::LandlockRuleset)?;
    }
    let mut created = ruleset.create().map_err(ConfineError::LandlockRuleset)?;

    for p in &rules.read_only {
        if let Some(rw) = rules.read_write.iter().find(|rw| p.starts_with(rw)) {
            warnings.push(format!(
                "landlock: {} is read_only but inside read_write {}: it stays writable",
                p.display(),
                rw.display()
            ));
        }
    }

    let lists = [(&rules.read_only, read), (&rules.read_write, all)];
    for (paths, access) in lists {
        for path in paths {
            match open_rule(path, access, file_rights) {
                Ok(rule) => {
                    created = created
                        .add_rule(rule)
                        .map_err(ConfineError::LandlockRuleset)?
                }
                Err(reason) => {
                    if compat == Compat::HardRequirement {
                        return Err(ConfineError::LandlockPath {
                            path: path.clone(),
                            reason,
                        });
                    }
                    warnings.push(format!("landlock: skipping {}: {reason}", path.display()));
                }
            }
        }
    }

    tracing::debug!(
        abi = abi_num,
        read_only = rules.read_only.len(),
        read_write = rules.read_write.len(),
        skipped = warnings
            .iter()
            .filter(|w| w.contains(": skipping "))
            .count(),
        "landlock ruleset prepared"
    );
    Ok((
        PreparedRuleset {
            ruleset: Some(created),
            compat,
            abi: abi_num,
            after_mount: Vec::new(),
        },
        warnings,
    ))
}

/// Opens `path` (O_PATH) and builds its rule; non-directories get only the
/// rights that make sense for a file (the kernel rejects directory rights on them).
fn open_rule(
    path: &Path,
    access: BitFlags<AccessFs>,
    file_rights: BitFlags<AccessFs>,
) -> Result<PathBeneath<PathFd>, String> {
    if !path.is_absolute() {
        // Would resolve against the supervisor's working directory.
        return Err("is not an absolute path".to_owned());
    }
    let fd = PathFd::new(path).map_err(|e| {
        let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
        match io.map(io::Error::kind) {
            Some(io::ErrorKind::NotFound) => "does not exist".to_owned(),
            _ => match io {
                Some(io) => format!("cannot open: {io}"),
                None => format!("cannot open: {e}"),
            },
        }
    })?;
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("cannot stat: {e}"))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let access = if is_dir { access } else { access & file_rights };
    Ok(PathBeneath::new(fd, access))
}

impl PreparedRuleset {
    /// Opens the [`add_after_mount`](Self::add_after_mount) paths and adds their
    /// rules. Post-fork safe; [`restrict`] calls it if it has not run yet.
    /// [`super::Prepared::enter`] calls it before dropping privileges, so paths
    /// resolve with the same permissions as in [`prepare`].
    pub fn open_after_mount(&mut self) -> Result<(), ConfineError> {
        // Leaked rather than freed: no allocator calls after fork, and an error
        // can point at its path for as long as the process lives.
        let paths: &'static [(CString, BitFlags<AccessFs>)] =
            std::mem::take(&mut self.after_mount).leak();
        let Some(mut ruleset) = self.ruleset.take() else {
            return Ok(()); // no Landlock (best effort): nothing to add to
        };
        let file_rights = AccessFs::from_file(ABI::from(self.abi));
        for (path, access) in paths {
            let rule = open_in_child(path, *access, file_rights)?;
            ruleset = ruleset
                .add_rule(rule)
                .map_err(|e| ConfineError::LandlockPathInChild {
                    path,
                    errno: nix::errno::Errno::from_raw(errno_of(&e)),
                })?;
        }
        self.ruleset = Some(ruleset);
        Ok(())
    }
}

/// Applies the ruleset to the calling thread (and so to everything it execs).
/// Post-fork safe (no allocation): opens any pending after-mount paths, sets
/// no_new_privs and calls `landlock_restrict_self`.
pub fn restrict(mut prepared: PreparedRuleset) -> Result<RestrictStatus, ConfineError> {
    prepared.open_after_mount()?;
    let Some(ruleset) = prepared.ruleset else {
        // `prepare` only returns no ruleset in best-effort mode.
        return match prepared.compat {
            Compat::BestEffort => Ok(RestrictStatus::NotEnforced),
            Compat::HardRequirement => Err(ConfineError::LandlockNotEnforced),
        };
    };
    let status = ruleset
        .restrict_self()
        .map_err(|e| ConfineError::LandlockRestrict {
            errno: nix::errno::Errno::from_raw(errno_of(&e)),
        })?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(RestrictStatus::FullyEnforced),
        RulesetStatus::PartiallyEnforced => Ok(RestrictStatus::PartiallyEnforced),
        RulesetStatus::NotEnforced => match prepared.compat {
            Compat::BestEffort => Ok(RestrictStatus::NotEnforced),
            Compat::HardRequirement => Err(ConfineError::LandlockNotEnforced),
        },
    }
}

/// `open_rule` for the child: raw open + fstat, no allocation.
fn open_in_child(
    path: &'static CStr,
    access: BitFlags<AccessFs>,
    file_rights: BitFlags<AccessFs>,
) -> Result<PathBeneath<OwnedFd>, ConfineError> {
    let fail = || ConfineError::LandlockPathInChild {
        path,
        errno: nix::errno::Errno::last(),
    };
    // SAFETY: NUL-terminated path; O_PATH opens nothing but a reference.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(fail());
    }
    // SAFETY: `raw` is a freshly opened descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|errno| ConfineError::LandlockPathInChild { path, errno })?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let access = if is_dir { access } else { access & file_rights };
    Ok(PathBeneath::new(fd, access))
}

/// The errno inside a landlock error, found without allocating.
fn errno_of(e: &RulesetError) -> i32 {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return code;
        }
        cur = err.source();
    }
    libc::EINVAL
}

//! Confinement of the agent process, applied in the child between fork and exec.
//!
//! Split in two so the child does nothing but syscalls (it may have been forked
//! from a multi-threaded supervisor, where allocating or taking locks after fork
//! can deadlock):
//!
//! - [`prepare`], in the supervisor before fork, compiles the seccomp program and
//!   builds the Landlock ruleset (opening every path);
//! - [`Prepared::enter`], in the child right before execve, applies them.
//!
//! ```text
//! let (prepared, warnings) = confine::prepare(Some(&rules), Compat::HardRequirement, uid, gid)?;
//! for w in &warnings { tracing::warn!("{w}"); }
//! // SAFETY: the closure only makes syscalls (see Prepared::into_pre_exec).
//! unsafe { command.pre_exec(prepared.into_pre_exec()) };
//! ```

pub mod identity;
pub mod landlock;
pub mod seccomp;

use std::io;
use std::mem::ManuallyDrop;
use std::path::PathBuf;

use nix::errno::Errno;
use seccompiler::BpfProgram;

pub use identity::{CapSets, capabilities, drop_to, resolve_group, resolve_user};
pub use landlock::{Compat, FsRules, PreparedRuleset, RestrictStatus};

/// Why the agent could not be confined. Messages are meant for operators: they
/// say what is wrong and what to change.
///
/// Variants produced after fork ([`Prepared::enter`]) hold no heap data, so the
/// child can build them without allocating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// The kernel has no usable Landlock and the policy requires it.
    #[error(
        "Landlock is not available on this kernel ({reason}); it needs Linux 5.13+ with \
         landlock in the lsm= boot list. Set landlock.compatibility: best_effort to run without it"
    )]
    LandlockUnavailable {
        /// Not built in, or not enabled at boot.
        reason: &'static str,
    },

    /// A path of the filesystem policy cannot be opened and the policy requires Landlock.
    #[error(
        "Landlock path {} cannot be used: {reason}. Create it, remove it from the filesystem \
         policy, or set landlock.compatibility: best_effort to skip missing paths",
        path.display()
    )]
    LandlockPath {
        /// The path as listed in the policy.
        path: PathBuf,
        /// What went wrong, in plain words.
        reason: String,
    },

    /// The landlock crate refused to build the ruleset.
    #[error(
        "building the Landlock ruleset failed: {0}. This is a bug or an unusual kernel: \
         report it with the output of `uname -r`, or set landlock.compatibility: best_effort"
    )]
    LandlockRuleset(#[source] ::landlock::RulesetError),

    /// A path added with [`PreparedRuleset::add_after_mount`] could not be used
    /// in the child.
    #[error(
        "Landlock path {} could not be opened inside the sandbox after its mounts were \
         built ({errno}); it must exist in the sandbox's root when the agent starts",
        path.to_str().unwrap_or("<non-UTF-8 path>")
    )]
    LandlockPathInChild {
        /// The path (leaked in the child, which execs or exits right after).
        path: &'static std::ffi::CStr,
        /// Error from the kernel.
        errno: Errno,
    },

    /// landlock_restrict_self failed in the child.
    #[error(
        "applying the Landlock ruleset to the agent failed ({errno}). Report it with the output \
         of `uname -r`, or set landlock.compatibility: best_effort"
    )]
    LandlockRestrict {
        /// Error from the kernel.
        errno: Errno,
    },

    /// The policy requires Landlock but the kernel enforced nothing.
    #[error(
        "Landlock was required but the kernel did not enforce the ruleset. Boot with landlock \
         in the lsm= list, or set landlock.compatibility: best_effort to run without it"
    )]
    LandlockNotEnforced,

    /// The seccomp program could not be compiled.
    #[error("building the seccomp filter failed: {0}. This is a bug: please report it")]
    SeccompBuild(#[source] seccompiler::BackendError),

    /// The seccomp program could not be installed in the child.
    #[error(
        "installing the seccomp filter failed ({errno}). The kernel needs \
         CONFIG_SECCOMP_FILTER; if the supervisor itself runs under a seccomp profile \
         (e.g. a container runtime's), allow the seccomp and prctl syscalls there"
    )]
    SeccompApply {
        /// Error from the kernel.
        errno: Errno,
    },

    /// A syscall needed to drop the agent's identity failed.
    #[error(
        "{op} failed while dropping the agent's privileges ({errno}). The supervisor must run \
         as root with CAP_SETUID, CAP_SETGID and CAP_SETPCAP"
    )]
    Identity {
        /// The syscall (and option) that failed.
        op: &'static str,
        /// Error from the kernel.
        errno: Errno,
    },

    /// The requested agent user is root.
    #[error(
        "refusing to run the agent as root (uid 0). Set the sandbox's run_as user to an \
         unprivileged account such as nobody"
    )]
    RootUser,

    /// The kernel reports other ids than requested after the switch.
    #[error(
        "after dropping privileges the agent runs as uid {ruid}/{euid}/{suid} gid \
         {rgid}/{egid}/{sgid} (or with extra groups) instead of {uid}:{gid}; refusing to start \
         it. Check for an LSM or seccomp profile interfering with setresuid/setgroups"
    )]
    IdsMismatch {
        /// Requested uid.
        uid: u32,
        /// Requested gid.
        gid: u32,
        /// Real uid after the switch.
        ruid: u32,
        /// Effective uid after the switch.
        euid: u32,
        /// Saved uid after the switch.
        suid: u32,
        /// Real gid after the switch.
        rgid: u32,
        /// Effective gid after the switch.
        egid: u32,
        /// Saved gid after the switch.
        sgid: u32,
    },

    /// Capabilities survived the drop.
    #[error(
        "after dropping privileges the agent still holds capabilities (effective {effective:#x}, \
         permitted {permitted:#x}, inheritable {inheritable:#x}, or a non-empty bounding set); \
         refusing to start it. Check the supervisor's securebits and capability setup"
    )]
    CapabilitiesRemain {
        /// Effective set after the drop.
        effective: u64,
        /// Permitted set after the drop.
        permitted: u64,
        /// Inheritable set after the drop.
        inheritable: u64,
    },

    /// [`Prepared::into_pre_exec`]'s closure ran twice (a second fork from one `Command`).
    #[error("the prepared confinement was already used; prepare a new one for each spawn")]
    AlreadyUsed,
}

impl ConfineError {
    /// An errno for contexts that can only return one, such as a `pre_exec`
    /// closure: the kernel's for syscall failures, EPERM for refusals.
    pub fn raw_os_error(&self) -> i32 {
        match self {
            Self::LandlockRestrict { errno }
            | Self::LandlockPathInChild { errno, .. }
            | Self::SeccompApply { errno }
            | Self::Identity { errno, .. } => *errno as i32,
            Self::LandlockUnavailable { .. } | Self::LandlockNotEnforced => libc::EOPNOTSUPP,
            Self::LandlockPath { .. } => libc::ENOENT,
            Self::AlreadyUsed => libc::EALREADY,
            _ => libc::EPERM,
        }
    }
}

/// Everything the child needs, built before fork.
pub struct Prepared {
    seccomp: BpfProgram,
    landlock: Option<PreparedRuleset>,
    uid: u32,
    gid: u32,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("seccomp_instructions", &self.seccomp.len())
            .field("landlock", &self.landlock)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Builds the confinement for an agent running as `uid`:`gid`. Call before fork.
///
/// `fs` is the Landlock policy; `None` disables Landlock (seccomp and the
/// identity drop still apply). Returns operator warnings (skipped paths, an old
/// or missing Landlock) to log before spawning.
pub fn prepare(
    fs: Option<&FsRules>,
    compat: Compat,
    uid: u32,
    gid: u32,
) -> Result<(Prepared, Vec<String>), ConfineError> {
    if uid == 0 {
        // Checked again in drop_to; failing here gives the error before any fork.
        return Err(ConfineError::RootUser);
    }
    let seccomp = seccomp::build_filter()?;
    let (landlock, warnings) = match fs {
        Some(rules) => {
            let (ruleset, warnings) = landlock::prepare(rules, compat)?;
            (Some(ruleset), warnings)
        }
        None => (None, Vec::new()),
    };
    Ok((
        Prepared {
            seccomp,
            landlock,
            uid,
            gid,
        },
        warnings,
    ))
}

impl Prepared {
    /// The uid the agent will run as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The gid the agent will run as.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// See [`PreparedRuleset::add_after_mount`]. Ignored when Landlock is not
    /// configured (`fs: None` in [`prepare`]).
    pub fn add_after_mount(&mut self, rules: &FsRules) -> Result<(), ConfineError> {
        match &mut self.landlock {
            Some(ruleset) => ruleset.add_after_mount(rules),
            None => Ok(()),
        }
    }

    /// The Landlock ABI in use, if Landlock is configured (0: unavailable).
    pub fn landlock_abi(&self) -> Option<i32> {
        self.landlock.as_ref().map(PreparedRuleset::abi)
    }

    /// Confines the calling process. Call in the child, right before execve,
    /// once its mounts are final. Syscalls only: no allocation, no locks, no
    /// logging.
    ///
    /// Order, and why:
    /// 1. Open the Landlock after-mount paths while still root, so they resolve
    ///    with the permissions [`prepare`] had (a 0700 directory on the way must
    ///    not make them vanish).
    /// 2. [`drop_to`]: setgroups, setresgid and the bounding-set drop need
    ///    CAP_SETGID/CAP_SETPCAP, which its setresuid removes; it then sets
    ///    no_new_privs, the only thing steps 3 and 4 need from an unprivileged
    ///    process, and checks the result with capget.
    /// 3. Landlock `restrict_self`.
    /// 4. Seccomp last, so the filter never has to allow what only the setup
    ///    uses (setgroups, setresuid, capset, landlock_*, prctl): it can be
    ///    tightened without reordering anything, and a setup call it denied
    ///    would fail loudly here rather than be skipped.
    pub fn enter(self) -> Result<(), ConfineError> {
        let Prepared {
            seccomp,
            landlock,
            uid,
            gid,
        } = self;
        // Nothing is freed after fork (the allocator may be locked by a thread
        // that no longer exists): the BPF program is leaked, as are the
        // after-mount paths (see open_after_mount); execve discards them.
        let seccomp = ManuallyDrop::new(seccomp);
        let mut landlock = landlock;
        if let Some(ruleset) = landlock.as_mut() {
            ruleset.open_after_mount()?;
        }
        drop_to(uid, gid)?;
        if let Some(ruleset) = landlock {
            landlock::restrict(ruleset)?;
        }
        seccomp::apply(&seccomp)
    }

    /// A closure for `std::os::unix::process::CommandExt::pre_exec`: enters the
    /// confinement and, on failure, writes the error message to the child's
    /// stderr (formatted into a stack buffer, no allocation) before returning
    /// its errno, which `Command::spawn` then reports.
    pub fn into_pre_exec(self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let mut slot = Some(self);
        move || {
            let result = match slot.take() {
                Some(prepared) => prepared.enter(),
                None => Err(ConfineError::AlreadyUsed),
            };
            result.map_err(|e| {
                write_stderr(&e);
                io::Error::from_raw_os_error(e.raw_os_error())
            })
        }
    }
}

/// Writes "openshell-sandbox: <error>\n" to fd 2 without allocating.
fn write_stderr(e: &ConfineError) {
    use std::fmt::Write as _;
    struct StackBuf {
        buf: [u8; 1024],
        len: usize,
    }
    impl std::fmt::Write for StackBuf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            // Truncate rather than fail: a partial message beats none.
            let room = self.buf.len() - self.len;
            let n = s.len().min(room);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut out = StackBuf {
        buf: [0; 1024],
        len: 0,
    };
    // Display of post-fork variants only formats integers, errnos and &'static str.
    let _ = writeln!(out, "openshell-sandbox: cannot confine the agent: {e}");
    // SAFETY: writing initialized bytes from a live stack buffer to fd 2.
    let _ = unsafe { libc::write(2, out.buf.as_ptr().cast(), out.len) };
}

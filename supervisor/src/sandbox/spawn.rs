//! Starting the sandbox's first process in fresh namespaces.

use nix::unistd::Pid;

/// The namespaces every sandbox gets.
pub const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// Whether this is the parent or the child after [`clone_into_namespaces`].
pub enum Forked {
    Parent(Pid),
    Child,
}

/// `fork`, but the child starts in new namespaces (and is PID 1 of its new PID namespace).
///
/// # Safety
/// The caller must be single-threaded, as for `fork`: the child runs on a copy of this
/// process and may use only state no other thread could have held locked.
pub unsafe fn clone_into_namespaces(extra: libc::c_int) -> std::io::Result<Forked> {
    let flags = (NAMESPACES | extra | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork: the child
    // gets a copy-on-write image and continues here. The caller guarantees single-threadedness.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    };
    match rc {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// The number of threads this process runs, from /proc; used to refuse an unsafe clone.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

//! Seccomp filter for the agent process.
//!
//! Default action is ALLOW: the filter only removes kernel surface the agent never
//! needs (namespaces, mounts, tracing, kernel modules, keyrings, raw packet
//! sockets, ...). Denied calls return an errno instead of killing the process, so
//! tools see an ordinary "Operation not permitted" and can fall back or report it.
//!
//! The program is made of two parts:
//!
//! 1. A short hand-written header, needed because one `SeccompFilter` has a single
//!    on-match action and some calls must fail with `ENOSYS` rather than `EPERM`:
//!    - a syscall from a foreign architecture (e.g. i386 `int 0x80` on x86_64) kills
//!      the process: its numbers differ, so every rule below would be bypassed;
//!    - x32 syscalls (`nr | 0x4000_0000`, x86_64 only) get `ENOSYS`, same reason;
//!    - `clone3` gets `ENOSYS`: its flags live in a struct that seccomp cannot
//!      read, and `ENOSYS` makes glibc (and others) fall back to `clone`, whose
//!      flags the filter does check;
//!    - `io_uring_setup` gets `ENOSYS` (looks like a kernel without io_uring, so
//!      runtimes fall back to plain syscalls): io_uring operations such as
//!      `IORING_OP_SOCKET` bypass seccomp entirely.
//! 2. The `seccompiler` program: every rule returns `EPERM`, everything else is allowed.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use super::ConfineError;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp filter is only defined for x86_64 and aarch64");

/// `open_tree_attr(2)` (Linux 6.15) has the same number on every architecture
/// but is not in the `libc` crate yet.
const SYS_OPEN_TREE_ATTR: i64 = 467;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
#[cfg(target_arch = "x86_64")]
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
// Offsets into `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

const fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

const fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// Syscalls denied with `EPERM` whatever their arguments.
fn unconditional() -> Vec<i64> {
    let mut v = vec![
        // Tracing or reading/writing another process's memory.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        // Mount table: old and new mount APIs. The supervisor built the root already.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        SYS_OPEN_TREE_ATTR,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_chroot,
        // Namespaces: the sandbox never needs new ones, nor to join others.
        libc::SYS_unshare,
        libc::SYS_setns,
        // Kernel attack surface with no use for an agent.
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // Whole-system administration.
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_lookup_dcookie,
        libc::SYS_syslog,
        // File handles bypass path-based checks (open_by_handle_at) or leak them.
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    v
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    // All checked arguments are C `int`/`unsigned int` (or only their low 32 bits
    // are used by the kernel, as for clone flags), so compare 32 bits.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(ConfineError::SeccompBuild)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, ConfineError> {
    SeccompRule::new(conditions).map_err(ConfineError::SeccompBuild)
}

/// clone(2) with any namespace flag. One rule per flag: rules are OR-ed.
/// Legacy clone only uses the low 32 bits of its flags. CLONE_NEWTIME (0x80)
/// is absent: for clone(2) that bit is part of the exit signal (CSIGNAL) and the
/// kernel only accepts it through clone3/unshare, both denied.
fn clone_rules() -> Result<Vec<SeccompRule>, ConfineError> {
    [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ]
    .into_iter()
    .map(|flag| {
        let flag = u64::from(flag as u32);
        rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])
    })
    .collect()
}

/// personality(2): allow only what Docker's default profile allows (query,
/// PER_LINUX, PER_LINUX32, UNAME26 and their combination). Other flags
/// (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ...) only weaken
/// hardening of whatever the agent execs next.
fn personality_rules() -> Result<Vec<SeccompRule>, ConfineError> {
    const PER_LINUX32: u64 = 0x0008;
    const UNAME26: u64 = 0x0002_0000;
    const QUERY: u64 = 0xffff_ffff;
    let allowed = [0, PER_LINUX32, UNAME26, PER_LINUX32 | UNAME26, QUERY];
    let conditions = allowed
        .into_iter()
        .map(|v| cond(0, SeccompCmpOp::Ne, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![rule(conditions)?])
}

/// socket(2): packet sockets, raw IP sockets and netlink other than
/// NETLINK_ROUTE / NETLINK_SOCK_DIAG.
fn socket_rules() -> Result<Vec<SeccompRule>, ConfineError> {
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    // The type argument may carry SOCK_NONBLOCK | SOCK_CLOEXEC; the kernel keeps
    // the type itself in the low 4 bits (SOCK_TYPE_MASK).
    const SOCK_TYPE_MASK: u64 = 0xf;
    const SOCK_PACKET: u64 = 10; // socket(AF_INET, SOCK_PACKET) is turned into AF_PACKET.
    let af = |f: i32| u64::from(f as u32);
    let mut rules = vec![rule(vec![cond(0, Eq, af(libc::AF_PACKET))?])?];
    for family in [libc::AF_INET, libc::AF_INET6] {
        for ty in [libc::SOCK_RAW as u64, SOCK_PACKET] {
            rules.push(rule(vec![
                cond(0, Eq, af(family))?,
                cond(1, MaskedEq(SOCK_TYPE_MASK), ty)?,
            ])?);
        }
    }
    rules.push(rule(vec![
        cond(0, Eq, af(libc::AF_NETLINK))?,
        cond(2, Ne, libc::NETLINK_ROUTE as u64)?,
        cond(2, Ne, libc::NETLINK_SOCK_DIAG as u64)?,
    ])?);
    Ok(rules)
}

/// The header described in the module docs. Falls through to the seccompiler
/// program, which checks the architecture again and loads the number itself.
fn header() -> Vec<sock_filter> {
    let mut h = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    h.extend([
        jump(BPF_JGE_K, 0x4000_0000, 0, 1), // __X32_SYSCALL_BIT
        stmt(BPF_RET_K, ret_errno(libc::ENOSYS)),
    ]);
    for nr in [libc::SYS_clone3, libc::SYS_io_uring_setup] {
        h.extend([
            jump(BPF_JEQ_K, nr as u32, 0, 1),
            stmt(BPF_RET_K, ret_errno(libc::ENOSYS)),
        ]);
    }
    h
}

/// Builds the agent's seccomp program. Call before fork: this allocates.
pub fn build_filter() -> Result<BpfProgram, ConfineError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = unconditional()
        .into_iter()
        .map(|nr| (nr, Vec::new())) // an empty rule list matches unconditionally
        .collect();
    rules.insert(libc::SYS_clone, clone_rules()?);
    rules.insert(libc::SYS_personality, personality_rules()?);
    rules.insert(libc::SYS_socket, socket_rules()?);

    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )
    .map_err(ConfineError::SeccompBuild)?;
    let body: BpfProgram = filter.try_into().map_err(ConfineError::SeccompBuild)?;

    let mut prog = header();
    prog.extend(body);
    if prog.len() > 4096 {
        // BPF_MAXINSNS; cannot happen with the fixed list above.
        return Err(ConfineError::SeccompBuild(
            seccompiler::BackendError::FilterTooLarge(prog.len()),
        ));
    }
    tracing::debug!(instructions = prog.len(), "seccomp filter built");
    Ok(prog)
}

/// Installs `prog` on the calling thread. Safe after fork (syscalls only).
///
/// Sets `PR_SET_NO_NEW_PRIVS` (idempotent; [`super::identity::drop_to`] already
/// did), which the kernel requires from a process without CAP_SYS_ADMIN.
pub fn apply(prog: &BpfProgram) -> Result<(), ConfineError> {
    seccompiler::apply_filter(prog).map_err(|e| {
        let errno = match &e {
            seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                io.raw_os_error().unwrap_or(libc::EINVAL)
            }
            _ => libc::EINVAL,
        };
        ConfineError::SeccompApply {
            errno: nix::errno::Errno::from_raw(errno),
        }
    })
}

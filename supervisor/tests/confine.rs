//! Real confinement tests (no mocks). Needs root, Landlock ABI >= 6 and seccomp.
//!
//! Custom harness (`harness = false`): `main` is the parent. Each case copies
//! this binary to a world-readable temp dir and spawns it with the case's
//! confinement applied in `pre_exec` (exactly as the supervisor does); the child
//! sees `CONFINE_TEST_CHECK` and runs one check in the confined process.
//!
//! Modes:
//! - `full`: prepare + `into_pre_exec` (uid/gid 65534, Landlock, seccomp).
//! - `seccomp-as-root`: only the seccomp filter, still root with every
//!   capability (in private mount/net/ipc/uts namespaces): proves the denials
//!   come from the filter, not from missing privileges.
//! - `control`: only `drop_to` (no Landlock, no seccomp): proves the same
//!   operations work without the confinement, so the denials are meaningful.
//! - `control-no-nnp`: plain setresuid without no_new_privs: proves the setuid
//!   copy really elevates when no_new_privs is absent.
//!
//! Nothing is skipped: an unsupported kernel makes cases fail with a message.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, chown};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::prelude::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use openshell_sandbox::confine as c;

const CHECK_ENV: &str = "CONFINE_TEST_CHECK";
const DIR_ENV: &str = "CONFINE_TEST_DIR";
const HELPER_ENV: &str = "CONFINE_TEST_HELPER_PID";
const ABSTRACT_ENV: &str = "CONFINE_TEST_ABSTRACT";
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------
// Child side: checks run inside the confined process.
// ---------------------------------------------------------------------------

/// Collects failed expectations of one check.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errname(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

impl Report {
    /// `rc` must be -1 with errno in `want`.
    fn deny(&mut self, what: &str, rc: i64, want: &[i32]) {
        let e = errno();
        if rc != -1 {
            self.failures.push(format!(
                "{what}: succeeded (returned {rc}), expected it to fail"
            ));
        } else if !want.contains(&e) {
            let want: Vec<String> = want.iter().map(|w| errname(*w)).collect();
            self.failures.push(format!(
                "{what}: failed with {} instead of {}",
                errname(e),
                want.join(" or ")
            ));
        }
    }

    /// `rc` must not be -1.
    fn allow(&mut self, what: &str, rc: i64) -> i64 {
        if rc == -1 {
            let e = errno();
            self.failures
                .push(format!("{what}: failed with {}", errname(e)));
        }
        rc
    }

    fn io<T>(&mut self, what: &str, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.failures.push(format!("{what}: {e}"));
                None
            }
        }
    }

    fn io_deny<T>(&mut self, what: &str, r: io::Result<T>, want: &[i32]) {
        match r {
            Ok(_) => self
                .failures
                .push(format!("{what}: succeeded, expected it to fail")),
            Err(e) if e.raw_os_error().is_some_and(|c| want.contains(&c)) => {}
            Err(e) => self.failures.push(format!("{what}: unexpected error {e}")),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }
}

struct Ctx {
    dir: PathBuf,
    helper_pid: i32,
    abstract_name: String,
}

impl Ctx {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    fn c(&self, rel: &str) -> CString {
        cstr(&self.p(rel))
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("test paths have no NUL")
}

const EPERM: i32 = libc::EPERM;
const EACCES: i32 = libc::EACCES;
const EXDEV: i32 = libc::EXDEV;
const ENOSYS: i32 = libc::ENOSYS;

fn sys(rc: libc::c_long) -> i64 {
    rc
}

fn int(rc: libc::c_int) -> i64 {
    i64::from(rc)
}

/// Forks a child that waits to be killed; returns its pid.
fn spawn_sleeper() -> i32 {
    // SAFETY: the child only calls async-signal-safe pause/_exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    }
    pid
}

fn reap(pid: i32) {
    // SAFETY: plain syscalls on our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// If a fork-like syscall unexpectedly succeeded, exit in the new child and reap it in the parent.
fn contain_fork(rc: i64) {
    if rc == 0 {
        // SAFETY: immediate exit of the unexpected child.
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(rc as i32, std::ptr::null_mut(), libc::__WALL) };
    }
}

fn check_ptrace_parent(_: &Ctx, r: &mut Report) {
    // SAFETY: ptrace with integer arguments.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, libc::getppid(), 0, 0) };
    r.deny("ptrace(PTRACE_ATTACH, parent)", rc, &[EPERM]);
}

fn check_ptrace_child(_: &Ctx, r: &mut Report) {
    let pid = spawn_sleeper();
    r.check(pid > 0, "fork for the ptrace target failed");
    // SAFETY: ptrace with integer arguments.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    r.deny("ptrace(PTRACE_ATTACH, own child)", rc, &[EPERM]);
    // SAFETY: as above.
    let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
    r.deny("ptrace(PTRACE_SEIZE, own child)", rc, &[EPERM]);
    reap(pid);
    let mut buf = [0u8; 8];
    let src = [7u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: iovecs point at live buffers of the stated length.
    let rc = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    r.deny("process_vm_readv(self)", rc as i64, &[EPERM]);
    // SAFETY: as above (writes into our own buf).
    let rc = unsafe { libc::process_vm_writev(libc::getpid(), &remote, 1, &local, 1, 0) };
    r.deny("process_vm_writev(self)", rc as i64, &[EPERM]);
    r.check(buf == [0; 8], "process_vm_readv copied data");
}

fn mountinfo_mentions(p: &Path) -> bool {
    let target = p.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
        })
        .unwrap_or(true)
}

fn check_mount(ctx: &Ctx, r: &mut Report) {
    let target = ctx.c("rw/mnt");
    let at = libc::AT_FDCWD;
    // SAFETY (whole block): every pointer is a live NUL-terminated string or null;
    // the syscalls only read them.
    unsafe {
        let rc = libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        );
        r.deny("mount(tmpfs)", int(rc), &[EPERM]);
        let rc = libc::mount(
            c"/".as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        );
        r.deny("mount(MS_BIND)", int(rc), &[EPERM]);
        r.deny("umount2", int(libc::umount2(target.as_ptr(), 0)), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_pivot_root,
            c"/confine-nonexistent".as_ptr(),
            c"/confine-nonexistent".as_ptr(),
        );
        r.deny("pivot_root", sys(rc), &[EPERM]);
        r.deny("chroot(/)", int(libc::chroot(c"/".as_ptr())), &[EPERM]);
        let rc = libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0);
        r.deny("fsopen(tmpfs)", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_fspick, at, c"/".as_ptr(), 0);
        r.deny("fspick(/)", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_open_tree, at, c"/".as_ptr(), 0);
        r.deny("open_tree(/)", sys(rc), &[EPERM]);
        let rc = libc::syscall(467, at, c"/".as_ptr(), 0, std::ptr::null::<u8>(), 0);
        r.deny("open_tree_attr(/)", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_move_mount, -1, c"".as_ptr(), -1, c"".as_ptr(), 0);
        r.deny("move_mount", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_fsconfig, -1, 0, 0, 0, 0);
        r.deny("fsconfig", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_fsmount, -1, 0, 0);
        r.deny("fsmount", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_mount_setattr, -1, c"".as_ptr(), 0, 0, 0);
        r.deny("mount_setattr", sys(rc), &[EPERM]);
    }
    r.check(
        !mountinfo_mentions(&ctx.p("rw/mnt")),
        "a mount appeared on rw/mnt",
    );
}

fn check_unshare(_: &Ctx, r: &mut Report) {
    for (name, flags) in [
        ("unshare(CLONE_NEWUSER)", libc::CLONE_NEWUSER),
        ("unshare(CLONE_NEWNS)", libc::CLONE_NEWNS),
        ("unshare(CLONE_NEWNET)", libc::CLONE_NEWNET),
        ("unshare(CLONE_FILES)", libc::CLONE_FILES),
        ("unshare(0)", 0),
    ] {
        // SAFETY: integer argument.
        r.deny(name, int(unsafe { libc::unshare(flags) }), &[EPERM]);
    }
}

fn check_setns(_: &Ctx, r: &mut Report) {
    for ns in [
        c"/proc/self/ns/net",
        c"/proc/self/ns/mnt",
        c"/proc/self/ns/user",
    ] {
        // SAFETY: valid path; fd closed below.
        let fd = unsafe { libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if r.allow(&format!("open({ns:?})"), int(fd)) < 0 {
            continue;
        }
        // SAFETY: integer arguments.
        let rc = unsafe { libc::setns(fd, 0) };
        r.deny(&format!("setns({ns:?})"), int(rc), &[EPERM]);
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
}

fn check_bpf(_: &Ctx, r: &mut Report) {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1]);
    // SAFETY: attr is a live, zero-padded 128-byte buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, /* BPF_MAP_CREATE */
            attr.as_ptr(),
            128,
        )
    };
    r.deny("bpf(BPF_MAP_CREATE)", sys(rc), &[EPERM]);
}

fn check_perf(_: &Ctx, r: &mut Report) {
    // struct perf_event_attr, PERF_ATTR_SIZE_VER0 (64 bytes): software cpu-clock
    // on ourselves, user space only (allowed unprivileged with paranoid <= 2).
    let mut attr = [0u64; 16];
    attr[0] = 1 | (64 << 32); // type = PERF_TYPE_SOFTWARE, size = 64
    attr[1] = 0; // config = PERF_COUNT_SW_CPU_CLOCK
    attr[5] = 1 | (1 << 5) | (1 << 6); // disabled, exclude_kernel, exclude_hv
    // SAFETY: attr is a live buffer larger than the declared size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            8, /* CLOEXEC */
        )
    };
    r.deny("perf_event_open(self, sw cpu-clock)", sys(rc), &[EPERM]);
}

fn check_keys(_: &Ctx, r: &mut Report) {
    // SAFETY (block): integer arguments and live NUL-terminated strings.
    unsafe {
        let rc = libc::syscall(
            libc::SYS_keyctl,
            0,  /* GET_KEYRING_ID */
            -3, /* SESSION */
            0,
        );
        r.deny("keyctl(KEYCTL_GET_KEYRING_ID)", sys(rc), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"confine-test".as_ptr(),
            c"x".as_ptr(),
            1,
            -2, /* KEY_SPEC_PROCESS_KEYRING */
        );
        r.deny("add_key", sys(rc), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_request_key,
            c"user".as_ptr(),
            c"confine-test-missing".as_ptr(),
            0,
            0,
        );
        r.deny("request_key", sys(rc), &[EPERM]);
    }
}

fn socket(domain: i32, ty: i32, proto: i32) -> i64 {
    // SAFETY: integer arguments.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd >= 0 {
        // SAFETY: our fd. Keeps errno-free success visible through the return value.
        unsafe { libc::close(fd) };
    }
    int(fd)
}

fn check_sockets(_: &Ctx, r: &mut Report) {
    let all = (libc::ETH_P_ALL as u16).to_be() as i32;
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let cases: &[(&str, i32, i32, i32)] = &[
        (
            "socket(AF_PACKET, SOCK_RAW)",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            all,
        ),
        (
            "socket(AF_PACKET, SOCK_DGRAM|flags)",
            libc::AF_PACKET,
            libc::SOCK_DGRAM | flags,
            all,
        ),
        (
            "socket(AF_INET, SOCK_RAW, ICMP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ),
        (
            "socket(AF_INET, SOCK_RAW|flags, TCP)",
            libc::AF_INET,
            libc::SOCK_RAW | flags,
            libc::IPPROTO_TCP,
        ),
        (
            "socket(AF_INET6, SOCK_RAW, ICMPV6)",
            libc::AF_INET6,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMPV6,
        ),
        ("socket(AF_INET, SOCK_PACKET)", libc::AF_INET, 10, all),
        (
            "socket(AF_NETLINK, NETLINK_AUDIT)",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_AUDIT,
        ),
        (
            "socket(AF_NETLINK, NETLINK_NETFILTER)",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_NETFILTER,
        ),
        (
            "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT)",
            libc::AF_NETLINK,
            libc::SOCK_DGRAM,
            libc::NETLINK_KOBJECT_UEVENT,
        ),
        (
            "socket(AF_NETLINK, NETLINK_GENERIC)",
            libc::AF_NETLINK,
            libc::SOCK_RAW | flags,
            libc::NETLINK_GENERIC,
        ),
        (
            "socket(AF_NETLINK, NETLINK_XFRM)",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_XFRM,
        ),
    ];
    for (name, d, t, p) in cases {
        r.deny(name, socket(*d, *t, *p), &[EPERM]);
    }
}

fn check_clone(_: &Ctx, r: &mut Report) {
    for (name, flag) in [
        ("clone(CLONE_NEWNS)", libc::CLONE_NEWNS),
        ("clone(CLONE_NEWUSER)", libc::CLONE_NEWUSER),
        ("clone(CLONE_NEWPID)", libc::CLONE_NEWPID),
        ("clone(CLONE_NEWNET)", libc::CLONE_NEWNET),
        ("clone(CLONE_NEWUTS)", libc::CLONE_NEWUTS),
        ("clone(CLONE_NEWIPC)", libc::CLONE_NEWIPC),
        ("clone(CLONE_NEWCGROUP)", libc::CLONE_NEWCGROUP),
        (
            "clone(CLONE_NEWNS|CLONE_FILES)",
            libc::CLONE_NEWNS | libc::CLONE_FILES,
        ),
    ] {
        // SAFETY: fork-like clone (no new stack); an unexpected child exits at once.
        let rc = unsafe { libc::syscall(libc::SYS_clone, flag | libc::SIGCHLD, 0, 0, 0, 0) };
        contain_fork(rc);
        r.deny(name, sys(rc), &[EPERM]);
    }
    // struct clone_args (CLONE_ARGS_SIZE_VER2 = 88 bytes), exit_signal = SIGCHLD.
    let mut args = [0u64; 11];
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: args is a live 88-byte struct; an unexpected child exits at once.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), 88) };
    contain_fork(rc);
    r.deny("clone3 (plain fork)", sys(rc), &[ENOSYS]);
    args[0] = libc::CLONE_NEWUSER as u64;
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), 88) };
    contain_fork(rc);
    r.deny("clone3(CLONE_NEWUSER)", sys(rc), &[ENOSYS]);
}

fn check_io_uring(_: &Ctx, r: &mut Report) {
    let mut params = [0u8; 120];
    // SAFETY: params is a live zeroed struct io_uring_params; fds are invalid.
    unsafe {
        let rc = libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr());
        r.deny("io_uring_setup", sys(rc), &[ENOSYS]);
        let rc = libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
        r.deny("io_uring_enter", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_io_uring_register, -1, 0, 0, 0);
        r.deny("io_uring_register", sys(rc), &[EPERM]);
    }
}

fn check_admin(_: &Ctx, r: &mut Report) {
    let at = libc::AT_FDCWD;
    // Every call uses arguments that make the kernel refuse it even for root
    // without the filter (bad magic, bad arch flags, missing paths, bad fds), so
    // a broken filter cannot reboot, load a kernel or module, or turn on swap.
    // SAFETY (block): integer arguments, null or live NUL-terminated strings,
    // live buffers.
    unsafe {
        let rc = libc::syscall(libc::SYS_reboot, 0, 0, 0, 0); // no LINUX_REBOOT_MAGIC
        r.deny("reboot(bad magic)", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_kexec_load, 0, 1000, 0, 0xdead_0000u64);
        r.deny("kexec_load", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_kexec_file_load, -1, -1, 0, 0, 0xdead_0000u64);
        r.deny("kexec_file_load", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_init_module, 0, 0, c"".as_ptr());
        r.deny("init_module", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0);
        r.deny("finit_module", sys(rc), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_delete_module,
            c"confine_test_no_such_module".as_ptr(),
            libc::O_NONBLOCK,
        );
        r.deny("delete_module", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_swapon, c"/confine-nonexistent".as_ptr(), 0);
        r.deny("swapon", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_swapoff, c"/confine-nonexistent".as_ptr());
        r.deny("swapoff", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_acct, c"/confine-nonexistent/acct".as_ptr());
        r.deny("acct", sys(rc), &[EPERM]);
        let mut buf = [0u8; 64];
        let qcmd: libc::c_long = 0x80_0004 << 8; // QCMD(Q_GETFMT, USRQUOTA)
        let rc = libc::syscall(
            libc::SYS_quotactl,
            qcmd,
            c"/dev/null".as_ptr(),
            0,
            buf.as_mut_ptr(),
        );
        r.deny("quotactl", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_quotactl_fd, -1, qcmd, 0, buf.as_mut_ptr());
        r.deny("quotactl_fd", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_lookup_dcookie, 0, 0, 0);
        r.deny("lookup_dcookie", sys(rc), &[EPERM]);
        let rc = libc::syscall(libc::SYS_syslog, 10 /* SIZE_BUFFER */, 0, 0);
        r.deny("syslog(SYSLOG_ACTION_SIZE_BUFFER)", sys(rc), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | 1, /* USER_MODE_ONLY */
        );
        r.deny("userfaultfd", sys(rc), &[EPERM]);
        let mut handle = [0u32; 34];
        handle[0] = 128; // handle_bytes
        let mut mount_id = 0i32;
        let rc = libc::syscall(
            libc::SYS_name_to_handle_at,
            at,
            c"/".as_ptr(),
            handle.as_mut_ptr(),
            &mut mount_id,
            0,
        );
        r.deny("name_to_handle_at(/)", sys(rc), &[EPERM]);
        let rc = libc::syscall(
            libc::SYS_open_by_handle_at,
            -1,
            handle.as_ptr(),
            libc::O_RDONLY,
        );
        r.deny("open_by_handle_at", sys(rc), &[EPERM]);
        #[cfg(target_arch = "x86_64")]
        {
            r.deny("iopl(0)", sys(libc::syscall(libc::SYS_iopl, 0)), &[EPERM]);
            r.deny(
                "ioperm",
                sys(libc::syscall(libc::SYS_ioperm, 0, 0, 0)),
                &[EPERM],
            );
            // An x32-ABI getpid: must not slip past the filter's syscall numbers.
            let rc = libc::syscall(0x4000_0000 | libc::SYS_getpid);
            r.deny("x32 getpid", sys(rc), &[ENOSYS]);
        }
    }
}

fn check_personality(_: &Ctx, r: &mut Report) {
    // SAFETY (block): integer arguments.
    unsafe {
        r.deny(
            "personality(ADDR_NO_RANDOMIZE)",
            int(libc::personality(0x0004_0000)),
            &[EPERM],
        );
        r.deny(
            "personality(READ_IMPLIES_EXEC)",
            int(libc::personality(0x0040_0000)),
            &[EPERM],
        );
        r.allow("personality(query)", int(libc::personality(0xffff_ffff)));
        r.allow("personality(PER_LINUX)", int(libc::personality(0)));
    }
}

fn check_fs_forbidden(ctx: &Ctx, r: &mut Report) {
    r.io_deny(
        "read forbidden/secret.txt",
        fs::read(ctx.p("forbidden/secret.txt")),
        &[EACCES],
    );
    r.io_deny(
        "list forbidden/",
        fs::read_dir(ctx.p("forbidden")),
        &[EACCES],
    );
    r.io_deny(
        "create forbidden/new",
        fs::write(ctx.p("forbidden/new"), b"x"),
        &[EACCES],
    );
    r.io_deny(
        "read /dev/zero (not listed)",
        fs::File::open("/dev/zero"),
        &[EACCES],
    );
    r.io_deny("list / (not listed)", fs::read_dir("/"), &[EACCES]);
    // A symlink in rw pointing at the forbidden file does not help.
    r.io(
        "symlink rw/ln -> forbidden/secret.txt",
        std::os::unix::fs::symlink(ctx.p("forbidden/secret.txt"), ctx.p("rw/ln")),
    );
    r.io_deny("read through rw/ln", fs::read(ctx.p("rw/ln")), &[EACCES]);
    // Executing from a forbidden dir.
    r.io_deny(
        "exec forbidden/true",
        Command::new(ctx.p("forbidden/true")).status(),
        &[EACCES],
    );
}

fn check_fs_ro(ctx: &Ctx, r: &mut Report) {
    let data = r.io("read ro/file.txt", fs::read(ctx.p("ro/file.txt")));
    r.check(
        data.as_deref() == Some(b"ro-content"),
        "ro/file.txt content",
    );
    r.io("list ro/", fs::read_dir(ctx.p("ro")));
    r.io_deny(
        "open ro/file.txt for writing",
        fs::OpenOptions::new()
            .write(true)
            .open(ctx.p("ro/file.txt")),
        &[EACCES],
    );
    r.io_deny("create ro/new", fs::write(ctx.p("ro/new"), b"x"), &[EACCES]);
    r.io_deny("mkdir ro/d", fs::create_dir(ctx.p("ro/d")), &[EACCES]);
    r.io_deny(
        "unlink ro/file.txt",
        fs::remove_file(ctx.p("ro/file.txt")),
        &[EACCES],
    );
    r.io_deny(
        "rename inside ro",
        fs::rename(ctx.p("ro/file.txt"), ctx.p("ro/moved")),
        &[EACCES],
    );
    r.io_deny(
        "symlink in ro",
        std::os::unix::fs::symlink("/etc", ctx.p("ro/ln")),
        &[EACCES],
    );
    let path = ctx.c("ro/file.txt");
    // SAFETY: valid path.
    let rc = unsafe { libc::truncate(path.as_ptr(), 0) };
    r.deny("truncate ro/file.txt", int(rc), &[EACCES]);
}

fn check_fs_rw(ctx: &Ctx, r: &mut Report) {
    let f = ctx.p("rw/new.txt");
    r.io("create rw/new.txt", fs::write(&f, b"hello"));
    let back = r.io("read rw/new.txt", fs::read(&f));
    r.check(back.as_deref() == Some(b"hello"), "rw/new.txt content");
    r.io("append rw/new.txt", {
        fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut h| h.write_all(b" world"))
    });
    r.io("mkdir rw/d", fs::create_dir(ctx.p("rw/d")));
    r.io(
        "rename rw/new.txt -> rw/d/new.txt",
        fs::rename(&f, ctx.p("rw/d/new.txt")),
    );
    r.io(
        "rename rw/d/new.txt -> rw2/new.txt (across rw trees)",
        fs::rename(ctx.p("rw/d/new.txt"), ctx.p("rw2/new.txt")),
    );
    r.io(
        "hardlink rw2/new.txt -> rw/link.txt",
        fs::hard_link(ctx.p("rw2/new.txt"), ctx.p("rw/link.txt")),
    );
    let path = ctx.c("rw/link.txt");
    // SAFETY: valid path.
    r.allow(
        "truncate rw/link.txt",
        int(unsafe { libc::truncate(path.as_ptr(), 1) }),
    );
    let fifo = ctx.c("rw/fifo");
    // SAFETY: valid path.
    r.allow(
        "mkfifo rw/fifo",
        int(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }),
    );
    r.io(
        "symlink in rw",
        std::os::unix::fs::symlink("new.txt", ctx.p("rw/sym")),
    );
    r.io("unlink rw/link.txt", fs::remove_file(ctx.p("rw/link.txt")));
    r.io("rmdir rw/d", fs::remove_dir(ctx.p("rw/d")));
    r.io(
        "bind a unix socket in rw",
        UnixListener::bind(ctx.p("rw/sock")).map(drop),
    );
    // /dev/null is listed read_write as a single file.
    r.io(
        "write /dev/null",
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .and_then(|mut h| h.write_all(b"x")),
    );
}

fn check_fs_refer(ctx: &Ctx, r: &mut Report) {
    let denied = &[EACCES, EXDEV];
    r.io_deny(
        "hardlink forbidden/secret.txt -> rw/stolen",
        fs::hard_link(ctx.p("forbidden/secret.txt"), ctx.p("rw/stolen")),
        denied,
    );
    r.check(!ctx.p("rw/stolen").exists(), "rw/stolen was created");
    r.io_deny(
        "hardlink ro/file.txt -> rw/ro-link (would gain write)",
        fs::hard_link(ctx.p("ro/file.txt"), ctx.p("rw/ro-link")),
        denied,
    );
    r.io_deny(
        "rename forbidden/secret.txt -> rw/secret.txt",
        fs::rename(ctx.p("forbidden/secret.txt"), ctx.p("rw/secret.txt")),
        denied,
    );
    r.io_deny(
        "rename ro/file.txt -> rw/file.txt",
        fs::rename(ctx.p("ro/file.txt"), ctx.p("rw/file.txt")),
        denied,
    );
    r.io("create rw/mine.txt", fs::write(ctx.p("rw/mine.txt"), b"m"));
    r.io_deny(
        "rename rw/mine.txt -> ro/mine.txt",
        fs::rename(ctx.p("rw/mine.txt"), ctx.p("ro/mine.txt")),
        denied,
    );
    r.io_deny(
        "rename rw/mine.txt -> forbidden/mine.txt",
        fs::rename(ctx.p("rw/mine.txt"), ctx.p("forbidden/mine.txt")),
        denied,
    );
    r.check(ctx.p("rw/mine.txt").exists(), "rw/mine.txt disappeared");
}

fn check_setuid(ctx: &Ctx, r: &mut Report) {
    for (flag, want) in [("-u", "65534"), ("-ru", "65534"), ("-g", "65534")] {
        let out = r.io(
            "exec rw/id-suid",
            Command::new(ctx.p("rw/id-suid")).arg(flag).output(),
        );
        if let Some(out) = out {
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            r.check(
                out.status.success() && got == want,
                format!(
                    "id {flag} printed {got:?} (status {}), expected {want}",
                    out.status
                ),
            );
        }
    }
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

fn check_caps(_: &Ctx, r: &mut Report) {
    let Some(status) = r.io(
        "read /proc/self/status",
        fs::read_to_string("/proc/self/status"),
    ) else {
        return;
    };
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let v = status_field(&status, key);
        r.check(
            v.as_deref() == Some("0000000000000000"),
            format!("{key} is {v:?}, expected all zero"),
        );
    }
    let expect = [
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        ("Uid", "65534\t65534\t65534\t65534"),
        ("Gid", "65534\t65534\t65534\t65534"),
        ("Groups", "65534"),
    ];
    for (key, want) in expect {
        let v = status_field(&status, key);
        r.check(
            v.as_deref() == Some(want),
            format!("{key} is {v:?}, expected {want:?}"),
        );
    }
    match c::capabilities() {
        Ok(caps) => r.check(caps == c::CapSets::default(), format!("capget: {caps:?}")),
        Err(e) => r.check(false, format!("capget: {e}")),
    }
    // SAFETY (block): integer arguments.
    unsafe {
        r.deny("setuid(0)", int(libc::setuid(0)), &[EPERM]);
        r.deny("setgid(0)", int(libc::setgid(0)), &[EPERM]);
        let gid = 0;
        r.deny("setgroups([0])", int(libc::setgroups(1, &gid)), &[EPERM]);
    }
}

fn check_scope(ctx: &Ctx, r: &mut Report) {
    // Same uid, outside our Landlock domain: only the signal scope stops this.
    // SAFETY (block): integer arguments.
    unsafe {
        r.deny(
            "kill(helper, 0)",
            int(libc::kill(ctx.helper_pid, 0)),
            &[EPERM],
        );
        r.deny(
            "kill(helper, SIGTERM)",
            int(libc::kill(ctx.helper_pid, libc::SIGTERM)),
            &[EPERM],
        );
        r.deny(
            "kill(parent, 0)",
            int(libc::kill(libc::getppid(), 0)),
            &[EPERM],
        );
    }
    // Inside the domain: our own child.
    let pid = spawn_sleeper();
    // SAFETY: integer arguments.
    r.allow("kill(own child, 0)", int(unsafe { libc::kill(pid, 0) }));
    reap(pid);

    let outside = SocketAddr::from_abstract_name(ctx.abstract_name.as_bytes());
    match outside {
        Ok(addr) => r.io_deny(
            "connect to the parent's abstract socket",
            UnixStream::connect_addr(&addr),
            &[EPERM],
        ),
        Err(e) => r.check(false, format!("abstract address: {e}")),
    }
    let own_name = format!("{}-inner", ctx.abstract_name);
    let inside = SocketAddr::from_abstract_name(own_name.as_bytes());
    if let Some(addr) = r.io("own abstract address", inside) {
        let listener = r.io("bind own abstract socket", UnixListener::bind_addr(&addr));
        r.io(
            "connect own abstract socket",
            UnixStream::connect_addr(&addr),
        );
        drop(listener);
    }
}

fn check_works(ctx: &Ctx, r: &mut Report) {
    // fork + wait
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: immediate exit.
        unsafe { libc::_exit(7) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    r.check(
        pid > 0 && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7,
        format!("fork/wait: pid {pid} status {st:#x}"),
    );
    // raw clone without namespace flags
    // SAFETY: fork-like clone; the child exits at once.
    let rc = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    if rc == 0 {
        // SAFETY: immediate exit.
        unsafe { libc::_exit(3) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(rc as i32, &mut st, 0) };
    r.check(
        rc > 0 && libc::WEXITSTATUS(st) == 3,
        format!("clone(SIGCHLD): {rc} status {st:#x}"),
    );
    // exec (posix_spawn: glibc tries clone3, gets ENOSYS, falls back to clone)
    let st = r.io("exec /bin/true", Command::new("/bin/true").status());
    r.check(st.is_some_and(|s| s.success()), "/bin/true failed");
    let out = r.io(
        "sh -c 'echo hi | cat'",
        Command::new("/bin/sh")
            .args(["-c", "echo hi | cat"])
            .output(),
    );
    r.check(
        out.as_ref().is_some_and(|o| o.stdout == b"hi\n"),
        format!("sh pipeline output {out:?}"),
    );
    // threads (pthread_create: clone3 -> ENOSYS -> clone)
    let handles: Vec<_> = (0..4u64)
        .map(|i| std::thread::spawn(move || i * 2))
        .collect();
    let sum: u64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
    r.check(sum == 12, format!("threads sum {sum}"));
    // pipe
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if r.allow(
        "pipe2",
        int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }),
    ) == 0
    {
        // SAFETY: fds are ours; buffers are live.
        unsafe {
            libc::write(fds[1], b"p".as_ptr().cast(), 1);
            let mut b = [0u8; 1];
            let n = libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            r.check(n == 1 && b == *b"p", "pipe round trip");
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
    // TCP over loopback
    let listener = r.io(
        "TCP listen on 127.0.0.1",
        std::net::TcpListener::bind("127.0.0.1:0"),
    );
    if let Some(l) = listener
        && let Some(addr) = r.io("local_addr", l.local_addr())
    {
        let s = r.io("TCP connect", std::net::TcpStream::connect(addr));
        let a = r.io("TCP accept", l.accept());
        if let (Some(mut s), Some((mut a, _))) = (s, a) {
            r.io("TCP write", s.write_all(b"tcp"));
            let mut b = [0u8; 3];
            r.io("TCP read", a.read_exact(&mut b));
            r.check(&b == b"tcp", "TCP round trip");
        }
    }
    r.allow(
        "socket(AF_INET, SOCK_STREAM)",
        socket(libc::AF_INET, libc::SOCK_STREAM, 0),
    );
    r.allow(
        "socket(AF_INET, SOCK_DGRAM)",
        socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
    );
    r.allow(
        "socket(AF_UNIX, SOCK_STREAM)",
        socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
    );
    r.allow(
        "socket(AF_NETLINK, NETLINK_ROUTE)",
        socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        ),
    );
    r.allow(
        "socket(AF_NETLINK, NETLINK_SOCK_DIAG)",
        socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG),
    );
    r.io("UnixStream::pair", UnixStream::pair());
    // getifaddrs (netlink route): used by Node's os.networkInterfaces, Go's net.Interfaces, ...
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: out-pointer; freed below.
    if r.allow("getifaddrs", int(unsafe { libc::getifaddrs(&mut ifa) })) == 0 {
        let mut names = Vec::new();
        let mut cur = ifa;
        while !cur.is_null() {
            // SAFETY: list returned by getifaddrs, valid until freeifaddrs.
            unsafe {
                names.push(
                    CStr::from_ptr((*cur).ifa_name)
                        .to_string_lossy()
                        .into_owned(),
                );
                cur = (*cur).ifa_next;
            }
        }
        // SAFETY: freeing the list getifaddrs returned.
        unsafe { libc::freeifaddrs(ifa) };
        r.check(
            names.iter().any(|n| n == "lo"),
            format!("getifaddrs: {names:?}"),
        );
    }
    // Reading allowed files, /proc.
    r.io("read /etc/passwd", fs::read("/etc/passwd"));
    r.io("read ro/file.txt", fs::read(ctx.p("ro/file.txt")));
}

/// Baseline without Landlock and seccomp (uid 65534, no caps): the operations the
/// confinement denies do work here, so the denials above come from it.
fn check_control(ctx: &Ctx, r: &mut Report) {
    r.io(
        "read forbidden/secret.txt",
        fs::read(ctx.p("forbidden/secret.txt")),
    );
    r.io("create ro/ctl", fs::write(ctx.p("ro/ctl"), b"x"));
    r.io("unlink ro/ctl", fs::remove_file(ctx.p("ro/ctl")));
    r.io(
        "hardlink forbidden/secret.txt -> rw/ctl-link",
        fs::hard_link(ctx.p("forbidden/secret.txt"), ctx.p("rw/ctl-link")),
    );
    r.io("unlink rw/ctl-link", fs::remove_file(ctx.p("rw/ctl-link")));
    // SAFETY (block): integer arguments, live strings and buffers; every
    // resource created is ours and short-lived.
    unsafe {
        r.allow("kill(helper, 0)", int(libc::kill(ctx.helper_pid, 0)));
        let rc = libc::syscall(libc::SYS_keyctl, 0, -3, 0);
        r.allow("keyctl(KEYCTL_GET_KEYRING_ID)", sys(rc));
        let rc = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), 0);
        r.allow("open_tree(/)", sys(rc));
        let rc = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1);
        r.allow("userfaultfd(USER_MODE_ONLY)", sys(rc));
        let mut handle = [0u32; 34];
        handle[0] = 128;
        let mut mount_id = 0i32;
        let rc = libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            handle.as_mut_ptr(),
            &mut mount_id,
            0,
        );
        r.allow("name_to_handle_at(/)", sys(rc));
        let mut attr = [0u64; 16];
        attr[0] = 1 | (64 << 32);
        attr[5] = 1 | (1 << 5) | (1 << 6);
        let rc = libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 8);
        r.allow("perf_event_open(self)", sys(rc));
        let pid = spawn_sleeper();
        let rc = libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0);
        r.allow("ptrace(PTRACE_SEIZE, own child)", rc);
        reap(pid);
        r.allow(
            "personality(ADDR_NO_RANDOMIZE)",
            int(libc::personality(0x0004_0000)),
        );
        r.allow(
            "unshare(CLONE_NEWUSER)",
            int(libc::unshare(libc::CLONE_NEWUSER)),
        );
    }
    if let Ok(addr) = SocketAddr::from_abstract_name(ctx.abstract_name.as_bytes()) {
        r.io(
            "connect to the parent's abstract socket",
            UnixStream::connect_addr(&addr),
        );
    }
}

fn check_control_setuid(ctx: &Ctx, r: &mut Report) {
    let out = r.io(
        "exec rw/id-suid",
        Command::new(ctx.p("rw/id-suid")).arg("-u").output(),
    );
    if let Some(out) = out {
        let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        r.check(
            got == "0",
            format!("without no_new_privs the setuid copy printed euid {got:?}, expected 0"),
        );
    }
}

/// The seccomp-as-root mode must really be root with capabilities, otherwise
/// its denials would prove nothing.
fn check_still_root(_: &Ctx, r: &mut Report) {
    // SAFETY: no arguments.
    r.check(unsafe { libc::geteuid() } == 0, "not root");
    match c::capabilities() {
        Ok(caps) => r.check(
            caps.effective & (1 << 21) != 0, // CAP_SYS_ADMIN
            format!("no CAP_SYS_ADMIN: {caps:?}"),
        ),
        Err(e) => r.check(false, format!("capget: {e}")),
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    r.check(
        status_field(&status, "Seccomp").as_deref() == Some("2"),
        "seccomp filter not installed",
    );
}

/// Inside the full confinement the agent can still sandbox itself further
/// (tools such as Codex CLI stack their own Landlock + seccomp).
fn check_nested(ctx: &Ctx, r: &mut Report) {
    let rules = c::FsRules {
        read_only: vec![ctx.p("ro"), PathBuf::from("/proc")],
        read_write: vec![],
    };
    match c::landlock::prepare(&rules, c::Compat::HardRequirement) {
        Ok((prepared, warnings)) => {
            r.check(
                warnings.is_empty(),
                format!("nested warnings: {warnings:?}"),
            );
            match c::landlock::restrict(prepared) {
                Ok(st) => r.check(
                    st == c::RestrictStatus::FullyEnforced,
                    format!("nested restrict status {st:?}"),
                ),
                Err(e) => r.check(false, format!("nested restrict: {e}")),
            }
        }
        Err(e) => r.check(false, format!("nested prepare: {e}")),
    }
    r.io(
        "read ro/file.txt after nesting",
        fs::read(ctx.p("ro/file.txt")),
    );
    r.io_deny(
        "write rw/ after a nested read-only domain",
        fs::write(ctx.p("rw/after-nest"), b"x"),
        &[EACCES],
    );
    match c::seccomp::build_filter() {
        Ok(prog) => {
            if let Err(e) = c::seccomp::apply(&prog) {
                r.check(false, format!("stacking a second seccomp filter: {e}"));
            }
        }
        Err(e) => r.check(false, format!("build_filter: {e}")),
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    r.check(
        status_field(&status, "Seccomp_filters").as_deref() == Some("2"),
        format!(
            "Seccomp_filters {:?}",
            status_field(&status, "Seccomp_filters")
        ),
    );
}

/// Runs under a filter that makes the Landlock syscalls fail with ENOSYS, as
/// on a kernel built without Landlock: hard requirement refuses, best effort
/// warns and still confines with seccomp and the identity drop.
fn check_landlock_unavailable(ctx: &Ctx, r: &mut Report) {
    let rules = c::FsRules {
        read_only: vec![ctx.p("ro")],
        read_write: vec![ctx.p("rw")],
    };
    match c::landlock::prepare(&rules, c::Compat::HardRequirement) {
        Err(e @ c::ConfineError::LandlockUnavailable { .. }) => {
            let msg = e.to_string();
            r.check(
                msg.contains("not built into this kernel") && msg.contains("best_effort"),
                format!("message: {msg}"),
            );
        }
        other => r.check(false, format!("hard requirement gave {other:?}")),
    }
    let prepared = match c::prepare(Some(&rules), c::Compat::BestEffort, NOBODY, NOBODY) {
        Ok((prepared, warnings)) => {
            r.check(
                warnings
                    == [
                        "landlock: not available (not built into this kernel); the agent runs \
                         without filesystem confinement",
                    ],
                format!("warnings {warnings:?}"),
            );
            r.check(
                prepared.landlock_abi() == Some(0),
                "landlock_abi should be 0",
            );
            prepared
        }
        Err(e) => {
            r.check(false, format!("best effort prepare: {e}"));
            return;
        }
    };
    if let Err(e) = prepared.enter() {
        r.check(false, format!("enter: {e}"));
        return;
    }
    // No Landlock: the forbidden file is readable; the rest of the confinement holds.
    r.io(
        "read forbidden/secret.txt",
        fs::read(ctx.p("forbidden/secret.txt")),
    );
    // SAFETY: integer arguments.
    r.deny(
        "unshare(CLONE_NEWUSER)",
        int(unsafe { libc::unshare(libc::CLONE_NEWUSER) }),
        &[EPERM],
    );
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (key, want) in [
        ("CapEff", "0000000000000000"),
        ("Uid", "65534\t65534\t65534\t65534"),
        ("NoNewPrivs", "1"),
    ] {
        let v = status_field(&status, key);
        r.check(v.as_deref() == Some(want), format!("{key} is {v:?}"));
    }
}

/// Runs after the child made its own mounts, like the supervisor building a new
/// root, then entered the confinement prepared before fork: a fresh tmpfs on
/// rw/mnt, a procfs on view/, forbidden/ bound onto rw2/bound and ro/ bound onto
/// forbidden/sub. Rules attach to inodes and the kernel walks up the path used,
/// skipping mountpoints, so: rw/mnt is writable (its ancestor rw/ has a rule),
/// forbidden/ is reachable through rw2/bound but not through its own path, ro/
/// stays read-only wherever it is bound, and view/ (read_only before fork, but a
/// mountpoint now) is only readable with an after-mount rule.
fn mount_layout(ctx: &Ctx, r: &mut Report, after_mount_rule: bool) {
    let status = fs::read_to_string(ctx.p("view/self/status"));
    if after_mount_rule {
        r.io("read view/self/status (after-mount rule)", status);
    } else {
        r.io_deny(
            "read view/self/status (mountpoint rule only)",
            status,
            &[EACCES],
        );
    }
    let data = r.io(
        "read rw2/bound/secret.txt",
        fs::read(ctx.p("rw2/bound/secret.txt")),
    );
    r.check(
        data.as_deref() == Some(b"secret"),
        "rw2/bound does not show forbidden/",
    );
    r.io_deny(
        "read forbidden/secret.txt",
        fs::read(ctx.p("forbidden/secret.txt")),
        &[EACCES],
    );
    let data = r.io(
        "read forbidden/sub/file.txt",
        fs::read(ctx.p("forbidden/sub/file.txt")),
    );
    r.check(
        data.as_deref() == Some(b"ro-content"),
        "forbidden/sub does not show ro/",
    );
    r.io_deny(
        "write forbidden/sub/file.txt",
        fs::OpenOptions::new()
            .write(true)
            .open(ctx.p("forbidden/sub/file.txt")),
        &[EACCES],
    );
    r.io_deny(
        "list forbidden/",
        fs::read_dir(ctx.p("forbidden")),
        &[EACCES],
    );
    let mnt = ctx.c("rw/mnt");
    // SAFETY: statfs fills a zeroed struct from a valid path.
    let fs_type = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(mnt.as_ptr(), &mut st) == 0 {
            st.f_type
        } else {
            0
        }
    };
    r.check(
        fs_type == libc::TMPFS_MAGIC,
        format!("rw/mnt is not the fresh tmpfs ({fs_type:#x})"),
    );
    r.io("mkdir rw/mnt/d", fs::create_dir(ctx.p("rw/mnt/d")));
    r.io("write rw/mnt/d/f", fs::write(ctx.p("rw/mnt/d/f"), b"x"));
}

fn check_mount_layout(ctx: &Ctx, r: &mut Report) {
    mount_layout(ctx, r, true);
}

fn check_mount_layout_no_after_mount(ctx: &Ctx, r: &mut Report) {
    mount_layout(ctx, r, false);
}

type Check = fn(&Ctx, &mut Report);

const CHECKS: &[(&str, Check)] = &[
    ("ptrace_parent", check_ptrace_parent),
    ("ptrace_child", check_ptrace_child),
    ("mount", check_mount),
    ("unshare", check_unshare),
    ("setns", check_setns),
    ("bpf", check_bpf),
    ("perf_event_open", check_perf),
    ("keyring", check_keys),
    ("sockets", check_sockets),
    ("clone_namespaces", check_clone),
    ("io_uring", check_io_uring),
    ("admin_syscalls", check_admin),
    ("personality", check_personality),
    ("fs_forbidden", check_fs_forbidden),
    ("fs_read_only", check_fs_ro),
    ("fs_read_write", check_fs_rw),
    ("fs_link_rename_across", check_fs_refer),
    ("setuid_binary", check_setuid),
    ("capabilities", check_caps),
    ("landlock_scopes", check_scope),
    ("normal_things_work", check_works),
    ("baseline", check_control),
    ("setuid_elevates", check_control_setuid),
    ("still_root", check_still_root),
    ("nested_sandbox", check_nested),
    ("mount_layout", check_mount_layout),
    (
        "mount_layout_no_after_mount",
        check_mount_layout_no_after_mount,
    ),
    ("landlock_unavailable", check_landlock_unavailable),
];

fn child_main(check: &str) -> ExitCode {
    let ctx = Ctx {
        dir: PathBuf::from(std::env::var_os(DIR_ENV).unwrap_or_default()),
        helper_pid: std::env::var(HELPER_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        abstract_name: std::env::var(ABSTRACT_ENV).unwrap_or_default(),
    };
    let Some((_, f)) = CHECKS.iter().find(|(n, _)| *n == check) else {
        eprintln!("unknown check {check}");
        return ExitCode::from(2);
    };
    let mut report = Report::default();
    f(&ctx, &mut report);
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &report.failures {
            eprintln!("FAIL: {f}");
        }
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Full,
    SeccompAsRoot,
    Control,
    ControlNoNnp,
    NoLandlockKernel,
    FullAfterMounts { after_mount_rule: bool },
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::SeccompAsRoot => "seccomp_as_root",
            Mode::Control => "control",
            Mode::ControlNoNnp => "control_no_nnp",
            Mode::NoLandlockKernel => "no_landlock_kernel",
            Mode::FullAfterMounts { .. } => "full_after_mounts",
        }
    }
}

type Post = fn(&Path) -> Result<(), String>;

struct Case {
    mode: Mode,
    check: &'static str,
    post: Option<Post>,
}

/// Seccomp checks that are safe to run as root (a broken filter cannot harm the
/// host: see the arguments chosen in each check).
const SECCOMP_CHECKS: &[&str] = &[
    "ptrace_child",
    "mount",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyring",
    "sockets",
    "clone_namespaces",
    "io_uring",
    "admin_syscalls",
    "personality",
];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let full = |check, post| Case {
        mode: Mode::Full,
        check,
        post,
    };
    v.push(full("ptrace_parent", None));
    for check in SECCOMP_CHECKS {
        let post: Option<Post> = (*check == "mount").then_some(post_no_mount as Post);
        v.push(full(check, post));
    }
    v.push(full("fs_forbidden", Some(post_forbidden_intact)));
    v.push(full("fs_read_only", Some(post_ro_intact)));
    v.push(full("fs_read_write", Some(post_rw_written)));
    v.push(full("fs_link_rename_across", Some(post_refer_intact)));
    v.push(full("setuid_binary", None));
    v.push(full("capabilities", None));
    v.push(full("landlock_scopes", None));
    v.push(full("normal_things_work", None));
    v.push(full("nested_sandbox", None));
    v.push(Case {
        mode: Mode::FullAfterMounts {
            after_mount_rule: true,
        },
        check: "mount_layout",
        post: Some(post_no_mount),
    });
    v.push(Case {
        mode: Mode::FullAfterMounts {
            after_mount_rule: false,
        },
        check: "mount_layout_no_after_mount",
        post: Some(post_no_mount),
    });
    v.push(Case {
        mode: Mode::NoLandlockKernel,
        check: "landlock_unavailable",
        post: None,
    });
    v.push(Case {
        mode: Mode::SeccompAsRoot,
        check: "still_root",
        post: None,
    });
    for check in SECCOMP_CHECKS {
        v.push(Case {
            mode: Mode::SeccompAsRoot,
            check,
            post: None,
        });
    }
    v.push(Case {
        mode: Mode::Control,
        check: "baseline",
        post: None,
    });
    v.push(Case {
        mode: Mode::ControlNoNnp,
        check: "setuid_elevates",
        post: None,
    });
    v
}

fn post_no_mount(dir: &Path) -> Result<(), String> {
    if mountinfo_mentions(&dir.join("rw/mnt")) {
        return Err("the supervisor's mount table shows a mount on rw/mnt".into());
    }
    Ok(())
}

fn post_forbidden_intact(dir: &Path) -> Result<(), String> {
    if dir.join("forbidden/new").exists() {
        return Err("forbidden/new was created".into());
    }
    Ok(())
}

fn post_ro_intact(dir: &Path) -> Result<(), String> {
    let content = fs::read(dir.join("ro/file.txt")).map_err(|e| e.to_string())?;
    if content != b"ro-content" {
        return Err(format!("ro/file.txt changed: {content:?}"));
    }
    let mut names: Vec<_> = fs::read_dir(dir.join("ro"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    if names != ["file.txt"] {
        return Err(format!("ro/ now holds {names:?}"));
    }
    Ok(())
}

fn post_rw_written(dir: &Path) -> Result<(), String> {
    let content = fs::read(dir.join("rw2/new.txt")).map_err(|e| e.to_string())?;
    if content != b"h" {
        return Err(format!("rw2/new.txt is {content:?}, expected b\"h\""));
    }
    Ok(())
}

fn post_refer_intact(dir: &Path) -> Result<(), String> {
    let secret = dir.join("forbidden/secret.txt");
    let meta = fs::metadata(&secret).map_err(|e| format!("forbidden/secret.txt: {e}"))?;
    if meta.nlink() != 1 {
        return Err(format!("forbidden/secret.txt has {} links", meta.nlink()));
    }
    for p in ["ro/file.txt", "rw/mine.txt"] {
        if !dir.join(p).exists() {
            return Err(format!("{p} is gone"));
        }
    }
    for p in [
        "rw/stolen",
        "rw/ro-link",
        "rw/secret.txt",
        "rw/file.txt",
        "ro/mine.txt",
    ] {
        if dir.join(p).exists() {
            return Err(format!("{p} exists"));
        }
    }
    Ok(())
}

struct Env {
    root: PathBuf,
    exe: PathBuf,
    helper: std::process::Child,
    abstract_name: String,
    _listener: UnixListener,
}

fn io_ctx<T>(what: &str, r: io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn setup_env() -> Result<Env, String> {
    let root = std::env::temp_dir().join(format!("confine-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    io_ctx("create temp root", fs::create_dir_all(root.join("bin")))?;
    for d in [&root, &root.join("bin")] {
        io_ctx(
            "chmod",
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)),
        )?;
    }
    // The test binary may live under a directory nobody cannot traverse: copy it.
    let exe = root.join("bin/confine-test");
    let me = io_ctx("current_exe", std::env::current_exe())?;
    io_ctx("copy test binary", fs::copy(me, &exe))?;
    io_ctx(
        "chmod test binary",
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)),
    )?;

    let helper = io_ctx(
        "spawn the nobody helper",
        Command::new("/bin/sleep")
            .arg("600")
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .spawn(),
    )?;
    let abstract_name = format!("confine-test-{}", std::process::id());
    let addr = io_ctx(
        "abstract address",
        SocketAddr::from_abstract_name(abstract_name.as_bytes()),
    )?;
    let listener = io_ctx("bind abstract socket", UnixListener::bind_addr(&addr))?;
    Ok(Env {
        root,
        exe,
        helper,
        abstract_name,
        _listener: listener,
    })
}

/// A fresh data tree for one case, owned by nobody so that plain DAC never
/// denies anything (only the confinement can).
fn setup_case_dir(env: &Env, idx: usize) -> Result<PathBuf, String> {
    let dir = env.root.join(format!("case-{idx}"));
    let mk = |rel: &str| -> Result<(), String> {
        let p = dir.join(rel);
        io_ctx(rel, fs::create_dir_all(&p))?;
        io_ctx(
            rel,
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777)),
        )?;
        io_ctx(rel, chown(&p, Some(NOBODY), Some(NOBODY)))
    };
    for d in [
        "",
        "ro",
        "rw",
        "rw/mnt",
        "rw2",
        "rw2/bound",
        "forbidden",
        "forbidden/sub",
        "view",
    ] {
        mk(d)?;
    }
    let file = |rel: &str, content: &[u8], mode: u32| -> Result<(), String> {
        let p = dir.join(rel);
        io_ctx(rel, fs::write(&p, content))?;
        io_ctx(
            rel,
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)),
        )?;
        io_ctx(rel, chown(&p, Some(NOBODY), Some(NOBODY)))
    };
    file("ro/file.txt", b"ro-content", 0o666)?;
    file("forbidden/secret.txt", b"secret", 0o666)?;
    io_ctx(
        "copy true",
        fs::copy("/bin/true", dir.join("forbidden/true")),
    )?;
    io_ctx(
        "chmod true",
        fs::set_permissions(
            dir.join("forbidden/true"),
            fs::Permissions::from_mode(0o755),
        ),
    )?;
    // A setuid-root copy of id in the writable tree.
    let suid = dir.join("rw/id-suid");
    io_ctx("copy id", fs::copy("/usr/bin/id", &suid))?;
    io_ctx("chown id", chown(&suid, Some(0), Some(0)))?;
    io_ctx(
        "chmod 4755 id",
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)),
    )?;
    Ok(dir)
}

fn fs_rules(env: &Env, dir: &Path) -> c::FsRules {
    let mut read_only: Vec<PathBuf> = ["/usr", "/bin", "/lib", "/lib64", "/etc", "/proc"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    read_only.push(env.exe.clone()); // a single file rule
    read_only.push(dir.join("ro"));
    read_only.push(dir.join("view")); // becomes a mountpoint: see mount_layout
    c::FsRules {
        read_only,
        read_write: vec![dir.join("rw"), dir.join("rw2"), PathBuf::from("/dev/null")],
    }
}

/// A filter that makes the kernel look like it has no Landlock (ENOSYS).
fn no_landlock_filter() -> Result<seccompiler::BpfProgram, String> {
    let rules = [
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_restrict_self,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        std::env::consts::ARCH
            .try_into()
            .map_err(|e| format!("{e:?}"))?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

fn to_io(e: c::ConfineError) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn run_case(env: &Env, idx: usize, case: &Case) -> Result<(), String> {
    let dir = setup_case_dir(env, idx)?;
    let log = |name: &str| -> Result<fs::File, String> {
        io_ctx(
            "log file",
            fs::File::create(env.root.join(format!("case-{idx}.{name}"))),
        )
    };
    let mut cmd = Command::new(&env.exe);
    cmd.env(CHECK_ENV, case.check)
        .env(DIR_ENV, &dir)
        .env(HELPER_ENV, env.helper.id().to_string())
        .env(ABSTRACT_ENV, &env.abstract_name)
        .stdin(Stdio::null())
        .stdout(log("out")?)
        .stderr(log("err")?);

    match case.mode {
        Mode::Full => {
            let rules = fs_rules(env, &dir);
            let (prepared, warnings) =
                c::prepare(Some(&rules), c::Compat::HardRequirement, NOBODY, NOBODY)
                    .map_err(|e| format!("prepare: {e}"))?;
            if !warnings.is_empty() {
                return Err(format!("unexpected warnings: {warnings:?}"));
            }
            if prepared.landlock_abi().unwrap_or(0) < 6 {
                return Err(format!(
                    "Landlock ABI {:?} < 6: this kernel cannot scope signals and abstract sockets",
                    prepared.landlock_abi()
                ));
            }
            // SAFETY: into_pre_exec only makes syscalls.
            unsafe { cmd.pre_exec(prepared.into_pre_exec()) };
        }
        Mode::SeccompAsRoot => {
            let prog = c::seccomp::build_filter().map_err(|e| e.to_string())?;
            let fresh =
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            // SAFETY: the closure only makes syscalls.
            unsafe {
                cmd.pre_exec(move || {
                    // Private namespaces: if the filter were broken, nothing the
                    // checks do could reach the host's mounts or network.
                    if libc::unshare(fresh) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let rc = libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    );
                    if rc != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    c::seccomp::apply(&prog).map_err(to_io)
                })
            };
        }
        Mode::Control => {
            // SAFETY: drop_to only makes syscalls.
            unsafe { cmd.pre_exec(|| c::drop_to(NOBODY, NOBODY).map_err(to_io)) };
        }
        Mode::FullAfterMounts { after_mount_rule } => {
            let rules = fs_rules(env, &dir);
            let (mut prepared, _) =
                c::prepare(Some(&rules), c::Compat::HardRequirement, NOBODY, NOBODY)
                    .map_err(|e| format!("prepare: {e}"))?;
            if after_mount_rule {
                let later = c::FsRules {
                    read_only: vec![dir.join("view")],
                    read_write: vec![],
                };
                prepared
                    .add_after_mount(&later)
                    .map_err(|e| format!("add_after_mount: {e}"))?;
            }
            let mnt = cstr(&dir.join("rw/mnt"));
            let view = cstr(&dir.join("view"));
            let forbidden = cstr(&dir.join("forbidden"));
            let bound = cstr(&dir.join("rw2/bound"));
            let ro = cstr(&dir.join("ro"));
            let sub = cstr(&dir.join("forbidden/sub"));
            let mut slot = Some(prepared);
            // SAFETY: the closure only makes syscalls on strings built before fork.
            unsafe {
                cmd.pre_exec(move || {
                    let none = std::ptr::null::<libc::c_char>();
                    let data = std::ptr::null::<libc::c_void>();
                    let private = libc::MS_REC | libc::MS_PRIVATE;
                    let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                        && libc::mount(none, c"/".as_ptr(), none, private, data) == 0
                        && libc::mount(c"tmpfs".as_ptr(), mnt.as_ptr(), c"tmpfs".as_ptr(), 0, data)
                            == 0
                        && libc::mount(c"proc".as_ptr(), view.as_ptr(), c"proc".as_ptr(), 0, data)
                            == 0
                        && libc::mount(
                            forbidden.as_ptr(),
                            bound.as_ptr(),
                            none,
                            libc::MS_BIND,
                            data,
                        ) == 0
                        && libc::mount(ro.as_ptr(), sub.as_ptr(), none, libc::MS_BIND, data) == 0;
                    if !ok {
                        return Err(io::Error::last_os_error());
                    }
                    match slot.take() {
                        Some(prepared) => prepared.enter().map_err(to_io),
                        None => Err(io::Error::from_raw_os_error(libc::EALREADY)),
                    }
                })
            };
        }
        Mode::NoLandlockKernel => {
            let prog = no_landlock_filter()?;
            // SAFETY: seccompiler's apply_filter only makes syscalls.
            unsafe {
                cmd.pre_exec(move || {
                    seccompiler::apply_filter(&prog).map_err(|e| io::Error::other(e.to_string()))
                })
            };
        }
        Mode::ControlNoNnp => {
            // SAFETY: plain syscalls.
            unsafe {
                cmd.pre_exec(|| {
                    let g = NOBODY;
                    if libc::setgroups(1, &g) != 0
                        || libc::setresgid(g, g, g) != 0
                        || libc::setresuid(NOBODY, NOBODY, NOBODY) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
    }

    let read =
        |n: &str| fs::read_to_string(env.root.join(format!("case-{idx}.{n}"))).unwrap_or_default();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn: {e}\n{}", read("err")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = io_ctx("wait", child.try_wait())? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out after 60s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        return Err(format!("child {status}\n{}{}", read("out"), read("err")));
    }
    if let Some(post) = case.post {
        post(&dir)?;
    }
    Ok(())
}

/// In-process checks of the API's error paths and helpers (no fork needed).
fn api_checks() -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, r: Result<(), String>| out.push((format!("api:{name}"), r));

    add("build_filter", {
        match c::seccomp::build_filter() {
            Ok(p) if !p.is_empty() && p.len() < 4096 => Ok(()),
            Ok(p) => Err(format!("program of {} instructions", p.len())),
            Err(e) => Err(e.to_string()),
        }
    });
    add(
        "refuses_root",
        match c::prepare(None, c::Compat::BestEffort, 0, 0) {
            Err(c::ConfineError::RootUser) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let rules = c::FsRules {
        read_only: vec![
            PathBuf::from("/usr"),
            PathBuf::from("/confine-does-not-exist"),
        ],
        read_write: vec![],
    };
    add(
        "hard_requirement_missing_path",
        match c::landlock::prepare(&rules, c::Compat::HardRequirement) {
            Err(e @ c::ConfineError::LandlockPath { .. }) => {
                let msg = e.to_string();
                if msg.contains("/confine-does-not-exist")
                    && msg.contains("does not exist")
                    && msg.contains("best_effort")
                {
                    Ok(())
                } else {
                    Err(format!("message: {msg}"))
                }
            }
            other => Err(format!("{other:?}")),
        },
    );
    add(
        "best_effort_missing_path",
        match c::landlock::prepare(&rules, c::Compat::BestEffort) {
            Ok((_, w)) if w == ["landlock: skipping /confine-does-not-exist: does not exist"] => {
                Ok(())
            }
            Ok((_, w)) => Err(format!("warnings {w:?}")),
            Err(e) => Err(e.to_string()),
        },
    );
    let nested = c::FsRules {
        read_only: vec![PathBuf::from("/usr/bin")],
        read_write: vec![PathBuf::from("/usr")],
    };
    add(
        "nested_read_only_warns",
        match c::landlock::prepare(&nested, c::Compat::HardRequirement) {
            Ok((_, w)) if w.len() == 1 && w[0].contains("stays writable") => Ok(()),
            Ok((_, w)) => Err(format!("warnings {w:?}")),
            Err(e) => Err(e.to_string()),
        },
    );
    add("resolve_nobody", {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = fs::read_to_string("/etc/group").unwrap_or_default();
        match (
            c::resolve_user("nobody", &passwd),
            c::resolve_group("nogroup", &group),
        ) {
            (Some((65534, 65534)), Some(65534)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    out
}

/// A failing `enter` must make spawn fail with the errno and leave a readable
/// message on the child's stderr.
fn enter_failure_case(env: &Env) -> Result<(), String> {
    let (prepared, _) =
        c::prepare(None, c::Compat::BestEffort, NOBODY, NOBODY).map_err(|e| e.to_string())?;
    let err_path = env.root.join("enter-failure.err");
    let mut cmd = Command::new(&env.exe);
    cmd.env(CHECK_ENV, "normal_things_work")
        .uid(NOBODY) // std drops to nobody first, so setgroups in drop_to fails
        .stdin(Stdio::null())
        .stderr(io_ctx("err file", fs::File::create(&err_path))?);
    // SAFETY: into_pre_exec only makes syscalls.
    unsafe { cmd.pre_exec(prepared.into_pre_exec()) };
    match cmd.spawn() {
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("spawn succeeded although drop_to had to fail".into())
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let msg = fs::read_to_string(&err_path).unwrap_or_default();
            if msg.contains("cannot confine the agent: setgroups failed") {
                Ok(())
            } else {
                Err(format!("stderr was {msg:?}"))
            }
        }
        Err(e) => Err(format!("spawn failed with {e}, expected EPERM")),
    }
}

/// An after-mount path missing in the child fails the spawn with its errno and
/// a message naming the path; relative paths are refused before fork.
fn after_mount_missing_case(env: &Env) -> Result<(), String> {
    let rules = c::FsRules {
        read_only: vec![PathBuf::from("/usr")],
        read_write: vec![],
    };
    let (mut prepared, _) = c::prepare(Some(&rules), c::Compat::BestEffort, NOBODY, NOBODY)
        .map_err(|e| e.to_string())?;
    let relative = c::FsRules {
        read_only: vec![PathBuf::from("proc")],
        read_write: vec![],
    };
    match prepared.add_after_mount(&relative) {
        Err(c::ConfineError::LandlockPath { reason, .. }) if reason.contains("absolute") => {}
        other => return Err(format!("relative path gave {other:?}")),
    }
    let missing = c::FsRules {
        read_only: vec![PathBuf::from("/confine-missing-after-mount")],
        read_write: vec![],
    };
    prepared
        .add_after_mount(&missing)
        .map_err(|e| e.to_string())?;
    let err_path = env.root.join("after-mount-missing.err");
    let mut cmd = Command::new(&env.exe);
    cmd.env(CHECK_ENV, "normal_things_work")
        .stdin(Stdio::null())
        .stderr(io_ctx("err file", fs::File::create(&err_path))?);
    // SAFETY: into_pre_exec only makes syscalls.
    unsafe { cmd.pre_exec(prepared.into_pre_exec()) };
    match cmd.spawn() {
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("spawn succeeded although an after-mount path is missing".into())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let msg = fs::read_to_string(&err_path).unwrap_or_default();
            if msg.contains("Landlock path /confine-missing-after-mount could not be opened") {
                Ok(())
            } else {
                Err(format!("stderr was {msg:?}"))
            }
        }
        Err(e) => Err(format!("spawn failed with {e}, expected ENOENT")),
    }
}

struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        filters: Vec::new(),
        skip: Vec::new(),
        exact: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--exact" => a.exact = true,
            "--list" => a.list = true,
            "--skip" => a.skip.extend(it.next()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => a.filters.push(s.to_owned()),
        }
    }
    a
}

impl Args {
    fn selected(&self, name: &str) -> bool {
        let hit = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(hit))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

fn main() -> ExitCode {
    if let Ok(check) = std::env::var(CHECK_ENV) {
        return child_main(&check);
    }
    let args = parse_args();
    let cases = cases();
    let mut names: Vec<String> = cases
        .iter()
        .map(|c| format!("{}:{}", c.mode.name(), c.check))
        .collect();
    names.push("api:enter_failure_reports".into());
    names.push("api:after_mount_missing_reports".into());
    if args.list {
        for n in names.iter().chain(api_checks().iter().map(|(n, _)| n)) {
            println!("{n}: test");
        }
        return ExitCode::SUCCESS;
    }

    let start = Instant::now();
    let mut results: Vec<(String, Result<(), String>)> = Vec::new();
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        results.push((
            "environment:root".into(),
            Err("these tests must run as root (they switch users and install filters)".into()),
        ));
    }
    let env = match setup_env() {
        Ok(env) => Some(env),
        Err(e) => {
            results.push(("environment:setup".into(), Err(e)));
            None
        }
    };
    let api = api_checks();
    names.extend(api.iter().map(|(n, _)| n.clone()));
    let total_selected = names.iter().filter(|n| args.selected(n)).count();
    println!("\nrunning {total_selected} tests");
    if let Some(env) = &env {
        for (idx, (case, name)) in cases.iter().zip(&names).enumerate() {
            if args.selected(name) {
                results.push((name.clone(), run_case(env, idx, case)));
            }
        }
        if args.selected("api:enter_failure_reports") {
            results.push(("api:enter_failure_reports".into(), enter_failure_case(env)));
        }
        if args.selected("api:after_mount_missing_reports") {
            results.push((
                "api:after_mount_missing_reports".into(),
                after_mount_missing_case(env),
            ));
        }
    }
    for (name, r) in api {
        if args.selected(&name) {
            results.push((name, r));
        }
    }
    if let Some(mut env) = env {
        // The helper runs as nobody outside every domain: it must have survived.
        match env.helper.try_wait() {
            Ok(None) => {}
            other => results.push((
                "environment:helper_survived".into(),
                Err(format!("the nobody helper died: {other:?}")),
            )),
        }
        let _ = env.helper.kill();
        let _ = env.helper.wait();
        let _ = fs::remove_dir_all(&env.root);
    }

    let mut failed = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED");
                failed.push((name, e));
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for (name, e) in &failed {
            println!("---- {name} ----\n{e}\n");
        }
    }
    let passed = results.len() - failed.len();
    let filtered = names.len() - total_selected;
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

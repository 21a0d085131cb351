//! An id-mapped workdir: when the directory belongs to someone other than the sandbox user
//! (typically root), it is mounted so that its owner's files appear as the sandbox user's and
//! what the sandbox writes lands as the owner's. The host directory is never chowned.

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// A user namespace whose only mapping is `owner` (on disk) ↔ `uid`, and likewise for groups,
/// for `mount_setattr(MOUNT_ATTR_IDMAP)`.
///
/// # Safety
/// Forks: the caller must be single-threaded.
pub unsafe fn mapping(
    owner_uid: u32,
    uid: u32,
    owner_gid: u32,
    gid: u32,
) -> std::io::Result<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (done_r, done_w) = nix::unistd::pipe()?;
    // SAFETY: the caller guarantees single-threadedness; the child only makes syscalls.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = std::fs::File::from(ready_w).write_all(if ok { b"y" } else { b"n" });
            let _ = std::fs::File::from(done_r).read(&mut [0u8; 1]);
            // SAFETY: leave the forked child without running destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let mut answer = [0u8; 1];
            let result = (|| {
                std::fs::File::from(ready_r).read_exact(&mut answer)?;
                if answer[0] != b'y' {
                    return Err(std::io::Error::other(
                        "cannot create a user namespace for the id-mapped workdir",
                    ));
                }
                std::fs::write(
                    format!("/proc/{child}/uid_map"),
                    format!("{owner_uid} {uid} 1\n"),
                )?;
                std::fs::write(format!("/proc/{child}/setgroups"), "deny")?;
                std::fs::write(
                    format!("/proc/{child}/gid_map"),
                    format!("{owner_gid} {gid} 1\n"),
                )?;
                let f = std::fs::File::open(format!("/proc/{child}/ns/user"))?;
                Ok(OwnedFd::from(f))
            })();
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Mounts `source` (an open directory) at `target` through the id mapping `userns`.
pub fn bind_mapped(
    source: &impl AsRawFd,
    target: &std::path::Path,
    userns: &impl AsRawFd,
    extra: u64,
) -> std::io::Result<()> {
    let empty = c"";
    // SAFETY: plain syscalls on valid fds and NUL-terminated strings that outlive the calls.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        );
        if tree < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tree = tree as libc::c_int;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP | extra,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(tree);
            return Err(e);
        }
        let t = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(std::io::Error::other)?;
        let rc = libc::syscall(
            libc::SYS_move_mount,
            tree,
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        let e = std::io::Error::last_os_error();
        libc::close(tree);
        if rc < 0 {
            return Err(e);
        }
    }
    Ok(())
}

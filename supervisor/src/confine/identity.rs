//! Dropping the agent's identity and capabilities, and resolving user names.
//!
//! [`drop_to`] runs in the child after fork: raw syscalls and libc wrappers only,
//! no allocation, no locks.

use nix::errno::Errno;

use super::ConfineError;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets as two 32-bit words.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Effective, permitted and inheritable sets of the calling thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Capabilities in effect now.
    pub effective: u64,
    /// Capabilities the thread may make effective.
    pub permitted: u64,
    /// Capabilities preserved across execve for files with inheritable caps.
    pub inheritable: u64,
}

fn fail(op: &'static str) -> ConfineError {
    ConfineError::Identity {
        op,
        errno: Errno::last(),
    }
}

fn check(rc: libc::c_int, op: &'static str) -> Result<(), ConfineError> {
    if rc < 0 { Err(fail(op)) } else { Ok(()) }
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: every option used here takes integer arguments only.
    unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
}

/// Reads the calling thread's capability sets (capget).
pub fn capabilities() -> Result<CapSets, ConfineError> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: hdr and data are valid for the kernel to write; version 3 uses two
    // CapData entries.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc < 0 {
        return Err(fail("capget"));
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Empties effective, permitted and inheritable sets (lowering is always allowed).
fn clear_capabilities() -> Result<(), ConfineError> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: hdr and data are valid, properly sized version-3 structures.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc < 0 { Err(fail("capset")) } else { Ok(()) }
}

/// Drops every capability from the bounding set, so nothing exec'd later can
/// regain one. Needs CAP_SETPCAP, hence before setresuid.
fn drop_bounding_set() -> Result<(), ConfineError> {
    // Walk until the kernel says the capability does not exist (EINVAL), rather
    // than reading /proc/sys/kernel/cap_last_cap: no file I/O after fork.
    for cap in 0..64 {
        let rc = prctl(libc::PR_CAPBSET_READ, cap);
        if rc < 0 {
            if Errno::last() == Errno::EINVAL {
                break;
            }
            return Err(fail("prctl(PR_CAPBSET_READ)"));
        }
        if rc == 1 {
            check(prctl(libc::PR_CAPBSET_DROP, cap), "prctl(PR_CAPBSET_DROP)")?;
        }
    }
    Ok(())
}

/// True if any capability is still in the bounding set.
fn bounding_set_nonempty() -> bool {
    (0..64).any(|cap| prctl(libc::PR_CAPBSET_READ, cap) == 1)
}

/// Switches the calling (single-threaded, post-fork) process to `uid`:`gid`
/// with no supplementary groups but `gid`, no capabilities in any set, and
/// no_new_privs set. Refuses uid 0.
///
/// Order matters: groups and gid need CAP_SETGID and the bounding set needs
/// CAP_SETPCAP, all lost at setresuid; capset afterwards clears what setresuid
/// leaves (the inheritable set, or everything if SECBIT_KEEP_CAPS was set).
/// PR_SET_DUMPABLE is left alone: execve makes the agent dumpable again, so its
/// /proc/self stays readable to it.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), ConfineError> {
    if uid == 0 {
        return Err(ConfineError::RootUser);
    }
    // SAFETY: one gid read from a valid pointer.
    let rc = unsafe { libc::setgroups(1, &gid) };
    // EPERM with CAP_SETGID means setgroups is denied in this user namespace (an unprivileged
    // supervisor): the groups cannot change, and are only those its user already had.
    let groups_fixed = rc < 0 && Errno::last() == Errno::EPERM && setgroups_denied();
    if !groups_fixed {
        check(rc, "setgroups")?;
    }
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) }, "setresgid")?;
    // Ambient capabilities would survive setresuid and execve.
    // EINVAL: kernel older than 4.3 without ambient capabilities.
    if prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) < 0
        && Errno::last() != Errno::EINVAL
    {
        return Err(fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
    }
    drop_bounding_set()?;
    // SAFETY: integer arguments only. glibc applies it to every thread.
    check(unsafe { libc::setresuid(uid, uid, uid) }, "setresuid")?;
    clear_capabilities()?;
    check(
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1),
        "prctl(PR_SET_NO_NEW_PRIVS)",
    )?;
    verify(uid, gid, groups_fixed)
}

/// Whether this user namespace has setgroups(2) switched off (`/proc/self/setgroups` is
/// `deny`). Syscalls only, on a stack buffer: safe after fork.
fn setgroups_denied() -> bool {
    let mut buf = [0u8; 16];
    // SAFETY: a NUL-terminated literal path and a stack buffer of the given length.
    unsafe {
        let fd = libc::open(
            c"/proc/self/setgroups".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n >= 4 && &buf[..4] == b"deny"
    }
}

/// Checks the result of [`drop_to`] from the kernel's point of view.
/// `groups_fixed`: supplementary groups could not be set (see [`drop_to`]) and are not checked.
fn verify(uid: u32, gid: u32, groups_fixed: bool) -> Result<(), ConfineError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    check(
        unsafe { libc::getresuid(&mut r, &mut e, &mut s) },
        "getresuid",
    )?;
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    check(
        unsafe { libc::getresgid(&mut rg, &mut eg, &mut sg) },
        "getresgid",
    )?;
    let mut groups = [0 as libc::gid_t; 2];
    // SAFETY: the buffer holds 2 entries; more groups than that fails with EINVAL.
    let n = unsafe { libc::getgroups(2, groups.as_mut_ptr()) };
    let groups_ok = groups_fixed || (n == 1 && groups[0] == gid);
    if [r, e, s] != [uid; 3] || [rg, eg, sg] != [gid; 3] || !groups_ok {
        return Err(ConfineError::IdsMismatch {
            uid,
            gid,
            ruid: r,
            euid: e,
            suid: s,
            rgid: rg,
            egid: eg,
            sgid: sg,
        });
    }
    let caps = capabilities()?;
    if caps != CapSets::default() || bounding_set_nonempty() {
        return Err(ConfineError::CapabilitiesRemain {
            effective: caps.effective,
            permitted: caps.permitted,
            inheritable: caps.inheritable,
        });
    }
    if prctl(libc::PR_GET_NO_NEW_PRIVS, 0) != 1 {
        return Err(fail("prctl(PR_GET_NO_NEW_PRIVS)"));
    }
    Ok(())
}

/// Fields of the first non-comment line of `text` whose first field is `name`.
fn find_entry<'a>(name: &str, text: &'a str) -> impl Iterator<Item = Vec<&'a str>> {
    let name = name.to_owned();
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| !name.is_empty() && f.first() == Some(&name.as_str()))
}

/// `(uid, gid)` of `name` in /etc/passwd-format `passwd_text`
/// (`name:password:uid:gid:gecos:home:shell`). Malformed lines are ignored.
pub fn resolve_user(name: &str, passwd_text: &str) -> Option<(u32, u32)> {
    find_entry(name, passwd_text).find_map(|f| {
        let uid = f.get(2)?.parse().ok()?;
        let gid = f.get(3)?.parse().ok()?;
        Some((uid, gid))
    })
}

/// gid of `name` in /etc/group-format `group_text` (`name:password:gid:members`).
pub fn resolve_group(name: &str, group_text: &str) -> Option<u32> {
    find_entry(name, group_text).find_map(|f| f.get(2)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
# comment
root:x:0:0:root:/root:/bin/bash
broken:x:notanumber:1::/:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
agent:x:1000:1001::/home/agent:/bin/sh\r
short:x:5
";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:agent,root\nbad:x:\n";

    #[test]
    fn users() {
        assert_eq!(resolve_user("root", PASSWD), Some((0, 0)));
        assert_eq!(resolve_user("nobody", PASSWD), Some((65534, 65534)));
        assert_eq!(resolve_user("agent", PASSWD), Some((1000, 1001)));
        assert_eq!(resolve_user("broken", PASSWD), None);
        assert_eq!(resolve_user("short", PASSWD), None);
        assert_eq!(resolve_user("missing", PASSWD), None);
        assert_eq!(resolve_user("", PASSWD), None);
        assert_eq!(resolve_user("# comment", PASSWD), None);
        assert_eq!(resolve_user("nob", PASSWD), None);
    }

    #[test]
    fn groups() {
        assert_eq!(resolve_group("nogroup", GROUP), Some(65534));
        assert_eq!(resolve_group("staff", GROUP), Some(50));
        assert_eq!(resolve_group("bad", GROUP), None);
        assert_eq!(resolve_group("agent", GROUP), None);
    }
}

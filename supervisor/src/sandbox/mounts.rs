//! The sandbox's filesystem: a fresh tmpfs root holding only what the policy names, read-only
//! or read-write, the workdir at `/sandbox`, a private `/tmp`, a new `/proc` and a minimal
//! `/dev`. Runs in the sandbox's init, inside its new mount and PID namespaces, as root.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::pivot_root;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Where the new root is assembled before `pivot_root`. A tmpfs is mounted over it first,
/// so nothing is written to the host.
const STAGE: &str = "/tmp";
const STAGE_ROOT: &str = "/tmp/root";

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot {what} {path}: {source}")]
    Sys {
        what: &'static str,
        path: String,
        source: nix::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MountError {
    let path = path.display().to_string();
    move |source| MountError::Io { what, path, source }
}

fn sys(what: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> MountError {
    let path = path.display().to_string();
    move |source| MountError::Sys { what, path, source }
}

/// One host path to appear inside, at the same place or elsewhere.
#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
    /// Mount through this id mapping (a user namespace fd, see [`super::idmap`]).
    pub idmap: Option<std::sync::Arc<OwnedFd>>,
}

/// A file the supervisor makes for the sandbox (CA bundle, passwd).
#[derive(Debug, Clone)]
pub struct Injected {
    pub target: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Everything `build` needs, computed before the namespaces exist.
#[derive(Debug, Clone, Default)]
pub struct RootPlan {
    pub binds: Vec<Bind>,
    pub files: Vec<Injected>,
}

/// A bind whose source was opened before the stage covered `/tmp` (a workdir may live there).
struct Opened {
    fd: OwnedFd,
    idmap: Option<std::sync::Arc<OwnedFd>>,
    target: PathBuf,
    writable: bool,
    is_dir: bool,
    /// The host path is a symlink: recreated as one, not followed.
    link: Option<PathBuf>,
}

/// Builds the root described by `plan` and pivots into it. Returns skipped binds (sources that
/// do not exist) for the caller to report.
pub fn build(plan: &RootPlan) -> Result<Vec<PathBuf>, MountError> {
    let root = Path::new("/");
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make private", root))?;

    let mut skipped = Vec::new();
    let mut opened = Vec::new();
    for b in &plan.binds {
        let meta = match fs::symlink_metadata(&b.source) {
            Ok(m) => m,
            Err(_) => {
                skipped.push(b.source.clone());
                continue;
            }
        };
        let link = if meta.file_type().is_symlink() && b.source == b.target {
            Some(fs::read_link(&b.source).map_err(io("read link", &b.source))?)
        } else {
            None
        };
        let fd = nix::fcntl::open(
            &b.source,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open", &b.source))?;
        let is_dir = fs::metadata(&b.source).map(|m| m.is_dir()).unwrap_or(false);
        opened.push(Opened {
            fd,
            idmap: b.idmap.clone(),
            target: b.target.clone(),
            writable: b.writable,
            is_dir,
            link,
        });
    }

    let stage = Path::new(STAGE);
    mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(sys("mount the staging tmpfs on", stage))?;
    let new_root = Path::new(STAGE_ROOT);
    mkdir_p(new_root)?;
    mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(sys("mount the root tmpfs on", new_root))?;

    // Shallow targets first so deeper binds land on top of them.
    opened.sort_by_key(|o| o.target.components().count());
    for o in &opened {
        let dest = inside(new_root, &o.target);
        if let Some(link) = &o.link {
            if let Some(parent) = dest.parent() {
                mkdir_p(parent)?;
            }
            if fs::symlink_metadata(&dest).is_err() {
                symlink(link, &dest).map_err(io("create symlink", &dest))?;
            }
            continue;
        }
        if o.is_dir {
            mkdir_p(&dest)?;
        } else {
            touch(&dest)?;
        }
        if let Some(userns) = &o.idmap {
            let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            if !o.writable {
                attrs |= MOUNT_ATTR_RDONLY;
            }
            super::idmap::bind_mapped(&o.fd, &dest, &**userns, attrs)
                .map_err(io("id-map mount", &o.target))?;
            continue;
        }
        let src = PathBuf::from(format!("/proc/self/fd/{}", o.fd.as_raw_fd()));
        mount(
            Some(&src),
            &dest,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("bind mount", &o.target))?;
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if !o.writable {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        set_attrs(&dest, attrs)?;
    }

    mount_tmp(new_root)?;
    mount_proc(new_root)?;
    mount_dev(new_root)?;

    for f in &plan.files {
        let dest = inside(new_root, &f.target);
        if let Some(parent) = dest.parent() {
            mkdir_p(parent)?;
        }
        if fs::symlink_metadata(&dest).is_ok() {
            // Over a bound host file (e.g. /etc/passwd): write beside it and bind on top.
            let staged = inside(Path::new(STAGE), &f.target);
            if let Some(parent) = staged.parent() {
                mkdir_p(parent)?;
            }
            write_file(&staged, &f.contents, f.mode)?;
            mount(
                Some(&staged),
                &dest,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind mount", &f.target))?;
            set_attrs(
                &dest,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )?;
        } else {
            write_file(&dest, &f.contents, f.mode)?;
        }
    }

    let old = new_root.join(".old-root");
    mkdir_p(&old)?;
    pivot_root(new_root, &old).map_err(sys("pivot_root into", new_root))?;
    std::env::set_current_dir("/").map_err(io("change directory to", root))?;
    umount2("/.old-root", MntFlags::MNT_DETACH).map_err(sys("detach", Path::new("/.old-root")))?;
    fs::remove_dir("/.old-root").map_err(io("remove", Path::new("/.old-root")))?;
    // The root itself is read-only: only the binds and tmpfs mounts below it take writes.
    set_attrs_flat(
        root,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )?;
    Ok(skipped)
}

fn mount_tmp(root: &Path) -> Result<(), MountError> {
    let tmp = root.join("tmp");
    mkdir_p(&tmp)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(sys("mount a private /tmp on", &tmp))
}

fn mount_proc(root: &Path) -> Result<(), MountError> {
    let proc_ = root.join("proc");
    mkdir_p(&proc_)?;
    mount(
        Some("proc"),
        &proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys("mount /proc on", &proc_))?;
    // Kernel knobs stay read-only even for a process that regained privileges.
    for sub in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        let p = proc_.join(sub);
        if fs::symlink_metadata(&p).is_ok() {
            mount(
                Some(&p),
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys("bind mount", &p))?;
            set_attrs(
                &p,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )?;
        }
    }
    Ok(())
}

fn mount_dev(root: &Path) -> Result<(), MountError> {
    let dev = root.join("dev");
    mkdir_p(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .map_err(sys("mount /dev on", &dev))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        if fs::metadata(&host).is_err() {
            continue;
        }
        let dest = dev.join(node);
        touch(&dest)?;
        mount(
            Some(&host),
            &dest,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("bind mount", &host))?;
        set_attrs(&dest, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(sys("mount a private devpts on", &pts))?;
    let shm = dev.join("shm");
    mkdir_p(&shm)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(sys("mount /dev/shm on", &shm))?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(name);
        symlink(target, &p).map_err(io("create symlink", &p))?;
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets mount attributes on `path` and every mount below it (`mount_setattr`, Linux 5.12),
/// so a read-only bind has no writable submount.
fn set_attrs(path: &Path, attrs: u64) -> Result<(), MountError> {
    setattr(path, attrs, AT_RECURSIVE)
}

fn set_attrs_flat(path: &Path, attrs: u64) -> Result<(), MountError> {
    setattr(path, attrs, 0)
}

fn setattr(path: &Path, attrs: u64, flags: libc::c_uint) -> Result<(), MountError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| MountError::Io {
        what: "use",
        path: path.display().to_string(),
        source: std::io::Error::other("path contains a NUL byte"),
    })?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `c` is a valid C string and `attr` a correctly sized mount_attr that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(MountError::Io {
            what: "set mount attributes on",
            path: path.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// `target` (absolute) placed under `root`.
fn inside(root: &Path, target: &Path) -> PathBuf {
    root.join(target.strip_prefix("/").unwrap_or(target))
}

fn mkdir_p(p: &Path) -> Result<(), MountError> {
    fs::create_dir_all(p).map_err(io("create directory", p))
}

fn touch(p: &Path) -> Result<(), MountError> {
    if let Some(parent) = p.parent() {
        mkdir_p(parent)?;
    }
    if fs::symlink_metadata(p).is_ok() {
        return Ok(());
    }
    fs::File::create(p).map(|_| ()).map_err(io("create", p))
}

fn write_file(p: &Path, contents: &[u8], mode: u32) -> Result<(), MountError> {
    fs::write(p, contents).map_err(io("write", p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io("set permissions on", p))
}

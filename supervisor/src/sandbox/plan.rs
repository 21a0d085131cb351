//! From policy to plan: which host paths appear in the sandbox and how, what Landlock allows,
//! and which user the command runs as. Computed before any namespace exists.

use super::mounts::{Bind, Injected, RootPlan};
use crate::confine::landlock::FsRules;
use openshell_proto::policy::{FilesystemPolicy, ProcessPolicy};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the workdir appears.
pub const WORKDIR: &str = "/sandbox";
/// Files the supervisor makes for the sandbox (CA bundle).
pub const RUN_DIR: &str = "/run/openshell";

/// Paths the sandbox always gets its own of, whatever the policy lists.
fn built_in(p: &str) -> bool {
    p == "/proc"
        || p == "/tmp"
        || p == "/dev"
        || p.starts_with("/dev/")
        || p == WORKDIR
        || p.starts_with("/proc/")
}

/// The mounts and Landlock rules for `fs`, with the workdir from the host (through
/// `workdir_idmap` when its owner is not the sandbox user).
pub fn filesystem(
    fs: &FilesystemPolicy,
    workdir: &Path,
    workdir_idmap: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    files: Vec<Injected>,
) -> (RootPlan, FsRules) {
    let mut binds = Vec::new();
    for (list, writable) in [(&fs.read_only, false), (&fs.read_write, true)] {
        for p in list.iter() {
            if built_in(p) {
                continue;
            }
            binds.push(Bind {
                source: PathBuf::from(p),
                target: PathBuf::from(p),
                writable,
                idmap: None,
            });
        }
    }
    let workdir_rw = fs.include_workdir() || fs.read_write.iter().any(|p| p == WORKDIR);
    let workdir_ro = fs.read_only.iter().any(|p| p == WORKDIR);
    if workdir_rw || workdir_ro {
        binds.push(Bind {
            source: workdir.to_path_buf(),
            target: PathBuf::from(WORKDIR),
            writable: workdir_rw,
            idmap: workdir_idmap,
        });
    }

    let mut read_only: Vec<PathBuf> = fs
        .read_only
        .iter()
        .filter(|p| !p.starts_with("/dev/") && p.as_str() != WORKDIR)
        .map(PathBuf::from)
        .collect();
    read_only.push(PathBuf::from(RUN_DIR));
    let mut read_write: Vec<PathBuf> = fs
        .read_write
        .iter()
        .filter(|p| !p.starts_with("/dev/") && p.as_str() != WORKDIR)
        .map(PathBuf::from)
        .collect();
    // A private /tmp and a /dev holding only harmless nodes (null, zero, tty, pts...).
    for p in ["/tmp", "/dev"] {
        if !read_write.iter().any(|x| x == Path::new(p)) {
            read_write.push(PathBuf::from(p));
        }
    }
    if workdir_rw {
        read_write.push(PathBuf::from(WORKDIR));
    } else if workdir_ro {
        read_only.push(PathBuf::from(WORKDIR));
    }
    (
        RootPlan { binds, files },
        FsRules {
            read_only,
            read_write,
        },
    )
}

/// Who the command runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Replacement /etc/passwd and /etc/group when the user or group had to be made up.
    pub files: Vec<Injected>,
}

/// Numeric ids for made-up users, clear of system and typical login ranges.
const MAPPED_ID: u32 = 10_001;

/// Resolves `run_as_user`/`run_as_group` (names or numbers; `sandbox` by default) against
/// the host's databases. A missing `sandbox` user is mapped: to the workdir's owner when that
/// is not root (so files the agent writes stay the developer's), else to a fixed id.
pub fn identity(p: Option<&ProcessPolicy>, workdir: &Path) -> Result<Identity, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = p
        .and_then(|p| p.run_as_user.clone())
        .unwrap_or_else(|| "sandbox".into());
    let group_name = p
        .and_then(|p| p.run_as_group.clone())
        .unwrap_or_else(|| user.clone());
    let owner = std::fs::metadata(workdir).map(|m| m.uid()).unwrap_or(0);
    let owner_gid = std::fs::metadata(workdir).map(|m| m.gid()).unwrap_or(0);

    let mut files = Vec::new();
    let (uid, primary_gid, made_user) = match lookup(&passwd, &user) {
        Some((uid, gid)) => (uid, gid, false),
        None => match user.parse::<u32>() {
            Ok(n) => (n, n, false),
            Err(_) if user == "sandbox" => {
                let id = if owner != 0 { owner } else { MAPPED_ID };
                let gid = if owner != 0 { owner_gid } else { MAPPED_ID };
                (id, gid, true)
            }
            Err(_) => {
                return Err(format!(
                    "process.run_as_user: no user `{user}` on this host; use an existing user, a numeric id, or `sandbox`"
                ));
            }
        },
    };
    if uid == 0 {
        return Err(
            "process.run_as_user: the command never runs as root; use `sandbox` or another user"
                .into(),
        );
    }
    let (gid, made_group) = match lookup(&group, &group_name) {
        Some((gid, _)) => (gid, false),
        None => match group_name.parse::<u32>() {
            Ok(n) => (n, false),
            Err(_) if group_name == user && made_user => (primary_gid, true),
            Err(_) if group_name == "sandbox" => (primary_gid, true),
            Err(_) => {
                return Err(format!(
                    "process.run_as_group: no group `{group_name}` on this host; use an existing group, a numeric id, or `sandbox`"
                ));
            }
        },
    };
    if gid == 0 {
        return Err("process.run_as_group: the command never runs with group root".into());
    }
    if made_user {
        let mut text = without_id(&passwd, uid, 2);
        text.push_str(&format!(
            "{user}:x:{uid}:{gid}:OpenShell sandbox:{WORKDIR}:/bin/bash\n"
        ));
        files.push(Injected {
            target: PathBuf::from("/etc/passwd"),
            contents: text.into_bytes(),
            mode: 0o644,
        });
    }
    if made_group {
        let mut text = without_id(&group, gid, 2);
        text.push_str(&format!("{group_name}:x:{gid}:\n"));
        files.push(Injected {
            target: PathBuf::from("/etc/group"),
            contents: text.into_bytes(),
            mode: 0o644,
        });
    }
    Ok(Identity {
        user,
        uid,
        gid,
        files,
    })
}

/// (id, primary gid) of `name` in a passwd- or group-format text.
fn lookup(db: &str, name: &str) -> Option<(u32, u32)> {
    db.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            let id = f[2].parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        } else {
            None
        }
    })
}

/// The database without entries whose id field equals `id` (a mapped user replaces them).
fn without_id(db: &str, id: u32, field: usize) -> String {
    let mut out = String::new();
    for l in db.lines() {
        let taken = l.split(':').nth(field).and_then(|f| f.parse::<u32>().ok()) == Some(id);
        if !taken {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_read_passwd_format() {
        let db = "root:x:0:0::/root:/bin/bash\nalice:x:1000:1001::/home/alice:/bin/sh\n";
        assert_eq!(lookup(db, "alice"), Some((1000, 1001)));
        assert_eq!(lookup(db, "bob"), None);
        assert_eq!(without_id(db, 1000, 2), "root:x:0:0::/root:/bin/bash\n");
    }

    #[test]
    fn built_ins_are_never_bound_from_the_host() {
        let fs = FilesystemPolicy {
            include_workdir: Some(true),
            read_only: vec!["/usr".into(), "/proc".into(), "/dev/urandom".into()],
            read_write: vec!["/tmp".into(), "/dev/null".into()],
        };
        let (plan, rules) = filesystem(&fs, Path::new("/work"), None, Vec::new());
        let targets: Vec<_> = plan
            .binds
            .iter()
            .map(|b| b.target.display().to_string())
            .collect();
        assert_eq!(targets, vec!["/usr", "/sandbox"]);
        assert!(rules.read_write.contains(&PathBuf::from("/sandbox")));
        assert!(rules.read_only.contains(&PathBuf::from("/proc")));
    }
}

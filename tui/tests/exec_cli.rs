//! `sandbox exec`, `upload` and `download` through a real gateway and supervisor: output
//! streams back, stdin goes in, the exit status is the command's, and files round-trip.

use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        openshell_e2e::require_root();
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_openshell"));
        c.args(args)
            .env("OPENSHELL_STATE_DIR", self.dir.path().join("state"))
            .env("OPENSHELL_GATEWAY_SOCKET", self.dir.path().join("gw.sock"));
        c
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openshell");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cmd(&["sandbox", "delete", "--all"]).output();
        let _ = self.cmd(&["gateway", "stop"]).output();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_upload_download() {
    let env = Env::new();
    let out = env.run(&["sandbox", "create", "--name", "box"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = env.run(
        &[
            "sandbox",
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "id -un; pwd; echo oops >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "sandbox\n/sandbox\n");
    assert_eq!(text(&out.stderr), "oops\n");

    let out = env.run(
        &["sandbox", "exec", "box", "--", "tr", "a-z", "A-Z"],
        b"piped through\n",
    );
    assert_eq!(
        text(&out.stdout),
        "PIPED THROUGH\n",
        "{}",
        text(&out.stderr)
    );

    // The same confinement as the main command.
    let out = env.run(&["sandbox", "exec", "box", "--", "cat", "/etc/shadow"], b"");
    assert_ne!(out.status.code(), Some(0));

    let src = env.dir.path().join("payload");
    std::fs::create_dir_all(src.join("deep")).expect("mkdir");
    std::fs::write(src.join("deep/file.txt"), "round trip\n").expect("write");
    let out = env.run(
        &[
            "sandbox",
            "upload",
            "box",
            src.to_str().expect("utf-8"),
            "/sandbox/in",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(
        &[
            "sandbox",
            "exec",
            "box",
            "--",
            "cat",
            "/sandbox/in/payload/deep/file.txt",
        ],
        b"",
    );
    assert_eq!(text(&out.stdout), "round trip\n");

    let dst = env.dir.path().join("back");
    let out = env.run(
        &[
            "sandbox",
            "download",
            "box",
            "/sandbox/in/payload",
            dst.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dst.join("payload/deep/file.txt"))
            .ok()
            .as_deref(),
        Some("round trip\n")
    );

    let out = env.run(&["sandbox", "exec", "nope", "--", "true"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("known sandboxes are: box"),
        "{}",
        text(&out.stderr)
    );
}

//! Handing descriptors from the sandbox's PID 1 to the supervisor (SCM_RIGHTS): the sockets
//! and the tun device are made inside the sandbox's network namespace, where PID 1 holds the
//! privileges to make them even when the supervisor runs unprivileged.

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A connected pair: one end for each side of the clone.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `fds` with a one-byte message.
pub fn send(sock: &OwnedFd, fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(b"n")];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Sends an error instead of descriptors.
pub fn send_error(sock: &OwnedFd, message: &str) {
    let text = format!("E{message}");
    let iov = [IoSlice::new(text.as_bytes())];
    let _ = sendmsg::<()>(sock.as_raw_fd(), &iov, &[], MsgFlags::empty(), None);
}

/// Receives between `min` and 8 descriptors, or the error the other side sent, or says it
/// went away.
pub fn recv(sock: &OwnedFd, min: usize) -> Result<Vec<OwnedFd>, String> {
    let mut buf = [0u8; 4096];
    let mut fds = Vec::new();
    let len = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("cannot receive the sandbox's network: {e}"))?;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors for us; we own them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        msg.bytes
    };
    if len == 0 {
        return Err("the sandbox exited while setting up its network".into());
    }
    if buf[0] == b'E' {
        return Err(String::from_utf8_lossy(&buf[1..len]).into_owned());
    }
    if fds.len() < min {
        return Err(format!(
            "expected {min} descriptors from the sandbox, got {}",
            fds.len()
        ));
    }
    Ok(fds)
}

/// Sends `payload` with `fds` as one message.
pub fn send_msg(sock: &impl AsRawFd, payload: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message and the descriptors sent with it; an empty payload means the other
/// side closed.
pub fn recv_msg(sock: &impl AsRawFd) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds = Vec::new();
    let len = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors for us; we own them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        msg.bytes
    };
    buf.truncate(len);
    Ok((buf, fds))
}

//! The catcher: reads every packet the sandbox routes to the tun, reports it
//! and answers it so the sender fails at once instead of timing out.
//!
//! Answers: a TCP segment gets a RST (so `connect()` fails with
//! ECONNREFUSED), a UDP datagram an ICMP(v6) port unreachable (so a connected
//! UDP socket gets ECONNREFUSED), anything else an ICMP(v6) "administratively
//! prohibited". Answers are one for one with the packets read, never to ICMP
//! errors, multicast or broadcast, so there is no amplification or loop.
//! Reports are limited to one per (protocol, destination, port) per
//! [`REPORT_INTERVAL`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::icmpv6::DestUnreachableCode;
use etherparse::{
    Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber, IpSlice, Ipv6ExtensionSlice, PacketBuilder,
    PacketBuilderStep, TcpHeaderSlice, UdpHeaderSlice,
};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The transport protocol of a direct attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP over IPv4 or ICMPv6 over IPv6.
    Icmp,
    /// Any other IP protocol number (raw sockets, SCTP, GRE, ...).
    Other(u8),
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Other(n) => write!(f, "ip-proto-{n}"),
        }
    }
}

/// A packet the sandbox tried to send somewhere other than the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectAttempt {
    pub proto: Proto,
    /// Source address and port inside the sandbox (port 0 if the protocol has none).
    pub src: SocketAddr,
    pub dst: IpAddr,
    /// Destination port (0 if the protocol has none).
    pub dst_port: u16,
}

/// At most one report per (protocol, destination, port) in this interval.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Bound on the flows remembered by the report limiter. Past it (more new
/// flows in one interval than this), reports are dropped and counted.
const MAX_TRACKED_FLOWS: usize = 4096;

const ANSWER_HOP_LIMIT: u8 = 64;
/// An ICMPv6 error must fit in the minimum IPv6 MTU (RFC 4443 2.4(c)).
const IPV6_MIN_MTU: usize = 1280;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;

/// Reads packets from `tun` (the fd from
/// [`setup_sandbox_network`](super::ifconfig::setup_sandbox_network)) until
/// reading fails or the future is dropped, answering each one and passing
/// each new attempt to `report` (at most once per flow per [`REPORT_INTERVAL`]).
///
/// Must run inside a tokio runtime with IO enabled. `report` runs on the
/// catcher's task: keep it cheap (send to a channel). Returns an error when
/// the fd fails, e.g. EBADFD once the tun interface was deleted.
pub async fn run(tun: OwnedFd, report: impl Fn(DirectAttempt) + Send + 'static) -> io::Result<()> {
    set_nonblocking(&tun)?;
    // SAFETY: an OwnedFd is a valid open fd that always reports the same raw
    // fd, and it stays open until the AsyncFd that now owns it is dropped.
    let tun =
        unsafe { AsyncFd::register_with_interest(tun, Interest::READABLE | Interest::WRITABLE) }?;
    // Without IFF_VNET_HDR the tun hands out one packet of at most MTU bytes
    // per read; 64 KiB covers any MTU.
    let mut packet = vec![0u8; 65536];
    let mut answer = Vec::with_capacity(IPV6_MIN_MTU);
    let mut limiter = ReportLimiter::default();
    loop {
        let len = read_packet(&tun, &mut packet).await?;
        if len == 0 {
            return Ok(());
        }
        let Some(caught) = inspect(&packet[..len], &mut answer) else {
            continue;
        };
        // Answer first: the sender is blocked until it hears back.
        if caught.answered
            && let Err(e) = write_packet(&tun, &answer).await
        {
            tracing::debug!(error = %e, "cannot write an answer to the tun");
        }
        if limiter.allow(&caught.attempt, Instant::now()) {
            report(caught.attempt);
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

async fn read_packet(tun: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // ERROR too: when the tun interface goes away the fd polls as EPOLLERR
        // only (never readable), and the read then says why (EBADFD).
        let mut guard = tun.ready(Interest::READABLE | Interest::ERROR).await?;
        match guard
            .try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(io::Error::from))
        {
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_packet(tun: &AsyncFd<OwnedFd>, packet: &[u8]) -> io::Result<()> {
    loop {
        let mut guard = tun.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), packet).map_err(io::Error::from)) {
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A tun write takes the whole packet or fails; it is never partial.
            Ok(result) => return result.map(drop),
            Err(_would_block) => continue,
        }
    }
}

/// What the catcher made of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caught {
    pub(crate) attempt: DirectAttempt,
    /// Whether an answer was written into the answer buffer.
    pub(crate) answered: bool,
}

/// Parses one IP packet read from the tun and writes the answer (if any) into
/// `answer`. Returns None for packets that are no attempt: unparsable ones,
/// later fragments (the first fragment carries the ports and was answered),
/// and the kernel's own link housekeeping (IGMP, ICMPv6 ND and MLD).
pub(crate) fn inspect(packet: &[u8], answer: &mut Vec<u8>) -> Option<Caught> {
    answer.clear();
    let ip = IpSlice::from_slice(packet).ok()?;
    let src = ip.source_addr();
    let dst = ip.destination_addr();
    let first_fragment = match &ip {
        IpSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        IpSlice::Ipv6(v6) => v6.extensions().clone().into_iter().all(|ext| match ext {
            Ipv6ExtensionSlice::Fragment(frag) => frag.fragment_offset().value() == 0,
            _ => true,
        }),
    };
    if !first_fragment {
        return None;
    }
    let payload = ip.payload();
    let data = payload.payload;
    let is_v6 = matches!(ip, IpSlice::Ipv6(_));
    // Never answer what has no single unicast sender and receiver.
    let answerable = is_unicast(src) && is_unicast(dst);

    let mut attempt = DirectAttempt {
        proto: Proto::Other(payload.ip_number.0),
        src: SocketAddr::new(src, 0),
        dst,
        dst_port: 0,
    };
    let mut answered = false;
    match (is_v6, payload.ip_number) {
        (_, IpNumber::TCP) => {
            let tcp = TcpHeaderSlice::from_slice(data).ok()?;
            attempt.proto = Proto::Tcp;
            attempt.src.set_port(tcp.source_port());
            attempt.dst_port = tcp.destination_port();
            // Never answer a RST with a RST.
            if answerable && !tcp.rst() {
                let segment_len = data.len().saturating_sub(tcp.slice().len());
                answered = tcp_reset(src, dst, &tcp, segment_len, answer);
            }
        }
        (_, IpNumber::UDP) => {
            let udp = UdpHeaderSlice::from_slice(data).ok()?;
            attempt.proto = Proto::Udp;
            attempt.src.set_port(udp.source_port());
            attempt.dst_port = udp.destination_port();
            if answerable {
                answered = unreachable(&ip, packet, Unreachable::Port, answer);
            }
        }
        (false, IpNumber::IGMP) => return None,
        (false, IpNumber::ICMP) => {
            let icmp_type = *data.first()?;
            attempt.proto = Proto::Icmp;
            // Dest unreachable, source quench, redirect, time exceeded,
            // parameter problem: no ICMP error about an ICMP error.
            let is_error = matches!(icmp_type, 3 | 4 | 5 | 11 | 12);
            if answerable && !is_error {
                answered = unreachable(&ip, packet, Unreachable::Prohibited, answer);
            }
        }
        (true, IpNumber::IPV6_ICMP) => {
            let icmp_type = *data.first()?;
            // MLD, router/neighbour discovery and friends: the kernel's own
            // link housekeeping on the tun, not something a program sent.
            if (130..=143).contains(&icmp_type) {
                return None;
            }
            attempt.proto = Proto::Icmp;
            // ICMPv6 types below 128 are errors (RFC 4443 2.1).
            if answerable && icmp_type >= 128 {
                answered = unreachable(&ip, packet, Unreachable::Prohibited, answer);
            }
        }
        _ => {
            if answerable {
                answered = unreachable(&ip, packet, Unreachable::Prohibited, answer);
            }
        }
    }
    if !answered {
        answer.clear();
    }
    Some(Caught { attempt, answered })
}

fn is_unicast(addr: IpAddr) -> bool {
    !addr.is_unspecified() && !addr.is_multicast() && addr != IpAddr::V4(Ipv4Addr::BROADCAST)
}

/// Starts an answer packet from `from` to `to` (both of one family).
fn reply_ip(from: IpAddr, to: IpAddr) -> Option<PacketBuilderStep<IpHeaders>> {
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => Some(PacketBuilder::ipv4(
            f.octets(),
            t.octets(),
            ANSWER_HOP_LIMIT,
        )),
        (IpAddr::V6(f), IpAddr::V6(t)) => Some(PacketBuilder::ipv6(
            f.octets(),
            t.octets(),
            ANSWER_HOP_LIMIT,
        )),
        _ => None,
    }
}

/// Builds the RST for a TCP segment sent from `src` to `dst` (RFC 9293 3.10.7.1):
/// if the segment has an ACK, the RST takes its sequence number from it;
/// otherwise it is RST+ACK acknowledging the whole segment (for a SYN that is
/// seq + 1, which is exactly what a socket in SYN-SENT accepts).
fn tcp_reset(
    src: IpAddr,
    dst: IpAddr,
    tcp: &TcpHeaderSlice<'_>,
    segment_len: usize,
    out: &mut Vec<u8>,
) -> bool {
    let Some(ip) = reply_ip(dst, src) else {
        return false;
    };
    let builder = if tcp.ack() {
        ip.tcp(
            tcp.destination_port(),
            tcp.source_port(),
            tcp.acknowledgment_number(),
            0,
        )
        .rst()
    } else {
        // The segment length counts SYN and FIN as one each; wrapping is the
        // sequence space's arithmetic.
        let seg_len = segment_len as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
        ip.tcp(tcp.destination_port(), tcp.source_port(), 0, 0)
            .rst()
            .ack(tcp.sequence_number().wrapping_add(seg_len))
    };
    builder.write(out, &[]).is_ok()
}

#[derive(Clone, Copy)]
enum Unreachable {
    /// Port unreachable: ECONNREFUSED for the sender.
    Port,
    /// Communication administratively prohibited (ICMP code 13, ICMPv6 code 1).
    Prohibited,
}

/// Builds an ICMP(v6) destination unreachable for `packet`, from its
/// destination back to its source, quoting the original IP header and the
/// first 8 bytes of its payload (IPv4, RFC 792; that is what the kernel needs
/// to find the socket) or as much as fits in 1280 bytes (IPv6, RFC 4443).
fn unreachable(ip: &IpSlice<'_>, packet: &[u8], why: Unreachable, out: &mut Vec<u8>) -> bool {
    let Some(builder) = reply_ip(ip.destination_addr(), ip.source_addr()) else {
        return false;
    };
    let written = match ip {
        IpSlice::Ipv4(v4) => {
            let quote_len = usize::from(v4.header().ihl()) * 4 + 8;
            let quote = &packet[..packet.len().min(quote_len)];
            let header = match why {
                Unreachable::Port => DestUnreachableHeader::Port,
                Unreachable::Prohibited => DestUnreachableHeader::FilterProhibited,
            };
            builder
                .icmpv4(Icmpv4Type::DestinationUnreachable(header))
                .write(out, quote)
        }
        IpSlice::Ipv6(_) => {
            let quote_len = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_HEADER_LEN;
            let quote = &packet[..packet.len().min(quote_len)];
            let code = match why {
                Unreachable::Port => DestUnreachableCode::Port,
                Unreachable::Prohibited => DestUnreachableCode::Prohibited,
            };
            builder
                .icmpv6(Icmpv6Type::DestinationUnreachable(code))
                .write(out, quote)
        }
    };
    written.is_ok()
}

/// Remembers when each flow was last reported.
#[derive(Default)]
struct ReportLimiter {
    last_report: HashMap<(Proto, IpAddr, u16), Instant>,
    last_prune: Option<Instant>,
    dropped: u64,
}

impl ReportLimiter {
    fn allow(&mut self, attempt: &DirectAttempt, now: Instant) -> bool {
        let key = (attempt.proto, attempt.dst, attempt.dst_port);
        if let Some(last) = self.last_report.get_mut(&key) {
            if now.duration_since(*last) < REPORT_INTERVAL {
                return false;
            }
            *last = now;
            return true;
        }
        if self.last_report.len() >= MAX_TRACKED_FLOWS {
            // Prune at most once per interval so a flood of new flows costs
            // O(1) per packet, not a scan of the table each time.
            let due = self
                .last_prune
                .is_none_or(|t| now.duration_since(t) >= REPORT_INTERVAL);
            if due {
                self.last_prune = Some(now);
                self.last_report
                    .retain(|_, last| now.duration_since(*last) < REPORT_INTERVAL);
                if self.dropped > 0 {
                    tracing::warn!(
                        dropped = self.dropped,
                        "too many distinct direct egress attempts; some were not reported"
                    );
                    self.dropped = 0;
                }
            }
            if self.last_report.len() >= MAX_TRACKED_FLOWS {
                self.dropped += 1;
                return false;
            }
        }
        self.last_report.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Slice, Icmpv6Slice, TcpSlice};
    use std::net::Ipv6Addr;

    const SANDBOX4: [u8; 4] = [10, 255, 255, 1];
    const REMOTE4: [u8; 4] = [198, 51, 100, 7];
    const SANDBOX6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6f73, 0x6873, 0, 0, 0, 0, 1);
    const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

    fn syn4() -> Vec<u8> {
        let mut p = Vec::new();
        PacketBuilder::ipv4(SANDBOX4, REMOTE4, 64)
            .tcp(40000, 443, 0xffff_fff0, 64240)
            .syn()
            .write(&mut p, &[])
            .expect("build syn");
        p
    }

    #[test]
    fn syn_gets_a_valid_rst_ack() {
        let mut out = Vec::new();
        let caught = inspect(&syn4(), &mut out).expect("a syn is an attempt");
        assert_eq!(
            caught.attempt,
            DirectAttempt {
                proto: Proto::Tcp,
                src: "10.255.255.1:40000".parse().expect("addr"),
                dst: IpAddr::V4(Ipv4Addr::from(REMOTE4)),
                dst_port: 443,
            }
        );
        assert!(caught.answered);
        let ip = IpSlice::from_slice(&out).expect("answer parses");
        assert_eq!(ip.source_addr(), IpAddr::V4(Ipv4Addr::from(REMOTE4)));
        assert_eq!(ip.destination_addr(), IpAddr::V4(Ipv4Addr::from(SANDBOX4)));
        let v4 = ip.ipv4().expect("v4");
        let tcp = TcpSlice::from_slice(ip.payload().payload).expect("tcp");
        assert!(tcp.rst() && tcp.ack() && !tcp.syn());
        assert_eq!(tcp.source_port(), 443);
        assert_eq!(tcp.destination_port(), 40000);
        assert_eq!(tcp.acknowledgment_number(), 0xffff_fff1);
        let header = v4.header().to_header();
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&header, &[])
            .expect("checksum");
        assert_eq!(tcp.checksum(), want);
    }

    #[test]
    fn udp6_gets_port_unreachable_quoting_the_datagram() {
        let mut datagram = Vec::new();
        PacketBuilder::ipv6(SANDBOX6.octets(), REMOTE6.octets(), 64)
            .udp(5353, 53)
            .write(&mut datagram, &[7u8; 2000])
            .expect("build udp");
        let mut out = Vec::new();
        let caught = inspect(&datagram, &mut out).expect("udp is an attempt");
        assert_eq!(caught.attempt.proto, Proto::Udp);
        assert_eq!(caught.attempt.dst_port, 53);
        assert_eq!(caught.attempt.src.port(), 5353);
        assert!(caught.answered);
        assert_eq!(out.len(), IPV6_MIN_MTU);
        let ip = IpSlice::from_slice(&out).expect("answer parses");
        let v6 = ip.ipv6().expect("v6").header().to_header();
        let icmp = Icmpv6Slice::from_slice(ip.payload().payload).expect("icmpv6");
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port)
        );
        assert_eq!(icmp.payload(), &datagram[..IPV6_MIN_MTU - 48]);
        let want = icmp
            .header()
            .icmp_type
            .calc_checksum(v6.source, v6.destination, icmp.payload())
            .expect("checksum");
        assert_eq!(icmp.header().checksum, want);
    }

    #[test]
    fn echo4_gets_admin_prohibited_quoting_header_and_8_bytes() {
        let mut echo = Vec::new();
        PacketBuilder::ipv4(SANDBOX4, REMOTE4, 64)
            .icmpv4_echo_request(9, 1)
            .write(&mut echo, b"0123456789abcdef")
            .expect("build echo");
        let mut out = Vec::new();
        let caught = inspect(&echo, &mut out).expect("echo is an attempt");
        assert_eq!(caught.attempt.proto, Proto::Icmp);
        assert!(caught.answered);
        let ip = IpSlice::from_slice(&out).expect("answer parses");
        let icmp = Icmpv4Slice::from_slice(ip.payload().payload).expect("icmp");
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FilterProhibited)
        );
        assert_eq!(icmp.payload(), &echo[..28]);
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
    }

    #[test]
    fn errors_multicast_and_housekeeping_are_not_answered() {
        let mut out = Vec::new();
        // An ICMP error is reported but never answered.
        let mut err = Vec::new();
        PacketBuilder::ipv4(SANDBOX4, REMOTE4, 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::Port,
            ))
            .write(&mut err, &syn4())
            .expect("build");
        let caught = inspect(&err, &mut out).expect("reported");
        assert!(!caught.answered && out.is_empty());
        // Multicast UDP (mDNS) is reported but not answered.
        let mut mdns = Vec::new();
        PacketBuilder::ipv4(SANDBOX4, [224, 0, 0, 251], 1)
            .udp(5353, 5353)
            .write(&mut mdns, b"q")
            .expect("build");
        let caught = inspect(&mdns, &mut out).expect("reported");
        assert!(!caught.answered && out.is_empty());
        // A router solicitation is the kernel's, not an attempt.
        let mut rs = Vec::new();
        PacketBuilder::ipv6(
            Ipv6Addr::UNSPECIFIED.octets(),
            "ff02::2".parse::<Ipv6Addr>().expect("addr").octets(),
            255,
        )
        .icmpv6_raw(133, 0, [0; 4])
        .write(&mut rs, &[])
        .expect("build");
        assert!(inspect(&rs, &mut out).is_none());
        // A RST is never answered.
        let mut rst = Vec::new();
        PacketBuilder::ipv4(SANDBOX4, REMOTE4, 64)
            .tcp(1, 2, 3, 0)
            .rst()
            .write(&mut rst, &[])
            .expect("build");
        let caught = inspect(&rst, &mut out).expect("reported");
        assert!(!caught.answered);
        // Garbage is ignored.
        assert!(inspect(&[0x45, 0, 1], &mut out).is_none());
    }

    #[test]
    fn limiter_reports_a_flow_once_per_interval() {
        let mut limiter = ReportLimiter::default();
        let attempt = DirectAttempt {
            proto: Proto::Udp,
            src: "10.255.255.1:1".parse().expect("addr"),
            dst: IpAddr::V4(Ipv4Addr::from(REMOTE4)),
            dst_port: 53,
        };
        let t0 = Instant::now();
        assert!(limiter.allow(&attempt, t0));
        assert!(!limiter.allow(&attempt, t0 + Duration::from_millis(500)));
        let other_port = DirectAttempt {
            dst_port: 54,
            ..attempt
        };
        assert!(limiter.allow(&other_port, t0 + Duration::from_millis(500)));
        assert!(limiter.allow(&attempt, t0 + REPORT_INTERVAL));
        // The table is bounded: a flood of new flows is cut off, then pruned.
        for port in 0..(MAX_TRACKED_FLOWS as u16 + 10) {
            let a = DirectAttempt {
                proto: Proto::Tcp,
                dst_port: port,
                ..attempt
            };
            limiter.allow(&a, t0 + REPORT_INTERVAL);
        }
        assert!(limiter.last_report.len() <= MAX_TRACKED_FLOWS);
        assert!(limiter.dropped > 0);
        let later = t0 + 3 * REPORT_INTERVAL;
        let fresh = DirectAttempt {
            dst_port: 9,
            ..attempt
        };
        assert!(limiter.allow(&fresh, later));
        assert_eq!(limiter.last_report.len(), 1);
    }
}

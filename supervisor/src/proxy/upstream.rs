//! Reaching the destination: names resolved on the host (or pinned with `--resolve`), then a
//! TCP connection to the first address that answers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Names pinned to addresses, like curl's `--resolve`.
#[derive(Debug, Clone, Default)]
pub struct Pins(HashMap<String, Vec<IpAddr>>);

impl Pins {
    /// Parses `host=ip` items (also `host=ip1,ip2` when given one at a time).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Pins, String> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (host, ip) = item.split_once('=').ok_or_else(|| {
                format!("`{item}` is not HOST=IP (for example api.github.com=10.0.0.5)")
            })?;
            let ip: IpAddr = ip
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| format!("`{ip}` in `{item}` is not an IP address"))?;
            map.entry(host.trim().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        Ok(Pins(map))
    }

    /// `OPENSHELL_RESOLVE=host=ip,host2=ip2`.
    pub fn parse_env(value: &str) -> Result<Pins, String> {
        Pins::parse(value.split(','))
    }

    pub fn merge(&mut self, other: Pins) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().extend(v);
        }
    }

    pub fn get(&self, host: &str) -> Option<&[IpAddr]> {
        self.0.get(host).map(Vec::as_slice)
    }
}

/// The addresses for `host`, and whether they come from a pin.
pub async fn resolve(host: &str, port: u16, pins: &Pins) -> Result<(Vec<IpAddr>, bool), String> {
    if let Some(ips) = pins.get(host) {
        return Ok((ips.to_vec(), true));
    }
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok((vec![ip], false));
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if ips.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    Ok((ips, false))
}

/// Connects to the first address that accepts.
pub async fn connect(ips: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut last = String::from("no address to try");
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out after {}s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_explain_mistakes() {
        let p = Pins::parse_env("API.github.com=127.0.0.1,x.test=[::1]").expect("valid");
        assert_eq!(
            p.get("api.github.com"),
            Some(&["127.0.0.1".parse().expect("ip")][..])
        );
        assert_eq!(p.get("x.test"), Some(&["::1".parse().expect("ip")][..]));
        assert!(
            Pins::parse(["nohost"])
                .expect_err("no =")
                .contains("HOST=IP")
        );
        assert!(
            Pins::parse(["a=b"])
                .expect_err("bad ip")
                .contains("not an IP")
        );
    }
}

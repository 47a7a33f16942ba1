//! Parsers: each returns the value or the reason it is refused.
use super::*;

/// A week: longer idle flows are surely dead.
pub(super) const MAX_FLOW_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// `ip`, `ip:port` or `[ipv6]:port`; port 53 when absent.
pub(super) fn parse_resolver(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(std::net::SocketAddr::new(ip, 53)),
        Err(_) => Err("expected IP, IP:PORT or [IPv6]:PORT of a DNS server".to_string()),
    }
}

pub(super) fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    // Too many digits for u64 is certainly above 65535 as well.
    let n: u64 = text.parse().unwrap_or(u64::MAX);
    match u16::try_from(n) {
        Ok(0) => Err("port 0 is not allowed".to_string()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {text} is above 65535")),
    }
}

pub(super) fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (parse_port(start)?, parse_port(end)?),
        None => {
            let port = parse_port(text)?;
            (port, port)
        }
    };
    if start > end {
        return Err(format!(
            "reversed port range {start}-{end}: the start is above the end"
        ));
    }
    Ok(PortRange { start, end })
}

pub(super) fn parse_scheme(scheme: &str) -> Result<Protocol, String> {
    match scheme {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("unknown protocol {other:?}; expected tcp or udp")),
    }
}

/// `tcp/22`, `udp/53`, `tcp/1000-2000`.
pub(super) fn parse_protocol(text: &str) -> Result<(Protocol, PortRange), String> {
    let Some((scheme, ports)) = text.split_once('/') else {
        return Err("expected tcp/PORT, udp/PORT, tcp/START-END or udp/START-END".to_string());
    };
    Ok((parse_scheme(scheme)?, parse_port_range(ports)?))
}

/// `tcp://192.0.2.1:22`, `udp://[2001:db8::1]:53`, `tcp://192.0.2.1:3000-4000`.
pub(super) fn parse_origin_direct(text: &str) -> Result<(Protocol, OriginAddr), String> {
    const SHAPE: &str = "expected SCHEME://IP:PORT, SCHEME://[IPv6]:PORT or a START-END port range";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(SHAPE.to_string());
    };
    let scheme = parse_scheme(scheme)?;
    let (ip, ports) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("missing ']' after the IPv6 address; {SHAPE}"))?;
        let ports = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing :PORT after ']'; {SHAPE}"))?;
        let ip: std::net::Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        (IpAddr::V6(ip), ports)
    } else {
        let (host, ports) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("missing :PORT; {SHAPE}"))?;
        if host.contains(':') {
            return Err(format!(
                "an IPv6 origin goes in brackets: {}://[{host}]:{ports}",
                scheme
            ));
        }
        let ip: std::net::Ipv4Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IP address; use origin_dns for a hostname"))?;
        (IpAddr::V4(ip), ports)
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} is not a unicast address"));
    }
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(format!("{ip} is an IPv4-mapped address: write {v4}"));
    }
    let ports = parse_port_range(ports)?;
    Ok((scheme, OriginAddr { ip, ports }))
}

pub(super) fn parse_origin_port(port: &OriginPortFile) -> Result<PortRange, String> {
    match port {
        OriginPortFile::Number(n) => match u16::try_from(*n) {
            Ok(p) if p > 0 => Ok(PortRange::single(p)),
            _ => Err(format!("port {n} is outside 1-65535")),
        },
        OriginPortFile::Range(text) => parse_port_range(text),
    }
}

pub(super) fn origin_port_text(port: &OriginPortFile) -> String {
    match port {
        OriginPortFile::Number(n) => n.to_string(),
        OriginPortFile::Range(text) => text.clone(),
    }
}

/// Origin ranges map onto edge ranges port by port, so sizes must agree.
pub(super) fn same_size(origin: PortRange, edge: PortRange) -> Result<(), String> {
    if origin.len() == edge.len() {
        return Ok(());
    }
    let count = |n: u32| {
        if n == 1 {
            "1 port".to_string()
        } else {
            format!("{n} ports")
        }
    };
    Err(format!(
        "origin ports {origin} are {} but edge ports {edge} are {}; the two ranges must be \
         the same size",
        count(origin.len()),
        count(edge.len())
    ))
}

/// A DNS name as the server compares it: lower case, no trailing dot.
pub(crate) fn canonical_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether canonical `name` is `zone` or below it.
pub(crate) fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

/// A DNS name: labels of 1-63 letters, digits and '-', not starting or ending
/// with '-', 253 characters at most, an optional trailing dot; `*` as the
/// first label when `wildcard`.
pub(super) fn check_dns_name(name: &str, wildcard: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.len() > 253 {
        return Err(format!(
            "name is {} characters long; at most 253",
            bare.len()
        ));
    }
    for (k, label) in bare.split('.').enumerate() {
        if k == 0 && label == "*" {
            if wildcard {
                continue;
            }
            return Err("a wildcard is not allowed here".to_string());
        }
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label {label:?} may hold only letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Linux's rules for a network interface name (`dev_valid_name`).
pub(super) fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err("an interface name is 1-15 bytes long".to_string());
    }
    if name == "." || name == ".." {
        return Err("not a valid interface name".to_string());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err("an interface name may not hold '/', ':' or whitespace".to_string());
    }
    Ok(())
}

/// The first pool address that is free. In an IPv6 pool the all-zero host
/// (the subnet-router anycast address) is skipped, as routers answer it.
pub(super) fn first_free(pool: IpNet, used: &HashSet<IpAddr>) -> Option<IpAddr> {
    let anycast = match pool {
        IpNet::V6(net) if net.prefix_len() < 127 => Some(IpAddr::V6(net.network())),
        _ => None,
    };
    pool.hosts()
        .find(|ip| Some(*ip) != anycast && !used.contains(ip))
}

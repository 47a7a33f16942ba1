//! The server on real sockets: binding, UDP and TCP, reloads, counts.

use std::time::Duration;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn freebind_only_for_specific_v6_pool_addresses() {
    let pool = config::AddressPool {
        ipv4: Some("198.51.100.0/24".parse().expect("net")),
        ipv6: Some("fd00:100::/64".parse().expect("net")),
    };
    let freebind = |addr: &str| needs_freebind(addr.parse().expect("address"), &pool);
    assert!(freebind("[fd00:100::53]:53"));
    assert!(freebind("[fd00:100::ffff:1]:5353"));
    // Outside the pool (a typo must fail to bind), or not IPv6, or `::`.
    assert!(!freebind("[fd00:101::53]:53"));
    assert!(!freebind("[::1]:53"));
    assert!(!freebind("[::]:53"));
    assert!(!freebind("198.51.100.53:53"));
    assert!(!freebind("0.0.0.0:53"));
    // No IPv6 pool: never.
    let v4_only = config::AddressPool { ipv6: None, ..pool };
    assert!(!needs_freebind(
        "[fd00:100::53]:53".parse().expect("address"),
        &v4_only
    ));
}

async fn udp_ask(server: SocketAddr, bytes: &[u8]) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("UDP reply in time")
        .expect("recv");
    Message::from_vec(&buf[..len]).expect("parse")
}

async fn tcp_ask(server: SocketAddr, bytes: &[u8]) -> Message {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).expect("short query");
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(bytes).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        std::io::Result::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("TCP reply in time")
        .expect("TCP exchange");
    Message::from_vec(&buf).expect("parse")
}

#[tokio::test]
async fn serves_udp_and_tcp_on_an_ephemeral_port() {
    let config = test_config();
    let settings = config.dns_server.clone().expect("dns_server");
    let zones = zone_records(&config).expect("zones");
    let server = DnsServer::start(&settings, &config.edge.address_pool, &zones)
        .await
        .expect("start");
    let [addr] = server.local_addrs() else {
        panic!("one listen address: {:?}", server.local_addrs());
    };
    let addr = *addr;
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);
    let (v4, v6) = app_addrs(&config, "ssh.example.test");

    let reply = udp_ask(addr, &query("ssh.example.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.id, 0x4242);
    assert!(reply.metadata.authoritative);
    assert_eq!(rdatas(&reply.answers), [RData::A(A(v4[0]))]);

    let reply = tcp_ask(addr, &query("ssh.example.test.", RecordType::AAAA)).await;
    assert_eq!(reply.metadata.id, 0x4242);
    assert!(reply.metadata.authoritative);
    assert_eq!(rdatas(&reply.answers), [RData::AAAA(AAAA(v6[0]))]);

    // A reload reaches the running server.
    let mut json = config_json();
    json["apps"]
        .as_array_mut()
        .expect("apps")
        .retain(|app| app["dns"]["name"] != "mail.example.test");
    server.update(&load(&json)).expect("update");
    let reply = udp_ask(addr, &query("mail.example.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);

    // The address is taken now: a second server says which and why.
    let mut busy = settings.clone();
    busy.listen = vec![addr];
    let error = match DnsServer::start(&busy, &config.edge.address_pool, &zones).await {
        Ok(_) => panic!("bound {addr} twice"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.starts_with(&format!("dns_server.listen[0] {addr}: cannot bind UDP: ")),
        "{error}"
    );
    let mut without = config.clone();
    without.dns_server = None;
    assert!(server.update(&without).is_err());

    server.shutdown().await;
}

#[tokio::test]
async fn answers_are_counted_by_rcode_and_qtype() {
    let config = test_config();
    let settings = config.dns_server.clone().expect("dns_server");
    let zones = zone_records(&config).expect("zones");
    let server = DnsServer::start(&settings, &config.edge.address_pool, &zones)
        .await
        .expect("start");
    let addr = server.local_addrs()[0];
    let answers = server.answers();
    assert_eq!(answers.snapshot(), []);

    // Real queries over UDP and TCP.
    udp_ask(addr, &query("ssh.example.test.", RecordType::A)).await;
    udp_ask(addr, &query("ssh.example.test.", RecordType::A)).await;
    tcp_ask(addr, &query("ssh.example.test.", RecordType::AAAA)).await;
    udp_ask(addr, &query("nope.example.test.", RecordType::MX)).await;
    udp_ask(addr, &query("www.elsewhere.test.", RecordType::A)).await;
    udp_ask(addr, &query("example.test.", RecordType::AXFR)).await;
    // EDNS version 1: BADVERS.
    let mut badvers = header(0x01, 1);
    badvers[11] = 1;
    badvers.extend_from_slice(&question());
    badvers.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0]);
    udp_ask(addr, &badvers).await;
    // No question, and a pointer into the header: FORMERR, qtype "-".
    udp_ask(addr, &header(0x01, 0)).await;
    let mut pointer = header(0x01, 1);
    pointer.extend_from_slice(&[0xc0, 2, 0, 1, 0, 1]);
    udp_ask(addr, &pointer).await;
    // A question cut short, answered without a socket (hickory's own
    // loop answers that one over the network, uncounted).
    let mut cut = header(0x01, 1);
    cut.extend_from_slice(&question()[..9]);
    assert!(server.authority().answer(&cut, src()).await.is_some());
    // Sent nothing, counted nothing: a response, and no header.
    let mut response = header(0x81, 1);
    response.extend_from_slice(&question());
    assert_eq!(server.authority().answer(&response, src()).await, None);
    assert_eq!(server.authority().answer(&[0; 5], src()).await, None);

    let expected: Vec<(String, String, u64)> = [
        ("BADVERS", "A", 1),
        ("FORMERR", "-", 3),
        ("NOERROR", "A", 2),
        ("NOERROR", "AAAA", 1),
        ("NXDOMAIN", "MX", 1),
        ("REFUSED", "A", 1),
        ("REFUSED", "AXFR", 1),
    ]
    .into_iter()
    .map(|(rcode, qtype, n)| (rcode.to_string(), qtype.to_string(), n))
    .collect();
    assert_eq!(answers.snapshot(), expected);

    // The counts survive a reload (they are counters).
    server.update(&config).expect("update");
    udp_ask(addr, &query("ssh.example.test.", RecordType::A)).await;
    let noerror_a = server
        .answers()
        .snapshot()
        .into_iter()
        .find(|(rcode, qtype, _)| rcode == "NOERROR" && qtype == "A");
    assert_eq!(noerror_a.map(|(_, _, n)| n), Some(3));
    server.shutdown().await;
}

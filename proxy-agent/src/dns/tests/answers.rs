//! What the server answers: positive and negative answers, wildcards,
//! PTR, SOA and NS, refusals, and answers replaced by a reload.

use std::collections::BTreeSet;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::DNSClass;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, PTR};

use super::*;

#[tokio::test]
async fn a_and_aaaa_give_the_edge_addresses_case_insensitively() {
    let config = test_config();
    let authority = authority(&config);
    let (v4, v6) = app_addrs(&config, "ssh.example.test");
    assert_eq!((v4.len(), v6.len()), (1, 1));
    for qname in ["ssh.example.test.", "SSH.EXAMPLE.TEST.", "sSh.Example.test"] {
        let reply = ask(&authority, qname, RecordType::A).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{qname}"
        );
        assert!(reply.metadata.authoritative, "{qname}");
        // tcp/22 and udp/53 share the name and addresses: one record.
        assert_eq!(rdatas(&reply.answers), [RData::A(A(v4[0]))], "{qname}");
        assert!(reply.answers.iter().all(|r| r.ttl == TTL));
        let reply = ask(&authority, qname, RecordType::AAAA).await;
        assert!(reply.metadata.authoritative);
        assert_eq!(rdatas(&reply.answers), [RData::AAAA(AAAA(v6[0]))]);
        assert!(reply.answers.iter().all(|r| r.ttl == TTL));
    }
    // A dynamic (CNAME-type) app gets A and AAAA too.
    let (v4, v6) = app_addrs(&config, "mail.example.test");
    let reply = ask(&authority, "mail.example.test.", RecordType::A).await;
    assert_eq!(rdatas(&reply.answers), [RData::A(A(v4[0]))]);
    let reply = ask(&authority, "mail.example.test.", RecordType::AAAA).await;
    assert_eq!(rdatas(&reply.answers), [RData::AAAA(AAAA(v6[0]))]);
}

#[tokio::test]
async fn wildcard_app_answers_for_names_below_it() {
    let config = test_config();
    let authority = authority(&config);
    let (v4, _) = app_addrs(&config, "*.apps.example.test");
    let reply = ask(&authority, "Foo.apps.example.test.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(rdatas(&reply.answers), [RData::A(A(v4[0]))]);
    assert_eq!(reply.answers[0].name, name("foo.apps.example.test."));
    // ... but gives its addresses no PTR.
    let reply = ask(
        &authority,
        &reverse_name(IpAddr::V4(v4[0])),
        RecordType::PTR,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
}

/// A NOERROR reply with no answers and the zone's SOA in authority.
fn assert_nodata(reply: &Message, what: &str) {
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{what}"
    );
    assert!(reply.metadata.authoritative, "{what}");
    assert!(reply.answers.is_empty(), "{what}: {:?}", reply.answers);
    assert_eq!(reply.authorities.len(), 1, "{what}");
    assert_eq!(reply.authorities[0].name, name("example.test."), "{what}");
    assert!(soa_of(&reply.authorities).is_some(), "{what}");
}

#[tokio::test]
async fn wildcard_covered_names_are_nodata_for_types_the_wildcard_lacks() {
    // The wildcard app with an IPv4 address only.
    let mut json = config_json();
    json["apps"][3]["dns"]["type"] = serde_json::json!("ADDRESS");
    json["apps"][3]["edge_ips"] = serde_json::json!({"type": "static", "ips": ["198.51.100.9"]});
    let wild = authority(&load(&json));
    for qname in ["foo.apps.example.test.", "a.b.apps.example.test."] {
        // RFC 4592 / 8020: the name exists (through the wildcard), so
        // other types are NODATA, not NXDOMAIN.
        for qtype in [RecordType::AAAA, RecordType::HTTPS, RecordType::MX] {
            let reply = ask(&wild, qname, qtype).await;
            assert_nodata(&reply, &format!("{qname} {qtype}"));
        }
        // ... and the A still answers, named as asked.
        let reply = ask(&wild, qname, RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(
            rdatas(&reply.answers),
            [RData::A(A("198.51.100.9".parse().expect("ip")))]
        );
        assert_eq!(reply.answers[0].name, name(qname));
        // ANY: the A RRset.
        let reply = ask(&wild, qname, RecordType::ANY).await;
        assert_eq!(reply.answers.len(), 1, "{qname} ANY");
    }
    // The wildcard's parent exists as an empty non-terminal: NODATA.
    let reply = ask(&wild, "apps.example.test.", RecordType::A).await;
    assert_nodata(&reply, "apps.example.test A");
    // An existing name is not covered by a wildcard: NODATA for a type
    // it lacks, also under a zone-wide wildcard that has that type.
    let mut json = config_json();
    json["apps"][0]["edge_ips"] = serde_json::json!({"type": "static", "ips": ["198.51.100.7"]});
    json["apps"][1]["edge_ips"] = serde_json::json!({"type": "static", "ips": ["198.51.100.7"]});
    json["apps"][3]["dns"]["name"] = serde_json::json!("*.example.test");
    let zone_wide = authority(&load(&json));
    let reply = ask(&zone_wide, "ssh.example.test.", RecordType::AAAA).await;
    assert_nodata(&reply, "ssh.example.test AAAA");
    let reply = ask(&zone_wide, "ssh.example.test.", RecordType::MX).await;
    assert_nodata(&reply, "ssh.example.test MX");
    // A name below an existing one: the closest encloser (ssh) has no
    // wildcard, so NXDOMAIN, not the zone-wide wildcard's records.
    let reply = ask(&zone_wide, "x.ssh.example.test.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert!(soa_of(&reply.authorities).is_some());
    // A name below the wildcard owner itself: `*` is a plain label there.
    let reply = ask(&zone_wide, "x.*.example.test.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // Elsewhere the zone-wide wildcard answers, both families.
    for qtype in [RecordType::A, RecordType::AAAA] {
        let reply = ask(&zone_wide, "other.example.test.", qtype).await;
        assert_eq!(reply.answers.len(), 1, "{qtype}");
    }
    let reply = ask(&zone_wide, "other.example.test.", RecordType::TXT).await;
    assert_nodata(&reply, "other.example.test TXT");
}

#[tokio::test]
async fn unknown_name_is_nxdomain_with_soa_and_outside_names_are_refused() {
    let authority = authority(&test_config());
    let reply = ask(&authority, "nope.example.test.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    let soa = soa_of(&reply.authorities).expect("SOA in authority");
    assert_eq!(soa.mname, name("ns.example.test."));
    assert_eq!(reply.authorities[0].name, name("example.test."));
    // An existing name without that type: NODATA, with the SOA.
    let reply = ask(&authority, "ssh.example.test.", RecordType::MX).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(soa_of(&reply.authorities).is_some());
    // Outside every zone, including a served app's own name.
    for qname in ["www.elsewhere.test.", "example.com.", "."] {
        let reply = ask(&authority, qname, RecordType::A).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qname}"
        );
        assert!(reply.answers.is_empty(), "{qname}");
    }
}

#[tokio::test]
async fn ptr_names_the_app_for_v4_and_v6_and_nxdomain_for_free_addresses() {
    let config = test_config();
    let authority = authority(&config);
    for app in ["ssh.example.test", "mail.example.test"] {
        let (v4, v6) = app_addrs(&config, app);
        for ip in [IpAddr::V4(v4[0]), IpAddr::V6(v6[0])] {
            let reply = ask(&authority, &reverse_name(ip), RecordType::PTR).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{ip}");
            assert!(reply.metadata.authoritative, "{ip}");
            let target = name(&format!("{app}."));
            assert_eq!(rdatas(&reply.answers), [RData::PTR(PTR(target))], "{ip}");
            assert_eq!(reply.answers[0].ttl, TTL);
        }
    }
    assert_eq!(
        reverse_name("198.51.100.7".parse().expect("ip")),
        "7.100.51.198.in-addr.arpa"
    );
    assert_eq!(
        reverse_name("2001:db8:e::7".parse().expect("ip")),
        "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    );
    // Free addresses of the pools: 2001:db8:e:3::/64 is the last of
    // the /62's four zones.
    for free in ["198.51.100.200", "2001:db8:e::200", "2001:db8:e:3::1"] {
        let ip: IpAddr = free.parse().expect("ip");
        let reply = ask(&authority, &reverse_name(ip), RecordType::PTR).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{free}"
        );
        assert!(reply.answers.is_empty(), "{free}");
        assert!(soa_of(&reply.authorities).is_some(), "{free}");
    }
    // Outside every reverse zone (the /62's neighbours too): not ours.
    for outside in [
        "203.0.113.1",
        "198.51.101.1",
        "2001:db8:e:4::1",
        "2001:db8:f::1",
    ] {
        let ip: IpAddr = outside.parse().expect("ip");
        let reply = ask(&authority, &reverse_name(ip), RecordType::PTR).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{outside}"
        );
        assert!(reply.answers.is_empty(), "{outside}");
    }
    // The zone apex above the pool's zones is not served either.
    let reply = ask(
        &authority,
        "0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        RecordType::SOA,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn soa_and_ns_at_the_apex_and_the_nameserver_address() {
    let authority = authority(&test_config());
    let reply = ask(&authority, "example.test.", RecordType::SOA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    let soa = soa_of(&reply.answers).expect("SOA answer");
    assert_eq!(soa.mname, name("ns.example.test."));
    assert_eq!(soa.rname, name("hostmaster.example.test."));
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 86400, TTL)
    );
    let reply = ask(&authority, "example.test.", RecordType::NS).await;
    assert_eq!(
        rdatas(&reply.answers),
        [RData::NS(NS(name("ns.example.test.")))]
    );
    assert!(reply.metadata.authoritative);
    // The nameserver's address: the (non-unspecified) listen address.
    let reply = ask(&authority, "ns.example.test.", RecordType::A).await;
    assert_eq!(rdatas(&reply.answers), [RData::A(A(Ipv4Addr::LOCALHOST))]);
    // Reverse zones have SOA and NS too.
    let reply = ask(&authority, "100.51.198.in-addr.arpa.", RecordType::SOA).await;
    let soa = soa_of(&reply.answers).expect("reverse SOA");
    assert_eq!(soa.rname, name("hostmaster.example.test."));
    let reply = ask(&authority, "100.51.198.in-addr.arpa.", RecordType::NS).await;
    assert_eq!(
        rdatas(&reply.answers),
        [RData::NS(NS(name("ns.example.test.")))]
    );
}

#[tokio::test]
async fn zone_transfers_are_refused_and_any_gets_one_rrset() {
    let authority = authority(&test_config());
    for zone in ["example.test.", "100.51.198.in-addr.arpa."] {
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            let reply = ask(&authority, zone, qtype).await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::Refused,
                "{zone} {qtype}"
            );
            assert!(reply.answers.is_empty(), "{zone} {qtype}");
            assert!(reply.authorities.is_empty(), "{zone} {qtype}");
        }
    }
    // ANY (RFC 8482): one RRset, or NOTIMP.
    for qname in ["ssh.example.test.", "example.test."] {
        let reply = ask(&authority, qname, RecordType::ANY).await;
        match reply.metadata.response_code {
            ResponseCode::NoError => {
                let types: BTreeSet<u16> = reply
                    .answers
                    .iter()
                    .map(|r| u16::from(r.record_type()))
                    .collect();
                assert_eq!(types.len(), 1, "{qname}: {:?}", reply.answers);
            }
            ResponseCode::NotImp => {}
            other => panic!("{qname}: ANY answered {other}"),
        }
    }
    // Another class: refused.
    let mut message = query_message(7, "ssh.example.test.", RecordType::A);
    message.queries[0].set_query_class(DNSClass::CH);
    let bytes = message.to_vec().expect("encode");
    let reply = ask_bytes(&authority, &bytes).await.expect("reply");
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
}

#[tokio::test]
async fn update_swaps_the_answers() {
    let config = test_config();
    let authority = authority(&config);
    let (v4, _) = app_addrs(&config, "mail.example.test");
    let reply = ask(&authority, "mail.example.test.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);
    let mut json = config_json();
    json["apps"]
        .as_array_mut()
        .expect("apps")
        .retain(|app| app["dns"]["name"] != "mail.example.test");
    json["dns_server"]["ttl"] = serde_json::json!(120);
    let smaller = load(&json);
    authority
        .replace(&zone_records(&smaller).expect("zones"))
        .expect("replace");
    let reply = ask(&authority, "mail.example.test.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let reply = ask(
        &authority,
        &reverse_name(IpAddr::V4(v4[0])),
        RecordType::PTR,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let reply = ask(&authority, "ssh.example.test.", RecordType::A).await;
    assert_eq!(reply.answers[0].ttl, 120);
}

#[tokio::test]
async fn zones_nest_and_records_go_to_the_deepest() {
    let mut json = config_json();
    json["dns_server"]["zones"] = serde_json::json!([ZONE, "apps.example.test"]);
    let zones = zone_records(&load(&json)).expect("zones");
    let apps = zones
        .zones
        .iter()
        .find(|z| z.origin == name("apps.example.test."))
        .expect("apps zone");
    assert!(apps.records.iter().any(|r| r.name.is_wildcard()));
    let parent = zones
        .zones
        .iter()
        .find(|z| z.origin == name("example.test."))
        .expect("parent zone");
    assert!(!parent.records.iter().any(|r| r.name.is_wildcard()));
    let authority = Authority::new(&zones).expect("authority");
    let reply = ask(&authority, "x.apps.example.test.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);
}

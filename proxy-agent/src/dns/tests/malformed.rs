//! Malformed queries and other opcodes: answered as the RFCs say, or
//! dropped.

use hickory_server::proto::op::{Edns, ResponseCode};

use super::*;

async fn expect_formerr(authority: &Authority, bytes: Vec<u8>, what: &str) {
    let reply = ask_bytes(authority, &bytes).await;
    let reply = reply.unwrap_or_else(|| panic!("{what}: no reply"));
    assert_eq!(reply.metadata.id, 0x4242, "{what}");
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::FormErr,
        "{what}"
    );
    assert!(reply.answers.is_empty(), "{what}");
}

#[tokio::test]
async fn malformed_queries_are_answered_per_rfc_or_dropped() {
    let authority = authority(&test_config());
    // No header: dropped.
    for len in 0..12 {
        let bytes = vec![0x42; len];
        assert_eq!(authority.answer(&bytes, src()).await, None, "{len} bytes");
    }
    // A header that promises a question, and none.
    expect_formerr(&authority, header(0x01, 1), "missing question").await;
    // The question cut short.
    let mut cut = header(0x01, 1);
    cut.extend_from_slice(&question()[..9]);
    expect_formerr(&authority, cut, "truncated question").await;
    // A 64-byte label (0x40 is not a length).
    let mut long = header(0x01, 1);
    long.push(64);
    long.extend_from_slice(&[b'a'; 64]);
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    expect_formerr(&authority, long, "64-byte label").await;
    // A compression pointer to itself, and two pointing at each other.
    let mut looped = header(0x01, 1);
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    expect_formerr(&authority, looped, "pointer loop").await;
    let mut looped = header(0x01, 1);
    looped.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1]);
    expect_formerr(&authority, looped, "pointer cycle").await;
    // A pointer into the header (hickory takes it, and its reply would
    // copy it): FORMERR without the question.
    for (name, what) in [
        (&[0xc0, 2][..], "pointer to the flags"),
        (&[1, b'a', 0xc0, 4], "label, then pointer to qdcount"),
    ] {
        let mut bytes = header(0x01, 1);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&[0, 1, 0, 1]);
        let reply = authority.answer(&bytes, src()).await;
        let reply = Message::from_vec(&reply.expect(what)).expect(what);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::FormErr,
            "{what}"
        );
        assert!(reply.queries.is_empty(), "{what}");
    }
    // No question, or two.
    expect_formerr(&authority, header(0x01, 0), "qdcount 0").await;
    let mut two = header(0x01, 2);
    two.extend_from_slice(&question());
    two.extend_from_slice(&question());
    expect_formerr(&authority, two, "qdcount 2").await;
    // A response sent as a query: dropped (no reflection).
    let mut response = header(0x81, 1);
    response.extend_from_slice(&question());
    assert_eq!(authority.answer(&response, src()).await, None);
    // Unknown opcode (15), STATUS (2), NOTIFY (4): NOTIMP. UPDATE (5):
    // FORMERR when the zone section is not one SOA (RFC 2136 3.1.1),
    // else NOTIMP (no dynamic updates).
    let mut soa_zone = header(5 << 3, 1);
    soa_zone.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e']);
    soa_zone.extend_from_slice(&[4, b't', b'e', b's', b't', 0, 0, 6, 0, 1]);
    let mut cases = Vec::new();
    for opcode in [15u8, 2, 4, 5] {
        let mut bytes = header(opcode << 3, 1);
        bytes.extend_from_slice(&question());
        let code = if opcode == 5 {
            ResponseCode::FormErr
        } else {
            ResponseCode::NotImp
        };
        cases.push((opcode, bytes, code));
    }
    cases.push((5, soa_zone, ResponseCode::NotImp));
    for (opcode, bytes, code) in cases {
        let reply = ask_bytes(&authority, &bytes).await.expect("reply");
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.metadata.response_code, code, "opcode {opcode}");
        assert!(reply.answers.is_empty());
    }
    // EDNS version 1: BADVERS, with an OPT record of version 0.
    let mut bytes = header(0x01, 1);
    bytes[11] = 1; // arcount
    bytes.extend_from_slice(&question());
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0]);
    let reply = ask_bytes(&authority, &bytes).await.expect("reply");
    // 16 is BADVERS in an answer to EDNS (hickory decodes it as BADSIG,
    // which shares the number).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));
    assert!(reply.answers.is_empty());
    // EDNS version 0 works, and the same query without it too.
    let mut edns0 = bytes.clone();
    let version_at = edns0.len() - 5;
    edns0[version_at] = 0;
    let reply = ask_bytes(&authority, &edns0).await.expect("reply");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
}

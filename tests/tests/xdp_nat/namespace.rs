//! The NAT fixtures' namespace: the route lookup of the program under test
//! must give known MACs, so each side is a veth with a permanent neighbour.
use tests::netns::Netns;

/// A fresh namespace (see [`namespace`]) that this thread has entered.
pub fn entered(tag: &str) -> Netns {
    let ns = namespace(tag);
    ns.enter_this_thread().expect("enter netns");
    ns
}

/// One namespace: cli0 (10.0.1.1) and org0 (10.0.2.1), each a veth with a
/// permanent neighbour of known MAC behind it, forwarding on.
fn namespace(tag: &str) -> Netns {
    let ns = Netns::create(&format!("spx-{tag}-{}", std::process::id())).expect("netns");
    let run = |args: &[&str]| {
        ns.run(args[0], &args[1..])
            .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
    };
    for (dev, peer, mac, v4, v6, neigh4, neigh6, neigh_mac) in [
        (
            "cli0",
            "cli1",
            "02:00:00:00:01:01",
            "10.0.1.1/24",
            "fd00:1::1/64",
            "10.0.1.2",
            "fd00:1::2",
            "02:00:00:00:01:02",
        ),
        (
            "org0",
            "org1",
            "02:00:00:00:02:01",
            "10.0.2.1/24",
            "fd00:2::1/64",
            "10.0.2.2",
            "fd00:2::2",
            "02:00:00:00:02:02",
        ),
    ] {
        run(&[
            "ip", "link", "add", dev, "address", mac, "type", "veth", "peer", "name", peer,
        ]);
        run(&["ip", "link", "set", dev, "up"]);
        run(&["ip", "link", "set", peer, "up"]);
        run(&["ip", "addr", "add", v4, "dev", dev]);
        run(&["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"]);
        for (family, neigh) in [("-4", neigh4), ("-6", neigh6)] {
            let permanent = [
                "neigh",
                "replace",
                neigh,
                "lladdr",
                neigh_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ];
            run(&[&["ip", family][..], &permanent].concat());
        }
    }
    run(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    ns
}

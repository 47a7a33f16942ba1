//! Edge addresses from the pool, found through the embedded DNS server:
//! `dig` in `cli` against the agent in `edge`, a client that resolves an
//! app's name with the system resolver and connects, leases kept across
//! restarts, and hostile queries. Real peers: dig, socat, glibc.
use serde_json::json;
use tests::{
    agent::Agent,
    client::tcp_exchange,
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    process::Background,
    scratch_dir, servers,
};

const ZONE: &str = "example.test";

/// One app: `name` (under ZONE) on tcp/`port`, origin the echo on `origin`.
fn app(name: &str, port: u16, origin: u16) -> AppJson {
    AppJson::tcp(port, &format!("{name}.{ZONE}")).origin_direct([org4("tcp", origin)])
}

/// Apps plus the DNS server on the edge's cli-facing addresses.
fn config(apps: &[AppJson]) -> String {
    let ns6 = format!("[{}]", addr::EDGE_CLI_V6);
    ConfigBuilder::new()
        .dns_server(&[addr::EDGE_CLI_V4, &ns6], ZONE, 30)
        .apps(apps.iter().cloned())
        .build()
}

/// `dig` in `cli` against the embedded server; its whole output. Its
/// waits (5 s, three tries) are hang guards: every query here is answered.
fn dig(cli: &Netns, args: &[&str]) -> String {
    let server = format!("@{}", addr::EDGE_CLI_V4);
    let mut all = vec![server.as_str(), "+time=5", "+tries=3"];
    all.extend_from_slice(args);
    match cli.run("dig", &all) {
        Ok(out) => out,
        Err(e) => format!("dig failed: {e:#}"),
    }
}

/// The answer's records (`+short`), one per line.
fn short(cli: &Netns, name: &str, kind: &str) -> Vec<String> {
    dig(cli, &["+short", name, kind])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The response code dig reports (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...).
fn status(cli: &Netns, args: &[&str]) -> String {
    let out = dig(cli, args);
    out.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map_or_else(|| format!("no status in: {out}"), str::to_owned)
}

fn origins(org: &Netns, ports: &[u16]) -> Vec<Background> {
    ports
        .iter()
        .map(|port| servers::tcp_echo(org, *port).expect("origin"))
        .collect()
}

/// Resolves `name` with glibc (a private /etc/resolv.conf naming the
/// embedded server) and connects with socat: the origin's greeting.
fn resolve_and_connect(cli: &Netns, name: &str, port: u16) -> anyhow::Result<String> {
    let resolv = scratch_dir().join(format!("{}-resolv.conf", cli.name()));
    std::fs::write(
        &resolv,
        format!(
            "nameserver {}\noptions timeout:5 attempts:3\n",
            addr::EDGE_CLI_V4
        ),
    )?;
    let script = format!(
        "mount --bind {} /etc/resolv.conf && echo hello | exec timeout 60 socat - TCP:{name}:{port}",
        resolv.display()
    );
    let out = cli
        .command("unshare", &["--mount", "sh", "-c", &script])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "resolve and connect to {name}:{port}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn apps_get_their_own_addresses_found_by_name_and_reverse() {
    let Some(topology) = Topology::for_test(
        "apps_get_their_own_addresses_found_by_name_and_reverse",
        "dns",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origins = origins(org, &[2201, 2501]);
    let apps = [app("ssh", 22, 2201), app("mail", 25, 2501)];
    let agent = Agent::start(&topology.edge, &config(&apps), "native").expect("agent");

    let ssh = format!("ssh.{ZONE}");
    let mail = format!("mail.{ZONE}");
    let ssh4 = short(cli, &ssh, "A");
    let ssh6 = short(cli, &ssh, "AAAA");
    let mail4 = short(cli, &mail, "A");
    let mail6 = short(cli, &mail, "AAAA");
    assert_eq!(ssh4, [addr::edge4(0)], "{}", agent.log());
    assert_eq!(ssh6, [addr::edge6(0)]);
    assert_eq!(mail4, [addr::edge4(1)]);
    assert_eq!(mail6, [addr::edge6(1)]);
    // Case does not matter, and over TCP the answer is the same.
    assert_eq!(short(cli, "SSH.Example.TEST", "A"), ssh4);
    assert_eq!(
        dig(cli, &["+tcp", "+short", &mail, "AAAA"]).trim(),
        addr::edge6(1)
    );

    // Reverse: each edge address names its app, so SMTP's forward and
    // reverse lookups agree.
    assert_eq!(
        dig(cli, &["+short", "-x", &addr::edge4(1)]).trim(),
        format!("{mail}.")
    );
    assert_eq!(
        dig(cli, &["+short", "-x", &addr::edge6(0)]).trim(),
        format!("{ssh}.")
    );
    assert_eq!(status(cli, &["-x", "10.0.100.77"]), "NXDOMAIN");

    // The zone itself, unknown names in it, and names outside it.
    assert_eq!(short(cli, ZONE, "NS"), [format!("ns.{ZONE}.")]);
    assert!(
        dig(cli, &["+short", ZONE, "SOA"]).starts_with(&format!("ns.{ZONE}. hostmaster.{ZONE}.")),
        "{}",
        dig(cli, &[ZONE, "SOA"])
    );
    assert_eq!(status(cli, &[&format!("nope.{ZONE}"), "A"]), "NXDOMAIN");
    assert_eq!(status(cli, &["example.org", "A"]), "REFUSED");

    // A client that only knows the names reaches the right origins.
    let greeting = resolve_and_connect(cli, &ssh, 22).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(greeting.starts_with("origin 2201"), "{greeting}");
    let greeting = resolve_and_connect(cli, &mail, 25).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(greeting.starts_with("origin 2501"), "{greeting}");

    // `proxy-agent apps` shows the addresses and the flows just made.
    let out = topology
        .edge
        .run(
            &tests::agent::agent_bin().to_string_lossy(),
            &[
                "apps",
                "--json",
                "--config",
                &agent.config_path().to_string_lossy(),
                "--instance",
                topology.edge.name(),
            ],
        )
        .expect("apps");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed[0]["edge_ips"], serde_json::json!([ssh4[0], ssh6[0]]));
    assert!(
        listed[1]["counters"]["opened"].as_u64() >= Some(1),
        "{listed:#}"
    );
    agent.stop().expect("stop");
}

#[test]
fn hostile_queries_are_answered_or_refused_and_the_server_stays_up() {
    let Some(topology) = Topology::for_test(
        "hostile_queries_are_answered_or_refused_and_the_server_stays_up",
        "dnsbad",
    ) else {
        return;
    };
    let cli = &topology.cli;
    let agent =
        Agent::start(&topology.edge, &config(&[app("ssh", 22, 2201)]), "native").expect("agent");
    let ssh = format!("ssh.{ZONE}");
    // Zone transfers are refused, over TCP as they are asked.
    // (dig says only "Transfer failed"; the unit tests see REFUSED.)
    for kind in ["AXFR", "IXFR=1"] {
        let out = dig(cli, &[ZONE, kind]);
        assert!(out.contains("Transfer failed"), "{out}");
        assert!(!out.contains(" IN A "), "records leaked: {out}");
    }
    // ANY is answered, not crashed on.
    let any = status(cli, &[&ssh, "ANY"]);
    assert!(any == "NOERROR" || any == "NOTIMP", "{any}");
    // Raw garbage over UDP: truncated header, a 64-byte label, a pointer
    // loop. Whatever comes back (FORMERR or nothing), the server lives.
    let mut label = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 64];
    label.extend([b'a'; 64]);
    label.extend([0, 0, 1, 0, 1]);
    let pointer_loop = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
    ];
    let target = format!("UDP:{}:53", addr::EDGE_CLI_V4);
    for bytes in [&[0x12u8, 0x34, 0x01][..], &label, &pointer_loop] {
        // printf writes the raw bytes from octal escapes; socat sends them.
        let octal: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
        let script = format!("printf '{octal}' | timeout 2 socat -T1 - {target} | wc -c");
        let _ = cli.run("sh", &["-c", &script]);
    }
    assert_eq!(short(cli, &ssh, "A"), [addr::edge4(0)], "{}", agent.log());
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
    agent.stop().expect("stop");
}

#[test]
fn addresses_survive_restarts_and_a_removed_app_frees_its_own() {
    let Some(topology) = Topology::for_test(
        "addresses_survive_restarts_and_a_removed_app_frees_its_own",
        "dnsre",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origins = origins(org, &[2201, 2501, 8001]);
    let (ssh, mail, web) = (
        app("ssh", 22, 2201),
        app("mail", 25, 2501),
        app("web", 80, 8001),
    );
    let lookup = |name: &str| {
        let mut both = short(cli, &format!("{name}.{ZONE}"), "A");
        both.extend(short(cli, &format!("{name}.{ZONE}"), "AAAA"));
        both
    };

    let agent = Agent::start(
        &topology.edge,
        &config(&[ssh.clone(), mail.clone()]),
        "native",
    )
    .expect("agent");
    let (ssh_at, mail_at) = (lookup("ssh"), lookup("mail"));
    assert_eq!(ssh_at.len(), 2, "{}", agent.log());
    agent.stop().expect("stop");

    // A new app in front: without leases it would take ssh's addresses.
    let agent = Agent::start(
        &topology.edge,
        &config(&[web.clone(), ssh.clone(), mail.clone()]),
        "native",
    )
    .expect("agent");
    assert_eq!(lookup("ssh"), ssh_at, "{}", agent.log());
    assert_eq!(lookup("mail"), mail_at);
    let web_at = lookup("web");
    assert_eq!(web_at, [addr::edge4(2), addr::edge6(2)]);
    let greeting = tcp_exchange(cli, &ssh_at[0], 22, "hello").expect("ssh after restart");
    assert!(greeting.starts_with("origin 2201"), "{greeting}");
    agent.stop().expect("stop");

    // ssh removed: its name is gone, and the next new app gets its addresses.
    let imap = app("imap", 143, 2501);
    let agent = Agent::start(&topology.edge, &config(&[web, mail, imap]), "native").expect("agent");
    assert_eq!(status(cli, &[&format!("ssh.{ZONE}"), "A"]), "NXDOMAIN");
    assert_eq!(lookup("web"), web_at);
    assert_eq!(lookup("mail"), mail_at);
    assert_eq!(lookup("imap"), ssh_at, "{}", agent.log());
    assert_eq!(
        dig(cli, &["+short", "-x", &ssh_at[0]]).trim(),
        format!("imap.{ZONE}.")
    );
    let lingering = tcp_exchange(cli, &ssh_at[0], 22, "hello");
    assert!(lingering.is_err() || lingering.is_ok_and(|s| s.is_empty()));
    agent.stop().expect("stop");
}

#[test]
fn the_dns_server_can_sit_on_pool_addresses_and_reloads_on_sighup() {
    let Some(topology) = Topology::for_test(
        "the_dns_server_can_sit_on_pool_addresses_and_reloads_on_sighup",
        "dnspool",
    ) else {
        return;
    };
    let cli = &topology.cli;
    // The first pool addresses serve DNS (local only through the pool's
    // route, IPv6 included); the app must get the next ones.
    let (ns4, ns6) = (addr::edge4(0), addr::edge6(0));
    let config = |ttl: u32| {
        ConfigBuilder::new()
            .dns_server(&[&ns4, &format!("[{ns6}]")], ZONE, ttl)
            .app(app("ssh", 22, 2201))
            .build()
    };
    let agent = Agent::start(&topology.edge, &config(30), "native").expect("agent");
    let ask_for = |server: &str, name: &str, kind: &str| {
        let at = format!("@{server}");
        cli.run(
            "dig",
            &[&at, "+time=5", "+tries=3", "+noall", "+answer", name, kind],
        )
        .unwrap_or_else(|e| format!("dig failed: {e:#}"))
    };
    let ask = |server: &str, kind: &str| ask_for(server, &format!("ssh.{ZONE}"), kind);
    let answer = ask(&ns4, "A");
    assert!(
        answer.contains(&addr::edge4(1)),
        "{answer}\n{}",
        agent.log()
    );
    let answer = ask(&ns6, "AAAA");
    assert!(
        answer.contains(&addr::edge6(1)),
        "{answer}\n{}",
        agent.log()
    );
    // The nameserver's own name gives the listen addresses.
    let ns = format!("ns.{ZONE}");
    assert!(ask_for(&ns6, &ns, "A").contains(&ns4));
    assert!(ask_for(&ns4, &ns, "AAAA").contains(&ns6));
    assert!(ask(&ns4, "A").contains("\t30\t"), "{}", ask(&ns4, "A"));

    // SIGHUP: a new TTL is served without a restart.
    assert!(agent.reload(&config(99)).expect("reload"));
    let answer = ask(&ns6, "A");
    assert!(answer.contains("\t99\t"), "{answer}\n{}", agent.log());
    agent.stop().expect("stop");
}

#[test]
fn a_static_address_outside_the_pool_is_refused_at_start() {
    let Some(topology) = Topology::for_test(
        "a_static_address_outside_the_pool_is_refused_at_start",
        "dnsst",
    ) else {
        return;
    };
    let app = app("ssh", 22, 2201)
        .set(
            "dns",
            json!({"type": "ADDRESS", "name": format!("ssh.{ZONE}")}),
        )
        .set("edge_ips", json!({"type": "static", "ips": ["192.0.2.10"]}));
    let err = match Agent::start(&topology.edge, &config(&[app]), "native") {
        Ok(agent) => panic!("started:\n{}", agent.log()),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("apps[0].edge_ips.ips[0]")
            && err.contains("192.0.2.10")
            && err.contains("outside edge.address_pool.ipv4"),
        "{err}"
    );
}

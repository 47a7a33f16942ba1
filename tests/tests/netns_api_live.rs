//! Live changes through the management API: a real HTTP client (curl in
//! `cli`) creates, changes and deletes apps and access rules; after each
//! accepted change the config file on disk holds exactly that change and
//! real traffic follows it; refused changes leave the file's bytes alone.
//! Then "reload under load": two apps carry a long byte-exact TCP transfer
//! and a UDP request/response stream while a third app is added, changed
//! and deleted 50 times, and neither stream loses a byte or a datagram.
//! And a PUT that turns `ip_firewall` on cuts the open fast-path flows of
//! clients the access rules block, while allowed clients' flows go on.
use std::{
    collections::BTreeSet,
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    agent::Agent,
    client::{tcp_exchange, udp_exchange, udp_exchange_from},
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    process::Background,
    scratch_dir, servers,
};

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "test-token-live-0123456789abcdef";
const API_PORT: u16 = 8080;
/// An app id no test creates.
const UNKNOWN_ID: &str = "0123456789abcdef0123456789abcdef";

// ---- the API from curl in `cli` ----

/// Parsed answer: HTTP status and body (the raw text as a JSON string when
/// it is not JSON, so that assertions show it).
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn codes(&self) -> Vec<u64> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["code"].as_u64()).collect())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.body)
    }
}

struct Api<'a> {
    cli: &'a Netns,
}

impl Api<'_> {
    /// `method path` with the token and `body` (JSON text) if given.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.call_with(method, path, body, Some(TOKEN))
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        let url = format!("http://{}:{API_PORT}{path}", addr::EDGE_CLI_V4);
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["-s", "-m", "60", "-X", method, "-w", "\n%{http_code}"];
        if let Some(auth) = &auth {
            args.extend(["-H", auth.as_str()]);
        }
        if let Some(body) = body {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        args.push(&url);
        let out = self
            .cli
            .run("curl", &args)
            .unwrap_or_else(|e| panic!("curl {method} {path}: {e:#}"));
        let (text, status) = out.rsplit_once('\n').unwrap_or(("", &out));
        Answer {
            status: status.trim().parse().unwrap_or(0),
            body: serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
        }
    }
}

fn apps_path() -> String {
    format!("/zones/{ZONE}/spectrum/apps")
}

fn app_path(id: &str) -> String {
    format!("/zones/{ZONE}/spectrum/apps/{id}")
}

fn rules_path() -> String {
    format!("/zones/{ZONE}/firewall/access_rules/rules")
}

fn rule_path(id: &str) -> String {
    format!("/zones/{ZONE}/firewall/access_rules/rules/{id}")
}

/// The last `n` lines of an agent log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Expects 200 and `success: true`; returns `result`.
fn accepted(agent: &Agent, what: &str, answer: Answer) -> Value {
    assert!(
        answer.status == 200 && answer.body["success"] == true,
        "{what}: expected 200, got {answer}\nagent log:\n{}",
        tail(&agent.log(), 40)
    );
    answer.body["result"].clone()
}

/// Expects `status` with exactly the error codes `codes` and
/// `success: false`.
fn refused(agent: &Agent, what: &str, answer: &Answer, status: u16, codes: &[u64]) {
    assert!(
        answer.status == status && answer.body["success"] == false && answer.codes() == codes,
        "{what}: expected {status} {codes:?}, got {answer}\nagent log:\n{}",
        tail(&agent.log(), 20)
    );
}

/// RFC 3339 in UTC as the API writes it: `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
fn is_rfc3339_utc(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && text.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1) && b.len() > 21))
}

/// The config file as JSON.
fn file_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// The entries of `list` (`apps` or `access_rules`) in the file.
fn file_list(path: &Path, list: &str) -> Vec<Value> {
    file_json(path)[list]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ids of the file's `list`; every entry must carry one.
fn file_ids(path: &Path, list: &str) -> BTreeSet<String> {
    file_list(path, list)
        .iter()
        .map(|entry| {
            entry["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{list} entry without an id in the file: {entry}"))
                .to_owned()
        })
        .collect()
}

/// The file's entry of `list` with `id`.
fn file_entry(path: &Path, list: &str, id: &str) -> Value {
    file_list(path, list)
        .into_iter()
        .find(|entry| entry["id"] == id)
        .unwrap_or_else(|| {
            panic!(
                "no {list} entry {id} in the file:\n{}",
                std::fs::read_to_string(path).unwrap_or_default()
            )
        })
}

/// The file without the entry `id` of `list`, and without the other
/// entries' ids (the API may write ids that the file left to be derived):
/// what must stay the same across a change of that entry.
fn file_rest(file: &Value, list: &str, id: &str) -> Value {
    let mut rest = file.clone();
    // get_mut, not [], which would add the list when absent.
    if let Some(entries) = rest.get_mut(list).and_then(Value::as_array_mut) {
        entries.retain(|entry| entry["id"] != id);
    }
    for name in ["apps", "access_rules"] {
        if let Some(entries) = rest.get_mut(name).and_then(Value::as_array_mut) {
            for entry in entries {
                if let Some(entry) = entry.as_object_mut() {
                    entry.remove("id");
                }
            }
        }
    }
    // An empty list and no list are the same file.
    if let Some(object) = rest.as_object_mut() {
        object.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
    }
    rest
}

/// Asserts that from `before` to the file now only entry `id` of `list`
/// changed (appeared, changed or went).
fn assert_only_change(path: &Path, before: &Value, list: &str, id: &str, what: &str) {
    let after = file_json(path);
    assert_eq!(
        file_rest(&after, list, id),
        file_rest(before, list, id),
        "{what} changed more than {list} entry {id}:\nbefore: {before}\nafter: {after}"
    );
}

/// The ids in a list answer's `result`.
fn result_ids(result: &Value) -> BTreeSet<String> {
    result
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The first IPv4 address of an app's `edge_addresses`.
fn edge_v4(app: &Value) -> String {
    app["edge_addresses"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        })
        .unwrap_or_else(|| panic!("no IPv4 edge address in {app}"))
        .to_owned()
}

/// A config with the API on the edge's `cli`-facing address (its token
/// in a fresh file); the test adds its apps.
fn with_api(topology: &Topology) -> ConfigBuilder {
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    tests::config::write_token_file(&path, TOKEN);
    ConfigBuilder::new().api(API_PORT, &path, ZONE)
}

// ---- test 1: CRUD through the API, the file and the traffic follow ----

/// The app this test creates: `tcp/3000` to `org`'s `origin_port`, with
/// `ip_firewall` so that access rules apply to it.
fn live_app(origin_port: u16) -> Value {
    json!({
        "protocol": "tcp/3000",
        "dns": {"type": "CNAME", "name": "live.example.test"},
        "origin_direct": [format!("tcp://{}:{origin_port}", addr::ORG_V4)],
        "proxy_protocol": "off",
        "tls": "off",
        "ip_firewall": true,
    })
}

/// The app's fields as the file should hold them after the API wrote them.
fn assert_file_app(path: &Path, id: &str, origin_port: u16, api_app: &Value) {
    let entry = file_entry(path, "apps", id);
    assert_eq!(entry["protocol"], "tcp/3000", "{entry}");
    assert_eq!(entry["dns"]["name"], "live.example.test", "{entry}");
    assert_eq!(
        entry["origin_direct"],
        json!([format!("tcp://{}:{origin_port}", addr::ORG_V4)]),
        "{entry}"
    );
    assert_eq!(entry["ip_firewall"], true, "{entry}");
    assert!(entry.get("origin_dns").is_none(), "{entry}");
    // The timestamps the API showed are the file's.
    assert_eq!(entry["created_on"], api_app["created_on"], "{entry}");
    assert_eq!(entry["modified_on"], api_app["modified_on"], "{entry}");
}

/// What the steps of test 1 share: the agent, its config file, the API,
/// and the seed app that is there from the start.
struct Crud<'a> {
    agent: &'a Agent,
    file: &'a Path,
    api: Api<'a>,
    seed_id: String,
}

impl Crud<'_> {
    fn cli(&self) -> &Netns {
        self.api.cli
    }

    /// The seed app (no ip_firewall) answers, whatever the rules.
    fn seed_reachable(&self, when: &str) {
        let reply = tcp_exchange(self.cli(), &addr::edge4(0), 22, "seed")
            .unwrap_or_else(|e| panic!("seed app {when}: {e:#}\n{}", tail(&self.agent.log(), 20)));
        assert_eq!(reply, "origin 2201\nseed\n", "seed app {when}");
    }

    /// The file's bytes now, to show a refused change leaves them alone.
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.file).expect("config file")
    }

    /// A refused change did not rewrite the file.
    fn unchanged(&self, what: &str, before: &[u8]) {
        let now = self.bytes();
        assert!(
            now == before,
            "{what}: a refused change rewrote the file:\n{}",
            String::from_utf8_lossy(&now)
        );
    }

    /// The file holds the seed and `ids`, nothing else.
    fn apps_in_file_are(&self, ids: &[&str]) {
        let mut want = BTreeSet::from([self.seed_id.clone()]);
        want.extend(ids.iter().map(|id| (*id).to_owned()));
        assert_eq!(file_ids(self.file, "apps"), want);
    }

    /// An exchange with the live app at `edge`: the origin's answer.
    fn exchange(&self, edge: &str, line: &str, what: &str) -> String {
        tcp_exchange(self.cli(), edge, 3000, line)
            .unwrap_or_else(|e| panic!("{what} at {edge}: {e:#}\n{}", tail(&self.agent.log(), 30)))
    }
}

/// An origin address that does not parse.
fn bad_origin_app() -> Value {
    let mut app = live_app(5000);
    app["origin_direct"] = json!(["tcp://10.0.2.300:5000"]);
    app
}

#[test]
fn apps_and_rules_change_through_the_api_and_the_file_follows() {
    let Some(topology) = Topology::for_test(
        "apps_and_rules_change_through_the_api_and_the_file_follows",
        "apil",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origins: Vec<Background> = [2201, 5000, 5001]
        .into_iter()
        .map(|port| servers::tcp_echo(org, port).expect("origin"))
        .collect();
    // One app from the start, without access rules (ip_firewall off).
    let config = with_api(&topology)
        .app(AppJson::tcp(22, "seed.example.test").origin_direct([org4("tcp", 2201)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let api = Api { cli };
    let list = accepted(&agent, "first list", api.call("GET", &apps_path(), None));
    let seed_id = list[0]["id"].as_str().expect("seed id").to_owned();
    assert_eq!(result_ids(&list).len(), 1, "{list}");
    let crud = Crud {
        agent: &agent,
        file: agent.config_path(),
        api,
        seed_id,
    };

    refused_changes_leave_the_file_alone(&crud);
    let created = post_puts_the_app_in_the_file_and_in_force(&crud);
    let id = created["id"].as_str().expect("id").to_owned();
    pages_hold_one_app_each(&crud, &id);
    a_used_id_is_refused(&crud, &id);
    let edge = put_moves_new_connections_and_keeps_created_on(&crud, &created);
    refused_puts_change_nothing(&crud, &id, &edge);
    let rule = a_block_rule_cuts_the_firewalled_app_only(&crud, &id, &edge);
    let rule_id = rule["id"].as_str().expect("rule id").to_owned();
    patch_changes_notes_only_and_the_rule_stays(&crud, &rule, &edge);
    deleting_the_rule_lets_the_client_through(&crud, &rule_id, &edge);
    deleting_the_app_removes_it_everywhere(&crud, &id, &edge);

    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "agent exit {status}:\n{}", tail(&log, 30));
}

/// Refused before anything changed: the file keeps its bytes.
fn refused_changes_leave_the_file_alone(crud: &Crud) {
    let (agent, api) = (crud.agent, &crud.api);
    let original = crud.bytes();
    let body = live_app(5000).to_string();
    let answer = api.call_with("POST", &apps_path(), Some(&body), None);
    refused(agent, "POST without a token", &answer, 401, &[10000]);
    crud.unchanged("POST without a token", &original);

    let answer = api.call("POST", &apps_path(), Some(r#"{"protocol": "tcp/3000","#));
    refused(agent, "malformed JSON", &answer, 400, &[7000]);
    crud.unchanged("malformed JSON", &original);

    let mut unknown_field = live_app(5000);
    unknown_field["bogus_field"] = json!(1);
    let answer = api.call("POST", &apps_path(), Some(&unknown_field.to_string()));
    refused(agent, "unknown field", &answer, 400, &[7000]);
    assert!(
        answer.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bogus_field")),
        "the message names the field: {answer}"
    );
    crud.unchanged("unknown field", &original);

    let mut both = live_app(5000);
    both["origin_dns"] = json!({"name": "origin.example.test"});
    both["origin_port"] = json!(5000);
    let answer = api.call("POST", &apps_path(), Some(&both.to_string()));
    refused(
        agent,
        "origin_direct and origin_dns",
        &answer,
        400,
        &[11000],
    );
    crud.unchanged("origin_direct and origin_dns", &original);

    let answer = api.call("POST", &apps_path(), Some(&bad_origin_app().to_string()));
    refused(agent, "bad origin address", &answer, 400, &[11002]);
    crud.unchanged("bad origin address", &original);

    let mut address_dynamic = live_app(5000);
    address_dynamic["dns"] = json!({"type": "ADDRESS", "name": "live.example.test"});
    address_dynamic["edge_ips"] = json!({"type": "dynamic", "connectivity": "all"});
    let answer = api.call("POST", &apps_path(), Some(&address_dynamic.to_string()));
    refused(
        agent,
        "ADDRESS with dynamic edge_ips",
        &answer,
        400,
        &[11004],
    );
    crud.unchanged("ADDRESS with dynamic edge_ips", &original);

    for (method, body) in [
        ("GET", None),
        ("PUT", Some(body.as_str())),
        ("DELETE", None),
    ] {
        let answer = api.call(method, &app_path(UNKNOWN_ID), body);
        refused(
            agent,
            &format!("{method} unknown app"),
            &answer,
            404,
            &[10006],
        );
        crud.unchanged(&format!("{method} unknown app"), &original);
    }
}

/// POST: the app, its id, its timestamps, in the file and in force.
fn post_puts_the_app_in_the_file_and_in_force(crud: &Crud) -> Value {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let body = live_app(5000).to_string();
    let before_change = file_json(file);
    let created = accepted(
        agent,
        "POST app",
        api.call("POST", &apps_path(), Some(&body)),
    );
    let id = created["id"].as_str().expect("id").to_owned();
    assert_only_change(file, &before_change, "apps", &id, "POST app");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "id {id:?}"
    );
    assert!(is_rfc3339_utc(&created["created_on"]), "{created}");
    assert!(is_rfc3339_utc(&created["modified_on"]), "{created}");
    assert_eq!(created["protocol"], "tcp/3000");
    assert_eq!(
        created["origin_direct"],
        json!([format!("tcp://{}:5000", addr::ORG_V4)])
    );
    assert_eq!(created["ip_firewall"], true);
    assert_file_app(file, &id, 5000, &created);
    assert_eq!(
        file_ids(file, "apps"),
        BTreeSet::from([crud.seed_id.clone(), id.clone()]),
        "the file holds the seed and the new app, nothing else"
    );
    let one = accepted(agent, "GET app", api.call("GET", &app_path(&id), None));
    assert_eq!(one, created, "GET shows what POST answered");
    let reply = crud.exchange(&edge_v4(&created), "post", "new app");
    assert_eq!(reply, "origin 5000\npost\n");
    crud.seed_reachable("after POST");
    created
}

/// Pagination: two apps, one per page.
fn pages_hold_one_app_each(crud: &Crud, id: &str) {
    let api = &crud.api;
    let mut seen = BTreeSet::new();
    for page in [1, 2] {
        let answer = api.call(
            "GET",
            &format!("{}?page={page}&per_page=1", apps_path()),
            None,
        );
        assert_eq!(answer.status, 200, "{answer}");
        let info = &answer.body["result_info"];
        assert_eq!(
            (
                &info["page"],
                &info["per_page"],
                &info["count"],
                &info["total_count"]
            ),
            (&json!(page), &json!(1), &json!(1), &json!(2)),
            "page {page}: {answer}"
        );
        seen.extend(result_ids(&answer.body["result"]));
    }
    assert_eq!(seen, BTreeSet::from([crud.seed_id.clone(), id.to_owned()]));
    let answer = api.call("GET", &format!("{}?page=3&per_page=1", apps_path()), None);
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(answer.body["result"], json!([]), "{answer}");
    assert_eq!(answer.body["result_info"]["count"], 0, "{answer}");
}

/// The same id again is refused.
fn a_used_id_is_refused(crud: &Crud, id: &str) {
    let before = crud.bytes();
    let mut duplicate = live_app(5000);
    duplicate["id"] = json!(id);
    duplicate["protocol"] = json!("tcp/3001");
    let answer = crud
        .api
        .call("POST", &apps_path(), Some(&duplicate.to_string()));
    refused(crud.agent, "POST with a used id", &answer, 400, &[1004]);
    crud.unchanged("POST with a used id", &before);
}

/// PUT: a new origin port for new connections; created_on kept. Returns
/// the app's edge address.
fn put_moves_new_connections_and_keeps_created_on(crud: &Crud, created: &Value) -> String {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let id = created["id"].as_str().expect("id");
    let before_change = file_json(file);
    let answer = api.call("PUT", &app_path(id), Some(&live_app(5001).to_string()));
    let updated = accepted(agent, "PUT app", answer);
    assert_only_change(file, &before_change, "apps", id, "PUT app");
    assert_eq!(updated["id"], json!(id));
    assert_eq!(updated["created_on"], created["created_on"]);
    assert!(is_rfc3339_utc(&updated["modified_on"]), "{updated}");
    let seconds = |v: &Value| v.as_str().unwrap_or_default().get(..19).map(str::to_owned);
    assert!(
        seconds(&updated["modified_on"]) >= seconds(&created["modified_on"]),
        "modified_on went back: {created} -> {updated}"
    );
    assert_eq!(
        updated["origin_direct"],
        json!([format!("tcp://{}:5001", addr::ORG_V4)])
    );
    assert_file_app(file, id, 5001, &updated);
    crud.apps_in_file_are(&[id]);
    let edge = edge_v4(&updated);
    let reply = crud.exchange(&edge, "put", "changed app");
    assert_eq!(
        reply, "origin 5001\nput\n",
        "new connections reach the new port"
    );
    edge
}

/// Refused PUTs: another id in the body, a bad origin. Nothing changes.
fn refused_puts_change_nothing(crud: &Crud, id: &str, edge: &str) {
    let (agent, api) = (crud.agent, &crud.api);
    let before = crud.bytes();
    let mut other_id = live_app(5000);
    other_id["id"] = json!(UNKNOWN_ID);
    let answer = api.call("PUT", &app_path(id), Some(&other_id.to_string()));
    refused(agent, "PUT with another id", &answer, 400, &[1004]);
    crud.unchanged("PUT with another id", &before);
    let answer = api.call("PUT", &app_path(id), Some(&bad_origin_app().to_string()));
    refused(agent, "PUT with a bad origin", &answer, 400, &[11002]);
    crud.unchanged("PUT with a bad origin", &before);
    let reply = tcp_exchange(crud.cli(), edge, 3000, "still").expect("app after refused PUTs");
    assert_eq!(reply, "origin 5001\nstill\n");
}

/// An access rule blocking `cli`: the firewalled app stops answering,
/// the seed app (no ip_firewall) does not. Returns the rule.
fn a_block_rule_cuts_the_firewalled_app_only(crud: &Crud, id: &str, edge: &str) -> Value {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let rule_body = json!({"mode": "block",
        "configuration": {"target": "ip", "value": addr::CLI_V4}, "notes": "no cli"});
    let before_change = file_json(file);
    let answer = api.call("POST", &rules_path(), Some(&rule_body.to_string()));
    let rule = accepted(agent, "POST rule", answer);
    let rule_id = rule["id"].as_str().expect("rule id").to_owned();
    assert_only_change(file, &before_change, "access_rules", &rule_id, "POST rule");
    assert_eq!(rule["mode"], "block", "{rule}");
    assert_eq!(
        rule["configuration"],
        json!({"target": "ip", "value": addr::CLI_V4})
    );
    assert_eq!(rule["notes"], "no cli");
    assert!(is_rfc3339_utc(&rule["created_on"]), "{rule}");
    assert!(is_rfc3339_utc(&rule["modified_on"]), "{rule}");
    let in_file = file_entry(file, "access_rules", &rule_id);
    assert_eq!(in_file["mode"], "block", "{in_file}");
    assert_eq!(in_file["configuration"]["value"], addr::CLI_V4, "{in_file}");
    assert_eq!(in_file["created_on"], rule["created_on"], "{in_file}");
    assert_eq!(
        file_ids(file, "access_rules"),
        BTreeSet::from([rule_id.clone()])
    );
    crud.apps_in_file_are(&[id]);
    let rules = api.call("GET", &rules_path(), None);
    assert_eq!(rules.status, 200, "{rules}");
    assert_eq!(
        result_ids(&rules.body["result"]),
        BTreeSet::from([rule_id.clone()])
    );
    assert_eq!(rules.body["result_info"]["total_count"], 1, "{rules}");
    let blocked = tcp_exchange(crud.cli(), edge, 3000, "blocked");
    assert!(
        blocked.is_err(),
        "a blocked client got through: {blocked:?}"
    );
    crud.seed_reachable("with the block rule");
    rule
}

/// PATCH the notes: the rule stays in force. Only mode and notes may be
/// patched.
fn patch_changes_notes_only_and_the_rule_stays(crud: &Crud, rule: &Value, edge: &str) {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let rule_id = rule["id"].as_str().expect("rule id");
    let before_change = file_json(file);
    let answer = api.call(
        "PATCH",
        &rule_path(rule_id),
        Some(r#"{"notes": "still no cli"}"#),
    );
    let patched = accepted(agent, "PATCH rule", answer);
    assert_only_change(file, &before_change, "access_rules", rule_id, "PATCH rule");
    assert_eq!(patched["notes"], "still no cli");
    assert_eq!(patched["mode"], "block");
    assert_eq!(patched["created_on"], rule["created_on"]);
    let in_file = file_entry(file, "access_rules", rule_id);
    assert_eq!(in_file["notes"], "still no cli", "{in_file}");
    assert_eq!(in_file["mode"], "block", "{in_file}");
    let blocked = tcp_exchange(crud.cli(), edge, 3000, "blocked");
    assert!(blocked.is_err(), "blocked after PATCH: {blocked:?}");
    let before = crud.bytes();
    let answer = api.call(
        "PATCH",
        &rule_path(rule_id),
        Some(r#"{"configuration": {"target": "ip", "value": "10.0.1.99"}}"#),
    );
    refused(agent, "PATCH configuration", &answer, 400, &[7000]);
    crud.unchanged("PATCH configuration", &before);
}

/// DELETE the rule: reachable again; a second DELETE is refused.
fn deleting_the_rule_lets_the_client_through(crud: &Crud, rule_id: &str, edge: &str) {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let before_change = file_json(file);
    let answer = api.call("DELETE", &rule_path(rule_id), None);
    let deleted = accepted(agent, "DELETE rule", answer);
    assert_only_change(file, &before_change, "access_rules", rule_id, "DELETE rule");
    assert_eq!(deleted, json!({"id": rule_id}));
    assert!(
        file_ids(file, "access_rules").is_empty(),
        "rule left in the file"
    );
    let reply = crud.exchange(edge, "free", "after the rule went");
    assert_eq!(reply, "origin 5001\nfree\n");
    let before = crud.bytes();
    let answer = api.call("DELETE", &rule_path(rule_id), None);
    refused(agent, "DELETE a deleted rule", &answer, 404, &[10006]);
    crud.unchanged("DELETE a deleted rule", &before);
}

/// DELETE the app: gone from the API, the file and the edge; a second
/// DELETE is refused.
fn deleting_the_app_removes_it_everywhere(crud: &Crud, id: &str, edge: &str) {
    let (agent, api, file) = (crud.agent, &crud.api, crud.file);
    let before_change = file_json(file);
    let answer = api.call("DELETE", &app_path(id), None);
    let deleted = accepted(agent, "DELETE app", answer);
    assert_only_change(file, &before_change, "apps", id, "DELETE app");
    assert_eq!(deleted, json!({"id": id}));
    crud.apps_in_file_are(&[]);
    let answer = api.call("GET", &app_path(id), None);
    refused(agent, "GET a deleted app", &answer, 404, &[10006]);
    let list = accepted(agent, "last list", api.call("GET", &apps_path(), None));
    assert_eq!(result_ids(&list), BTreeSet::from([crud.seed_id.clone()]));
    let gone = tcp_exchange(crud.cli(), edge, 3000, "gone");
    assert!(gone.is_err(), "a deleted app answered: {gone:?}");
    crud.seed_reachable("after DELETE");
    let before = crud.bytes();
    let answer = api.call("DELETE", &app_path(id), None);
    refused(agent, "DELETE a deleted app", &answer, 404, &[10006]);
    crud.unchanged("DELETE a deleted app", &before);
}

// ---- test 3: turning ip_firewall on cuts flows of blocked clients ----

/// A second address of `cli` that the access rule blocks; `cli`'s own
/// address stays allowed.
const FW_BLOCKED_V4: &str = "10.0.1.10";

/// The UDP app of test 3: fast path (no PROXY header) to `org`'s port 6300.
fn fw_app(ip_firewall: bool) -> Value {
    json!({
        "protocol": "udp/5300",
        "dns": {"type": "CNAME", "name": "fw.example.test"},
        "origin_direct": [format!("udp://{}:6300", addr::ORG_V4)],
        "proxy_protocol": "off",
        "ip_firewall": ip_firewall,
    })
}

/// `blocked_ip` packets in `proxy-agent stats`, over every app slot (a
/// changed app counts in a fresh slot).
fn blocked_ip(agent: &Agent) -> u64 {
    agent
        .stats()
        .expect("stats")
        .iter()
        .filter(|row| row["verdict"] == "blocked_ip")
        .map(|row| row["packets"].as_u64().unwrap_or(0))
        .sum()
}

/// `cli` gets the address the rule blocks; the agent starts with the app
/// (ip_firewall off) and the rule, in force from the start but ignored by
/// the app. Returns the UDP origin and the agent.
fn start_with_an_ignored_rule(topology: &Topology) -> (Background, Agent) {
    topology
        .cli
        .run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{FW_BLOCKED_V4}/32"),
                "dev",
                addr::CLI_IF,
            ],
        )
        .expect("add a client address");
    let origin = servers::udp_echo(&topology.org, 6300).expect("udp origin");
    let config = with_api(topology)
        .app(fw_app(false))
        .access_rules(json!([{"id": "no-fw-client", "mode": "block",
            "configuration": {"target": "ip", "value": FW_BLOCKED_V4}}]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    (origin, agent)
}

/// Waits until `blocked_ip` counts `at_least` packets (they are counted a
/// moment after the client returns; 30 s at most, a hang guard); the count.
fn blocked_ip_settled(agent: &Agent, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut blocked = blocked_ip(agent);
    while blocked < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        blocked = blocked_ip(agent);
    }
    blocked
}

#[test]
fn turning_ip_firewall_on_through_the_api_cuts_flows_of_blocked_clients() {
    let Some(topology) = Topology::for_test(
        "turning_ip_firewall_on_through_the_api_cuts_flows_of_blocked_clients",
        "apifw",
    ) else {
        return;
    };
    let cli = &topology.cli;
    let (_origin, agent) = start_with_an_ignored_rule(&topology);
    let api = Api { cli };
    let list = accepted(&agent, "list", api.call("GET", &apps_path(), None));
    let id = list[0]["id"].as_str().expect("app id").to_owned();
    let edge = edge_v4(&list[0]);
    // Fixed source ports: each exchange below is the same 5-tuple, so the
    // same fast-path flow while it lives.
    let blocked_flow = format!("{FW_BLOCKED_V4}:40000");
    let allowed_flow = format!("{}:40001", addr::CLI_V4);
    let exchange = |from: &str, line: &str| {
        udp_exchange_from(cli, from, &edge, 5300, line)
            .unwrap_or_else(|e| panic!("udp from {from}: {e:#}\n{}", tail(&agent.log(), 30)))
    };

    // The control: with ip_firewall off, the blocked address's flow answers.
    for from in [&blocked_flow, &allowed_flow] {
        assert_eq!(
            exchange(from, "before"),
            "origin 6300: before\n",
            "flow from {from} with ip_firewall off\n{}",
            tail(&agent.log(), 30)
        );
    }
    assert_eq!(
        blocked_ip(&agent),
        0,
        "nothing blocked while ip_firewall is off"
    );

    let mut body = fw_app(true);
    body["id"] = json!(id);
    let updated = accepted(
        &agent,
        "PUT ip_firewall on",
        api.call("PUT", &app_path(&id), Some(&body.to_string())),
    );
    assert_eq!(updated["ip_firewall"], true, "{updated}");
    assert_eq!(
        edge_v4(&updated),
        edge,
        "the app keeps its edge address: {updated}"
    );

    // The same 5-tuple from the blocked address gets nothing now: its flow
    // was cut and its new packets are checked against the rule.
    assert_eq!(
        exchange(&blocked_flow, "after"),
        "",
        "the open flow of a blocked client once ip_firewall is on\nagent log:\n{}",
        tail(&agent.log(), 30)
    );
    assert_eq!(
        exchange(FW_BLOCKED_V4, "fresh"),
        "",
        "a new flow of a blocked client"
    );
    // The allowed client's flow goes on.
    assert_eq!(
        exchange(&allowed_flow, "after"),
        "origin 6300: after\n",
        "the allowed client's flow\n{}",
        tail(&agent.log(), 30)
    );
    // Both blocked exchanges are counted.
    let blocked = blocked_ip_settled(&agent, 2);
    assert!(
        blocked >= 2,
        "blocked_ip counted {blocked} packets\n{}",
        tail(&agent.log(), 30)
    );

    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "agent exit {status}:\n{}", tail(&log, 30));
}

// ---- test 2: reload under load ----

/// A reproducible byte stream (xorshift64), so that the receiver checks
/// every byte against what the sender sent without keeping either.
struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    fn new() -> Self {
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        // What is left of the current word, then whole words, then a part.
        let head = (8 - self.used).min(out.len());
        out[..head].copy_from_slice(&self.word[self.used..self.used + head]);
        self.used += head;
        let mut words = out[head..].chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.word = self.next();
            rest.copy_from_slice(&self.word[..rest.len()]);
            self.used = rest.len();
        }
    }

    fn next(&mut self) -> [u8; 8] {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state.to_le_bytes()
    }
}

/// The sender and the receiver cut the stream differently: the bytes must
/// not depend on where.
#[test]
fn the_pattern_is_the_same_however_it_is_cut() {
    let mut whole = vec![0u8; 1000];
    Pattern::new().fill(&mut whole);
    let mut pieces = Pattern::new();
    let mut cut = Vec::new();
    for len in [0, 1, 7, 8, 3, 64, 5, 400].into_iter().cycle().take(60) {
        let mut part = vec![0u8; len.min(1000 - cut.len())];
        pieces.fill(&mut part);
        cut.extend(part);
    }
    assert_eq!(cut.len(), 1000);
    assert_eq!(cut, whole);
    assert!(whole.windows(8).any(|w| w != [0; 8]), "not all zeros");
}

/// The TCP transfer's sending pace while B changes, at least this much
/// in all, and at most that much.
const TCP_RATE: u64 = 25_000_000;
const TCP_MIN_BYTES: u64 = 100_000_000;
const TCP_MAX_BYTES: u64 = 200_000_000;
/// No thread runs longer than this: a hang guard (the work is bounded by
/// bytes, datagrams and rounds), sized for a loaded two-core machine.
const STREAM_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Iterations of add, change, delete of app B, and a hang guard on them
/// (well inside `STREAM_DEADLINE`, so that the streams outlive them).
const ROUNDS: usize = 50;
const CHURN_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// A thread's socket is bound: a hang guard.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long the UDP client waits for one echo before it counts the
/// datagram lost: a hang guard (no datagram is lost on a working path;
/// an echo late by a stall must not count as lost).
const ECHO_LIMIT: Duration = Duration::from_secs(10);

/// What the origin's TCP sink saw.
#[derive(Debug, Default)]
struct SinkReport {
    bytes: u64,
    first_mismatch: Option<u64>,
    /// How the stream ended: `None` for a clean EOF.
    error: Option<String>,
}

/// A TCP origin in `org` on `port` that takes one connection and checks
/// every byte against [`Pattern`]. Listening when this returns.
fn tcp_pattern_sink(org: &Netns, port: u16) -> JoinHandle<SinkReport> {
    let enter = org.enter_handle();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let listener = enter()
            .and_then(|()| Ok(TcpListener::bind(("0.0.0.0", port))?))
            .and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(l)
            });
        let listener = match listener {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
                return SinkReport::default();
            }
        };
        let deadline = Instant::now() + STREAM_DEADLINE;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return SinkReport {
                        error: Some(format!("accept: {e}")),
                        ..SinkReport::default()
                    };
                }
            }
        };
        let mut report = SinkReport::default();
        let setup = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(30))));
        if let Err(e) = setup {
            report.error = Some(format!("socket setup: {e}"));
            return report;
        }
        let mut pattern = Pattern::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut want = vec![0u8; buf.len()];
        loop {
            if Instant::now() > deadline {
                report.error = Some("still receiving at the deadline".into());
                return report;
            }
            match stream.read(&mut buf) {
                Ok(0) => return report,
                Ok(n) => {
                    pattern.fill(&mut want[..n]);
                    if report.first_mismatch.is_none()
                        && let Some(k) = (0..n).find(|&k| buf[k] != want[k])
                    {
                        report.first_mismatch = Some(report.bytes + k as u64);
                    }
                    report.bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    report.error = Some(format!("read after {} bytes: {e}", report.bytes));
                    return report;
                }
            }
        }
    });
    match ready_rx.recv_timeout(READY_LIMIT) {
        Ok(Ok(())) => handle,
        Ok(Err(e)) => panic!("tcp sink: {e}"),
        Err(e) => panic!("tcp sink not ready: {e}"),
    }
}

/// What the TCP client sent and how it ended.
#[derive(Debug, Default)]
struct SenderReport {
    sent: u64,
    error: Option<String>,
}

/// A TCP client in `cli` sending [`Pattern`] to `target`: at `TCP_RATE`
/// until `stop`, then at full speed up to `TCP_MIN_BYTES`; never more than
/// `TCP_MAX_BYTES`. Then it half-closes and waits for the origin's FIN.
/// `progress` counts bytes written.
fn tcp_pattern_sender(
    cli: &Netns,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> JoinHandle<SenderReport> {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        let mut report = SenderReport::default();
        let deadline = Instant::now() + STREAM_DEADLINE;
        let connected = enter().and_then(|()| {
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(30))?;
            s.set_write_timeout(Some(Duration::from_secs(30)))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            Ok(s)
        });
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => {
                report.error = Some(format!("connect {target}: {e:#}"));
                return report;
            }
        };
        let mut pattern = Pattern::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let started = Instant::now();
        loop {
            if Instant::now() > deadline {
                report.error = Some(format!("still sending at the deadline ({})", report.sent));
                return report;
            }
            let stopping = stop.load(Ordering::Relaxed);
            if stopping && report.sent >= TCP_MIN_BYTES || report.sent >= TCP_MAX_BYTES {
                if stopping {
                    break;
                }
                // The most it may send is out: wait for the stop.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if !stopping {
                let allowed = started.elapsed().as_secs_f64() * TCP_RATE as f64;
                if report.sent as f64 > allowed {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            }
            let n = chunk.len().min((TCP_MAX_BYTES - report.sent) as usize);
            pattern.fill(&mut chunk[..n]);
            if let Err(e) = stream.write_all(&chunk[..n]) {
                report.error = Some(format!("write after {} bytes: {e}", report.sent));
                return report;
            }
            report.sent += n as u64;
            progress.store(report.sent, Ordering::Relaxed);
        }
        if let Err(e) = stream.shutdown(std::net::Shutdown::Write) {
            report.error = Some(format!("shutdown: {e}"));
            return report;
        }
        // The origin closes once it has read everything: a FIN, not a reset.
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => report.error = Some("the origin sent data".into()),
            Err(e) => report.error = Some(format!("waiting for the origin's FIN: {e}")),
        }
        report
    })
}

/// A UDP origin in `org` on `port` that echoes every datagram and counts
/// them, until `stop`. Bound when this returns.
fn udp_counting_echo(org: &Netns, port: u16, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let enter = org.enter_handle();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let socket = enter()
            .and_then(|()| Ok(UdpSocket::bind(("0.0.0.0", port))?))
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            });
        let socket = match socket {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
                return 0;
            }
        };
        let deadline = Instant::now() + STREAM_DEADLINE;
        let mut count = 0;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                count += 1;
                let _ = socket.send_to(&buf[..n], from);
            }
        }
        count
    });
    match ready_rx.recv_timeout(READY_LIMIT) {
        Ok(Ok(())) => handle,
        Ok(Err(e)) => panic!("udp origin: {e}"),
        Err(e) => panic!("udp origin not ready: {e}"),
    }
}

/// What the UDP client saw.
#[derive(Debug, Default)]
struct UdpReport {
    sent: u64,
    answered: u64,
    /// Sequence numbers with no (or a wrong) answer within [`ECHO_LIMIT`]; the first few.
    lost: Vec<u64>,
    lost_count: u64,
    error: Option<String>,
}

/// A UDP client in `cli`: one socket (one flow), datagram `seq N`, then
/// its echo within [`ECHO_LIMIT`], no retries; until `stop`. `progress`
/// counts answers.
fn udp_request_loop(
    cli: &Netns,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> JoinHandle<UdpReport> {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        let mut report = UdpReport::default();
        let socket = enter().and_then(|()| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(target)?;
            s.set_read_timeout(Some(ECHO_LIMIT))?;
            Ok(s)
        });
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                report.error = Some(format!("socket to {target}: {e:#}"));
                return report;
            }
        };
        let deadline = Instant::now() + STREAM_DEADLINE;
        let mut buf = [0u8; 2048];
        // Bounded: 100,000 datagrams at most, about 500 a second.
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && report.sent < 100_000 {
            let request = format!("seq {:08}", report.sent);
            if let Err(e) = socket.send(request.as_bytes()) {
                report.error = Some(format!("send {request}: {e}"));
                return report;
            }
            report.sent += 1;
            match socket.recv(&mut buf) {
                Ok(n) if &buf[..n] == request.as_bytes() => {
                    report.answered += 1;
                    progress.store(report.answered, Ordering::Relaxed);
                }
                _ => {
                    report.lost_count += 1;
                    if report.lost.len() < 10 {
                        report.lost.push(report.sent - 1);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        report
    })
}

/// Waits until `counter` passes `floor` (60 s at most, a hang guard).
fn wait_past(counter: &AtomicU64, floor: u64, what: &str) {
    const LIMIT: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + LIMIT;
    while counter.load(Ordering::Relaxed) <= floor {
        assert!(
            Instant::now() < deadline,
            "{what} did not start within {LIMIT:?} (a hang guard)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One shape of app B: on `tcp/2000` or `udp/2000`, fast path (no header)
/// or agent path (a PROXY header), to an origin port on `org`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    udp: bool,
    proxy_protocol: &'static str,
    origin_port: u16,
}

const B_PORT: u16 = 2000;

impl Shape {
    fn body(self) -> Value {
        let proto = if self.udp { "udp" } else { "tcp" };
        json!({
            "protocol": format!("{proto}/{B_PORT}"),
            "dns": {"type": "CNAME", "name": "b.example.test"},
            "origin_direct": [format!("{proto}://{}:{}", addr::ORG_V4, self.origin_port)],
            "proxy_protocol": self.proxy_protocol,
        })
    }

    /// One exchange through B at `edge`; an error says what came instead.
    fn check(self, cli: &Netns, edge: &str) -> Result<(), String> {
        let port = self.origin_port;
        let reply = if self.udp {
            udp_exchange(cli, edge, B_PORT, "hello")
        } else {
            tcp_exchange(cli, edge, B_PORT, "hello")
        }
        .map_err(|e| format!("{self:?} at {edge}: {e:#}"))?;
        let fits = match (self.udp, self.proxy_protocol) {
            (false, "off") => reply == format!("origin {port}\nhello\n"),
            // tcp_echo echoes the PROXY v1 line the agent put first.
            (false, _) => {
                reply.starts_with(&format!(
                    "origin {port}\nPROXY TCP4 {} {edge} ",
                    addr::CLI_V4
                )) && reply.ends_with(&format!(" {B_PORT}\r\nhello\n"))
            }
            (true, "off") => reply == format!("origin {port}: hello\n"),
            // udp-pp-origin says what the PROXY v2 header named.
            (true, _) => {
                reply.starts_with(&format!("client={}:", addr::CLI_V4))
                    && reply.contains(&format!("proxy={edge}:{B_PORT} headers=1 payload=hello"))
            }
        };
        if fits {
            Ok(())
        } else {
            Err(format!("{self:?} at {edge}: unexpected reply {reply:?}"))
        }
    }
}

/// Round `i`'s shapes of B, as POSTed and as PUT: fast path to agent path
/// and back for TCP; a new origin port, and agent path to fast path, for UDP.
fn shapes(i: usize) -> (Shape, Shape) {
    let s = |udp, proxy_protocol, origin_port| Shape {
        udp,
        proxy_protocol,
        origin_port,
    };
    match i % 4 {
        0 => (s(false, "off", 4000), s(false, "v1", 4001)),
        1 => (s(false, "v1", 4001), s(false, "off", 4000)),
        2 => (s(true, "off", 4000), s(true, "off", 4001)),
        _ => (s(true, "v2", 4002), s(true, "off", 4000)),
    }
}

/// Adds, changes and deletes B `ROUNDS` times; every answer must be 200,
/// and B must answer in each of its shapes.
fn churn(api: &Api) -> Result<(), String> {
    let cli = api.cli;
    let fail =
        |round: usize, step: &str, detail: String| Err(format!("round {round}, {step}: {detail}"));
    let deadline = Instant::now() + CHURN_DEADLINE;
    for round in 0..ROUNDS {
        if Instant::now() > deadline {
            return fail(
                round,
                "start",
                format!("rounds still going after {CHURN_DEADLINE:?}"),
            );
        }
        let (posted, put) = shapes(round);
        let answer = api.call("POST", &apps_path(), Some(&posted.body().to_string()));
        if answer.status != 200 {
            return fail(round, "POST", answer.to_string());
        }
        let created = &answer.body["result"];
        let Some(id) = created["id"].as_str().map(str::to_owned) else {
            return fail(round, "POST", format!("no id: {answer}"));
        };
        if let Err(e) = posted.check(cli, &edge_v4(created)) {
            return fail(round, "traffic after POST", e);
        }
        let answer = api.call("PUT", &app_path(&id), Some(&put.body().to_string()));
        if answer.status != 200 {
            return fail(round, "PUT", answer.to_string());
        }
        if let Err(e) = put.check(cli, &edge_v4(&answer.body["result"])) {
            return fail(round, "traffic after PUT", e);
        }
        let answer = api.call("DELETE", &app_path(&id), None);
        if answer.status != 200 || answer.body["result"] != json!({"id": id}) {
            return fail(round, "DELETE", answer.to_string());
        }
    }
    Ok(())
}

/// What the load test saw: the rounds' result, A's progress counters
/// (TCP bytes, UDP answers) when the rounds began and ended, and what
/// each of A's streams reported.
struct LoadRun {
    churned: Result<(), String>,
    at_start: (u64, u64),
    at_end: (u64, u64),
    sent: SenderReport,
    received: SinkReport,
    udp: UdpReport,
    udp_at_origin: u64,
}

impl LoadRun {
    /// What moved, for the test's output.
    fn summary(&self, churn_time: Duration) -> String {
        format!(
            "{ROUNDS} rounds in {churn_time:?}; TCP {} bytes ({} during the rounds); \
             UDP {} sent, {} answered ({} during the rounds), {} at the origin",
            self.sent.sent,
            self.at_end.0 - self.at_start.0,
            self.udp.sent,
            self.udp.answered,
            self.at_end.1 - self.at_start.1,
            self.udp_at_origin
        )
    }

    /// Every problem at once: a failed round and what the streams saw.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = &self.churned {
            problems.push(e.clone());
        }
        // Both streams ran through the rounds.
        if self.at_end.0 <= self.at_start.0 {
            problems.push("no TCP bytes went while B changed".to_owned());
        }
        if self.at_end.1 <= self.at_start.1 {
            problems.push("no UDP answers while B changed".to_owned());
        }
        // TCP: everything sent arrived, byte for byte, and ended with FINs.
        if let Some(e) = &self.sent.error {
            problems.push(format!("TCP sender: {e}"));
        }
        if self.sent.sent < TCP_MIN_BYTES {
            problems.push(format!("TCP: sent only {} bytes", self.sent.sent));
        }
        if let Some(e) = &self.received.error {
            problems.push(format!("TCP origin: {e}"));
        }
        if let Some(offset) = self.received.first_mismatch {
            problems.push(format!("TCP: the bytes differ from offset {offset}"));
        }
        if self.received.bytes != self.sent.sent {
            problems.push(format!(
                "TCP: {} bytes sent, {} received",
                self.sent.sent, self.received.bytes
            ));
        }
        // UDP: every request answered, the first time.
        if let Some(e) = &self.udp.error {
            problems.push(format!("UDP client: {e}"));
        }
        if self.udp.lost_count != 0 || self.udp.answered != self.udp.sent {
            problems.push(format!(
                "UDP: {} sent, {} answered, {} lost (first: {:?})",
                self.udp.sent, self.udp.answered, self.udp.lost_count, self.udp.lost
            ));
        }
        if self.udp_at_origin != self.udp.sent {
            problems.push(format!(
                "UDP: {} sent, {} reached the origin",
                self.udp.sent, self.udp_at_origin
            ));
        }
        problems
    }
}

/// B's origins: echo servers that say which port answered (4000, 4001,
/// TCP and UDP) and a PROXY v2 UDP origin (4002).
fn b_origins(org: &Netns) -> [Background; 5] {
    [
        servers::tcp_echo(org, 4000).expect("origin"),
        servers::tcp_echo(org, 4001).expect("origin"),
        servers::udp_echo(org, 4000).expect("origin"),
        servers::udp_echo(org, 4001).expect("origin"),
        servers::udp_pp_origin(org, 4002, "v2", "ok").expect("origin"),
    ]
}

/// A's two apps: TCP 1000 to the byte-checking sink, UDP 5300 to the
/// counting echo, both fast path.
fn app_a_config(topology: &Topology) -> String {
    with_api(topology)
        .app(
            AppJson::tcp(1000, "a-tcp.example.test")
                .origin_direct([org4("tcp", 3000)])
                .set("tls", "off")
                .proxy_protocol("off"),
        )
        .app(
            AppJson::udp(5300, "a-udp.example.test")
                .origin_direct([org4("udp", 6300)])
                .proxy_protocol("off"),
        )
        .build()
}

#[test]
fn app_a_keeps_running_byte_exact_while_app_b_changes_50_times() {
    let Some(topology) = Topology::for_test(
        "app_a_keeps_running_byte_exact_while_app_b_changes_50_times",
        "apiload",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    // A's origins (this process checks every byte and counts datagrams),
    // and B's: echo servers that say which port answered.
    let sink = tcp_pattern_sink(org, 3000);
    let udp_stop = Arc::new(AtomicBool::new(false));
    let udp_origin = udp_counting_echo(org, 6300, Arc::clone(&udp_stop));
    let _b_origins = b_origins(org);
    let agent = Agent::start(&topology.edge, &app_a_config(&topology), "native").expect("agent");
    let file = agent.config_path().to_owned();
    let api = Api { cli };
    let first = api.call("GET", &apps_path(), None);
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(first.body["result_info"]["total_count"], 2, "{first}");

    // A's streams, started before B's first change.
    let stop = Arc::new(AtomicBool::new(false));
    let (tcp_progress, udp_progress) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sender = tcp_pattern_sender(
        cli,
        format!("{}:1000", addr::edge4(0)).parse().expect("addr"),
        Arc::clone(&stop),
        Arc::clone(&tcp_progress),
    );
    let udp_client = udp_request_loop(
        cli,
        format!("{}:5300", addr::edge4(1)).parse().expect("addr"),
        Arc::clone(&stop),
        Arc::clone(&udp_progress),
    );
    wait_past(&tcp_progress, 0, "the TCP transfer");
    wait_past(&udp_progress, 0, "the UDP stream");
    let at_start = (
        tcp_progress.load(Ordering::Relaxed),
        udp_progress.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let churned = churn(&api);
    let churn_time = started.elapsed();
    let at_end = (
        tcp_progress.load(Ordering::Relaxed),
        udp_progress.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender thread");
    let received = sink.join().expect("sink thread");
    let udp = udp_client.join().expect("udp client thread");
    udp_stop.store(true, Ordering::Relaxed);
    let udp_at_origin = udp_origin.join().expect("udp origin thread");
    let run = LoadRun {
        churned,
        at_start,
        at_end,
        sent,
        received,
        udp,
        udp_at_origin,
    };
    eprintln!("{}", run.summary(churn_time));
    // Every problem at once: a failed round and what the streams saw.
    let problems = run.problems();
    assert!(
        problems.is_empty(),
        "{}\nagent log:\n{}",
        problems.join("\n"),
        tail(&agent.log(), 40)
    );

    // The apps end as they began, in the API and in the file.
    let last = api.call("GET", &apps_path(), None);
    assert_eq!(last.status, 200, "{last}");
    assert_eq!(last.body["result"], first.body["result"], "apps changed");
    assert_eq!(last.body["result_info"], first.body["result_info"]);
    assert_eq!(file_ids(&file, "apps"), result_ids(&first.body["result"]));
    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "agent exit {status}:\n{}", tail(&log, 30));
}

//! The embedded authoritative DNS server (`dns_server` in the config).
//!
//! Cloudflare Spectrum publishes an app's `dns.name` in the Cloudflare zone;
//! a self-hosted edge has no such zone, so the agent can answer for the
//! names itself. For every zone in `dns_server.zones` it serves:
//!
//! - **SOA** at the apex: MNAME = `dns_server.nameserver`, RNAME =
//!   `hostmaster.<zone>`, refresh 3600, retry 600, expire 86400, minimum =
//!   `dns_server.ttl` (the negative-caching TTL of RFC 2308).
//! - **NS** at the apex: `dns_server.nameserver`.
//! - **A / AAAA** for every app whose canonical `dns.name` is in the zone:
//!   the app's edge addresses. Apps that share a name (`tcp/22` and
//!   `udp/53` of `ssh.example.com`) share one RRset, without duplicates.
//!   CNAME and ADDRESS apps alike get A/AAAA: there is no Spectrum
//!   hostname here to point a CNAME at.
//! - **Wildcards**: an app named `*.x.example.com` becomes a wildcard
//!   RRset, which answers (RFC 4592) for a name below `x.example.com` that
//!   does not exist, when `x.example.com` is its closest existing ancestor.
//!   A name it covers that is asked for a type the wildcard lacks (AAAA of
//!   an IPv4-only app, MX, HTTPS) is NODATA: NOERROR, no answer, the SOA
//!   in authority (RFC 2308, 8020: an NXDOMAIN there would be cached for
//!   the whole name, A included). A name below an existing name that has
//!   no wildcard of its own is NXDOMAIN, not the higher wildcard's.
//! - **The nameserver's own address**: when `nameserver` lies in a served
//!   zone and no app has that name, its A/AAAA are the listen addresses
//!   that are not unspecified (`0.0.0.0` and `::` publish nothing).
//!
//! **Reverse DNS.** Spectrum gives no control over PTR records; a mail
//! server behind the edge is then refused by receivers that check that the
//! forward and the reverse name agree (FCrDNS). So the server also answers
//! PTR for every edge address, naming the app: an address's PTR is the
//! first app (in config order) with a non-wildcard name on that address, so
//! every PTR published resolves back to its address. A wildcard app's
//! addresses get no PTR from it (no single name to give). The reverse zones
//! are:
//!
//! - `edge.address_pool.ipv4` / `.ipv6`: the `in-addr.arpa` / `ip6.arpa`
//!   zones of the pool's prefix, whose labels are 8 bits (IPv4) or 4 bits
//!   (IPv6). A prefix on a label boundary is one zone; another is rounded
//!   *up* to the next boundary and each of the resulting zones is served:
//!   a /22 pool is the four /24 zones, a /62 the four /64s. That is where
//!   ISPs delegate, and the server claims nothing outside the pool. (At
//!   most 256 zones; more would fall back to the one zone of the prefix
//!   rounded down, which cannot happen with 8- and 4-bit labels: rounding
//!   up adds at most 7 bits, 128 zones.) An IPv4 pool longer than /24 (a
//!   /28, say) is served as its /24 zone: rounding up would make a zone
//!   per address, and without RFC 2317 (a `0/28.100.51.198.in-addr.arpa`
//!   zone that the upstream's /24 points into with CNAMEs, which this
//!   server does not implement) there is nothing in between. The upstream
//!   must then delegate the /24 to this server, or each pool address's
//!   own name (`7.100.51.198.in-addr.arpa NS ...`), which the /24 zone
//!   here answers; an RFC 2317 CNAME has no target here;
//! - a PTR-bearing edge address in none of those (a static address of a
//!   family that has no pool): the zone of its /24 (IPv4) or /64 (IPv6).
//!
//! Each reverse zone has its own SOA (RNAME `hostmaster.<first zone>`) and
//! NS. The ISP (or RIR) must delegate that reverse zone to this server.
//! A record goes to the most specific zone that contains its owner name,
//! as queries do.
//!
//! **Serial**: per zone, a 32-bit FNV-1a fold of the zone's content (every
//! record but the SOA, plus the SOA's names and minimum). It changes when
//! the content changes and stays put across restarts and reloads that
//! change nothing. It is not monotonic; nothing here needs it to be, as
//! zone transfers (AXFR, IXFR) are refused and there are no secondaries.
//!
//! Everything else: a name in a served zone that does not exist (no
//! records, none below it, no wildcard covering it) is NXDOMAIN with the
//! zone's SOA; a name that exists without the type asked is NODATA with
//! the SOA, as is an empty non-terminal (`x.example.com` when only
//! `a.x.example.com` has records); a name outside every zone is REFUSED (no
//! recursion); a class other than IN is REFUSED; ANY gets one RRset (RFC
//! 8482); UPDATE (with a valid zone section), NOTIFY and other opcodes
//! are NOTIMP; EDNS versions above 0 are BADVERS. Unparsable queries with
//! a readable header get FORMERR, as do questions with a compression
//! pointer into the header (hickory takes them; the reply, which copies
//! the question, would not parse), both without a question section;
//! shorter ones, and messages with QR=1, are dropped.
//!
//! Layers, as elsewhere: [`zone_records`] is a pure function of the config
//! (what to answer), [`catalog`] turns it into hickory's [`Catalog`],
//! [`Authority`] holds the current catalog (replaced whole, with no
//! restart, by [`DnsServer::update`]), answers the negative cases above
//! itself (hickory's in-memory store gets wildcards and NODATA wrong: it
//! tries every wildcard up to the apex, and calls a name that only a
//! wildcard covers NXDOMAIN for a type the wildcard lacks) and answers
//! raw queries ([`Authority::answer`], used by tests and the fuzzer), and
//! [`DnsServer`] binds the sockets.
//!
//! **Counting.** [`Authority`] counts every answer it sends by response
//! code and query type ([`DnsAnswers`], for `/metrics`). The FORMERR that
//! hickory's own loop sends for a message it cannot parse past the header
//! never reaches the handler, so the server cannot count it; the same
//! answer from [`Authority::answer`] is counted.
//!
//! hickory's server logs every answered request at `info` (target
//! `hickory_server`); a busy server wants `RUST_LOG=info,hickory_server=warn`.
//! Listen on specific addresses rather than `0.0.0.0` on a host with
//! several: UDP replies from a wildcard socket leave with the kernel's
//! choice of source address. A listen address may be an edge pool address
//! that is local only through an AnyIP route (`ip -6 route add local
//! fd00:100::/64 dev lo`): IPv4 binds such an address as it is, and an
//! IPv6 address inside `edge.address_pool.ipv6` is bound with
//! `IPV6_FREEBIND`. Any other address must be configured on the host, so
//! that a typo fails to bind rather than listening on nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::iter;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_server::proto::rr::{
    DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType, RrKey,
};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponse, MessageResponseBuilder, Queries, ZoneType,
};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::config::{self, Config, canonical_name, in_zone};

/// SOA refresh, retry and expire, in seconds (informative: no secondaries).
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 86_400;

/// A TCP connection that sends no query for this long is closed.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// How long [`DnsServer::shutdown`] waits for the listeners to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One served zone: its origin, serial and every record (SOA included),
/// sorted by owner name and type, without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub origin: Name,
    pub serial: u32,
    pub records: Vec<Record>,
}

/// What the server answers: the forward zones of `dns_server.zones`
/// and the reverse zones of the edge addresses, by origin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZoneSet {
    pub zones: Vec<Zone>,
}

impl ZoneSet {
    /// The zones' origins, without the trailing dot.
    pub fn origins(&self) -> Vec<String> {
        self.zones.iter().map(|z| display_name(&z.origin)).collect()
    }

    /// Distinct owner names across all zones (apexes included).
    pub fn names(&self) -> usize {
        self.zones
            .iter()
            .flat_map(|z| z.records.iter().map(|r| LowerName::new(&r.name)))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The records to serve for `config`; empty when it has no `dns_server`.
///
/// Fails only on a zone or nameserver that is not a valid DNS name (which
/// validation already refuses); an app name that is not one is skipped
/// with a warning.
pub fn zone_records(config: &Config) -> anyhow::Result<ZoneSet> {
    let Some(dns) = &config.dns_server else {
        return Ok(ZoneSet::default());
    };
    let ttl = dns.ttl;
    let mname = fqdn(&dns.nameserver).context("dns_server.nameserver")?;
    let default_rname = match dns.zones.first() {
        Some(zone) => format!("hostmaster.{zone}"),
        None => format!("hostmaster.{}", dns.nameserver),
    };

    // Origin (canonical, no trailing dot) -> RNAME.
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    for (k, zone) in dns.zones.iter().enumerate() {
        fqdn(zone).with_context(|| format!("dns_server.zones[{k}]"))?;
        origins.insert(zone.clone(), format!("hostmaster.{zone}"));
    }

    // (owner, rdata) pairs, owner canonical; duplicates are dropped later.
    let mut data: Vec<(String, RData)> = Vec::new();
    // Edge address -> the name its PTR gives: the first app's.
    let mut ptrs: BTreeMap<IpAddr, String> = BTreeMap::new();
    for app in &config.apps {
        let name = canonical_name(&app.dns.name);
        for &ip in &app.edge_addrs {
            data.push((name.clone(), address_rdata(ip)));
            if !name.starts_with("*.") {
                ptrs.entry(ip).or_insert_with(|| name.clone());
            }
        }
    }
    let nameserver_is_app = config
        .apps
        .iter()
        .any(|app| canonical_name(&app.dns.name) == dns.nameserver);
    if !nameserver_is_app && origins.keys().any(|z| in_zone(&dns.nameserver, z)) {
        let listen: BTreeSet<IpAddr> = dns
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        if listen.is_empty() {
            warn!(
                nameserver = %dns.nameserver,
                "dns_server.nameserver is in a served zone but every listen address is \
                 unspecified: it gets no A/AAAA record"
            );
        }
        data.extend(
            listen
                .into_iter()
                .map(|ip| (dns.nameserver.clone(), address_rdata(ip))),
        );
    }

    // Reverse zones: the pools', then /24 or /64 for addresses outside all.
    let pool = &config.edge.address_pool;
    let pools = [pool.ipv4.map(IpNet::V4), pool.ipv6.map(IpNet::V6)];
    for zone in pools.into_iter().flatten().flat_map(pool_reverse_zones) {
        origins.entry(zone).or_insert_with(|| default_rname.clone());
    }
    for (&ip, name) in &ptrs {
        let owner = reverse_name(ip);
        if !origins.keys().any(|z| in_zone(&owner, z)) {
            let prefix = if ip.is_ipv4() { 24 } else { 64 };
            origins.insert(reverse_zone(ip, prefix), default_rname.clone());
        }
        match fqdn(name) {
            Ok(target) => data.push((owner, RData::PTR(PTR(target)))),
            Err(error) => warn!(%name, %error, "not a DNS name; the DNS server skips it"),
        }
    }

    // Each record in the most specific zone holding its owner.
    let mut contents: BTreeMap<String, BTreeMap<RrKey, (Name, Vec<RData>)>> = origins
        .keys()
        .map(|origin| (origin.clone(), BTreeMap::new()))
        .collect();
    for (owner, rdata) in data {
        let Some(zone) = origins
            .keys()
            .filter(|z| in_zone(&owner, z))
            .max_by_key(|z| z.len())
        else {
            continue; // outside every zone: validation warned about it
        };
        let name = match fqdn(&owner) {
            Ok(name) => name,
            Err(error) => {
                warn!(name = %owner, %error, "not a DNS name; the DNS server skips it");
                continue;
            }
        };
        let Some(records) = contents.get_mut(zone) else {
            continue;
        };
        let key = RrKey::new(LowerName::new(&name), rdata.record_type());
        let (_, rdatas) = records.entry(key).or_insert_with(|| (name, Vec::new()));
        if !rdatas.contains(&rdata) {
            rdatas.push(rdata);
        }
    }

    let mut zones = Vec::with_capacity(origins.len());
    for (origin_text, rname_text) in &origins {
        let origin = fqdn(origin_text)?;
        let rname = fqdn(rname_text)?;
        let mut records = contents.remove(origin_text).unwrap_or_default();
        records
            .entry(RrKey::new(LowerName::new(&origin), RecordType::NS))
            .or_insert_with(|| (origin.clone(), Vec::new()))
            .1
            .push(RData::NS(NS(mname.clone())));
        let serial = content_serial(&records, &mname, &rname, ttl);
        let soa = SOA::new(
            mname.clone(),
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        records.insert(
            RrKey::new(LowerName::new(&origin), RecordType::SOA),
            (origin.clone(), vec![RData::SOA(soa)]),
        );
        let records = records
            .into_values()
            .flat_map(|(name, rdatas)| {
                rdatas
                    .into_iter()
                    .map(move |rdata| Record::from_rdata(name.clone(), ttl, rdata))
            })
            .collect();
        zones.push(Zone {
            origin,
            serial,
            records,
        });
    }
    Ok(ZoneSet { zones })
}

/// hickory's catalog of `zones`: one in-memory primary zone each, zone
/// transfers denied.
pub fn catalog(zones: &ZoneSet) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::new();
    for zone in &zones.zones {
        let mut rrsets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
        for record in &zone.records {
            let key = RrKey::new(LowerName::new(&record.name), record.record_type());
            rrsets
                .entry(key)
                .or_insert_with(|| {
                    RecordSet::with_ttl(record.name.clone(), record.record_type(), record.ttl)
                })
                .insert(record.clone(), zone.serial);
        }
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            zone.origin.clone(),
            rrsets,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .map_err(|e| anyhow!("zone {}: {e}", display_name(&zone.origin)))?;
        catalog.upsert(LowerName::new(&zone.origin), vec![Arc::new(handler)]);
    }
    Ok(catalog)
}

/// The answers: the current catalog and what exists in each zone,
/// replaced together by [`replace`](Self::replace). Cheap to clone (clones
/// share them). It is the server's request handler.
#[derive(Clone)]
pub struct Authority {
    current: Arc<RwLock<Arc<Answers>>>,
    /// Outlives [`replace`](Self::replace): counters are cumulative
    /// across reloads, as Prometheus expects of a counter.
    counts: DnsAnswers,
}

/// Answers sent, by (response code, query type). Cheap to clone: clones
/// share the counts, so the metrics endpoint keeps a handle while the
/// server counts.
///
/// Keys are `&'static str` from fixed sets (the RFC mnemonics of the
/// response codes, hickory's record type names with `Unknown` for every
/// type it does not know, `-` for no single question): a client choosing
/// query types cannot make the number of series grow past a few hundred.
#[derive(Clone, Debug, Default)]
pub struct DnsAnswers(Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>);

impl DnsAnswers {
    /// One more answer with `rcode` to a question of `qtype`.
    fn count(&self, rcode: ResponseCode, qtype: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((rcode_name(rcode), qtype)).or_default() += 1;
    }

    /// Every (rcode, qtype, answers) counted so far, sorted.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&(rcode, qtype), &n)| (rcode.to_string(), qtype.to_string(), n))
            .collect()
    }
}

/// The RFC mnemonic of `code` (`NOERROR`, `NXDOMAIN`, ...), as dig prints
/// it. 16 is BADVERS: hickory decodes it as BADSIG (TSIG), which this
/// server never uses.
fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS | ResponseCode::BADSIG => "BADVERS",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        ResponseCode::BADMODE => "BADMODE",
        ResponseCode::BADNAME => "BADNAME",
        ResponseCode::BADALG => "BADALG",
        ResponseCode::BADTRUNC => "BADTRUNC",
        ResponseCode::BADCOOKIE => "BADCOOKIE",
        ResponseCode::Unknown(_) => "UNKNOWN",
    }
}

/// The query type an answer to `request` is counted under: the type of
/// its one question, or `-` when it has none, several, or one this
/// server calls unparsable (a pointer into the header).
fn counted_qtype(request: &Request) -> &'static str {
    match request.queries.queries() {
        [query] if !question_points_into_header(request.queries.as_bytes()) => {
            query.query_type().into()
        }
        _ => "-",
    }
}

/// A response handler that counts what `inner` sends: wrapping the
/// handle rather than counting in each branch catches every answer,
/// hickory's catalog's included, with the code actually sent (SERVFAIL
/// when the message could not be encoded).
#[derive(Clone)]
struct Counted<R> {
    inner: R,
    counts: DnsAnswers,
    qtype: &'static str,
}

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for Counted<R> {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let info = self.inner.send_response(response).await?;
        self.counts.count(info.response_code, self.qtype);
        Ok(info)
    }
}

/// One generation of answers: hickory's catalog, for positive answers,
/// and the zones' names, for the negative ones (see [`ZoneNames`]).
struct Answers {
    catalog: Catalog,
    zones: Vec<ZoneNames>,
}

impl Answers {
    fn new(zones: &ZoneSet) -> anyhow::Result<Self> {
        Ok(Answers {
            catalog: catalog(zones)?,
            zones: zones
                .zones
                .iter()
                .map(ZoneNames::new)
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// The negative answer to `qname`/`qtype` (NXDOMAIN, or NOERROR for
    /// NODATA) with the SOA to put in authority, or `None` when the
    /// catalog answers: records of that type exist, or `qname` is in no
    /// zone (REFUSED).
    fn negative(&self, qname: &LowerName, qtype: RecordType) -> Option<(ResponseCode, &Record)> {
        // The most specific zone, as the catalog picks it.
        let zone = self
            .zones
            .iter()
            .filter(|z| z.origin.zone_of(qname))
            .max_by_key(|z| z.origin.num_labels())?;
        Some((zone.negative(qname, qtype)?, &zone.soa))
    }
}

/// What exists in one zone. hickory's in-memory store gets negative
/// answers around wildcards wrong: a name that only a wildcard covers is
/// NXDOMAIN for a type the wildcard lacks (RFC 4592 says NODATA), and it
/// tries every wildcard from the name up to the apex (RFC 4592: only the
/// one at the closest encloser), also for names that exist without the
/// type asked. So those answers are decided here, before the catalog.
struct ZoneNames {
    origin: LowerName,
    /// The apex SOA, for the authority section.
    soa: Record,
    /// Every owner name, with its record types.
    types: BTreeMap<LowerName, BTreeSet<RecordType>>,
    /// Every name that exists: the owners and their ancestors up to the
    /// origin (empty non-terminals).
    exists: BTreeSet<LowerName>,
}

impl ZoneNames {
    fn new(zone: &Zone) -> anyhow::Result<Self> {
        let origin = LowerName::new(&zone.origin);
        let mut types: BTreeMap<LowerName, BTreeSet<RecordType>> = BTreeMap::new();
        let mut exists = BTreeSet::new();
        let mut soa = None;
        for record in &zone.records {
            let owner = LowerName::new(&record.name);
            if !origin.zone_of(&owner) {
                bail!(
                    "zone {}: {} is not in it",
                    display_name(&zone.origin),
                    record.name
                );
            }
            if record.record_type() == RecordType::SOA && owner == origin {
                soa = Some(record.clone());
            }
            types
                .entry(owner.clone())
                .or_default()
                .insert(record.record_type());
            let mut name = owner;
            while exists.insert(name.clone()) && name != origin {
                name = name.base_name();
            }
        }
        let soa = soa.ok_or_else(|| anyhow!("zone {}: no SOA", display_name(&zone.origin)))?;
        Ok(ZoneNames {
            origin,
            soa,
            types,
            exists,
        })
    }

    /// The negative response code for `qname` (in this zone) and `qtype`,
    /// or `None` when records answer it: the name's own, or the wildcard
    /// at its closest encloser (RFC 4592 section 3.3.1), which hickory
    /// then expands.
    fn negative(&self, qname: &LowerName, qtype: RecordType) -> Option<ResponseCode> {
        // hickory answers ANY with one RRset, and for a name that has none
        // of its own (a wildcard's), with the A RRset.
        let answers = |types: &BTreeSet<RecordType>, any_as: Option<RecordType>| {
            let wanted = match qtype {
                RecordType::ANY => any_as.is_none_or(|t| types.contains(&t)),
                _ => types.contains(&qtype),
            };
            wanted || types.contains(&RecordType::CNAME)
        };
        if let Some(types) = self.types.get(qname) {
            return (!answers(types, None)).then_some(ResponseCode::NoError);
        }
        if self.exists.contains(qname) {
            return Some(ResponseCode::NoError); // an empty non-terminal
        }
        // The closest encloser is the deepest existing ancestor; the
        // "next closer name" is its child on the way to `qname`.
        let mut next_closer = qname.clone();
        loop {
            let parent = next_closer.base_name();
            if self.exists.contains(&parent) {
                break;
            }
            if parent.is_root() || !self.origin.zone_of(&parent) {
                return None; // not below the origin: the catalog refuses it
            }
            next_closer = parent;
        }
        match self.types.get(&next_closer.into_wildcard()) {
            Some(types) if answers(types, Some(RecordType::A)) => None,
            Some(_) => Some(ResponseCode::NoError),
            None => Some(ResponseCode::NXDomain),
        }
    }
}

impl Authority {
    pub fn new(zones: &ZoneSet) -> anyhow::Result<Self> {
        Ok(Authority {
            current: Arc::new(RwLock::new(Arc::new(Answers::new(zones)?))),
            counts: DnsAnswers::default(),
        })
    }

    /// The answers counted so far, and from now on (a shared handle).
    pub fn answers(&self) -> DnsAnswers {
        self.counts.clone()
    }

    /// The authority for `config`'s `dns_server` (empty when it has none).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Self::new(&zone_records(config)?)
    }

    /// Answers from `zones` from now on; queries being answered finish
    /// with the old ones. On error the old answers stay.
    pub fn replace(&self, zones: &ZoneSet) -> anyhow::Result<()> {
        let new = Arc::new(Answers::new(zones)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    fn current(&self) -> Arc<Answers> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The reply to `query` (a DNS message as received over UDP from
    /// `src`), exactly as the server would send it, or `None` when the
    /// server would send nothing: fewer than 12 bytes (no header), or a
    /// response (QR=1). Input it cannot parse past the header gets FORMERR,
    /// as in hickory's server loop, which this mirrors.
    pub async fn answer(&self, query: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let header = Header::read(&mut BinDecoder::new(query)).ok()?;
        let capture = Capture::default();
        match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
            Ok(request) => {
                if request.metadata.message_type == MessageType::Response {
                    return None;
                }
                self.handle_request::<_, TokioTime>(&request, capture.clone())
                    .await;
            }
            Err(_) => {
                let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
                let response = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                let mut counted = Counted {
                    inner: capture.clone(),
                    counts: self.counts.clone(),
                    qtype: "-",
                };
                counted.send_response(response).await.ok()?;
            }
        }
        capture.take()
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let counted = Counted {
            inner: response_handle,
            counts: self.counts.clone(),
            qtype: counted_qtype(request),
        };
        self.respond::<_, T>(request, counted).await
    }
}

impl Authority {
    /// The answer to `request`, sent through `response_handle`.
    async fn respond<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if question_points_into_header(request.queries.as_bytes()) {
            // hickory echoes the question as received: its pointer would
            // point into the reply's header. FORMERR, with no question.
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::FormErr;
            return match Queries::read(&mut BinDecoder::new(&[]), 0) {
                Ok(none) => send(request, &none, metadata, &[], response_handle).await,
                Err(_) => serve_failed(request),
            };
        }
        if let Some(code) = refusal(request) {
            return send_error(request, code, response_handle).await;
        }
        let answers = self.current();
        if let Some(query) = standard_query(request)
            && let Some((code, soa)) = answers.negative(query.name(), query.query_type())
        {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.authoritative = true;
            metadata.response_code = code;
            return send(request, &request.queries, metadata, &[soa], response_handle).await;
        }
        answers
            .catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Whether a name in `question` (a question section as received) has a
/// compression pointer into the 12-byte header. hickory's decoder takes a
/// pointer to anywhere before the name, which for the first question is
/// only the header: nonsense, and hickory's reply, which copies the
/// question's bytes as received, would point at its own header and not
/// parse.
fn question_points_into_header(question: &[u8]) -> bool {
    const HEADER_LEN: usize = 12;
    let mut at = 0;
    while at < question.len() {
        loop {
            let Some(&len) = question.get(at) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                let low = question.get(at + 1).copied().unwrap_or(0);
                if (usize::from(len & 0x3f) << 8 | usize::from(low)) < HEADER_LEN {
                    return true;
                }
                at += 2; // a pointer ends the name
                break;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        at += 4; // type and class
    }
    false
}

/// The question of `request` when it is one the catalog would look up:
/// a QUERY with one question of class IN and no EDNS version it refuses.
fn standard_query(request: &Request) -> Option<&LowerQuery> {
    let edns_ok = request.edns.as_ref().is_none_or(|e| e.version() == 0);
    let [query] = request.queries.queries() else {
        return None;
    };
    let standard = request.metadata.message_type == MessageType::Query
        && request.metadata.op_code == OpCode::Query
        && edns_ok
        && query.query_class() == DNSClass::IN;
    standard.then_some(query)
}

/// What this server refuses before the catalog sees the query: zone
/// transfers (the catalog would answer IXFR with the SOA) and classes
/// other than IN (the in-memory store ignores the class).
fn refusal(request: &Request) -> Option<ResponseCode> {
    let edns_ok = request.edns.as_ref().is_none_or(|e| e.version() == 0);
    let [query] = request.queries.queries() else {
        return None;
    };
    let refused = request.metadata.message_type == MessageType::Query
        && request.metadata.op_code == OpCode::Query
        && edns_ok
        && (matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
            || query.query_class() != DNSClass::IN);
    refused.then_some(ResponseCode::Refused)
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    send(request, &request.queries, metadata, &[], response_handle).await
}

/// Sends a response to `request` with `queries`, no answers, `authorities`,
/// and EDNS (version 0) when the request has it, as hickory's catalog does.
async fn send<R: ResponseHandler>(
    request: &Request,
    queries: &Queries,
    metadata: Metadata,
    authorities: &[&Record],
    mut response_handle: R,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|req| {
        let mut edns = Edns::new();
        edns.set_max_payload(req.max_payload().max(512));
        edns.set_version(0);
        edns
    });
    let response = MessageResponseBuilder::new(queries, edns.as_ref()).build(
        metadata,
        iter::empty(),
        authorities.iter().copied(),
        iter::empty(),
        iter::empty(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            warn!(%error, "DNS server: cannot send a response");
            serve_failed(request)
        }
    }
}

/// What the server logs for a request it could not answer.
fn serve_failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// A response handler that keeps the encoded reply (as UDP would send it).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

impl Capture {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory's `MessageResponse::encode` for UDP: the EDNS payload
        // size or 512 bytes, and SERVFAIL when the message cannot be built.
        let id = response.metadata().id;
        let max_size = response.edns().map_or(512, Edns::max_payload);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(_) => {
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                hickory_server::proto::serialize::binary::BinEncodable::emit(
                    &header,
                    &mut encoder,
                )?;
                ResponseInfo::from(header)
            }
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

/// The running server: a UDP socket and a TCP listener per listen address.
pub struct DnsServer {
    server: Server<Authority>,
    authority: Authority,
    listen: Vec<SocketAddr>,
    local_addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds every `settings.listen` address (UDP and TCP, same port; port
    /// 0 picks a free one, see [`local_addrs`](Self::local_addrs)) and
    /// answers from `zones`. A specific IPv6 address inside `pool.ipv6` is
    /// bound with `IPV6_FREEBIND` (see [`needs_freebind`]), so that a pool
    /// address routed to the host as AnyIP works. Fails, binding nothing,
    /// when an address cannot be bound. Needs a tokio runtime.
    pub async fn start(
        settings: &config::DnsServer,
        pool: &config::AddressPool,
        zones: &ZoneSet,
    ) -> anyhow::Result<Self> {
        let authority = Authority::new(zones)?;
        let mut sockets = Vec::with_capacity(settings.listen.len());
        for (k, &addr) in settings.listen.iter().enumerate() {
            let freebind = needs_freebind(addr, pool);
            sockets.push(
                bind_pair(addr, freebind)
                    .map_err(|e| anyhow!("dns_server.listen[{k}] {addr}: {e}"))?,
            );
        }
        let mut server = Server::new(authority.clone());
        let mut local_addrs = Vec::with_capacity(sockets.len());
        for (k, (udp, tcp, local)) in sockets.into_iter().enumerate() {
            let context = || format!("dns_server.listen[{k}] {local}");
            let udp = tokio::net::UdpSocket::from_std(udp).with_context(context)?;
            let tcp = tokio::net::TcpListener::from_std(tcp).with_context(context)?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
            local_addrs.push(local);
        }
        info!(
            listen = ?local_addrs,
            zones = ?zones.origins(),
            names = zones.names(),
            "DNS server started"
        );
        Ok(DnsServer {
            server,
            authority,
            listen: settings.listen.clone(),
            local_addrs,
        })
    }

    /// The bound addresses, one per `listen` entry in order (with the
    /// port the kernel chose where the config says 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The answers the server gives (to query it without a socket).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A handle on the counts of answers sent (see [`DnsAnswers`]).
    pub fn answers(&self) -> DnsAnswers {
        self.authority.answers()
    }

    /// Replaces the answers with those of `config` (its `dns_server` and
    /// apps, as [`zone_records`] makes them): names, zones, nameserver,
    /// TTL and reverse zones change with no restart, and queries being
    /// answered finish with the old ones. The sockets stay: a different
    /// `dns_server.listen` is only warned about (it takes a new
    /// [`start`](Self::start)). A config without `dns_server` is an error
    /// (shut the server down instead). On error the old answers stay.
    pub fn update(&self, config: &Config) -> anyhow::Result<()> {
        let Some(settings) = &config.dns_server else {
            bail!("the config has no dns_server: shut the DNS server down instead");
        };
        self.install(settings, &zone_records(config)?)
    }

    /// [`Self::update`] with the zones already made (a live change builds
    /// them before it switches anything).
    pub fn install(&self, settings: &config::DnsServer, zones: &ZoneSet) -> anyhow::Result<()> {
        if settings.listen != self.listen {
            warn!(
                old = ?self.listen,
                new = ?settings.listen,
                "dns_server.listen changed: the DNS server keeps its sockets until a restart"
            );
        }
        self.authority.replace(zones)?;
        info!(
            zones = ?zones.origins(),
            names = zones.names(),
            "DNS server answers updated"
        );
        Ok(())
    }

    /// Stops accepting queries and waits (briefly) for the listeners to end.
    pub async fn shutdown(mut self) {
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.server.shutdown_gracefully()).await {
            Ok(Ok(())) => info!("DNS server stopped"),
            Ok(Err(error)) => warn!(%error, "DNS server stopped with an error"),
            Err(_) => warn!("DNS server did not stop in time; its tasks are dropped"),
        }
    }
}

/// Whether listen address `addr` is bound with `IPV6_FREEBIND`: a
/// specific IPv6 address (not `::`) inside the edge pool's IPv6 prefix.
/// Such an address may be local only through an AnyIP route (`ip -6 route
/// add local <pool> dev lo`), which IPv6, unlike IPv4, refuses to bind
/// (EADDRNOTAVAIL). Any other address binds only if it is configured, so
/// that a typo fails loudly.
pub fn needs_freebind(addr: SocketAddr, pool: &config::AddressPool) -> bool {
    match addr.ip() {
        IpAddr::V6(ip) => !ip.is_unspecified() && pool.ipv6.is_some_and(|net| net.contains(&ip)),
        IpAddr::V4(_) => false,
    }
}

/// A UDP socket and a TCP listener on the same address and port; for port
/// 0, a port free for both. `freebind`: see [`needs_freebind`].
fn bind_pair(
    addr: SocketAddr,
    freebind: bool,
) -> Result<(std::net::UdpSocket, std::net::TcpListener, SocketAddr), String> {
    const ATTEMPTS: usize = 16;
    for attempt in 1..=ATTEMPTS {
        let udp = bind_udp(addr, freebind).map_err(|e| format!("cannot bind UDP: {e}"))?;
        let local = udp
            .local_addr()
            .map_err(|e| format!("cannot read the UDP address: {e}"))?;
        match bind_tcp(local, freebind) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            // The kernel's free UDP port may be a busy TCP one: try another.
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < ATTEMPTS => {}
            Err(e) => return Err(format!("cannot bind TCP: {e}")),
        }
    }
    Err("cannot find a port free for both UDP and TCP".to_string())
}

fn socket_for(
    addr: SocketAddr,
    ty: socket2::Type,
    freebind: bool,
) -> std::io::Result<socket2::Socket> {
    let protocol = if ty == socket2::Type::DGRAM {
        socket2::Protocol::UDP
    } else {
        socket2::Protocol::TCP
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), ty, Some(protocol))?;
    // `[::]` must not take IPv4's port too: `0.0.0.0` may be listed as well.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        set_freebind_v6(&socket)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// `IPV6_FREEBIND` on an IPv6 socket: it may bind an address that is not
/// (yet) local. (socket2's `set_freebind_v6` needs its `all` feature,
/// which this crate does not ask for.)
fn set_freebind_v6(socket: &socket2::Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and an option value that lives
    // through the call with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_FREEBIND,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bind_udp(addr: SocketAddr, freebind: bool) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket_for(addr, socket2::Type::DGRAM, freebind)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr, freebind: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket_for(addr, socket2::Type::STREAM, freebind)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The absolute name of canonical `name` (no trailing dot).
fn fqdn(name: &str) -> anyhow::Result<Name> {
    Name::from_ascii(format!("{name}.")).map_err(|e| anyhow!("{name:?} is not a DNS name: {e}"))
}

/// `name` without the trailing dot.
fn display_name(name: &Name) -> String {
    let text = name.to_ascii();
    match text.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => text,
    }
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The PTR owner of `ip`: `4.3.2.1.in-addr.arpa`, or the 32 reversed
/// nibbles under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    reverse_zone(ip, if ip.is_ipv4() { 32 } else { 128 })
}

/// Most reverse zones served for one pool (see [`pool_reverse_zones`]).
pub const MAX_POOL_REVERSE_ZONES: usize = 256;

/// The reverse zones served for the address pool `net`: its prefix length
/// rounded up to whole labels (8 bits for IPv4, 4 for IPv6), one zone per
/// resulting prefix, so that the zones cover the pool and nothing else: a
/// /22 is four /24 zones, a /62 four /64s; a prefix on a boundary is its
/// own zone. Exceptions, rounded down to one zone instead: an IPv4 prefix
/// longer than /24 (its /24: no zone per address), and more than
/// [`MAX_POOL_REVERSE_ZONES`] zones (which 8- and 4-bit labels never
/// reach: rounding up adds at most 7 bits).
pub fn pool_reverse_zones(net: IpNet) -> Vec<String> {
    let (label_bits, max_len) = match net {
        IpNet::V4(_) => (8, 24),
        IpNet::V6(_) => (4, 128),
    };
    let len = net.prefix_len();
    let up = len.div_ceil(label_bits) * label_bits;
    // `up - len` is less than `label_bits`: no overflow.
    let count = 1usize << (up - len);
    if up == len || len > max_len || count > MAX_POOL_REVERSE_ZONES {
        return vec![reverse_zone(net.network(), len.min(max_len))];
    }
    match net.subnets(up) {
        Ok(subnets) => subnets.map(|sub| reverse_zone(sub.network(), up)).collect(),
        // `up` lies between `len` and the family's maximum.
        Err(_) => vec![reverse_zone(net.network(), len)],
    }
}

/// The reverse zone covering `ip/prefix_len`, the prefix rounded down to
/// whole labels (8 bits for IPv4, 4 for IPv6).
pub fn reverse_zone(ip: IpAddr, prefix_len: u8) -> String {
    let (labels, suffix): (Vec<String>, &str) = match ip {
        IpAddr::V4(v4) => {
            let n = usize::from(prefix_len.min(32) / 8);
            let labels = v4.octets()[..n].iter().rev().map(u8::to_string).collect();
            (labels, "in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let n = usize::from(prefix_len.min(128) / 4);
            let nibbles: Vec<u8> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0x0f])
                .collect();
            let labels = nibbles[..n]
                .iter()
                .rev()
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            (labels, "ip6.arpa")
        }
    };
    if labels.is_empty() {
        suffix.to_string()
    } else {
        format!("{}.{suffix}", labels.join("."))
    }
}

/// The zone's serial: FNV-1a over its records (in key order) and the SOA
/// fields that are not the serial, folded to 32 bits.
fn content_serial(
    records: &BTreeMap<RrKey, (Name, Vec<RData>)>,
    mname: &Name,
    rname: &Name,
    ttl: u32,
) -> u32 {
    let mut text = format!("SOA {mname} {rname} {ttl}\n");
    for (name, rdatas) in records.values() {
        for rdata in rdatas {
            text.push_str(&format!("{name} {} {rdata}\n", rdata.record_type()));
        }
    }
    let hash = config::fnv1a_128(text.as_bytes());
    (0..4).fold(0u32, |acc, k| acc ^ (hash >> (32 * k)) as u32)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;

    use hickory_server::proto::op::{Message, Query};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TTL: u32 = 60;
    const ZONE: &str = "example.test";

    /// ssh (tcp/22 and udp/53, one name, written with upper case and a
    /// trailing dot, static addresses), mail (dynamic), a wildcard app
    /// (dynamic), and an app outside the zone.
    fn config_json() -> serde_json::Value {
        serde_json::json!({
            "edge": {
                "interfaces": ["eth0"],
                "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/62"}
            },
            "apps": [
                {
                    "protocol": "tcp/22",
                    "dns": {"type": "ADDRESS", "name": "SSH.Example.Test."},
                    "origin_direct": ["tcp://192.0.2.1:22"],
                    "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
                },
                {
                    "protocol": "udp/53",
                    "dns": {"type": "ADDRESS", "name": "ssh.example.test"},
                    "origin_direct": ["udp://192.0.2.1:53"],
                    "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
                },
                {
                    "protocol": "tcp/25",
                    "dns": {"type": "CNAME", "name": "mail.example.test"},
                    "origin_direct": ["tcp://192.0.2.2:25"]
                },
                {
                    "protocol": "tcp/443",
                    "dns": {"type": "CNAME", "name": "*.apps.example.test"},
                    "origin_direct": ["tcp://192.0.2.3:443"]
                },
                {
                    "protocol": "tcp/80",
                    "dns": {"type": "CNAME", "name": "www.elsewhere.test"},
                    "origin_direct": ["tcp://192.0.2.4:80"]
                }
            ],
            "dns_server": {"listen": ["127.0.0.1:0"], "zones": [ZONE], "ttl": TTL}
        })
    }

    fn load(json: &serde_json::Value) -> Config {
        match config::load_str(&json.to_string(), false) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("config refused: {e}"),
        }
    }

    fn test_config() -> Config {
        load(&config_json())
    }

    fn authority(config: &Config) -> Authority {
        Authority::from_config(config).expect("authority")
    }

    fn app_addrs(config: &Config, name: &str) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
        let app = config
            .apps
            .iter()
            .find(|a| canonical_name(&a.dns.name) == name)
            .expect("app");
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in &app.edge_addrs {
            match ip {
                IpAddr::V4(a) => v4.push(*a),
                IpAddr::V6(a) => v6.push(*a),
            }
        }
        (v4, v6)
    }

    fn src() -> SocketAddr {
        "192.0.2.99:5353".parse().expect("address")
    }

    fn query_message(id: u16, name: &str, qtype: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.id = id;
        message.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
        message
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        query_message(0x4242, name, qtype).to_vec().expect("encode")
    }

    async fn ask_bytes(authority: &Authority, bytes: &[u8]) -> Option<Message> {
        let reply = authority.answer(bytes, src()).await?;
        Some(Message::from_vec(&reply).expect("the reply parses"))
    }

    async fn ask(authority: &Authority, name: &str, qtype: RecordType) -> Message {
        let bytes = query(name, qtype);
        let reply = ask_bytes(authority, &bytes).await.expect("a reply");
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        reply
    }

    fn rdatas(records: &[Record]) -> Vec<RData> {
        records.iter().map(|r| r.data.clone()).collect()
    }

    fn name(text: &str) -> Name {
        Name::from_str(text).expect("name")
    }

    fn soa_of(records: &[Record]) -> Option<SOA> {
        records.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.clone()),
            _ => None,
        })
    }

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
        json["apps"][3]["edge_ips"] =
            serde_json::json!({"type": "static", "ips": ["198.51.100.9"]});
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
        json["apps"][0]["edge_ips"] =
            serde_json::json!({"type": "static", "ips": ["198.51.100.7"]});
        json["apps"][1]["edge_ips"] =
            serde_json::json!({"type": "static", "ips": ["198.51.100.7"]});
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

    /// A 12-byte header: id 0x4242, the given flags byte, qdcount.
    fn header(flags: u8, qdcount: u16) -> Vec<u8> {
        let mut bytes = vec![0x42, 0x42, flags, 0x00];
        bytes.extend_from_slice(&qdcount.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        bytes
    }

    /// QNAME ssh.example.test, type A, class IN.
    fn question() -> Vec<u8> {
        let mut bytes = Vec::new();
        for label in ["ssh", "example", "test"] {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        bytes
    }

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

    /// The zone of `zones` with origin `origin` (no trailing dot).
    fn zone_named<'z>(zones: &'z ZoneSet, origin: &str) -> &'z Zone {
        zones
            .zones
            .iter()
            .find(|z| display_name(&z.origin) == origin)
            .unwrap_or_else(|| panic!("no zone {origin} in {:?}", zones.origins()))
    }

    /// The reverse zones of the test config: the /62 pool is four /64s.
    const V6_ZONES: [&str; 4] = [
        "0.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "1.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "2.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "3.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    ];
    const V4_ZONE: &str = "100.51.198.in-addr.arpa";

    #[test]
    fn zone_records_dedupes_and_picks_reverse_zones() {
        let config = test_config();
        let zones = zone_records(&config).expect("zones");
        let mut expected: Vec<&str> = V6_ZONES.to_vec();
        expected.extend([V4_ZONE, ZONE]);
        expected.sort_unstable();
        assert_eq!(zones.origins(), expected);
        let forward = zone_named(&zones, ZONE);
        // Nothing twice (ssh's two apps), the SOA once, the wildcard kept.
        for (k, a) in forward.records.iter().enumerate() {
            for b in &forward.records[k + 1..] {
                assert!(a != b, "duplicate {a}");
            }
        }
        let owners: BTreeSet<String> = forward.records.iter().map(|r| r.name.to_ascii()).collect();
        assert_eq!(
            owners.into_iter().collect::<Vec<_>>(),
            [
                "*.apps.example.test.",
                "example.test.",
                "mail.example.test.",
                "ns.example.test.",
                "ssh.example.test.",
            ]
        );
        // Reverse names: each zone's apex; ssh, mail, and
        // www.elsewhere.test (its PTR is served though its forward zone is
        // not) in the v4 zone and the first v6 one; not the wildcard.
        assert_eq!(zones.names(), 5 + (1 + 3) + (4 + 3));
        for zone in &V6_ZONES[1..] {
            assert_eq!(zone_named(&zones, zone).records.len(), 2, "{zone}: SOA, NS");
        }
        let (v4, _) = app_addrs(&config, "www.elsewhere.test");
        let ptr = reverse_name(IpAddr::V4(v4[0])) + ".";
        let ptr = zone_named(&zones, V4_ZONE)
            .records
            .iter()
            .find(|r| r.name.to_ascii() == ptr);
        assert_eq!(
            ptr.map(|r| r.data.clone()),
            Some(RData::PTR(PTR(name("www.elsewhere.test."))))
        );
        // Same config, same serials; a change moves the serials of the zones
        // it changes.
        let again = zone_records(&test_config()).expect("zones");
        assert_eq!(zones, again);
        let mut json = config_json();
        json["dns_server"]["nameserver"] = serde_json::json!("ns1.example.test");
        let changed = zone_records(&load(&json)).expect("zones");
        for (old, new) in zones.zones.iter().zip(&changed.zones) {
            assert_ne!(old.serial, new.serial, "{}", old.origin);
            assert_eq!(soa_of(&new.records).map(|s| s.serial), Some(new.serial));
        }
        let serial = |z: &ZoneSet, origin: &str| zone_named(z, origin).serial;
        let mut json = config_json();
        json["apps"][0]["dns"]["name"] = serde_json::json!("ssh2.example.test");
        json["apps"][1]["dns"]["name"] = serde_json::json!("ssh2.example.test");
        let renamed = zone_records(&load(&json)).expect("zones");
        for (origin, moves) in [
            (V6_ZONES[0], true), // ssh's v6 PTR
            (V6_ZONES[1], false),
            (V4_ZONE, true), // ssh's v4 PTR
            (ZONE, true),    // ssh's A/AAAA
        ] {
            let (old, new) = (serial(&zones, origin), serial(&renamed, origin));
            assert_eq!(old != new, moves, "{origin}");
        }
        // The wildcard app has no PTR: renaming it moves the forward
        // zone's serial only.
        let mut json = config_json();
        json["apps"][3]["dns"]["name"] = serde_json::json!("*.web.example.test");
        let renamed = zone_records(&load(&json)).expect("zones");
        for origin in V6_ZONES.iter().chain([&V4_ZONE]) {
            assert_eq!(serial(&zones, origin), serial(&renamed, origin), "{origin}");
        }
        assert_ne!(serial(&zones, ZONE), serial(&renamed, ZONE));
        // No dns_server: nothing.
        let mut none = config.clone();
        none.dns_server = None;
        assert_eq!(zone_records(&none).expect("zones"), ZoneSet::default());
    }

    #[test]
    fn addresses_outside_the_pools_get_their_24_or_64() {
        let mut config = test_config();
        config.edge.address_pool = config::AddressPool::default();
        let zones = zone_records(&config).expect("zones");
        assert_eq!(zones.origins(), [V6_ZONES[0], V4_ZONE, ZONE]);
        // reverse_zone rounds down to whole labels.
        let v4 = |prefix| reverse_zone("198.51.100.0".parse().expect("ip"), prefix);
        assert_eq!(v4(22), "51.198.in-addr.arpa");
        assert_eq!(v4(31), "100.51.198.in-addr.arpa");
        assert_eq!(v4(32), "0.100.51.198.in-addr.arpa");
        assert_eq!(v4(7), "in-addr.arpa");
        let v6 = |prefix| reverse_zone("2001:db8::".parse().expect("ip"), prefix);
        assert_eq!(v6(32), "8.b.d.0.1.0.0.2.ip6.arpa");
        assert_eq!(v6(35), "8.b.d.0.1.0.0.2.ip6.arpa");
        assert_eq!(v6(36), "0.8.b.d.0.1.0.0.2.ip6.arpa");
    }

    #[test]
    fn pool_reverse_zones_round_up_to_whole_labels() {
        let zones = |net: &str| pool_reverse_zones(net.parse().expect("net"));
        // On a boundary: the one zone.
        assert_eq!(zones("198.51.100.0/24"), ["100.51.198.in-addr.arpa"]);
        assert_eq!(zones("198.51.0.0/16"), ["51.198.in-addr.arpa"]);
        assert_eq!(zones("0.0.0.0/0"), ["in-addr.arpa"]);
        assert_eq!(zones("2001:db8:e::/64"), [V6_ZONES[0]]);
        // A /22: its four /24s, not the /16.
        assert_eq!(
            zones("198.51.100.0/22"),
            [
                "100.51.198.in-addr.arpa",
                "101.51.198.in-addr.arpa",
                "102.51.198.in-addr.arpa",
                "103.51.198.in-addr.arpa",
            ]
        );
        // The network is taken, whatever the host bits say.
        assert_eq!(zones("198.51.101.9/23").len(), 2);
        assert_eq!(zones("198.51.101.9/23")[0], "100.51.198.in-addr.arpa");
        // The most: a /17 is 128 /24s, a /9 128 /16s.
        let v4 = zones("198.51.128.0/17");
        assert_eq!(v4.len(), 128);
        assert_eq!(
            v4.first().map(String::as_str),
            Some("128.51.198.in-addr.arpa")
        );
        assert_eq!(
            v4.last().map(String::as_str),
            Some("255.51.198.in-addr.arpa")
        );
        assert_eq!(zones("10.0.0.0/9").len(), 128);
        // Longer than /24: the /24 (no zone per address).
        for len in [25, 28, 31, 32] {
            assert_eq!(
                zones(&format!("198.51.100.16/{len}")),
                ["100.51.198.in-addr.arpa"],
                "/{len}"
            );
        }
        // IPv6: a /62 is four /64s, a /61 eight, a /63 two.
        assert_eq!(zones("2001:db8:e::/62"), V6_ZONES);
        assert_eq!(zones("2001:db8:e::/61").len(), 8);
        assert_eq!(zones("2001:db8:e:2::/63"), V6_ZONES[2..]);
        assert_eq!(
            zones("2001:db8::/30"),
            [
                "8.b.d.0.1.0.0.2.ip6.arpa",
                "9.b.d.0.1.0.0.2.ip6.arpa",
                "a.b.d.0.1.0.0.2.ip6.arpa",
                "b.b.d.0.1.0.0.2.ip6.arpa"
            ]
        );
    }

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
}

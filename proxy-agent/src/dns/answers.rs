//! The answering rules: hickory's catalog gives the positive answers,
//! and the negative ones (NXDOMAIN, NODATA) are decided here first,
//! since hickory's in-memory store gets them wrong around wildcards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{LowerName, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use super::zone::{Zone, ZoneSet, display_name};

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

/// One generation of answers: hickory's catalog, for positive answers,
/// and the zones' names, for the negative ones (see [`ZoneNames`]).
pub(super) struct Answers {
    pub(super) catalog: Catalog,
    zones: Vec<ZoneNames>,
}

impl Answers {
    pub(super) fn new(zones: &ZoneSet) -> anyhow::Result<Self> {
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
    pub(super) fn negative(
        &self,
        qname: &LowerName,
        qtype: RecordType,
    ) -> Option<(ResponseCode, &Record)> {
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

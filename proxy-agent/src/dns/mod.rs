//! The embedded authoritative DNS server (`dns_server` in the config):
//! A/AAAA for the apps' names, PTR for their edge addresses, SOA and NS,
//! so that a self-hosted edge needs no Cloudflare zone. What it answers,
//! and why, is in `docs/dns.md`.
//!
//! [`zone_records`] makes the zones from the config, [`Authority`]
//! answers from them, [`DnsServer`] serves it on sockets.

mod answers;
mod bind;
mod counts;
mod handler;
mod reverse;
mod rrl;
mod server;
mod tcp;
mod zone;

#[cfg(test)]
mod tests;

pub use answers::catalog;
pub use bind::needs_freebind;
pub use counts::DnsAnswers;
pub use handler::Authority;
pub use reverse::{MAX_POOL_REVERSE_ZONES, pool_reverse_zones, reverse_name, reverse_zone};
pub use server::DnsServer;
pub use tcp::TCP_TIMEOUT;
pub use zone::{SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, Zone, ZoneSet, zone_records};

//! The agent path: apps the kernel cannot proxy alone (TLS, PROXY and SPP
//! headers) reach the agent's sockets through sk_lookup. `routes` finds the
//! app and origin for an edge address, `tcp` and `udp` carry the
//! connections and flows, `tls` terminates and originates TLS, `header`
//! encodes and decodes PROXY v1/v2 and SPP, `origin` resolves `origin_dns`
//! names and picks the origin-facing source address; `live` lists the
//! open connections and flows, so a new block rule can cut them.
pub mod header;
pub mod live;
pub mod origin;
pub mod routes;
pub mod tcp;
pub mod tls;
pub mod udp;

//! The SYN proxy (fast-path TCP apps with `AppFlags::SYN_PROXY`): the edge
//! answers a client's SYN itself, with a SYN-ACK whose sequence number is
//! a SYN cookie from the kernel's helpers, and keeps nothing. Only a
//! client whose ACK carries a valid cookie gets a flow, a NAT port and a
//! SYN toward the origin; the origin's SYN-ACK is answered in the kernel,
//! and from then on every packet of the flow has its sequence and
//! acknowledgement numbers, SACK blocks, timestamps and window translated
//! between the two handshakes.
//!
//! It runs as a program of its own, tail-called from the packet path
//! ([`crate::path`]) with the parsed packet in its per-CPU slot: the path's
//! 512-byte stack is full.
use aya_ebpf::{macros::map, maps::ProgramArray};

/// Slot 0: the SYN proxy program of each hook (the agent fills them).
#[map]
pub static SYN_PROXY_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static SYN_PROXY_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

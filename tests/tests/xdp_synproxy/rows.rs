//! The SYN proxy's fixtures as data: the config, the namespace's
//! addresses, and every frame of the conversation (client SYN, the edge's
//! SYN-ACK, the cookie ACK, the edge's SYN to the origin, the origin's
//! SYN-ACK, the window update, data both ways, the origin's RST), built
//! from the wire numbers below and from what the edge chose in earlier
//! steps ([`Flow`]: its cookie and TSval), never from the program's
//! translation of them.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tests::packet::{
    Macs, TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN, Tcp, TcpOpt, tcp_frame_of, with_ipv4_fields,
};

use crate::fixture::Hook;

const CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const EDGE_CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const EDGE_ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const FROM_CLI: Macs = (EDGE_CLI_MAC, CLI_MAC);
const FROM_ORG: Macs = (EDGE_ORG_MAC, ORG_MAC);
const TO_ORG: Macs = (ORG_MAC, EDGE_ORG_MAC);
const TO_CLI: Macs = (CLI_MAC, EDGE_CLI_MAC);

/// The interfaces frames arrive on.
pub const CLI0: Option<&str> = Some("cli0");
pub const ORG0: Option<&str> = Some("org0");

/// One address family's ends (the namespace of `xdp_nat/namespace.rs`)
/// and what the edge announces and tells the origin there.
pub struct Family {
    pub name: &'static str,
    pub client: IpAddr,
    /// The app's edge address.
    pub edge: IpAddr,
    /// The edge's origin-side source address.
    pub source: IpAddr,
    pub origin: IpAddr,
    /// The MSS in the edge's SYN-ACK to a client offering 1460: the
    /// kernel's cookie MSS (IPv4 table 536/1300/1440/1460, IPv6
    /// 1220/1420/1440/8940), at most an Ethernet MTU's (1460; 1440).
    pub edge_mss: u16,
    /// The MSS the origin is told when the client's ACK has no
    /// timestamps to carry the client's own.
    pub mss_without_ts: u16,
    /// How far off a bad cookie ACK's acknowledgement number is. The
    /// kernel's cookie holds its MSS index in its low bits, checked only
    /// against its table's size (IPv4's 1460 is the last of four, IPv6's
    /// 1440 the third of four), and it grows with the ISN: the edge also
    /// checks an ACK as a zero-window probe (ISN = its sequence number),
    /// so an acknowledgement a few off can still be a good cookie for the
    /// ISN one on. 0x100 is a good cookie for neither.
    pub bad_cookie_off: u32,
}

pub const V4: Family = Family {
    name: "v4",
    client: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
    edge: IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1)),
    source: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)),
    origin: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
    edge_mss: 1460,
    mss_without_ts: 1300,
    bad_cookie_off: 0x100,
};

pub const V6: Family = Family {
    name: "v6",
    client: IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2)),
    edge: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1)),
    source: IpAddr::V6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1)),
    origin: IpAddr::V6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2)),
    edge_mss: 1440,
    mss_without_ts: 1220,
    bad_cookie_off: 0x100,
};

/// One fast-path TCP app (edge ports 1000-2000 onto origin 3000-4000),
/// the SYN proxy on by default, the NAT at `hook`, NAT ports
/// 20000-29999 (a client port in the range is kept).
pub fn config(hook: Hook) -> String {
    let datapath = hook.edge_setting();
    let (e4, e6) = (V4.edge, V6.edge);
    let (s4, s6) = (V4.source, V6.source);
    let (o4, o6) = (V4.origin, V6.origin);
    format!(
        r#"{{
  "edge": {{"interfaces": ["cli0", "org0"], {datapath}
    "origin_source": {{"ipv4": "{s4}", "ipv6": "{s6}"}},
    "nat_ports": "20000-29999"}},
  "apps": [
    {{"protocol": "tcp/1000-2000", "dns": {{"type": "ADDRESS", "name": "range.test"}},
      "edge_ips": {{"type": "static", "ips": ["{e4}", "{e6}"]}},
      "origin_direct": ["tcp://{o4}:3000-4000", "tcp://[{o6}]:3000-4000"]}}
  ]
}}"#
    )
}

pub const EDGE_PORT: u16 = 1000;
pub const ORIGIN_PORT: u16 = 3000;
/// The client's ISN: its sequence numbers wrap during the conversation.
pub const CLIENT_ISN: u32 = 0xffff_fff0;
/// The client's first TSval (its SYN); later segments count on from it.
pub const CLIENT_TS: u32 = 0x0100_0000;
/// The client's MSS and window scale in its SYN, and its raw window
/// (in units of 2^7) on later segments.
pub const CLIENT_MSS: u16 = 1460;
pub const CLIENT_WS: u8 = 7;
pub const CLIENT_WIN: u16 = 502;
pub const ORIGIN_ISN: u32 = 0x8000_0000;
pub const ORIGIN_TS: u32 = 0x7000_0000;
/// The origin's window scale, above the edge's (7): its windows to the
/// client are multiplied by 4.
pub const ORIGIN_WS: u8 = 9;
pub const ORIGIN_SYN_WIN: u16 = 65160;
/// The window scale the edge announces to a client offering one.
pub const EDGE_WS: u8 = 7;
/// Bits 0-4 of the edge's TSval: the client's window scale (0xF: none),
/// SACK (0x10).
pub const TS_LOW_BITS: u32 = 0x1f;

/// What a client's SYN offers besides MSS 1460 and SACK_PERM.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    pub timestamps: bool,
    /// Window scale 7.
    pub wscale: bool,
}

pub const EVERYTHING: Offer = Offer {
    timestamps: true,
    wscale: true,
};

impl Offer {
    /// The SYN's options as Linux sends them: MSS, SACK_PERM, TS, NOP, WS;
    /// without timestamps MSS, NOP, NOP, SACK_PERM, NOP, WS.
    fn syn_options(self) -> Vec<TcpOpt> {
        let mut options = vec![TcpOpt::Mss(CLIENT_MSS)];
        if self.timestamps {
            options.extend([TcpOpt::SackPerm, TcpOpt::Ts(CLIENT_TS, 0)]);
        } else {
            options.extend([TcpOpt::Nop, TcpOpt::Nop, TcpOpt::SackPerm]);
        }
        if self.wscale {
            options.extend([TcpOpt::Nop, TcpOpt::WScale(CLIENT_WS)]);
        }
        options
    }

    /// Bits 0-4 of the edge's TSval for this offer.
    pub fn ts_bits(self) -> u32 {
        0x10 | if self.wscale {
            u32::from(CLIENT_WS)
        } else {
            0xF
        }
    }
}

/// The SYN proxy's 24 bytes of SYN and SYN-ACK options: MSS, NOP NOP TS
/// (or 12 NOPs), NOP WS (or 4 NOPs), NOP NOP SACK_PERM (or 4 NOPs).
pub fn proxy_syn_options(
    mss: u16,
    ts: Option<(u32, u32)>,
    ws: Option<u8>,
    sack: bool,
) -> Vec<TcpOpt> {
    let nops = |n| vec![TcpOpt::Nop; n];
    let mut options = vec![TcpOpt::Mss(mss)];
    options.extend(match ts {
        Some((val, ecr)) => [nops(2), vec![TcpOpt::Ts(val, ecr)]].concat(),
        None => nops(12),
    });
    options.extend(match ws {
        Some(ws) => vec![TcpOpt::Nop, TcpOpt::WScale(ws)],
        None => nops(4),
    });
    options.extend(if sack {
        [nops(2), vec![TcpOpt::SackPerm]].concat()
    } else {
        nops(4)
    });
    options
}

/// NOP NOP TS: the timestamps of a segment after the handshake.
pub fn ts_options(val: u32, ecr: u32) -> Vec<TcpOpt> {
    vec![TcpOpt::Nop, TcpOpt::Nop, TcpOpt::Ts(val, ecr)]
}

/// A segment the SYN proxy builds from nothing: IPv4 without options,
/// TOS 0, identification 0, DF, TTL 64 (IPv6: traffic class and flow
/// label 0, hop limit 64, as `ip_frame` builds it).
fn built(frame: Vec<u8>) -> Vec<u8> {
    if frame[14] >> 4 == 4 {
        with_ipv4_fields(frame, 0, 0, 0x4000, 64)
    } else {
        frame
    }
}

/// One client connection through the SYN proxy: its family, client port
/// (also its NAT port) and offer and, once the edge answered its SYN,
/// the edge's cookie (its ISN) and the TSval of its SYN-ACK.
#[derive(Clone, Copy)]
pub struct Flow {
    pub family: &'static Family,
    pub port: u16,
    pub offer: Offer,
    pub cookie: u32,
    pub edge_ts: u32,
}

impl Flow {
    pub fn new(family: &'static Family, port: u16, offer: Offer) -> Self {
        Self {
            family,
            port,
            offer,
            cookie: 0,
            edge_ts: 0,
        }
    }

    /// `seq_adj`: the edge's ISN minus the origin's.
    pub fn seq_adj(&self) -> u32 {
        self.cookie.wrapping_sub(ORIGIN_ISN)
    }

    /// `ts_adj`: the edge's TSval in its SYN-ACK minus the origin's.
    pub fn ts_adj(&self) -> u32 {
        self.edge_ts.wrapping_sub(ORIGIN_TS)
    }

    fn frame(&self, macs: Macs, src: (IpAddr, u16), dst: (IpAddr, u16), tcp: Tcp) -> Vec<u8> {
        let tcp = Tcp {
            src_port: src.1,
            dst_port: dst.1,
            ..tcp
        };
        tcp_frame_of(macs, src.0, dst.0, &tcp)
    }

    /// Client -> edge, as it arrives.
    pub fn client_sends(&self, tcp: Tcp) -> Vec<u8> {
        let f = self.family;
        self.frame(FROM_CLI, (f.client, self.port), (f.edge, EDGE_PORT), tcp)
    }

    /// Edge -> client, as it leaves.
    pub fn edge_sends_client(&self, tcp: Tcp) -> Vec<u8> {
        let f = self.family;
        self.frame(TO_CLI, (f.edge, EDGE_PORT), (f.client, self.port), tcp)
    }

    /// Origin -> edge, as it arrives.
    pub fn origin_sends(&self, tcp: Tcp) -> Vec<u8> {
        let f = self.family;
        self.frame(
            FROM_ORG,
            (f.origin, ORIGIN_PORT),
            (f.source, self.port),
            tcp,
        )
    }

    /// Edge -> origin, as it leaves.
    pub fn edge_sends_origin(&self, tcp: Tcp) -> Vec<u8> {
        let f = self.family;
        self.frame(TO_ORG, (f.source, self.port), (f.origin, ORIGIN_PORT), tcp)
    }

    /// Step 1: the client's SYN.
    pub fn client_syn(&self) -> Vec<u8> {
        self.client_sends(Tcp {
            seq: CLIENT_ISN,
            flags: TCP_SYN,
            window: 64240,
            options: self.offer.syn_options(),
            ..Tcp::default()
        })
    }

    /// The edge's SYN-ACK to [`Self::client_syn`]: out of the interface
    /// it came in on (the MACs swapped), window 0, the cookie as its ISN.
    /// With timestamps it offers window scale (if the client did) and
    /// SACK back; without, it cannot keep them (NOPs).
    pub fn edge_syn_ack(&self) -> Vec<u8> {
        let options = if self.offer.timestamps {
            proxy_syn_options(
                self.family.edge_mss,
                Some((self.edge_ts, CLIENT_TS)),
                self.offer.wscale.then_some(EDGE_WS),
                true,
            )
        } else {
            proxy_syn_options(self.family.edge_mss, None, None, false)
        };
        built(self.edge_sends_client(Tcp {
            seq: self.cookie,
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_SYN | TCP_ACK,
            window: 0,
            options,
            ..Tcp::default()
        }))
    }

    /// Step 2: the client's ACK of the SYN-ACK, acknowledging `cookie + 1 +
    /// off` (off 0: the good one).
    pub fn cookie_ack(&self, off: u32) -> Vec<u8> {
        self.client_sends(Tcp {
            seq: CLIENT_ISN.wrapping_add(1),
            ack: self.cookie.wrapping_add(1).wrapping_add(off),
            flags: TCP_ACK,
            window: CLIENT_WIN,
            options: if self.offer.timestamps {
                ts_options(CLIENT_TS + 1, self.edge_ts)
            } else {
                vec![]
            },
            ..Tcp::default()
        })
    }

    /// A window probe: one byte of data past the client's zero window,
    /// while the origin has not answered.
    pub fn client_probe(&self) -> Vec<u8> {
        self.client_sends(Tcp {
            seq: CLIENT_ISN.wrapping_add(1),
            ack: self.cookie.wrapping_add(1),
            flags: TCP_ACK | TCP_PSH,
            window: CLIENT_WIN,
            options: ts_options(CLIENT_TS + 1, self.edge_ts),
            payload: b"x".to_vec(),
            ..Tcp::default()
        })
    }

    /// The edge's SYN to the origin in the cookie ACK's place: the
    /// client's ISN, its options as the edge's TSval kept them (MSS 1460,
    /// WS 7 if offered, SACK; TSval the ACK's), its window unscaled (502 <<
    /// 7, or 502 without a window scale). Without timestamps: only an
    /// MSS, the family's default, and the raw window.
    pub fn origin_syn(&self) -> Vec<u8> {
        let (options, window) = if self.offer.timestamps {
            let ws = self.offer.wscale.then_some(CLIENT_WS);
            let options = proxy_syn_options(CLIENT_MSS, Some((CLIENT_TS + 1, 0)), ws, true);
            let shift = ws.unwrap_or(0);
            (
                options,
                ((u32::from(CLIENT_WIN) << shift).min(65535)) as u16,
            )
        } else {
            let options = proxy_syn_options(self.family.mss_without_ts, None, None, false);
            (options, CLIENT_WIN)
        };
        built(self.edge_sends_origin(Tcp {
            seq: CLIENT_ISN,
            flags: TCP_SYN,
            window,
            options,
            ..Tcp::default()
        }))
    }

    /// Step 3: the origin's SYN-ACK to the edge's SYN: its own ISN, timestamps
    /// (echoing the client's) and window scale.
    pub fn origin_syn_ack(&self) -> Vec<u8> {
        self.origin_sends(Tcp {
            seq: ORIGIN_ISN,
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_SYN | TCP_ACK,
            window: ORIGIN_SYN_WIN,
            options: vec![
                TcpOpt::Mss(1460),
                TcpOpt::SackPerm,
                TcpOpt::Ts(ORIGIN_TS, CLIENT_TS + 1),
                TcpOpt::Nop,
                TcpOpt::WScale(ORIGIN_WS),
            ],
            ..Tcp::default()
        })
    }

    /// The window update the SYN-ACK becomes at TC: an ACK of the
    /// client's ISN + 1 from the cookie + 1, the origin's (unscaled) SYN
    /// window in the edge's scale, TSval the SYN-ACK's (the edge's clock
    /// goes on from there), TSecr the client's latest.
    pub fn window_update(&self) -> Vec<u8> {
        built(self.edge_sends_client(Tcp {
            seq: self.cookie.wrapping_add(1),
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_ACK,
            window: ORIGIN_SYN_WIN >> EDGE_WS,
            options: ts_options(self.edge_ts, CLIENT_TS + 1),
            ..Tcp::default()
        }))
    }

    /// The edge's ACK of the origin's SYN-ACK, as the origin gets it: the
    /// client's ISN + 1, the client's window (in the scale it offered),
    /// TSval the client's, TSecr the origin's.
    pub fn edge_ack(&self) -> Vec<u8> {
        built(self.edge_sends_origin(Tcp {
            seq: CLIENT_ISN.wrapping_add(1),
            ack: ORIGIN_ISN.wrapping_add(1),
            flags: TCP_ACK,
            window: CLIENT_WIN,
            options: ts_options(CLIENT_TS + 1, ORIGIN_TS),
            ..Tcp::default()
        }))
    }

    /// Step 4: origin -> client data after `sent` bytes of it, the origin's
    /// timestamps `ORIGIN_TS + dt` and `options` around them (None: NOP
    /// NOP TS): as it arrives (`at_edge` false) or, translated, as it
    /// leaves: seq + seq_adj, TSval + ts_adj, window * 2^(9 - 7) (at most
    /// 65535).
    pub fn origin_data(
        &self,
        sent: u32,
        dt: u32,
        window: u16,
        layout: fn(TcpOpt) -> Vec<TcpOpt>,
        translated: bool,
    ) -> Vec<u8> {
        let seq = ORIGIN_ISN.wrapping_add(1).wrapping_add(sent);
        let tcp = |seq, tsval, window| Tcp {
            seq,
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_ACK | TCP_PSH,
            window,
            options: layout(TcpOpt::Ts(tsval, CLIENT_TS + 1)),
            payload: b"from the origin".to_vec(),
            ..Tcp::default()
        };
        if translated {
            let scaled = (u32::from(window) << (ORIGIN_WS - EDGE_WS)).min(65535) as u16;
            let tsval = ORIGIN_TS.wrapping_add(dt).wrapping_add(self.ts_adj());
            self.edge_sends_client(tcp(seq.wrapping_add(self.seq_adj()), tsval, scaled))
        } else {
            self.origin_sends(tcp(seq, ORIGIN_TS.wrapping_add(dt), window))
        }
    }

    /// Client -> origin data acknowledging `acked` bytes of the origin's,
    /// SACKing `sack` (offsets past the origin's ISN + 1), echoing the
    /// edge's clock at `dt`, options laid out by `layout` (TS, SACK):
    /// as it arrives, or as it leaves: ack and SACK blocks - seq_adj,
    /// TSecr - ts_adj (the origin's own clock back).
    pub fn client_data(
        &self,
        acked: u32,
        sack: &[(u32, u32)],
        dt: u32,
        layout: fn(TcpOpt, TcpOpt) -> Vec<TcpOpt>,
        translated: bool,
    ) -> Vec<u8> {
        let base = if translated { ORIGIN_ISN } else { self.cookie }.wrapping_add(1);
        let blocks = sack
            .iter()
            .map(|(l, r)| (base.wrapping_add(*l), base.wrapping_add(*r)))
            .collect();
        let tsecr = if translated {
            ORIGIN_TS.wrapping_add(dt)
        } else {
            self.edge_ts.wrapping_add(dt)
        };
        let tcp = Tcp {
            seq: CLIENT_ISN.wrapping_add(1),
            ack: base.wrapping_add(acked),
            flags: TCP_ACK | TCP_PSH,
            window: CLIENT_WIN,
            options: layout(TcpOpt::Ts(CLIENT_TS + 2, tsecr), TcpOpt::Sack(blocks)),
            payload: b"from the client".to_vec(),
            ..Tcp::default()
        };
        if translated {
            self.edge_sends_origin(tcp)
        } else {
            self.client_sends(tcp)
        }
    }

    /// Step 5: the origin refuses the edge's SYN: RST|ACK of the client's ISN.
    pub fn origin_rst(&self) -> Vec<u8> {
        self.origin_sends(Tcp {
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_RST | TCP_ACK,
            ..Tcp::default()
        })
    }

    /// The RST the client gets in its place: from the edge, seq = cookie +
    /// 1 (what the client expects), RST alone (the origin's ack field
    /// left as it came).
    pub fn client_rst(&self) -> Vec<u8> {
        self.edge_sends_client(Tcp {
            seq: self.cookie.wrapping_add(1),
            ack: CLIENT_ISN.wrapping_add(1),
            flags: TCP_RST,
            ..Tcp::default()
        })
    }
}

/// Linux's layout: NOP NOP TS, then NOP NOP SACK when there are blocks.
pub fn nop_ts_nop_sack(ts: TcpOpt, sack: TcpOpt) -> Vec<TcpOpt> {
    let mut options = vec![TcpOpt::Nop, TcpOpt::Nop, ts];
    if !matches!(&sack, TcpOpt::Sack(blocks) if blocks.is_empty()) {
        options.extend([TcpOpt::Nop, TcpOpt::Nop, sack]);
    }
    options
}

/// SACK first, then TS, no NOPs: 18 + 10 = 28 bytes, TS on no 32-bit
/// boundary of its values.
pub fn sack_then_ts(ts: TcpOpt, sack: TcpOpt) -> Vec<TcpOpt> {
    vec![sack, ts]
}

/// NOP NOP TS.
pub fn nop_ts(ts: TcpOpt) -> Vec<TcpOpt> {
    vec![TcpOpt::Nop, TcpOpt::Nop, ts]
}

/// TS first, padded with EOL (no NOPs).
pub fn ts_eol(ts: TcpOpt) -> Vec<TcpOpt> {
    vec![ts, TcpOpt::Eol, TcpOpt::Eol]
}

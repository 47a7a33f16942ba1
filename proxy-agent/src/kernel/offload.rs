//! rx-VLAN offload off on the edge interfaces while the agent runs. With it
//! on, the NIC (or veth) strips a frame's 802.1Q/802.1ad tag into the
//! skb's metadata: XDP sees a tagged frame as untagged, checks and NATs it
//! as the untagged network's and sends it on untagged, a way around the
//! VLAN separation and the access rules of the tagged network. So at
//! attach the agent turns `rx-vlan-hw-parse` and `rx-vlan-stag-hw-parse`
//! off (the ethtool ioctl, as `ethtool -K <if> rxvlan off rxvlan-stag off`
//! does), logs it, and turns them back on when it stops. A driver that
//! cannot turn them off is refused, unless `edge.allow_rx_vlan_offload`
//! says the operator accepts it.
use std::{
    ffi::c_void,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context as _, bail};
use tracing::{info, warn};

/// The features that strip VLAN tags on receive (C-tag, S-tag).
const FEATURES: [&str; 2] = ["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"];

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// More feature names than any kernel has (about 70 today): the bound of
/// what is read.
const MAX_FEATURES: usize = 1024;

/// `struct ifreq` with `ifr_data`.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

/// The offloads the agent turned off, turned back on when dropped.
#[derive(Default)]
pub struct RxVlan {
    restore: Vec<(String, Vec<usize>)>,
}

/// Turns the rx-VLAN offloads off on each of `interfaces`; fails naming the
/// interface and the feature when one stays on, unless `allow` (the
/// operator accepts it: then nothing is changed, and an offload that is on
/// is only warned about).
pub fn turn_off(interfaces: &[String], allow: bool) -> anyhow::Result<RxVlan> {
    let socket = Socket::new()?;
    let mut done = RxVlan::default();
    for interface in interfaces {
        let features = socket.feature_bits(interface)?;
        let on = |socket: &Socket| -> anyhow::Result<Vec<(usize, &str)>> {
            let active = socket.active(interface, &features)?;
            Ok((features.bits.iter())
                .zip(active)
                .filter(|(_, on)| *on)
                .map(|((bit, name), _)| (*bit, *name))
                .collect())
        };
        let before = on(&socket)?;
        if before.is_empty() {
            continue;
        }
        if allow {
            for (_, feature) in &before {
                warn!(
                    interface = %interface,
                    feature,
                    "rx VLAN offload left on (edge.allow_rx_vlan_offload): tagged frames reach XDP untagged"
                );
            }
            continue;
        }
        // Refused or not, what changed is put back when `done` drops.
        let _ = socket.set(interface, &features, &before, false);
        let after = on(&socket)?;
        let turned: Vec<usize> = (before.iter())
            .filter(|(bit, _)| !after.iter().any(|(b, _)| b == bit))
            .map(|(bit, _)| *bit)
            .collect();
        for (bit, feature) in &before {
            if turned.contains(bit) {
                info!(
                    interface = %interface,
                    feature,
                    "rx VLAN offload turned off so XDP sees VLAN tags (back on when the agent stops)"
                );
            }
        }
        if !turned.is_empty() {
            done.restore.push((interface.clone(), turned));
        }
        if let Some((_, feature)) = after.first() {
            bail!(
                "interface {interface}: {feature} is on and its driver does not let it be \
                 turned off; with it on, VLAN-tagged frames reach XDP untagged and are \
                 NATed and sent on as untagged traffic. Turn it off (`ethtool -K {interface} \
                 rxvlan off rx-vlan-stag-hw-parse off`), or set edge.allow_rx_vlan_offload \
                 to \"on\" to accept it"
            );
        }
    }
    Ok(done)
}

impl Drop for RxVlan {
    fn drop(&mut self) {
        if self.restore.is_empty() {
            return;
        }
        let socket = match Socket::new() {
            Ok(socket) => socket,
            Err(err) => return warn!("rx VLAN offload not put back: {err:#}"),
        };
        for (interface, turned) in &self.restore {
            let put_back = socket.feature_bits(interface).and_then(|features| {
                let on: Vec<(usize, &str)> = (features.bits.iter())
                    .filter(|(bit, _)| turned.contains(bit))
                    .copied()
                    .collect();
                socket.set(interface, &features, &on, true)
            });
            match put_back {
                Ok(()) => info!(interface = %interface, "rx VLAN offload back on"),
                Err(err) => warn!(interface = %interface, "rx VLAN offload not put back: {err:#}"),
            }
        }
    }
}

/// An AF_INET datagram socket, for the ethtool ioctl.
struct Socket {
    fd: OwnedFd,
}

/// An interface's feature set as the kernel numbers it.
struct Features {
    /// Blocks of 32 feature bits (`ETHTOOL_GFEATURES`' `size`).
    blocks: usize,
    /// Where [`FEATURES`] are in it.
    bits: Vec<(usize, &'static str)>,
}

impl Socket {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: a plain socket call; the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("a socket for the ethtool ioctl");
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ioctl(&self, interface: &str, data: *mut c_void, what: &str) -> anyhow::Result<i32> {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data,
            _pad: [0; 16],
        };
        let name = interface.as_bytes();
        if name.len() >= libc::IFNAMSIZ {
            bail!("interface name {interface:?} is too long");
        }
        req.name[..name.len()].copy_from_slice(name);
        // SAFETY: `req` and the buffer `data` points to outlive the call,
        // and the buffer is as large as its command's header says.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("interface {interface}: ethtool {what}"));
        }
        Ok(rc)
    }

    /// The bit numbers of [`FEATURES`] on `interface` (those its kernel
    /// names).
    fn feature_bits(&self, interface: &str) -> anyhow::Result<Features> {
        // ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
        let mut info = [0u64; 3];
        info[0] = u64::from(ETHTOOL_GSSET_INFO);
        info[1] = 1 << ETH_SS_FEATURES;
        self.ioctl(interface, info.as_mut_ptr().cast(), "GSSET_INFO")?;
        if info[1] & (1 << ETH_SS_FEATURES) == 0 {
            bail!("interface {interface}: the kernel names no features");
        }
        let count = (info[2] as u32 as usize).min(MAX_FEATURES);
        // ethtool_gstrings: cmd, string_set, len, then the names.
        let mut buf = vec![0u8; 12 + count * ETH_GSTRING_LEN];
        buf[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        buf[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
        buf[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
        self.ioctl(interface, buf.as_mut_ptr().cast(), "GSTRINGS")?;
        let names = buf[12..].chunks(ETH_GSTRING_LEN).map(|raw| {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            &raw[..end]
        });
        let mut bits = Vec::new();
        for (bit, name) in names.enumerate() {
            if let Some(feature) = FEATURES.iter().find(|f| f.as_bytes() == name) {
                bits.push((bit, *feature));
            }
        }
        Ok(Features {
            blocks: count.div_ceil(32),
            bits,
        })
    }

    /// Whether each of `bits` is active.
    fn active(&self, interface: &str, features: &Features) -> anyhow::Result<Vec<bool>> {
        // ethtool_gfeatures: cmd, size, then 4 words a block
        // (available, requested, active, never_changed).
        let mut buf = vec![0u32; 2 + 4 * features.blocks];
        buf[0] = ETHTOOL_GFEATURES;
        buf[1] = features.blocks as u32;
        self.ioctl(interface, buf.as_mut_ptr().cast(), "GFEATURES")?;
        Ok((features.bits.iter())
            .map(|(bit, _)| buf[2 + 4 * (bit / 32) + 2] & (1 << (bit % 32)) != 0)
            .collect())
    }

    /// Requests each of `which` on or off.
    fn set(
        &self,
        interface: &str,
        features: &Features,
        which: &[(usize, &str)],
        on: bool,
    ) -> anyhow::Result<()> {
        // ethtool_sfeatures: cmd, size, then 2 words a block (valid, requested).
        let mut buf = vec![0u32; 2 + 2 * features.blocks];
        buf[0] = ETHTOOL_SFEATURES;
        buf[1] = features.blocks as u32;
        for (bit, _) in which {
            let block = 2 + 2 * (bit / 32);
            buf[block] |= 1 << (bit % 32);
            if on {
                buf[block + 1] |= 1 << (bit % 32);
            }
        }
        self.ioctl(interface, buf.as_mut_ptr().cast(), "SFEATURES")?;
        Ok(())
    }
}

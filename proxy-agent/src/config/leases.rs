//! Edge address leases: which pool addresses the apps with dynamic
//! `edge_ips` hold, kept in a small JSON file so that an app keeps its
//! addresses across restarts and config edits (an app added in front of it
//! does not shift it). Keyed by app id; an app that leaves the config leaves
//! the file, and its addresses are free again.
//!
//! Reading and writing are the only I/O here; which app gets which address
//! is decided by `validate` from the leases it is given.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{App, AppId, Config};

/// What the file says: app id -> its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases(pub BTreeMap<AppId, Vec<IpAddr>>);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFile {
    #[serde(default)]
    comment: String,
    apps: BTreeMap<String, LeaseEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseEntry {
    /// The app's dns.name when written, for the reader's benefit only.
    #[serde(default)]
    name: String,
    ips: Vec<IpAddr>,
}

const COMMENT: &str = "Written by proxy-agent run: the pool addresses of apps with dynamic edge_ips, \
                       by app id. Delete it to allocate addresses afresh.";

/// Where the leases of the config at `config_path` live unless
/// `edge.address_pool.state_file` says: beside it, `<stem>.edge-ips.json`.
pub fn default_path(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "config".into(), |s| s.to_string_lossy().into_owned());
    config_path.with_file_name(format!("{stem}.edge-ips.json"))
}

/// Reads the leases at `path`; a missing file holds none.
pub fn read(path: &Path) -> Result<Leases, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Leases::default()),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    parse(&text)
}

fn parse(text: &str) -> Result<Leases, String> {
    let file: LeaseFile = serde_json::from_str(text).map_err(|e| {
        format!("not a lease file ({e}); fix it, or delete it to allocate addresses afresh")
    })?;
    let mut leases = BTreeMap::new();
    for (id, entry) in file.apps {
        let id: AppId = id
            .parse()
            .map_err(|_| format!("app id {id:?} is not 32 hex digits"))?;
        leases.insert(id, entry.ips);
    }
    Ok(Leases(leases))
}

/// The apps that hold leases: those with dynamic edge_ips.
fn holders(config: &Config) -> impl Iterator<Item = &App> {
    config.apps.iter().filter(|app| app.edge_ips_dynamic)
}

fn render(config: &Config) -> String {
    let apps = holders(config)
        .map(|app| {
            let entry = LeaseEntry {
                name: app.dns.name.clone(),
                ips: app.edge_addrs.clone(),
            };
            (app.id.to_string(), entry)
        })
        .collect();
    let file = LeaseFile {
        comment: COMMENT.to_string(),
        apps,
    };
    // Plain data of strings and addresses: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the config's leases to `path` atomically
/// ([`super::write_atomically`]): a crash leaves the old file or the new
/// one, never a torn one.
pub fn write(path: &Path, config: &Config) -> std::io::Result<()> {
    let text = render(config);
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    // A new file as `File::create` makes one (0666 less the umask).
    super::write_atomically(path, text.as_bytes(), 0o666)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// The leases a config holds, as `read` gives them back.
    fn of(config: &Config) -> Leases {
        Leases(
            holders(config)
                .map(|app| (app.id, app.edge_addrs.clone()))
                .collect(),
        )
    }

    const CONFIG: &str = r#"{
      "edge": {"interfaces": ["eth0"],
               "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
      "apps": [
        {"id": "0123456789abcdef0123456789abcdef", "protocol": "tcp/22",
         "dns": {"type": "CNAME", "name": "ssh.example.com"},
         "origin_direct": ["tcp://192.0.2.1:22"]},
        {"protocol": "tcp/25", "dns": {"type": "ADDRESS", "name": "mail.example.com"},
         "origin_direct": ["tcp://192.0.2.1:25"],
         "edge_ips": {"type": "static", "ips": ["198.51.100.200"]}}
      ]
    }"#;

    #[test]
    fn written_leases_read_back_and_name_only_dynamic_apps() {
        let config = load_str(CONFIG, false).unwrap().config;
        let dir = std::env::temp_dir().join(format!("leases-rw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.edge-ips.json");
        write(&path, &config).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(read_back, of(&config));
        assert_eq!(read_back.0.len(), 1, "the static app holds no lease");
        let ips = &read_back.0[&"0123456789abcdef0123456789abcdef".parse().unwrap()];
        assert_eq!(
            ips,
            &vec![
                "198.51.100.1".parse::<IpAddr>().unwrap(),
                "2001:db8:e::1".parse().unwrap()
            ]
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_holds_no_leases_and_bad_ones_are_named() {
        assert_eq!(
            read(Path::new("/nonexistent/x.edge-ips.json")),
            Ok(Leases::default())
        );
        assert!(parse("{").unwrap_err().contains("delete it"));
        let bad_id = r#"{"apps": {"xyz": {"ips": []}}}"#;
        assert!(parse(bad_id).unwrap_err().contains("\"xyz\""));
    }

    #[test]
    fn default_path_sits_beside_the_config() {
        assert_eq!(
            default_path(Path::new("/etc/proxy/edge.json")),
            PathBuf::from("/etc/proxy/edge.edge-ips.json")
        );
    }
}

//! Configuration: the file (`schema`, plain serde data) is checked by
//! [`validate`] and becomes the `model`, or a list of errors that each name
//! the field, the value and the reason. Nothing changes a config in place:
//! a reload loads a new one.

mod client_limits;
pub mod edit;
pub mod leases;
pub mod model;
pub mod schema;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use self::validate::{canonical_name, in_zone};
pub use self::validate::{validate, validate_with_leases};
pub use model::*;

/// A validated configuration and what was accepted with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: model::Config,
    pub warnings: Vec<model::Warning>,
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not a config file: bad syntax, an unknown or missing
    /// field, a value of the wrong type.
    Parse {
        /// Path of the field, e.g. `apps[0].origin_dns`; empty at the top level.
        field: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The file parsed but its content was refused.
    Invalid(Vec<model::ConfigError>),
    /// The edge address leases (`edge.address_pool.state_file`) could not be read.
    Leases { path: PathBuf, reason: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())
            }
            LoadError::Parse {
                field,
                line,
                column,
                message,
            } => {
                f.write_str("config parse error")?;
                if !field.is_empty() {
                    write!(f, " at {field}")?;
                }
                match (line, column) {
                    (Some(line), Some(column)) => write!(f, " (line {line}, column {column})")?,
                    (Some(line), None) => write!(f, " (line {line})")?,
                    _ => {}
                }
                write!(f, ": {message}")
            }
            LoadError::Leases { path, reason } => {
                write!(
                    f,
                    "edge address leases {} (edge.address_pool.state_file): {reason}",
                    path.display()
                )
            }
            LoadError::Invalid(errors) => {
                for (k, error) in errors.iter().enumerate() {
                    if k > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads and validates a config file (JSON, or TOML when the extension is .toml).
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_as(path, &text)
}

/// Validates `text` as if it were the file at `path` (its format, its
/// directory for relative paths, its leases): what a change through the API
/// is checked with before the file is written.
pub fn load_as(path: &Path, text: &str) -> Result<Loaded, LoadError> {
    let toml = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
    let file = parse_str(text, toml)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let lease_path = match &file.edge.address_pool.state_file {
        Some(state) => dir.join(state),
        None => leases::default_path(path),
    };
    let held = leases::read(&lease_path).map_err(|reason| LoadError::Leases {
        path: lease_path.clone(),
        reason,
    })?;
    let (mut config, warnings) = validate_with_leases(&file, &held).map_err(LoadError::Invalid)?;
    config.resolve_paths(dir);
    config.edge.lease_file = Some(lease_path);
    Ok(Loaded { config, warnings })
}

/// Replaces the file at `path` by `bytes` atomically: a temporary file in
/// the same directory, fsync, rename, fsync of the directory. A crash
/// leaves the old file or the new one, never a torn one. The file keeps
/// its permissions (and, best effort, its owner); a new one gets
/// `new_mode` (less the umask).
///
/// The temporary file has a random name and is created exclusively
/// (`O_CREAT|O_EXCL`, which never follows a symlink) with mode 0600 from
/// the start: a file or symlink planted in the directory is never written
/// through, and the bytes are never readable by others before the mode is
/// set.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = crate::files::parent_dir(path);
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let old = std::fs::metadata(path).ok();
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    // Dropping `file` on an error removes the temporary file.
    match &old {
        Some(old) => {
            // Best effort: only a privileged process may give a file away.
            // Before the mode, as a change of owner clears set-id bits.
            let _ = std::os::unix::fs::fchown(file.as_file(), Some(old.uid()), Some(old.gid()));
            file.as_file().set_permissions(old.permissions())?;
        }
        None => {
            let umask = current_umask();
            let mode = std::fs::Permissions::from_mode(new_mode & !umask & 0o7777);
            file.as_file().set_permissions(mode)?;
        }
    }
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The process's umask, from `/proc/self/status` (setting it to read it
/// would race with other threads creating files); 022 if unreadable.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

/// Parses and validates text; `toml` chooses the format.
pub fn load_str(text: &str, toml: bool) -> Result<Loaded, LoadError> {
    let file = parse_str(text, toml)?;
    let (config, warnings) = validate(&file).map_err(LoadError::Invalid)?;
    Ok(Loaded { config, warnings })
}

/// Parses text into the file schema without validating it.
pub fn parse_str(text: &str, toml: bool) -> Result<schema::ConfigFile, LoadError> {
    if toml {
        parse_toml(text)
    } else {
        parse_json(text)
    }
}

fn parse_json(text: &str) -> Result<schema::ConfigFile, LoadError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let file = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_path(e.path());
        json_error(field, &e.into_inner())
    })?;
    // Trailing characters after the document.
    de.end().map_err(|e| json_error(String::new(), &e))?;
    Ok(file)
}

fn json_error(field: String, e: &serde_json::Error) -> LoadError {
    let (line, column) = (e.line(), e.column());
    // serde_json appends the position to its message; it has its own fields here.
    let message = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = message
        .strip_suffix(&suffix)
        .map_or_else(|| message.clone(), str::to_string);
    LoadError::Parse {
        field,
        line: (line > 0).then_some(line),
        column: (line > 0).then_some(column),
        message,
    }
}

fn parse_toml(text: &str) -> Result<schema::ConfigFile, LoadError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        LoadError::Parse {
            field,
            line,
            column,
            message: inner.message().to_string(),
        }
    })
}

fn field_path(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    // serde_path_to_error writes the top level as ".".
    if path == "." { String::new() } else { path }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_JSON: &str = r#"{
  "edge": {
    "interfaces": ["eth0"],
    "xdp_mode": "native",
    "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"},
    "origin_source": {"ipv4": "10.1.0.1", "ipv6": "fd00:1::1"},
    "geoip": {"country_db": "/geo/GeoLite2-Country.mmdb", "asn_db": "/geo/GeoLite2-ASN.mmdb"}
  },
  "apps": [
    {
      "id": "0123456789abcdef0123456789abcdef",
      "protocol": "tcp/1000-2000",
      "dns": {"type": "CNAME", "name": "range.example.com"},
      "origin_direct": ["tcp://192.0.2.1:3000-4000", "tcp://[2001:db8::1]:3000-4000"],
      "proxy_protocol": "off",
      "tls": "off",
      "ip_firewall": false,
      "traffic_type": "direct",
      "edge_ips": {"type": "dynamic", "connectivity": "all"},
      "argo_smart_routing": false
    },
    {
      "protocol": "tcp/443",
      "dns": {"type": "ADDRESS", "name": "tls.example.com"},
      "origin_dns": {"name": "origin.example.com", "ttl": 1200, "type": ""},
      "origin_port": 8443,
      "proxy_protocol": true,
      "tls": "strict",
      "tls_cert": "/etc/proxy/cert.pem",
      "tls_key": "/etc/proxy/key.pem",
      "origin_sni": "origin.example.com",
      "ip_firewall": true,
      "edge_ips": {"type": "static", "ips": ["198.51.100.7", "2001:db8:e::7"]}
    }
  ],
  "access_rules": [
    {"id": "r1", "mode": "block", "configuration": {"target": "ip", "value": "198.51.100.9"}, "notes": "n"},
    {"mode": "whitelist", "configuration": {"target": "asn", "value": "AS13335"}}
  ]
}"#;

    const FULL_TOML: &str = r#"
access_rules = [
  { id = "r1", mode = "block", configuration = { target = "ip", value = "198.51.100.9" }, notes = "n" },
  { mode = "whitelist", configuration = { target = "asn", value = "AS13335" } },
]

[edge]
interfaces = ["eth0"]
xdp_mode = "native"
address_pool = { ipv4 = "198.51.100.0/24", ipv6 = "2001:db8:e::/64" }
origin_source = { ipv4 = "10.1.0.1", ipv6 = "fd00:1::1" }

[edge.geoip]
country_db = "/geo/GeoLite2-Country.mmdb"
asn_db = "/geo/GeoLite2-ASN.mmdb"

[[apps]]
id = "0123456789abcdef0123456789abcdef"
protocol = "tcp/1000-2000"
dns = { type = "CNAME", name = "range.example.com" }
origin_direct = ["tcp://192.0.2.1:3000-4000", "tcp://[2001:db8::1]:3000-4000"]
proxy_protocol = "off"
tls = "off"
ip_firewall = false
traffic_type = "direct"
edge_ips = { type = "dynamic", connectivity = "all" }
argo_smart_routing = false

[[apps]]
protocol = "tcp/443"
dns = { type = "ADDRESS", name = "tls.example.com" }
origin_dns = { name = "origin.example.com", ttl = 1200, type = "" }
origin_port = 8443
proxy_protocol = true
tls = "strict"
tls_cert = "/etc/proxy/cert.pem"
tls_key = "/etc/proxy/key.pem"
origin_sni = "origin.example.com"
ip_firewall = true
edge_ips = { type = "static", ips = ["198.51.100.7", "2001:db8:e::7"] }
"#;

    fn parse_error(text: &str, toml: bool) -> (String, Option<usize>, Option<usize>, String) {
        match load_str(text, toml) {
            Err(LoadError::Parse {
                field,
                line,
                column,
                message,
            }) => (field, line, column, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn full_config_json_and_toml_agree() {
        let json = load_str(FULL_JSON, false).expect("json");
        let toml = load_str(FULL_TOML, true).expect("toml");
        assert_eq!(json, toml);
        assert!(json.warnings.is_empty(), "{:?}", json.warnings);
        let config = &json.config;
        assert_eq!(config.edge.xdp_mode, Some(XdpMode::Native));
        assert_eq!(config.apps.len(), 2);
        let tls = &config.apps[1];
        assert_eq!(tls.tls, TlsMode::Strict);
        assert_eq!(tls.proxy_protocol, ProxyProtocol::V1);
        assert_eq!(tls.dns.kind, DnsKind::Address);
        assert_eq!(
            tls.origin,
            Origin::Dns(OriginDns {
                name: "origin.example.com".into(),
                ttl: 1200,
                family: OriginFamily::Any,
                ports: PortRange::single(8443),
            })
        );
        // The dynamic app takes the first pool hosts (the static .7 is not one).
        assert_eq!(
            config.apps[0].edge_addrs,
            [
                "198.51.100.1".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8:e::1".parse().unwrap()
            ]
        );
        assert_eq!(config.access_rules.len(), 2);
        assert_eq!(config.access_rules[1].target, RuleTarget::Asn(13335));
    }

    #[test]
    fn unknown_field_names_its_path_and_position() {
        let text = FULL_JSON.replace("\"ip_firewall\": true", "\"ip_firewal\": true");
        let (field, line, column, message) = parse_error(&text, false);
        assert_eq!(field, "apps[1].ip_firewal");
        assert_eq!(line, Some(32));
        assert!(column.is_some_and(|c| c > 1), "{column:?}");
        assert!(
            message.starts_with("unknown field `ip_firewal`"),
            "{message}"
        );
        assert!(!message.contains("at line"), "{message}");

        let text = FULL_TOML.replace("xdp_mode", "xdp");
        let (field, line, column, message) = parse_error(&text, true);
        assert_eq!(field, "edge.xdp");
        assert_eq!((line, column), (Some(9), Some(1)));
        assert!(message.contains("unknown field `xdp`"), "{message}");

        let (field, _, _, message) =
            parse_error(r#"{"edge": {"interfaces": ["eth0"]}, "extra": 1}"#, false);
        assert_eq!(field, "extra");
        assert!(message.contains("unknown field `extra`"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let text = FULL_JSON.replace("\"origin_port\": 8443", "\"origin_port\": 84.43");
        let (field, _, _, message) = parse_error(&text, false);
        assert_eq!(field, "apps[1].origin_port");
        assert!(
            message.contains("a port number or a \"start-end\" string"),
            "{message}"
        );

        let text = FULL_JSON.replace("\"proxy_protocol\": true", "\"proxy_protocol\": 2");
        let (field, _, _, message) = parse_error(&text, false);
        assert_eq!(field, "apps[1].proxy_protocol");
        assert!(message.contains("\"v2\""), "{message}");

        let text = FULL_JSON.replace("\"ttl\": 1200", "\"ttl\": \"1200\"");
        let (field, line, _, _) = parse_error(&text, false);
        assert_eq!((field.as_str(), line), ("apps[1].origin_dns.ttl", Some(25)));

        let (field, _, _, message) = parse_error(r#"{"apps": []}"#, false);
        assert_eq!(field, "");
        assert!(message.contains("missing field `edge`"), "{message}");

        let (_, line, column, _) = parse_error("{\"edge\": {}}\n x", false);
        assert_eq!((line, column), (Some(2), Some(2)));

        let err = load_str("{\n  \"edge\": [", false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config parse error at edge (line 2"),
            "{err}"
        );
    }

    #[test]
    fn invalid_config_displays_one_line_per_error() {
        let text = r#"{"edge": {"interfaces": [], "address_pool": {"ipv4": "192.0.2.0/24", "ipv6": "2001:db8::/64"}}, "apps": [
            {"protocol": "tcp/0", "dns": {"type": "CNAME", "name": "a.example.com"}}
        ]}"#;
        let err = load_str(text, false).unwrap_err();
        let LoadError::Invalid(errors) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(errors.len(), 3, "{errors:#?}");
        let shown = err.to_string();
        assert_eq!(shown.lines().count(), 3, "{shown}");
        assert!(
            shown.contains("apps[0].origin_direct: \"\": error 11000: "),
            "{shown}"
        );
    }

    #[test]
    fn load_picks_the_format_from_the_extension() {
        let dir = std::env::temp_dir().join(format!("cfg-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("proxy.json");
        let toml = dir.join("proxy.TOML");
        std::fs::write(&json, FULL_JSON).unwrap();
        std::fs::write(&toml, FULL_TOML).unwrap();
        let from_json = load(&json);
        let from_toml = load(&toml);
        let missing = load(&dir.join("absent.json"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_json.unwrap(), from_toml.unwrap());
        let err = missing.unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.json"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("cfg-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.json");
        let text = FULL_JSON.replace("/etc/proxy/cert.pem", "certs/cert.pem");
        std::fs::write(&path, text).unwrap();
        let loaded = load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let config = loaded.unwrap().config;
        let cert = config.apps.iter().find_map(|a| a.tls_cert.clone()).unwrap();
        assert_eq!(cert, dir.join("certs/cert.pem"));
        let key = config.apps.iter().find_map(|a| a.tls_key.clone()).unwrap();
        assert!(key.is_absolute(), "absolute paths stay as written: {key:?}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
    }
}

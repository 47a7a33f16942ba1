//! What `validate()` reports: errors (with Cloudflare's codes where it
//! has them) and warnings.
use std::fmt;

/// Cloudflare's code: exactly one of origin_direct and origin_dns must be set.
pub const ERR_ORIGIN_CHOICE: u32 = 11000;
/// Cloudflare's code: bad origin_dns.
pub const ERR_ORIGIN_DNS: u32 = 11001;
/// Cloudflare's code: bad origin address in origin_direct.
pub const ERR_ORIGIN_ADDR: u32 = 11002;
/// Cloudflare's code: dns.type does not fit edge_ips.
pub const ERR_DNS_EDGE_IPS: u32 = 11004;

/// Cloudflare's minimum origin_dns TTL, in seconds; lower values are raised.
pub const MIN_ORIGIN_DNS_TTL: u32 = 600;

/// One reason the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// Cloudflare's error code, where one exists.
    pub code: Option<u32>,
    /// JSON path of the offending field, e.g. `apps[2].origin_direct[0]`.
    pub field: String,
    /// The offending value as written (may be empty).
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            code: None,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub fn with_code(
        code: u32,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            code: Some(code),
            ..ConfigError::new(field, value, reason)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes the value and escapes newlines, so it stays one line.
        write!(f, "{}: {:?}: ", self.field, self.value)?;
        if let Some(code) = self.code {
            write!(f, "error {code}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Something accepted but worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl Warning {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            field: field.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?}: warning: {}",
            self.field, self.value, self.message
        )
    }
}

//! `edge.client_limits` and an app's `client_limits`: how many new flows a
//! second, and how many at once, one client prefix may have on one app.
//! Kept in a module of its own so that the validator and the model each
//! hold one call and one field of it.
//!
//! Every key of the app's object overrides the edge's for that app alone;
//! the model holds each app's merged limits (`App::client_limits`).

use super::model::ConfigError;
use super::schema::ClientLimitsFile;

/// Per client prefix (the client's address cut to `prefix_v4` /
/// `prefix_v6` bits), per app. 0 for a rate or a count: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// New flows (TCP connections, UDP flows) a second, sustained.
    pub new_flows_per_second: u32,
    /// New flows at once above the rate (a bucket of this many).
    pub burst: u32,
    /// Flows open at once.
    pub concurrent_flows: u32,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
}

/// High enough that an ordinary client (a browser, a NATed office, a
/// resolver) never meets them; an attacker from one prefix does.
impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            new_flows_per_second: 1000,
            burst: 2000,
            concurrent_flows: 4096,
            prefix_v4: 32,
            prefix_v6: 64,
        }
    }
}

/// Highest rate, burst and count accepted.
pub const MAX_CLIENT_LIMIT: u64 = 1_000_000;

impl ClientLimits {
    /// `base` with what `file` sets; errors name `at.<key>` (`at` is
    /// `edge.client_limits` or `apps[i].client_limits`).
    pub fn merged(
        base: ClientLimits,
        file: &ClientLimitsFile,
        at: &str,
    ) -> (ClientLimits, Vec<ConfigError>) {
        let mut out = base;
        let mut errors = Vec::new();
        let mut check = |key: &str, value: Option<u64>, range: (u64, u64), why: &str| {
            let value = value?;
            if (range.0..=range.1).contains(&value) {
                return Some(value);
            }
            errors.push(ConfigError::new(
                format!("{at}.{key}"),
                value.to_string(),
                format!("expected {} to {}{why}", range.0, range.1),
            ));
            None
        };
        let none = " (0: no limit)";
        if let Some(n) = check(
            "new_flows_per_second",
            file.new_flows_per_second,
            (0, MAX_CLIENT_LIMIT),
            none,
        ) {
            out.new_flows_per_second = n as u32;
        }
        let burst_why = " (new flows a client may open at once; 0 would refuse every flow)";
        if let Some(n) = check("burst", file.burst, (1, MAX_CLIENT_LIMIT), burst_why) {
            out.burst = n as u32;
        }
        if let Some(n) = check(
            "concurrent_flows",
            file.concurrent_flows,
            (0, MAX_CLIENT_LIMIT),
            none,
        ) {
            out.concurrent_flows = n as u32;
        }
        let bits = " (bits of the client's address that make one client)";
        if let Some(n) = check("prefix_v4", file.prefix_v4, (1, 32), bits) {
            out.prefix_v4 = n as u8;
        }
        if let Some(n) = check("prefix_v6", file.prefix_v6, (1, 128), bits) {
            out.prefix_v6 = n as u8;
        }
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: serde_json::Value) -> ClientLimitsFile {
        serde_json::from_value(json).expect("client_limits file")
    }

    #[test]
    fn absent_keys_keep_the_base_and_present_ones_override() {
        let base = ClientLimits::default();
        let (out, errors) = ClientLimits::merged(base, &file(serde_json::json!({})), "edge");
        assert_eq!((out, errors.len()), (base, 0));
        let (out, errors) = ClientLimits::merged(
            base,
            &file(
                serde_json::json!({"concurrent_flows": 3, "new_flows_per_second": 0, "prefix_v6": 48}),
            ),
            "apps[0].client_limits",
        );
        assert!(errors.is_empty());
        assert_eq!(
            out,
            ClientLimits {
                concurrent_flows: 3,
                new_flows_per_second: 0,
                prefix_v6: 48,
                ..base
            }
        );
    }

    #[test]
    fn out_of_range_values_name_the_field_and_the_value() {
        let (out, errors) = ClientLimits::merged(
            ClientLimits::default(),
            &file(serde_json::json!({
                "new_flows_per_second": 1_000_001,
                "burst": 0,
                "concurrent_flows": 2_000_000,
                "prefix_v4": 33,
                "prefix_v6": 0,
            })),
            "edge.client_limits",
        );
        let named: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("edge.client_limits.new_flows_per_second", "1000001"),
                ("edge.client_limits.burst", "0"),
                ("edge.client_limits.concurrent_flows", "2000000"),
                ("edge.client_limits.prefix_v4", "33"),
                ("edge.client_limits.prefix_v6", "0"),
            ]
        );
        assert!(errors[1].reason.contains("refuse every flow"));
        assert!(errors[3].reason.contains("expected 1 to 32"));
        // What was refused keeps the base.
        assert_eq!(out, ClientLimits::default());
    }
}

//! The policy document (DESIGN §3) as serde types. Field order here is the order in which a
//! policy is written back out, so a merged or rendered policy reads like a hand-written one.

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A whole policy document, `version: 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Optional on input (the seed policies omit it); always written out.
    #[serde(default = "version_one")]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_policy: Option<FilesystemPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessPolicy>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub network_policies: IndexMap<String, NetworkPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: 1,
            filesystem_policy: None,
            landlock: None,
            process: None,
            network_policies: IndexMap::new(),
        }
    }
}

/// Static: which paths the agent may read, and which it may write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_workdir: Option<bool>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub read_only: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub read_write: Vec<String>,
}

impl FilesystemPolicy {
    /// The workdir is read-write unless the policy says otherwise.
    pub fn include_workdir(&self) -> bool {
        self.include_workdir.unwrap_or(true)
    }
}

/// Static: what to do when Landlock, or a path it should cover, is unavailable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<LandlockCompatibility>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockCompatibility {
    #[default]
    BestEffort,
    HardRequirement,
}

/// Static: the identity the agent runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessPolicy {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "id_spec"
    )]
    pub run_as_user: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "id_spec"
    )]
    pub run_as_group: Option<String>,
}

/// Dynamic: one named entry of `network_policies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub endpoints: Vec<Endpoint>,
    #[serde(deserialize_with = "null_as_default")]
    pub binaries: Vec<Binary>,
}

/// Where traffic may go, and (for `protocol: rest`) which requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub host: String,
    // Signed so that validation, not serde, explains a negative or oversized port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<AllowRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_rules: Option<Vec<RuleMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
}

impl Endpoint {
    /// Every port this endpoint names (`ports` wins over `port` when both are set).
    pub fn port_list(&self) -> Vec<i64> {
        match (&self.ports, self.port) {
            (Some(ps), _) if !ps.is_empty() => ps.clone(),
            (_, Some(p)) => vec![p],
            _ => Vec::new(),
        }
    }

    pub fn is_inspected(&self) -> bool {
        self.protocol == Some(Protocol::Rest) && self.tls != Some(TlsMode::Skip)
    }

    pub fn enforcement(&self) -> Enforcement {
        self.enforcement.unwrap_or(Enforcement::Enforce)
    }

    /// The allow rules in force: the `access` preset expanded, or the explicit `rules`.
    pub fn effective_rules(&self) -> Vec<RuleMatch> {
        if let Some(access) = self.access {
            return access.expand();
        }
        self.rules
            .iter()
            .flatten()
            .map(|r| r.allow.clone())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Terminate,
    Passthrough,
    Skip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// Access presets, expanded to method rules on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
    Full,
}

impl Access {
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Access::ReadOnly => &["GET", "HEAD", "OPTIONS"],
            Access::ReadWrite => &["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"],
            Access::Full => &["*"],
        }
    }

    pub fn expand(self) -> Vec<RuleMatch> {
        self.methods()
            .iter()
            .map(|m| RuleMatch {
                method: (*m).to_string(),
                path: "**".to_string(),
                query: None,
            })
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
            Access::Full => "full",
        }
    }
}

/// `- allow: {method, path, query}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub allow: RuleMatch,
}

/// One HTTP request matcher: method, path glob, and optional query matchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<IndexMap<String, QueryMatcher>>,
}

/// A query parameter matcher: one glob, or `{any: [globs]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMatcher {
    Glob(String),
    Any(Vec<String>),
}

impl QueryMatcher {
    pub fn globs(&self) -> &[String] {
        match self {
            QueryMatcher::Glob(g) => std::slice::from_ref(g),
            QueryMatcher::Any(gs) => gs,
        }
    }
}

impl Serialize for QueryMatcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            QueryMatcher::Glob(g) => s.serialize_str(g),
            QueryMatcher::Any(gs) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("any", gs)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for QueryMatcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryMatcher;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a glob string or `{any: [globs]}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QueryMatcher, E> {
                Ok(QueryMatcher::Glob(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryMatcher, A::Error> {
                let mut any: Option<Vec<String>> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "any" {
                        return Err(de::Error::unknown_field(&key, &["any"]));
                    }
                    any = Some(map.next_value()?);
                }
                any.map(QueryMatcher::Any)
                    .ok_or_else(|| de::Error::missing_field("any"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `{ path: GLOB }`: an executable allowed to use an entry's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    pub path: String,
}

fn version_one() -> u32 {
    1
}

/// Treats an explicit `null` (`read_only:` with nothing after it) as an empty collection.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A user or group: a name, or a numeric id written as a number or a string.
fn id_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a user or group name, or a numeric id")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

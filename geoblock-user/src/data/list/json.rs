//! The clouds' published address ranges, every prefix of them: AWS
//! `ip-ranges.json` (`prefixes[].ip_prefix`, `ipv6_prefixes[].ipv6_prefix`)
//! and Google Cloud `cloud.json` (`prefixes[].ipv4Prefix` / `ipv6Prefix`).
//! Services and regions are not told apart: a list is every prefix.

use serde::Deserialize;

use super::{ListFormat, MEMBER};
use crate::data::rows::{parse_network, Loc, Place, Rows, SourceError};

/// The parts of either document a list needs; the rest is ignored.
#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    prefixes: Vec<Prefix>,
    /// AWS only.
    #[serde(default)]
    ipv6_prefixes: Vec<Prefix>,
}

/// One entry: AWS names its prefix `ip_prefix` or `ipv6_prefix`, Google
/// `ipv4Prefix` or `ipv6Prefix`.
#[derive(Deserialize)]
struct Prefix {
    ip_prefix: Option<String>,
    ipv6_prefix: Option<String>,
    #[serde(rename = "ipv4Prefix")]
    gcp_v4: Option<String>,
    #[serde(rename = "ipv6Prefix")]
    gcp_v6: Option<String>,
}

impl Prefix {
    /// The prefix, the field that holds it, and whose layout that is.
    fn field(&self) -> Option<(&str, &'static str, ListFormat)> {
        let fields = [
            (&self.ip_prefix, "ip_prefix", ListFormat::AwsJson),
            (&self.ipv6_prefix, "ipv6_prefix", ListFormat::AwsJson),
            (&self.gcp_v4, "ipv4Prefix", ListFormat::GcpJson),
            (&self.gcp_v6, "ipv6Prefix", ListFormat::GcpJson),
        ];
        fields.into_iter().find_map(|(value, name, format)| value.as_deref().map(|v| (v, name, format)))
    }
}

/// Every prefix of the document into `rows`; errors name the entry
/// (`prefixes[3].ip_prefix`).
pub(super) fn parse_into(rows: &mut Rows, bytes: &[u8], origin: usize) -> Result<ListFormat, SourceError> {
    let name = rows.origin_name(origin).to_string();
    let document: Document = serde_json::from_slice(bytes)
        .map_err(|e| SourceError::invalid(&name, format!("not AWS or Google Cloud address ranges: {e}")))?;
    let mut format = ListFormat::AwsJson;
    for (section, entries) in [("prefixes", &document.prefixes), ("ipv6_prefixes", &document.ipv6_prefixes)] {
        for (index, entry) in entries.iter().enumerate() {
            let at = |problem: String| SourceError::invalid(&name, format!("{section}[{index}]{problem}"));
            let (text, field, layout) = entry
                .field()
                .ok_or_else(|| at(": has no ip_prefix, ipv6_prefix, ipv4Prefix or ipv6Prefix".to_string()))?;
            let net = parse_network(text).map_err(|e| at(format!(".{field}: {e}")))?;
            rows.record(origin, Place::Network(net))?;
            rows.push_net(Loc::new(origin, 0), net, MEMBER);
            format = layout;
        }
    }
    Ok(format)
}

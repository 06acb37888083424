//! CIDR lists: one network per line, either with the country in a second
//! column (`1.0.1.0/24 CN`, `1.0.1.0/24,CN`) or, as ipdeny's zone files
//! (`cn-aggregated.zone`, `cn.zone`, IPv4 and IPv6), with the country in the
//! file name: the letters before the first `-` or `.`.

use std::path::Path;

use super::rows::{country_of, network, show, Loc, Rows, SourceError};
use crate::country;
use geoblock_common::CountryId;

pub(crate) fn parse_into(rows: &mut Rows, text: &[u8], origin: usize, path: &Path) -> Result<(), SourceError> {
    let from_name = country_from_name(path);
    rows.each_line(text, origin, |rows, line, bytes| {
        let mut fields = bytes.split(|b| b.is_ascii_whitespace() || *b == b',' || *b == b';').filter(|f| !f.is_empty());
        let net = network(fields.next().unwrap_or_default()).map_err(|p| ("network", p))?;
        let country = match (fields.next(), from_name) {
            (Some(cc), _) => rows.tally(country_of(cc).map_err(|p| ("country", p))?),
            (None, Some(cc)) => cc,
            (None, None) => return Err(("country", no_country(path))),
        };
        if let Some(extra) = fields.next() {
            return Err(("country", format!("followed by an extra field '{}' (a row is CIDR [CC])", show(extra))));
        }
        rows.push_net(Loc::new(origin, line), net, country);
        Ok(())
    })
}

/// ipdeny's `cn-aggregated.zone` → CN.
pub(crate) fn country_from_name(path: &Path) -> Option<CountryId> {
    let name = path.file_name()?.to_str()?;
    let code = name.split(['-', '.', '_']).next()?;
    country::parse(code).ok()
}

fn no_country(path: &Path) -> String {
    format!(
        "missing, and the file name '{}' does not start with a country code (as cn-aggregated.zone does)",
        path.display()
    )
}

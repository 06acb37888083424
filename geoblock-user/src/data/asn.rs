//! Autonomous system data (placeholder until the AS sources land).
use std::collections::BTreeMap;

use super::table::Table;

pub type Asn = u32;

#[derive(Clone, Debug, Default)]
pub struct AsnData {
    pub table: Table<Asn>,
    pub orgs: BTreeMap<Asn, String>,
}

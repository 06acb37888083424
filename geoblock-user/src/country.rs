//! ISO 3166-1 alpha-2 country codes.
//!
//! CONTRACT (bodies being written): `parse` accepts a code geoblock knows
//! (case-insensitive) and returns its kernel slot; `code` gives it back.

use geoblock_common::CountryId;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown country code '{0}' (expected an ISO 3166-1 alpha-2 code such as US, DE, CN)")]
pub struct UnknownCountry(pub String);

/// The slot of a known country code.
pub fn parse(code: &str) -> Result<CountryId, UnknownCountry> {
    todo!("{code}")
}

/// The two-letter code of a slot ("--" for no country).
pub fn code(id: CountryId) -> &'static str {
    todo!("{id}")
}

//! ISO 3166-1 alpha-2 country codes.
//!
//! geoblock knows the 249 officially assigned codes plus `XK` (Kosovo), a
//! user-assigned code that DB-IP and most geolocation sources use. Region
//! placeholders of some GeoIP data (`EU`, `AP`) and "unknown" markers (`ZZ`)
//! are not countries: [`parse`] rejects them, so `--block EU` fails loudly
//! instead of silently matching nothing; the data parser treats such rows as
//! "no country" (see the range CSV format in `data::csv`).

use geoblock_common::{country_code, country_id, CountryId, COUNTRY_SLOTS};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown country code '{0}' (expected an ISO 3166-1 alpha-2 code such as US, DE, CN)")]
pub struct UnknownCountry(pub String);

/// Every code geoblock accepts, sorted so a binary search finds it.
const KNOWN: [[u8; 2]; 250] = known();

/// The slot of a known country code (case-insensitive, surrounding spaces ignored).
pub fn parse(code: &str) -> Result<CountryId, UnknownCountry> {
    let unknown = || UnknownCountry(code.to_string());
    let upper: [u8; 2] = code.trim().as_bytes().try_into().map_err(|_| unknown())?;
    let upper = upper.map(|b| b.to_ascii_uppercase());
    KNOWN.binary_search(&upper).map_err(|_| unknown())?;
    country_id(upper).ok_or_else(unknown)
}

/// The two-letter code of a slot ("--" for no country).
pub fn code(id: CountryId) -> &'static str {
    match country_code(id) {
        // Every slot has its two letters in ALL_CODES; no allocation per call.
        Some(_) => {
            let at = 2 * (id as usize - 1);
            std::str::from_utf8(&ALL_CODES[at..at + 2]).unwrap_or("--")
        }
        None => "--",
    }
}

/// "AAABAC…ZZ": the code of slot `i` at bytes `2(i-1)..2i`.
static ALL_CODES: [u8; 2 * (COUNTRY_SLOTS as usize - 1)] = all_codes();

const fn all_codes() -> [u8; 2 * (COUNTRY_SLOTS as usize - 1)] {
    let mut out = [0; 2 * (COUNTRY_SLOTS as usize - 1)];
    let mut i = 0;
    while i < out.len() / 2 {
        out[2 * i] = b'A' + (i / 26) as u8;
        out[2 * i + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    out
}

/// ISO 3166-1 alpha-2 as assigned (2026), plus XK.
const KNOWN_TEXT: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// KNOWN_TEXT as an array; a typo or an unsorted entry fails the build.
const fn known() -> [[u8; 2]; 250] {
    let text = KNOWN_TEXT.as_bytes();
    assert!(text.len() == 250 * 3 - 1, "KNOWN_TEXT must hold 250 codes");
    let mut out = [[0; 2]; 250];
    let mut i = 0;
    while i < 250 {
        out[i] = [text[3 * i], text[3 * i + 1]];
        assert!(country_id(out[i]).is_some(), "codes are two upper-case letters");
        if i > 0 {
            let (p, c) = (out[i - 1], out[i]);
            assert!(p[0] < c[0] || (p[0] == c[0] && p[1] < c[1]), "KNOWN_TEXT must be sorted");
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use geoblock_common::NO_COUNTRY;

    use super::*;

    #[test]
    fn parses_known_codes_case_insensitively() {
        let us = country_id(*b"US").unwrap();
        assert_eq!(parse("US"), Ok(us));
        assert_eq!(parse("us"), Ok(us));
        assert_eq!(parse(" uS "), Ok(us));
        assert_eq!(parse("XK"), Ok(country_id(*b"XK").unwrap()));
        assert_eq!(parse("AD"), Ok(country_id(*b"AD").unwrap()));
        assert_eq!(parse("ZW"), Ok(country_id(*b"ZW").unwrap()));
    }

    #[test]
    fn rejects_unassigned_regions_and_garbage() {
        for bad in ["ZZ", "EU", "AP", "UK", "QQ", "", "U", "USA", "1A", "é", "--", "ü1"] {
            assert_eq!(parse(bad), Err(UnknownCountry(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn code_round_trips_every_known_country() {
        for c in KNOWN {
            let text = std::str::from_utf8(&c).unwrap();
            let id = parse(text).unwrap();
            assert_eq!(code(id), text);
        }
        assert_eq!(code(NO_COUNTRY), "--");
        assert_eq!(code(COUNTRY_SLOTS as CountryId), "--");
        assert_eq!(code(country_id(*b"ZZ").unwrap()), "ZZ");
    }
}

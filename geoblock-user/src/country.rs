//! ISO 3166-1 alpha-2 country codes, and the other codes GeoIP data uses.
//!
//! | class | codes | in data | on the command line |
//! | --- | --- | --- | --- |
//! | assigned, and `XK` (Kosovo, user-assigned, used by DB-IP and most sources) | 250 | that country | that country |
//! | reserved for a country that still exists ([`ALIASES`]) | `UK` → GB, `FX` → FR, `EA` `IC` → ES, `AC` `TA` → SH, `DG` → IO, `CP` → FR, `BU` → MM, `TP` → TL, `ZR` → CD, `DD` → DE | that country, counted as mapped | that country |
//! | reserved for a country that split, and territories some vendors code apart ([`OWN_CODES`]) | `AN` `CS` `NT` `SU` `YU`; `AB` (Abkhazia) `OS` (South Ossetia) | loaded under that code: no one assigned country is right for every range | that code |
//! | placeholders ([`PLACEHOLDERS`]) | `ZZ` `EU` `AP` `UN` `--` `??` `-` | no country, counted | refused: `--block EU` would match nothing |
//! | anything else | | refused, with file and line | refused |

use geoblock_common::{country_code, country_id, CountryId, COUNTRY_SLOTS};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown country code '{0}' (expected an ISO 3166-1 alpha-2 code such as US, DE, CN)")]
pub struct UnknownCountry(pub String);

/// Every code geoblock accepts, sorted so a binary search finds it.
const KNOWN: [[u8; 2]; 250] = known();

/// Reserved codes GeoIP vendors write for a country that has its own
/// assigned code (Tor's geoip file says `UK`): read as that country.
pub const ALIASES: [([u8; 2], [u8; 2]); 12] = [
    (*b"AC", *b"SH"),
    (*b"BU", *b"MM"),
    (*b"CP", *b"FR"),
    (*b"DD", *b"DE"),
    (*b"DG", *b"IO"),
    (*b"EA", *b"ES"),
    (*b"FX", *b"FR"),
    (*b"IC", *b"ES"),
    (*b"TA", *b"SH"),
    (*b"TP", *b"TL"),
    (*b"UK", *b"GB"),
    (*b"ZR", *b"CD"),
];

/// Codes kept as countries of their own: reserved codes of countries that
/// split (the Netherlands Antilles, Serbia and Montenegro, the USSR, ...),
/// and the codes Tor's geoip data (from IPFire's location database) gives
/// Abkhazia and South Ossetia.
pub const OWN_CODES: [[u8; 2]; 7] = [*b"AB", *b"AN", *b"CS", *b"NT", *b"OS", *b"SU", *b"YU"];

/// What GeoIP data writes for "no country": unknown, regions, and the
/// United Nations' reserved code.
pub const PLACEHOLDERS: [&str; 7] = ["ZZ", "EU", "AP", "UN", "--", "??", "-"];

/// What a country field of a data file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coded {
    /// An assigned code, or one of [`OWN_CODES`].
    Country(CountryId),
    /// A reserved code read as the country it stands for ([`ALIASES`]).
    Mapped(CountryId),
    /// A placeholder ([`PLACEHOLDERS`]).
    Unclaimed,
}

/// The slot of a country code given by an operator (case-insensitive,
/// surrounding spaces ignored): assigned, one of [`OWN_CODES`], or an alias.
pub fn parse(code: &str) -> Result<CountryId, UnknownCountry> {
    match read(code)? {
        Coded::Country(id) | Coded::Mapped(id) => Ok(id),
        Coded::Unclaimed => Err(UnknownCountry(code.to_string())),
    }
}

/// What `code`, a country field of a data file, says.
pub fn read(code: &str) -> Result<Coded, UnknownCountry> {
    let code = code.trim();
    if PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(code)) {
        return Ok(Coded::Unclaimed);
    }
    let unknown = || UnknownCountry(code.to_string());
    let upper: [u8; 2] = code.as_bytes().try_into().map_err(|_| unknown())?;
    let upper = upper.map(|b| b.to_ascii_uppercase());
    let slot = |code: [u8; 2]| country_id(code).ok_or_else(unknown);
    if KNOWN.binary_search(&upper).is_ok() || OWN_CODES.contains(&upper) {
        return Ok(Coded::Country(slot(upper)?));
    }
    match ALIASES.iter().find(|(alias, _)| *alias == upper) {
        Some((_, country)) => Ok(Coded::Mapped(slot(*country)?)),
        None => Err(unknown()),
    }
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
        for bad in ["ZZ", "EU", "AP", "QQ", "", "U", "USA", "1A", "é", "--", "ü1", "OO"] {
            assert_eq!(parse(bad), Err(UnknownCountry(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn reserved_codes_read_as_their_country_or_their_own() {
        let id = |code: &[u8; 2]| country_id(*code).unwrap();
        assert_eq!(read("UK"), Ok(Coded::Mapped(id(b"GB"))));
        assert_eq!(read("uk"), Ok(Coded::Mapped(id(b"GB"))));
        assert_eq!(parse("UK"), Ok(id(b"GB")), "--block UK blocks the United Kingdom");
        assert_eq!(read("AN"), Ok(Coded::Country(id(b"AN"))));
        assert_eq!(code(parse("AN").unwrap()), "AN");
        assert_eq!(read("GB"), Ok(Coded::Country(id(b"GB"))));
        for placeholder in PLACEHOLDERS {
            assert_eq!(read(placeholder), Ok(Coded::Unclaimed), "{placeholder}");
        }
        assert!(read("QQ").is_err());
    }

    #[test]
    fn aliases_point_at_assigned_codes_and_no_class_overlaps() {
        for (alias, country) in ALIASES {
            assert!(KNOWN.binary_search(&country).is_ok(), "{alias:?} → {country:?}");
            assert!(KNOWN.binary_search(&alias).is_err() && !OWN_CODES.contains(&alias), "{alias:?}");
        }
        for own in OWN_CODES {
            assert!(KNOWN.binary_search(&own).is_err(), "{own:?}");
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

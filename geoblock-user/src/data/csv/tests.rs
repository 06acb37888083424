use proptest::prelude::*;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use super::*;
use crate::{country, data::table::Table};

/// Parses one text as a source of its own, as the daemon reads a CSV file.
fn parse(text: &[u8], origin: &str, integers: Integers) -> Result<Table, SourceError> {
    let mut rows = Rows::default();
    let index = rows.origin(origin);
    parse_into(&mut rows, text, index, integers)?;
    rows.into_table()
}

fn table(text: &str) -> Table {
    parse(text.as_bytes(), "test.csv", Integers::Auto).unwrap()
}

fn error(text: &str, integers: Integers) -> String {
    parse(text.as_bytes(), "test.csv", integers).unwrap_err().to_string()
}

fn at(t: &Table, ip: &str) -> String {
    t.lookup(ip.parse().unwrap()).map_or("-".into(), |(_, c)| country::code(c).into())
}

#[test]
fn reads_text_integers_comments_headers_and_crlf() {
    let t = table(
        "\u{feff}ip_range_start,ip_range_end,country_code\r\n\
         # a comment\r\n\
         \r\n\
         1.0.0.0,1.0.0.255,AU\r\n\
         \"1.0.1.0\", \"1.0.3.255\" ,cn\r\n\
         16778240,16779263,AU\n\
         2001:db8::,2001:db8::ffff,NL\n\
         42540766411282592856903984951653892096,42540766411282592856903984951653892097,DE\n\
         10.0.0.0,10.255.255.255,ZZ\n\
         11.0.0.0,11.0.0.255,-\n\
         12.0.0.0,12.0.0.255,EU\n",
    );
    assert_eq!(at(&t, "1.0.0.1"), "AU");
    assert_eq!(at(&t, "1.0.2.0"), "CN");
    assert_eq!(at(&t, "1.0.4.1"), "AU");
    assert_eq!(at(&t, "2001:db8::1"), "NL");
    assert_eq!(at(&t, "2001:db8::1:1"), "DE");
    assert_eq!(at(&t, "2001:db8::1:2"), "-");
    assert_eq!(at(&t, "10.1.1.1"), "-");
    assert_eq!(at(&t, "11.0.0.1"), "-");
    assert_eq!(at(&t, "12.0.0.1"), "-");
}

#[test]
fn integer_family_follows_the_hint_or_the_size() {
    let row = "16777216,16777471,AU\n";
    let v4 = parse(row.as_bytes(), "x", Integers::Auto).unwrap();
    assert_eq!((v4.v4.len(), v4.v6.len()), (1, 0));
    let v6 = parse(row.as_bytes(), "x", Integers::V6).unwrap();
    assert_eq!(v6.v6[0].0.to_string(), "::100:0/120");
    let big = "1,4294967296,AU\n";
    let big_v6 = parse(big.as_bytes(), "x", Integers::Auto).unwrap();
    assert!(big_v6.v4.is_empty() && !big_v6.v6.is_empty());
    assert_eq!(error(big, Integers::V4), "test.csv:1: field 'end': '4294967296' is too large for an IPv4 address");
    assert_eq!(Integers::from_file_name(Path::new("/x/dbip-country-ipv6-num.csv")), Integers::V6);
    assert_eq!(Integers::from_file_name(Path::new("dbip-country-IPv4-num.csv")), Integers::V4);
    assert_eq!(Integers::from_file_name(Path::new("ipv6/world.csv")), Integers::Auto);
}

/// A huge field makes a short error line: it goes to the log and to `status`.
#[test]
fn errors_cut_long_fields() {
    let huge = "7".repeat(10 << 20);
    let err = error(&format!("{huge},1,AU\n"), Integers::Auto);
    assert!(
        err.len() < 200 && err.contains("is too large for an address"),
        "{} bytes: {}",
        err.len(),
        &err[..200.min(err.len())]
    );
}

#[test]
fn errors_name_source_line_and_field() {
    let cases = [
        ("1.0.0.0,1.2.3,AU", "test.csv:2: field 'end': '1.2.3' is not an IP address or integer"),
        ("x1.0.0.0,1.0.0.3,AU", "test.csv:2: field 'start': 'x1.0.0.0' is not an IP address or integer"),
        ("1.0.0.0,1.0.0.3,QQ", "test.csv:2: field 'country': 'QQ' is not an ISO 3166-1 alpha-2 country code"),
        ("1.0.0.0,1.0.0.3", "test.csv:2: field 'country': missing (a row is start,end,country)"),
        ("1.0.0.0", "test.csv:2: field 'end': missing (a row is start,end,country)"),
        (
            "1.0.0.0,1.0.0.3,AU,x",
            "test.csv:2: field 'country': followed by an extra field 'x' (a row is start,end,country)",
        ),
        ("1.0.0.0,::1,AU", "test.csv:2: field 'end': '::1' is not of the family of start '1.0.0.0'"),
        ("1.0.0.9,1.0.0.3,AU", "test.csv:2: field 'end': '1.0.0.3' comes before start '1.0.0.9'"),
        (
            "1,999999999999999999999999999999999999999999,AU",
            "test.csv:2: field 'end': '999999999999999999999999999999999999999999' is too large for an address",
        ),
    ];
    for (row, want) in cases {
        assert_eq!(error(&format!("2.0.0.0,2.0.0.1,US\n{row}\n"), Integers::Auto), want);
    }
}

#[test]
fn only_the_first_row_may_be_a_header() {
    assert_eq!(
        error("1.0.0.0,1.0.0.1,US\nstart,end,country\n", Integers::Auto),
        "test.csv:2: field 'start': 'start' is not an IP address or integer"
    );
}

#[test]
fn conflicts_name_both_lines() {
    let text = "1.0.0.0,1.0.0.255,AU\n# gap\n1.0.0.128,1.0.1.0,CN\n";
    assert_eq!(
        error(text, Integers::Auto),
        "test.csv:1 and test.csv:3: ranges 1.0.0.0-1.0.0.255 AU and 1.0.0.128-1.0.1.0 CN overlap but have different countries"
    );
    // Same country: merged, not an error.
    assert_eq!(table("1.0.0.0,1.0.0.255,AU\n1.0.0.128,1.0.1.255,AU\n").v4.len(), 1);
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(
        prop_oneof![any::<u8>(), prop::sample::select(b"0123456789abcdef:.,#\"\r\n -ZZUSEU".to_vec())],
        0..300,
    )) {
        for integers in [Integers::Auto, Integers::V4, Integers::V6] {
            let _ = parse(&bytes, "garbage", integers);
        }
    }

    #[test]
    fn plausible_rows_never_panic(rows in prop::collection::vec(
        (any::<u128>(), any::<u128>(), any::<u32>(), any::<u32>(), prop::sample::select(vec!["US", "zz", "DE", "Q", ""])),
        0..20,
    )) {
        let mut text = String::new();
        for (a, b, c, d, cc) in rows {
            text += &format!("{a},{b},{cc}\n{},{},{cc}\n{c},{d},{cc}\n", Ipv4Addr::from(c), Ipv6Addr::from(b));
        }
        let _ = parse(text.as_bytes(), "rows", Integers::Auto);
    }
}

use std::net::IpAddr;

use geoblock_common::{country_id, NO_COUNTRY};
use proptest::prelude::*;

use super::*;
use crate::country;

fn meta() -> Meta {
    Meta { attribution: "IP Geolocation by DB-IP".into(), name: "dbip-country".into(), version: "2026-06".into() }
}

fn sample() -> Table {
    let text = "0.0.0.0,0.0.0.0,US\n1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.3.255,CN\n\
                255.255.255.255,255.255.255.255,XK\n\
                2001:db8::,2001:db8::ffff,NL\n8000::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,DE\n";
    let input = crate::data::Input { origin: "sample".into(), name: "sample.csv".into(), bytes: text.into() };
    crate::data::read("sample".into(), vec![input], &crate::data::Options::default()).unwrap().0
}

#[test]
fn round_trips_table_and_meta() {
    let packed = pack(&meta(), &sample());
    assert_eq!(unpack(&packed).unwrap(), sample());
    assert_eq!(read_header(&packed).unwrap().0, meta());
    assert_eq!(meta().to_string(), "IP Geolocation by DB-IP (dbip-country 2026-06)");
    assert_eq!(unpack(&pack(&meta(), &Table::default())).unwrap(), Table::default());
}

#[test]
fn rejects_foreign_and_future_files() {
    assert!(matches!(unpack(b"PK\x03\x04"), Err(EmbeddedError::Magic)));
    let mut packed = pack(&meta(), &sample());
    packed[MAGIC.len()] = 9;
    assert_eq!(
        unpack(&packed).unwrap_err().to_string(),
        "data file format 9 is not supported (this geoblock reads format 1)"
    );
}

#[test]
fn varints_cover_u128() {
    for n in [0, 1, 127, 128, u32::MAX.into(), u128::MAX - 1, u128::MAX] {
        let mut out = Vec::new();
        put(&mut out, n);
        let mut c = Cursor(&out);
        assert_eq!(c.int().unwrap(), n);
        assert!(c.0.is_empty());
    }
    // 19 bytes of 0x7f set bits beyond bit 127.
    let mut too_big = vec![0xff; 18];
    too_big.push(0x7f);
    assert!(Cursor(&too_big).int().is_err());
}

#[test]
fn damaged_files_fail_cleanly() {
    let packed = pack(&meta(), &sample());
    for cut in 0..packed.len() {
        assert!(unpack(&packed[..cut]).is_err(), "cut at {cut}");
    }
    for i in 0..packed.len() {
        for bit in 0..8 {
            let mut bad = packed.clone();
            bad[i] ^= 1 << bit;
            let _ = unpack(&bad); // any answer but a panic
        }
    }
}

#[test]
fn corrupt_bodies_fail_cleanly() {
    let body = |raw: &[u8]| {
        let mut out = pack(&meta(), &Table::default());
        out.truncate(out.len() - zlib(&[0, 0]).len());
        out.extend(zlib(raw));
        unpack(&out).map_err(|e| e.to_string())
    };
    let corrupt = |why: &str| Err(format!("corrupt data file: {why}"));
    assert_eq!(body(&[0, 0]), Ok(Table::default()));
    assert_eq!(body(&[0, 0, 0]), corrupt("trailing bytes"));
    assert_eq!(body(&[1, 0, 0, 0, 0]), corrupt("unknown country"));
    assert_eq!(body(&[1, 0, 0, 0xa5, 0x05, 0]), corrupt("unknown country")); // slot 677
                                                                             // v4 range starting at 2^32.
    let mut beyond = vec![1];
    put(&mut beyond, 1 << 32);
    beyond.extend([0, 20, 0]);
    assert_eq!(body(&beyond), corrupt("range beyond the address space"));
    assert_eq!(body(&[0x7f, 0]), corrupt("range count too large"));
}

fn zlib(raw: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    z.write_all(raw).unwrap();
    z.finish().unwrap()
}

proptest! {
    #[test]
    fn unpack_of_pack_is_from_ranges(
        v4 in prop::collection::vec((any::<u32>(), 0u32..1 << 20, 1u16..4), 0..40),
        v6 in prop::collection::vec((any::<u128>(), any::<u64>(), 1u16..4), 0..40),
    ) {
        // Overlaps of different countries are not a table: keep the first of each.
        let country = |i: u16| [NO_COUNTRY, id(b"DE"), id(b"FR"), id(b"US")][i as usize];
        let mut ranges = Ranges::default();
        for (s, len, c) in v4 {
            let r = Range { start: Ipv4Addr::from(s), end: Ipv4Addr::from(s.saturating_add(len)), country: country(c) };
            if Table::from_ranges(Ranges { v4: [ranges.v4.clone(), vec![r]].concat(), v6: vec![] }).is_ok() {
                ranges.v4.push(r);
            }
        }
        for (s, len, c) in v6 {
            let r = Range { start: Ipv6Addr::from(s), end: Ipv6Addr::from(s.saturating_add(len.into())), country: country(c) };
            if Table::from_ranges(Ranges { v4: vec![], v6: [ranges.v6.clone(), vec![r]].concat() }).is_ok() {
                ranges.v6.push(r);
            }
        }
        let table = Table::from_ranges(ranges).unwrap();
        prop_assert_eq!(unpack(&pack(&meta(), &table)).unwrap(), table);
    }
}

fn id(code: &[u8; 2]) -> CountryId {
    country_id(*code).unwrap()
}

#[test]
fn embedded_data_answers_well_known_addresses() {
    let table = embedded().unwrap();
    let at = |ip: &str| table.lookup(ip.parse::<IpAddr>().unwrap()).map_or("-", |(_, c)| country::code(c));
    for (ip, want) in [
        ("1.1.1.1", "AU"),
        ("8.8.8.8", "US"),
        ("81.2.69.142", "GB"),
        ("193.0.0.1", "NL"),
        ("202.12.27.33", "JP"),
        ("2001:da8::1", "CN"),
        ("2a00:1450:4001::1", "DE"),
        ("10.0.0.1", "-"),
        ("127.0.0.1", "-"),
        ("192.168.1.1", "-"),
        ("::1", "-"),
        ("2001:db8::1", "-"),
    ] {
        assert_eq!(at(ip), want, "{ip}");
    }
    // DB-IP 2026-06: 593,597 IPv4 and 773,898 IPv6 prefixes in 250 countries.
    let counts = table.counts();
    assert!((500_000..700_000).contains(&counts.v4), "{counts:?}");
    assert!((600_000..900_000).contains(&counts.v6), "{counts:?}");
    assert!(table.counts_by_country().len() >= 240);
    assert_eq!(embedded_meta().unwrap().name, "dbip-country");
}

//! What every format shares: rows with where they came from, the errors that
//! name them, and the step from rows to a [`Table`].
//!
//! A parser turns its records into (start, end, country) and pushes them
//! here with their location; conflicts found later, when the table is
//! built, are traced back to those locations, so every error names the
//! file and line (or network) an operator has to look at.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use geoblock_common::{CountryId, NO_COUNTRY};
use ipnetwork::IpNetwork;

use super::text;
use crate::{
    country::{self, Coded},
    data::table::{self, AsRange, Label, Range, Table, TableError},
};

/// Records (content lines, MMDB networks) one source may have, with a
/// country or without. The largest world files have 1.4M; a hostile file
/// of tiny rows within the byte budget would have 76M, and every row kept
/// costs memory (20 bytes an IPv4 row, 44 an IPv6 one) and time.
pub const MAX_ROWS: usize = 1 << 22;

/// The name of a field as the format's documentation calls it.
pub type Field = &'static str;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One record is wrong.
    #[error("{origin}{at}: field '{field}': {problem}")]
    Field { origin: String, at: Place, field: Field, problem: String },
    #[error("{origin}: {error}")]
    Read { origin: String, error: std::io::Error },
    /// Records that each parse but do not fit together, with where they are.
    #[error("{at}: {error}")]
    Table { at: String, error: TableError },
    /// The source as a whole is not what it should be (unknown format,
    /// a missing file of a set, a corrupt database).
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },
    #[error(
        "{origin}{at}: more than {MAX_ROWS} records in one source (the largest world files have 1.4M): refused \
         as broken or hostile"
    )]
    TooManyRows { origin: String, at: Place },
}

impl SourceError {
    pub(crate) fn invalid(origin: &str, problem: impl fmt::Display) -> SourceError {
        SourceError::Invalid { origin: origin.to_string(), problem: problem.to_string() }
    }
}

/// Where in a source a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// 1-based line of a text format.
    Line(usize),
    /// A database's network (MMDB has no lines).
    Network(IpNetwork),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, ":{n}"),
            Place::Network(net) => write!(f, ": network {net}"),
        }
    }
}

/// A problem with one field of a record, before the source is known.
pub type RowError = (Field, String);

/// Where a row came from: index into the origins, 1-based line (0: no line).
/// 32 bits each, since every row keeps one: a source has a handful of
/// files, and its byte budget allows fewer than 2^32 lines.
#[derive(Clone, Copy)]
pub(crate) struct Loc {
    origin: u32,
    line: u32,
}

impl Loc {
    pub fn new(origin: usize, line: usize) -> Loc {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Loc { origin: narrow(origin), line: narrow(line) }
    }
}

/// A kept row, its label and where it is.
#[derive(Clone, Copy)]
pub(crate) struct Located<A, L = CountryId> {
    pub start: A,
    pub end: A,
    pub label: L,
    pub loc: Loc,
}

impl<A: Copy, L: Label> AsRange<A> for Located<A, L> {
    type Label = L;
    fn start(&self) -> A {
        self.start
    }
    fn end(&self) -> A {
        self.end
    }
    fn label(&self) -> L {
        self.label
    }
}

/// The kept rows of one family.
pub(crate) type Kept<A, L> = Vec<Located<A, L>>;

/// Parsed ranges of one source, each with its location for error messages;
/// of countries unless said otherwise (the AS data's rows are of ASes).
pub(crate) struct Rows<L = CountryId> {
    v4: Vec<Located<Ipv4Addr, L>>,
    v6: Vec<Located<Ipv6Addr, L>>,
    origins: Vec<String>,
    codes: CodeCounts,
    /// Records read so far, see [`MAX_ROWS`].
    records: usize,
}

impl<L> Default for Rows<L> {
    fn default() -> Self {
        Rows { v4: vec![], v6: vec![], origins: vec![], codes: CodeCounts::default(), records: 0 }
    }
}

/// Rows whose country code was not an assigned one: what loading says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CodeCounts {
    /// Under a reserved code read as its country (`UK` → GB).
    pub mapped: usize,
    /// Under a placeholder (`ZZ`, `EU`...): loaded as no country.
    pub unclaimed: usize,
}

impl fmt::Display for CodeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows under reserved codes read as their country (UK → GB...), {} under placeholders (ZZ, EU...) \
             loaded as no country",
            self.mapped, self.unclaimed
        )
    }
}

impl Rows {
    /// The country of a row's code, counting mapped and unclaimed ones.
    pub fn tally(&mut self, coded: Coded) -> CountryId {
        match coded {
            Coded::Country(id) => id,
            Coded::Mapped(id) => {
                self.codes.mapped += 1;
                id
            }
            Coded::Unclaimed => {
                self.codes.unclaimed += 1;
                NO_COUNTRY
            }
        }
    }

    pub fn codes(&self) -> CodeCounts {
        self.codes
    }

    /// The table, or the conflict with the lines of both rows.
    pub fn into_table(self) -> Result<Table, SourceError> {
        let (v4, v6, origins) = self.into_parts();
        let v4 = table::prefixes(v4).map_err(|fault| refused(fault, &origins))?;
        let v6 = table::prefixes(v6).map_err(|fault| refused(fault, &origins))?;
        Ok(Table { v4, v6 })
    }
}

impl<L: Label> Rows<L> {
    /// Registers a file (or archive member) and gives its index for [`Loc`].
    pub fn origin(&mut self, name: &str) -> usize {
        self.origins.push(name.to_string());
        self.origins.len() - 1
    }

    pub fn origin_name(&self, index: usize) -> &str {
        &self.origins[index]
    }

    /// Rows kept so far (those with a label), per family.
    pub fn counts(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Counts one record of the file `origin` against [`MAX_ROWS`].
    pub fn record(&mut self, origin: usize, at: Place) -> Result<(), SourceError> {
        self.records += 1;
        match self.records > MAX_ROWS {
            true => Err(SourceError::TooManyRows { origin: self.origins[origin].clone(), at }),
            false => Ok(()),
        }
    }

    /// Runs `row` on every content line of the file `origin` ([`text::lines`]),
    /// each a record; its error gets the file and line.
    pub fn each_line(
        &mut self,
        text: &[u8],
        origin: usize,
        mut row: impl FnMut(&mut Rows<L>, usize, &[u8]) -> Result<(), RowError>,
    ) -> Result<(), SourceError> {
        for (n, line) in text::lines(text) {
            self.record(origin, Place::Line(n))?;
            row(self, n, line).map_err(|(field, problem)| SourceError::Field {
                origin: self.origins[origin].clone(),
                at: Place::Line(n),
                field,
                problem,
            })?;
        }
        Ok(())
    }

    /// Adds a range; both bounds must be of one family and in order.
    /// Rows without a label ([`Label::NONE`]) are checked but not kept.
    pub fn push(&mut self, loc: Loc, start: IpAddr, end: IpAddr, label: L) -> Result<(), String> {
        match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => self.push_v4(loc, s, e, label),
            (IpAddr::V6(s), IpAddr::V6(e)) => self.push_v6(loc, s, e, label),
            _ => Err(format!("'{end}' is not of the family of start '{start}'")),
        }
    }

    pub fn push_v4(&mut self, loc: Loc, start: Ipv4Addr, end: Ipv4Addr, label: L) -> Result<(), String> {
        check_order(start, end)?;
        if label != L::NONE {
            self.v4.push(Located { start, end, label, loc });
        }
        Ok(())
    }

    pub fn push_v6(&mut self, loc: Loc, start: Ipv6Addr, end: Ipv6Addr, label: L) -> Result<(), String> {
        check_order(start, end)?;
        if label != L::NONE {
            self.v6.push(Located { start, end, label, loc });
        }
        Ok(())
    }

    pub fn push_net(&mut self, loc: Loc, net: IpNetwork, label: L) {
        // A network is never reversed nor mixed, so this cannot fail.
        let _ = self.push(loc, net.network(), last_address(net), label);
    }

    /// The kept rows of each family and the names of their origins.
    pub fn into_parts(self) -> (Kept<Ipv4Addr, L>, Kept<Ipv6Addr, L>, Vec<String>) {
        (self.v4, self.v6, self.origins)
    }
}

/// Why the rows make no table, with the lines of the rows at fault.
fn refused<A: Into<IpAddr>>(fault: table::Fault<Located<A>>, origins: &[String]) -> SourceError {
    let mut locs = Vec::new();
    let error = fault.error(|row| {
        locs.push(row.loc);
        Range { start: row.start.into(), end: row.end.into(), country: row.label }
    });
    SourceError::Table { at: places(locs, origins), error }
}

/// Where rows are, in file order (how a reader will look for them):
/// `file:line and file:line`; all origins when no row is named.
pub(crate) fn places(mut locs: Vec<Loc>, origins: &[String]) -> String {
    locs.sort_by_key(|l| (l.origin, l.line));
    let at: Vec<String> = locs
        .iter()
        .map(|l| match (&origins[l.origin as usize], l.line) {
            (origin, 0) => origin.clone(),
            (origin, n) => format!("{origin}:{n}"),
        })
        .collect();
    if at.is_empty() {
        origins.join(", ")
    } else {
        at.join(" and ")
    }
}

fn check_order<A: PartialOrd + fmt::Display>(start: A, end: A) -> Result<(), String> {
    match start > end {
        true => Err(format!("'{end}' comes before start '{start}'")),
        false => Ok(()),
    }
}

/// The last address of a network.
pub fn last_address(net: IpNetwork) -> IpAddr {
    match net {
        IpNetwork::V4(n) => n.broadcast().into(),
        IpNetwork::V6(n) => {
            let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            IpAddr::V6((u128::from(n.network()) | host).into())
        }
    }
}

/// A country code field, read as [`country`] documents: the reserved codes
/// vendors use are mapped, placeholders are no country, anything else is an
/// error. [`Rows::tally`] counts what was mapped or left without a country.
pub fn country_of(field: &[u8]) -> Result<Coded, String> {
    let unknown = || format!("'{}' is not an ISO 3166-1 alpha-2 country code", show(field));
    country::read(std::str::from_utf8(field).map_err(|_| unknown())?).map_err(|_| unknown())
}

/// A field for an error message; garbage bytes are shown, not trusted.
pub fn show(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    match text.chars().count() > 60 {
        true => format!("{}…", text.chars().take(60).collect::<String>()),
        false => text.into_owned(),
    }
}

/// A CIDR network field (see [`parse_network`]).
pub fn network(field: &[u8]) -> Result<IpNetwork, String> {
    let text = std::str::from_utf8(field).map_err(|_| CidrError::NotCidr(show(field)).to_string())?;
    parse_network(text).map_err(|e| e.to_string())
}

/// Why a text is not a network geoblock takes.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("'{0}' is not a CIDR network")]
    NotCidr(String),
    #[error("'{0}' has host bits set (the network is {net})", net = .0.network())]
    HostBits(IpNetwork),
}

/// A CIDR network: of the data, an exception or a management network.
/// Host bits are refused: `1.0.1.7/24` is most likely a typo, and taking it
/// as 1.0.1.0/24 would widen it silently (an exception, what is never
/// dropped, most of all).
pub fn parse_network(text: &str) -> Result<IpNetwork, CidrError> {
    let net: IpNetwork = text.parse().map_err(|_| CidrError::NotCidr(show(text.as_bytes())))?;
    match net.ip() == net.network() {
        true => Ok(net),
        false => Err(CidrError::HostBits(net)),
    }
}

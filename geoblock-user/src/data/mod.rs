//! GeoIP sources: every format an operator may arrive with → one [`Table`].
//!
//! | format | files |
//! | --- | --- |
//! | [`csv`] | `start,end,cc`: DB-IP Lite, ip-location-db, Tor/IPFire `geoip`/`geoip6` |
//! | [`ip2location`] | IP2Location LITE DB1, IPv4 and IPv6 |
//! | [`mmdb`] | MaxMind DB: GeoLite2/GeoIP2 Country, DB-IP MMDB |
//! | [`maxmind_csv`] | GeoLite2/GeoIP2 Country CSV, zip or folder |
//! | [`rir`] | `delegated-*-extended-latest` |
//! | [`cidr`] | ipdeny zone files, `CIDR CC` lists |
//!
//! A source is one path: a file (plain, `.gz`, `.xz`), a `.zip` or a folder.
//! Its format is detected ([`detect`]) unless given. Within a source, rows
//! that overlap with different countries are an error naming both lines.
//!
//! **Several sources** combine in order, and a later source wins for the
//! addresses it gives a country: `--data geolite2.mmdb --data overrides.csv`
//! corrects a few networks. Addresses a later source leaves unknown keep the
//! earlier answer. Sources of disjoint data (an IPv4 and an IPv6 file, the
//! five registries) combine as if they were one.
//!
//! **AS data** ([`asn`], `--asn-data`) is read beside the country data, in
//! the same load: [`DataSources::asn`] → [`Loaded::asn`].

pub mod asn;
pub mod cidr;
pub mod csv;
pub mod detect;
pub mod embedded;
pub mod fetch;
pub mod inspect;
pub mod ip2location;
pub mod list;
pub mod maxmind_csv;
pub mod mmdb;
pub mod rir;
pub mod shrink;
pub mod table;

mod archive;
mod rows;
mod text;

use std::path::{Path, PathBuf};

pub use archive::BUDGET;
pub use detect::Format;
pub use mmdb::CountryFields;
pub(crate) use rows::Rows;
pub use rows::{parse_network, CidrError, CodeCounts, Field, Place, SourceError, MAX_ROWS};

use table::{PerFamily, Table};

/// One decompressed file of a source.
#[derive(Clone, Debug)]
pub struct Input {
    /// How errors name it: the path, or `archive.zip/member`.
    pub origin: String,
    /// The name that tells its format (without `.gz`/`.xz`).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// How to read sources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// The format of every source; detected per file when `None`.
    pub format: Option<Format>,
    /// Where MMDB records keep the country code.
    pub mmdb_fields: CountryFields,
}

/// What a source held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    pub origin: String,
    pub formats: Vec<Format>,
    /// The data's release date, if the source says (file name, RIR header, MMDB metadata).
    pub date: Option<String>,
    /// Rows with a country, per family (before merging).
    pub ranges: PerFamily<usize>,
    /// Prefixes of this source alone.
    pub prefixes: PerFamily<usize>,
    /// When the file was written (downloaded, for a URL).
    pub modified: Option<std::time::SystemTime>,
    /// Rows under reserved codes read as their country, and under placeholders.
    pub codes: CodeCounts,
    /// Where an MMDB's records keep the country (the path that answered most).
    pub country_field: Option<String>,
}

/// What a file says of itself while it is read.
#[derive(Default)]
pub(crate) struct Notes {
    /// The data's release date.
    pub date: Option<String>,
    /// See [`SourceInfo::country_field`].
    pub country_field: Option<String>,
}

/// The combined table of several sources.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub table: Table,
    pub sources: Vec<SourceInfo>,
    /// Each source's own table, kept when there are several: which one gave
    /// an address its country (`geoblock explain`).
    pub layers: Vec<Table>,
    /// The autonomous systems (`--asn-data`).
    pub asn: asn::AsnData,
    /// The named address lists (`--list`), in the operator's order.
    pub lists: Vec<list::AddressList>,
}

/// Why the data could not be loaded; what is in force stays in force.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("embedded data: {0}")]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    List(#[from] list::ListError),
}

/// The data geoblock enforces: sources in order (none: the embedded DB-IP
/// data), how to read them, and where URLs are downloaded to.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSources {
    /// Paths or `https://` / `http://` URLs.
    pub sources: Vec<String>,
    /// AS data sources ([`asn`]), paths or URLs as `sources`.
    pub asn: Vec<String>,
    pub options: Options,
    pub cache_dir: PathBuf,
    /// Named address lists: (name, path or URL), in the operator's order.
    pub lists: Vec<(String, String)>,
}

impl DataSources {
    /// Downloads what is remote (an earlier download stands in for a failed
    /// one), then reads and combines everything.
    pub fn load(&self) -> Result<Loaded, DataError> {
        let mut loaded = self.load_countries()?;
        loaded.asn = self.load_asn()?;
        loaded.lists = self.load_lists()?;
        Ok(loaded)
    }

    fn load_countries(&self) -> Result<Loaded, DataError> {
        if self.sources.is_empty() {
            return embedded();
        }
        let mut loaded = load(&self.local_paths(&self.sources)?, &self.options)?;
        // Name URLs as the operator gave them, not by their cache file.
        for (info, source) in loaded.sources.iter_mut().zip(&self.sources) {
            info.origin.clone_from(source);
        }
        Ok(loaded)
    }

    /// Reads and combines the AS sources alone (none: empty AS data).
    pub fn load_asn(&self) -> Result<asn::AsnData, DataError> {
        let mut data = asn::load(&self.local_paths(&self.asn)?)?;
        for (info, source) in data.sources.iter_mut().zip(&self.asn) {
            info.origin.clone_from(source);
        }
        Ok(data)
    }

    /// The files of `sources`: URLs downloaded (or their last download).
    fn local_paths(&self, sources: &[String]) -> Result<Vec<PathBuf>, fetch::FetchError> {
        sources.iter().map(|s| fetch::local_path(s, &self.cache_dir, fetch::FetchConfig::default())).collect()
    }

    /// The named lists, each downloaded first if it is a URL.
    fn load_lists(&self) -> Result<Vec<list::AddressList>, DataError> {
        let mut lists = Vec::with_capacity(self.lists.len());
        for (name, source) in &self.lists {
            let path = fetch::local_path(source, &self.list_cache(name), fetch::FetchConfig::default())?;
            lists.push(list::load(name, &path, source)?);
        }
        Ok(lists)
    }

    /// Where a list's download is kept: a folder of its own, so lists and
    /// sources whose URLs end in the same file name do not meet.
    fn list_cache(&self, name: &str) -> PathBuf {
        self.cache_dir.join("lists").join(name)
    }

    /// Downloads newer versions of the URL sources and lists into
    /// `cache_dir` (conditional GET, retries): how many changed. Blocking.
    /// A failure leaves the last good download in place.
    pub fn fetch(&self) -> Result<usize, fetch::FetchError> {
        let mut changed = 0;
        for (source, cache) in self.located().filter(|(s, _)| fetch::is_url(s)) {
            let remote = fetch::Remote::new(source, &cache, fetch::FetchConfig::default())?;
            changed += usize::from(remote.refresh()?.is_some());
        }
        Ok(changed)
    }

    /// When each source's file (a URL's: its download) was last written,
    /// the AS sources' after the country sources', then each list's: what
    /// a watcher compares with [`SourceInfo::modified`],
    /// [`asn::AsnSourceInfo::modified`] and [`list::ListInfo::modified`].
    pub fn modified(&self) -> Vec<Option<std::time::SystemTime>> {
        self.located().map(|(source, cache)| modified(&local_file(source, &cache))).collect()
    }

    /// The sources, the AS sources, then the lists, each with the folder its download goes to.
    fn located(&self) -> impl Iterator<Item = (&str, PathBuf)> {
        let sources = self.sources.iter().chain(&self.asn).map(|s| (s.as_str(), self.cache_dir.clone()));
        sources.chain(self.lists.iter().map(|(name, s)| (s.as_str(), self.list_cache(name))))
    }
}

impl Loaded {
    /// When the files in force were written, as [`DataSources::modified`]
    /// lists them (the embedded data has no file).
    pub fn modified(&self, data: &DataSources) -> Vec<Option<std::time::SystemTime>> {
        let sources = self.sources.iter().map(|s| s.modified).take(data.sources.len());
        let asn = self.asn.sources.iter().map(|s| s.modified);
        sources.chain(asn).chain(self.lists.iter().map(|l| l.info.modified)).collect()
    }
}

fn local_file(source: &str, cache_dir: &Path) -> PathBuf {
    fetch::cache_path(source, cache_dir).unwrap_or_else(|_| PathBuf::from(source))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The embedded DB-IP data as a loaded source.
fn embedded() -> Result<Loaded, DataError> {
    let table = embedded::embedded()?;
    let meta = embedded::embedded_meta()?;
    let prefixes = table.counts();
    let info = SourceInfo {
        origin: format!("embedded: {meta}"),
        formats: vec![Format::Csv],
        date: Some(meta.version),
        ranges: prefixes,
        prefixes,
        modified: None,
        codes: CodeCounts::default(),
        country_field: None,
    };
    Ok(Loaded { table, sources: vec![info], ..Loaded::default() })
}

/// Prefixes per family that the tables of several sources may hold
/// together (each source's table is kept, for `explain`): with the
/// combined table and the next source's input, within 1 GiB.
pub const MAX_HELD_PREFIXES: usize = 2 * table::MAX_PREFIXES;

/// Reads the sources and combines them in order (a later one wins where it has a country).
pub fn load<P: AsRef<Path>>(paths: &[P], options: &Options) -> Result<Loaded, SourceError> {
    let mut loaded = Loaded::default();
    let mut held = PerFamily::<usize>::default();
    for path in paths {
        let (table, info) = load_one(path.as_ref(), options)?;
        if paths.len() > 1 {
            hold(&mut held, &table, &info.origin)?;
            loaded.layers.push(table.clone());
        }
        loaded.table = match loaded.sources.is_empty() {
            true => table,
            false => {
                loaded.table.overlay(&table).map_err(|error| SourceError::Table { at: info.origin.clone(), error })?
            }
        };
        loaded.sources.push(info);
    }
    Ok(loaded)
}

/// Adds a source's table to the prefixes `held`, within [`MAX_HELD_PREFIXES`].
fn hold(held: &mut PerFamily<usize>, table: &Table, origin: &str) -> Result<(), SourceError> {
    *held = PerFamily { v4: held.v4 + table.v4.len(), v6: held.v6 + table.v6.len() };
    match [("IPv4", held.v4), ("IPv6", held.v6)].into_iter().find(|&(_, n)| n > MAX_HELD_PREFIXES) {
        Some((family, _)) => Err(SourceError::invalid(
            origin,
            format!("with the sources before it, more than {MAX_HELD_PREFIXES} {family} prefixes"),
        )),
        None => Ok(()),
    }
}

/// One source's table and what it held.
pub fn load_one(path: &Path, options: &Options) -> Result<(Table, SourceInfo), SourceError> {
    // Before reading: a write during the read shows as a later change.
    let written = modified(path);
    let inputs = archive::open(path)?;
    let (table, mut info) = read(path.display().to_string(), inputs, options)?;
    info.modified = written;
    Ok((table, info))
}

/// The table of already opened inputs (one source).
pub fn read(origin: String, inputs: Vec<Input>, options: &Options) -> Result<(Table, SourceInfo), SourceError> {
    if inputs.is_empty() {
        return Err(SourceError::invalid(&origin, "no data files"));
    }
    let mut rows = Rows::default();
    let mut formats = Vec::new();
    let mut notes = Notes { date: detect::date_in_name(&origin), country_field: None };
    let maxmind = |i: &Input| maxmind_csv::role(&i.name).is_some();
    if options.format == Some(Format::MaxmindCsv) || (options.format.is_none() && inputs.iter().any(maxmind)) {
        maxmind_csv::parse_into(&mut rows, &inputs)?;
        // The text is read: what the table is built from is the rows.
        drop(inputs);
        formats.push(Format::MaxmindCsv);
    } else {
        for input in inputs {
            let format = options.format.or_else(|| detect::detect(&input.name, &input.bytes));
            let format = format.ok_or_else(|| {
                SourceError::invalid(&input.origin, "cannot tell the format from the name or content (give --format)")
            })?;
            let found = parse_input(&mut rows, input, format, options)?;
            notes =
                Notes { date: found.date.or(notes.date), country_field: found.country_field.or(notes.country_field) };
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
    }
    let (v4, v6) = rows.counts();
    let codes = rows.codes();
    let table = rows.into_table()?;
    let prefixes = table.counts();
    let Notes { date, country_field } = notes;
    let ranges = PerFamily { v4, v6 };
    Ok((table, SourceInfo { origin, formats, date, ranges, prefixes, modified: None, codes, country_field }))
}

/// Parses one file of a known format; gives the date it carries, if any.
fn parse_input(rows: &mut Rows, input: Input, format: Format, options: &Options) -> Result<Notes, SourceError> {
    let index = rows.origin(&input.origin);
    let name = PathBuf::from(&input.name);
    let dated = |date| Notes { date, country_field: None };
    match format {
        Format::Csv => {
            csv::parse_into(rows, &input.bytes, index, csv::Integers::from_file_name(&name)).map(|()| Notes::default())
        }
        Format::Ip2Location => {
            let v6 = input.name.to_ascii_lowercase().contains("ipv6");
            ip2location::parse_into(rows, &input.bytes, index, v6).map(|()| Notes::default())
        }
        Format::Mmdb => mmdb::parse_into(rows, input.bytes, index, &options.mmdb_fields),
        Format::Rir => rir::parse_into(rows, &input.bytes, index).map(dated),
        Format::Cidr => cidr::parse_into(rows, &input.bytes, index, &name).map(|()| Notes::default()),
        Format::MaxmindCsv => maxmind_csv::parse_into(rows, std::slice::from_ref(&input)).map(|()| Notes::default()),
    }
}

/// `YYYY-MM-DD` of a Unix time (the civil calendar, days from 1970-01-01).
pub(crate) fn date_of_epoch(secs: u64) -> Option<String> {
    if secs == 0 {
        return None;
    }
    let (year, month, day) = crate::calendar::civil((secs / 86_400) as i64);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

#[cfg(test)]
mod tests;

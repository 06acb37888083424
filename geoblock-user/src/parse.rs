//! `start,end,country` CSV files → [`Table`]: the range CSV format of
//! [`crate::source::csv`] (documented there), read as one data set.
//!
//! Kept as the short path for callers that only ever read range CSV (the
//! embedded data's packing); [`crate::source`] reads every format.

use std::path::Path;

pub use crate::source::{csv::Integers, Field, SourceError as ParseError};
use crate::{
    prefix::Table,
    source::{csv, Rows},
};

/// Reads and parses the files as one data set (rows of different files that
/// overlap with different countries are an error) and builds the table; the
/// integer family of each file comes from its name.
pub fn load(paths: &[&Path]) -> Result<Table, ParseError> {
    let mut rows = Rows::default();
    for path in paths {
        let origin = path.display().to_string();
        let text = std::fs::read(path).map_err(|error| ParseError::Read { origin: origin.clone(), error })?;
        let index = rows.origin(&origin);
        csv::parse_into(&mut rows, &text, index, Integers::from_file_name(path))?;
    }
    rows.into_table()
}

/// Parses one text (`origin` names it in errors, e.g. "embedded" or "stdin").
pub fn parse(text: &[u8], origin: &str, integers: Integers) -> Result<Table, ParseError> {
    let mut rows = Rows::default();
    let index = rows.origin(origin);
    csv::parse_into(&mut rows, text, index, integers)?;
    rows.into_table()
}

#[cfg(test)]
mod tests;

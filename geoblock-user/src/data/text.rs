//! Lines and fields of the text formats, shared so every parser treats
//! byte order marks, CRLF, comments and quoting alike.

use super::rows::{show, Field, RowError};

/// Non-blank lines that are not `#` comments, trimmed, with their 1-based
/// numbers. A UTF-8 byte order mark (spreadsheet exports) is dropped.
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_ascii()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with(b"#"))
}

/// The fields of a line split at `sep`, trimmed, without their surrounding
/// double quotes. A quoted field may hold `sep` (IP2Location's and MaxMind's
/// country names do: "Bonaire, Sint Eustatius and Saba").
pub fn fields(line: &[u8], sep: u8) -> Fields<'_> {
    Fields { rest: Some(line), sep }
}

pub struct Fields<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?.trim_ascii_start();
        let end = match rest.first() {
            // Up to the closing quote ("" inside is an escaped quote), then the separator.
            Some(b'"') => closing_quote(rest).and_then(|q| find(&rest[q..], self.sep).map(|i| q + i)),
            _ => find(rest, self.sep),
        };
        let (field, next) = match end {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        self.rest = next;
        Some(unquote(field))
    }
}

fn find(bytes: &[u8], b: u8) -> Option<usize> {
    bytes.iter().position(|&x| x == b)
}

/// Index just past the quote closing the one at 0 (an unclosed quote runs to the end).
fn closing_quote(field: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < field.len() {
        match (field[i], field.get(i + 1)) {
            (b'"', Some(b'"')) => i += 2,
            (b'"', _) => return Some(i + 1),
            _ => i += 1,
        }
    }
    Some(field.len())
}

fn unquote(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    match field {
        [b'"', inner @ .., b'"'] => inner.trim_ascii(),
        _ => field,
    }
}

/// The first `N` fields of a record, named for errors. With `exact`, more
/// fields are an error too (a shifted column is better refused than guessed).
pub fn record<const N: usize>(line: &[u8], sep: u8, names: [Field; N], exact: bool) -> Result<[&[u8]; N], RowError> {
    let shape = || names.join(&*char::from(sep).to_string());
    let mut fields = fields(line, sep);
    let mut out = [&b""[..]; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = fields.next().ok_or_else(|| (name, format!("missing (a row is {})", shape())))?;
    }
    match fields.next() {
        Some(extra) if exact => {
            Err((names[N - 1], format!("followed by an extra field '{}' (a row is {})", show(extra), shape())))
        }
        _ => Ok(out),
    }
}

/// Column positions found by name in a header line.
pub fn columns<const N: usize>(header: &[u8], sep: u8, names: [&str; N]) -> Result<[usize; N], String> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        // Split again for each name: a hostile header of millions of fields is never held.
        *slot = fields(header, sep)
            .position(|t| t.eq_ignore_ascii_case(name.as_bytes()))
            .ok_or_else(|| format!("the header has no column '{name}'"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        fields(line.as_bytes(), b',').map(|f| String::from_utf8_lossy(f).into_owned()).collect()
    }

    #[test]
    fn splits_quoted_fields_with_separators_inside() {
        assert_eq!(
            split(r#""1","2","BQ","Bonaire, Sint Eustatius and Saba""#),
            ["1", "2", "BQ", "Bonaire, Sint Eustatius and Saba"]
        );
        assert_eq!(split(" a , \"b\" ,,"), ["a", "b", "", ""]);
        assert_eq!(split(r#""say ""hi"", ok",x"#), [r#"say ""hi"", ok"#, "x"]);
        assert_eq!(split("\"unclosed,x"), ["\"unclosed,x"]);
        assert_eq!(split(""), [""]);
    }

    #[test]
    fn lines_skip_comments_blanks_and_bom() {
        let got: Vec<(usize, &[u8])> = lines(b"\xef\xbb\xbf# c\r\n\r\n a \n#x\nb").collect();
        assert_eq!(got, [(3, &b"a"[..]), (5, &b"b"[..])]);
    }
}

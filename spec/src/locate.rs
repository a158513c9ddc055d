//! Where keys and values sit in the Wasmfile's text, so that errors found after
//! deserialization (an escaping path, a key of the wrong toolchain) still point at the line
//! and column the user has to change.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Location;

/// One step on the way to a key: a table key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A key's span (none for an array element) and its value.
type Entry<'t, 'a> = (Option<Range<usize>>, &'t Spanned<DeValue<'a>>);

/// The parsed document with the spans of every key and value.
pub(crate) struct SourceMap<'a> {
    source: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(source: &'a str, root: Spanned<DeTable<'a>>) -> Self {
        SourceMap { source, root }
    }

    pub(crate) fn root(&self) -> &Spanned<DeTable<'a>> {
        &self.root
    }

    /// The line and column of a byte offset.
    pub(crate) fn location(&self, offset: usize) -> Location {
        location(self.source, offset)
    }

    /// The text of a span, or "" when the span does not fit the source.
    pub(crate) fn text(&self, span: Range<usize>) -> &'a str {
        self.source.get(span).unwrap_or_default()
    }

    /// The span of the key (none for an array element) and the value at `path`.
    fn entry(&self, path: &[Seg<'_>]) -> Option<Entry<'_, 'a>> {
        fn lookup<'t, 'a>(table: &'t DeTable<'a>, name: &str) -> Option<Entry<'t, 'a>> {
            let (key, value) = table.get_key_value(name)?;
            Some((Some(key.span()), value))
        }
        let mut current: Option<Entry<'_, 'a>> = None;
        for seg in path {
            let next = match (*seg, current.map(|(_, value)| value.get_ref())) {
                (Seg::Key(name), None) => lookup(self.root.get_ref(), name),
                (Seg::Key(name), Some(DeValue::Table(table))) => lookup(table, name),
                (Seg::Index(index), Some(DeValue::Array(items))) => {
                    items.get(index).map(|item| (None, item))
                }
                _ => None,
            };
            current = Some(next?);
        }
        current
    }

    /// Whether the value at `path` is a TOML date or time (serde calls those maps).
    pub(crate) fn is_datetime(&self, path: &[Seg<'_>]) -> bool {
        self.entry(path)
            .is_some_and(|(_, value)| matches!(value.get_ref(), DeValue::Datetime(_)))
    }

    /// The span of the value at `path` (the element, for an array index).
    pub(crate) fn value_span(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        self.entry(path).map(|(_, value)| value.span())
    }

    /// Where the value at `path` starts.
    pub(crate) fn value(&self, path: &[Seg<'_>]) -> Option<Location> {
        self.value_span(path).map(|span| self.location(span.start))
    }

    /// Where the key at `path` starts (the element, for an array index).
    pub(crate) fn key(&self, path: &[Seg<'_>]) -> Option<Location> {
        self.entry(path)
            .map(|(key, value)| self.location(key.unwrap_or(value.span()).start))
    }

    /// The path to the innermost key or value whose span encloses `span`: turns the span of
    /// a deserialization error back into the key the user wrote.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> Vec<Seg<'_>> {
        let mut path = Vec::new();
        find_in_table(self.root.get_ref(), span, &mut path);
        path
    }
}

fn encloses(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn find_in_table<'t>(table: &'t DeTable<'_>, span: &Range<usize>, path: &mut Vec<Seg<'t>>) -> bool {
    for (key, value) in table.iter() {
        path.push(Seg::Key(key.get_ref()));
        if encloses(&key.span(), span) || find_in_value(value, span, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value<'t>(
    value: &'t Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<Seg<'t>>,
) -> bool {
    match value.get_ref() {
        DeValue::Table(table) if find_in_table(table, span, path) => return true,
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Seg::Index(index));
                if find_in_value(item, span, path) {
                    return true;
                }
                path.pop();
            }
        }
        _ => {}
    }
    encloses(&value.span(), span)
}

/// The 1-based line and column (counted in characters) of a byte offset in `source`.
pub(crate) fn location(source: &str, offset: usize) -> Location {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// How a table is named in messages: `[image]`, `[[copy]]`, `[image.env]`, or
/// `the Wasmfile` for the top level.
pub(crate) fn describe_table(path: &[Seg<'_>]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|seg| match seg {
            Seg::Key(key) => Some(*key),
            Seg::Index(_) => None,
        })
        .collect();
    match path {
        [] => "the Wasmfile".to_owned(),
        [Seg::Key(table), Seg::Index(_), ..] if keys.len() == 1 => format!("[[{table}]]"),
        _ => format!("[{}]", keys.join(".")),
    }
}

/// How a key is named in messages: "`tags` in [image]"; array indexes after the key are
/// dropped, since the location already points at the element.
pub(crate) fn describe_key(path: &[Seg<'_>]) -> String {
    let Some(last_key) = path.iter().rposition(|seg| matches!(seg, Seg::Key(_))) else {
        return "the Wasmfile".to_owned();
    };
    let name = match path[last_key] {
        Seg::Key(name) => name,
        Seg::Index(_) => "",
    };
    format!("`{name}` in {}", describe_table(&path[..last_key]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(source: &str) -> SourceMap<'_> {
        SourceMap::new(source, DeTable::parse(source).expect("valid TOML"))
    }

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let source = "a = 1\nbé = \"x\"\n";
        assert_eq!(location(source, 0), Location { line: 1, column: 1 });
        assert_eq!(location(source, 6), Location { line: 2, column: 1 });
        // After the two-byte `é`: column 3, not 4.
        assert_eq!(location(source, 9), Location { line: 2, column: 3 });
        assert_eq!(location(source, 999), Location { line: 3, column: 1 });
    }

    #[test]
    fn finds_keys_and_values_in_tables_arrays_and_arrays_of_tables() {
        let source =
            "[image]\ntags = [\"a\", \"b\"]\n\n[[copy]]\nfrom = \"x\"\n\n[[copy]]\nfrom = \"y\"\n";
        let map = map(source);
        let tags = [Seg::Key("image"), Seg::Key("tags")];
        assert_eq!(map.key(&tags), Some(Location { line: 2, column: 1 }));
        assert_eq!(map.value(&tags), Some(Location { line: 2, column: 8 }));
        let second_tag = [Seg::Key("image"), Seg::Key("tags"), Seg::Index(1)];
        assert_eq!(
            map.value(&second_tag),
            Some(Location {
                line: 2,
                column: 14
            })
        );
        let second_from = [Seg::Key("copy"), Seg::Index(1), Seg::Key("from")];
        assert_eq!(map.key(&second_from), Some(Location { line: 8, column: 1 }));
        assert_eq!(map.value(&[Seg::Key("nope")]), None);
        assert_eq!(map.value(&[Seg::Key("image"), Seg::Index(0)]), None);
    }

    #[test]
    fn maps_a_span_back_to_its_key() {
        let source = "[build]\nenv = { A = \"1\" }\n[[copy]]\nfrom = \"x\"\n";
        let map = map(source);
        let a = source.find("\"1\"").expect("present");
        assert_eq!(
            map.path_at(&(a..a + 3)),
            [Seg::Key("build"), Seg::Key("env"), Seg::Key("A")]
        );
        assert_eq!(map.path_at(&(26..34)), [Seg::Key("copy"), Seg::Index(0)]);
    }

    #[test]
    fn describes_tables_and_keys() {
        assert_eq!(describe_table(&[]), "the Wasmfile");
        assert_eq!(
            describe_table(&[Seg::Key("copy"), Seg::Index(0)]),
            "[[copy]]"
        );
        assert_eq!(
            describe_key(&[Seg::Key("image"), Seg::Key("tags"), Seg::Index(2)]),
            "`tags` in [image]"
        );
        assert_eq!(
            describe_key(&[Seg::Key("copy"), Seg::Index(1), Seg::Key("to")]),
            "`to` in [[copy]]"
        );
        assert_eq!(
            describe_key(&[Seg::Key("image"), Seg::Key("env"), Seg::Key("A")]),
            "`A` in [image.env]"
        );
        assert_eq!(
            describe_key(&[Seg::Key("image")]),
            "`image` in the Wasmfile"
        );
    }
}

//! `Range` pagination of list calls, as Heroku does it: `Range: name ..; max=200,
//! order=desc` answers 200 with the whole (remaining) list, or 206 with `Next-Range:
//! name ]LAST..; max=200, order=desc` when the list was cut. `]` marks an exclusive start.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use haven_api::{RangeSpec, DEFAULT_PAGE};
use serde::Serialize;

use super::error::ApiError;

/// The value a listed item has in the field being ranged on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Num(u64),
    Text(String),
}

impl SortKey {
    fn render(&self) -> String {
        match self {
            SortKey::Num(n) => n.to_string(),
            SortKey::Text(t) => t.clone(),
        }
    }
}

/// Whether a field's values are numbers or text: decides how a bound in the header parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Num,
    Text,
}

/// A field a list may be ranged on, with how to read it from an item.
pub struct RangeField<T> {
    pub name: &'static str,
    pub kind: KeyKind,
    pub key: fn(&T) -> SortKey,
}

/// One page of a list, ready to answer.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `Next-Range` header when the list was cut (then the status is 206).
    pub next_range: Option<String>,
    /// The fields the list can be ranged on, for `Accept-Ranges`.
    pub accept_ranges: String,
}

impl<T> Page<T> {
    /// Converts the items (e.g. model → wire), keeping the paging.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_range: self.next_range,
            accept_ranges: self.accept_ranges,
        }
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let status = if self.next_range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let mut resp = (status, Json(self.items)).into_response();
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.accept_ranges) {
            headers.insert("accept-ranges", v);
        }
        if let Some(next) = self.next_range.and_then(|n| HeaderValue::from_str(&n).ok()) {
            headers.insert("next-range", next);
        }
        resp
    }
}

/// The `Range` header of a request, if any; one that is not text is a 400.
pub fn range_header(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(header::RANGE)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("the Range header must be ASCII text"))
        })
        .transpose()
}

fn parse_bound(field: &str, kind: KeyKind, text: &str) -> Result<SortKey, ApiError> {
    match kind {
        KeyKind::Text => Ok(SortKey::Text(text.to_string())),
        // `v5` is how people write versions; accept it.
        KeyKind::Num => text
            .strip_prefix('v')
            .unwrap_or(text)
            .parse()
            .map(SortKey::Num)
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid Range value {text:?} for {field}: it must be a number"
                ))
            }),
    }
}

/// Cuts one page out of `items` as the `Range` header (if any) asks. The first of `fields`
/// is the default sort. A malformed header or a field not in `fields` is a 400 that names
/// the allowed fields.
pub fn page<T>(
    mut items: Vec<T>,
    range: Option<&str>,
    fields: &[RangeField<T>],
) -> Result<Page<T>, ApiError> {
    let allowed: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let accept_ranges = allowed.join(", ");
    let default_field = allowed.first().copied().unwrap_or("id");
    let spec = match range.map(str::trim).filter(|r| !r.is_empty()) {
        None => RangeSpec {
            field: default_field.to_string(),
            start: None,
            end: None,
            max: DEFAULT_PAGE,
            descending: false,
        },
        Some(header) => RangeSpec::parse(header).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid Range header: {e}; send e.g. Range: {default_field} ..; max=200"
            ))
        })?,
    };
    let field = fields
        .iter()
        .find(|f| f.name == spec.field)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "this list cannot be ranged on {:?}; use one of: {accept_ranges}",
                spec.field
            ))
        })?;
    let (start, exclusive) = match spec.start.as_deref() {
        Some(s) => match s.strip_prefix(']') {
            Some(rest) => (Some(rest.trim()), true),
            None => (Some(s), false),
        },
        None => (None, false),
    };
    let start = start
        .filter(|s| !s.is_empty())
        .map(|s| parse_bound(field.name, field.kind, s))
        .transpose()?;
    let end = spec
        .end
        .as_deref()
        .map(|e| parse_bound(field.name, field.kind, e))
        .transpose()?;

    let mut keyed: Vec<(SortKey, T)> = items.drain(..).map(|i| ((field.key)(&i), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if spec.descending {
        keyed.reverse();
    }
    // "After the start" and "before the end" follow the order of the list: in a descending
    // list the start is the largest value.
    let after_start = |k: &SortKey| match &start {
        None => true,
        Some(s) => match (spec.descending, exclusive) {
            (false, false) => k >= s,
            (false, true) => k > s,
            (true, false) => k <= s,
            (true, true) => k < s,
        },
    };
    let before_end = |k: &SortKey| match &end {
        None => true,
        Some(e) if spec.descending => k >= e,
        Some(e) => k <= e,
    };
    let mut selected: Vec<(SortKey, T)> = keyed
        .into_iter()
        .filter(|(k, _)| after_start(k) && before_end(k))
        .collect();
    let mut next_range = None;
    if selected.len() > spec.max {
        selected.truncate(spec.max);
        if let Some((last, _)) = selected.last() {
            let next = RangeSpec {
                field: spec.field.clone(),
                start: Some(format!("]{}", last.render())),
                end: spec.end.clone(),
                max: spec.max,
                descending: spec.descending,
            };
            next_range = Some(next.render());
        }
    }
    Ok(Page {
        items: selected.into_iter().map(|(_, i)| i).collect(),
        next_range,
        accept_ranges,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    type Item = (u64, &'static str);

    fn fields() -> Vec<RangeField<Item>> {
        vec![
            RangeField {
                name: "version",
                kind: KeyKind::Num,
                key: |t| SortKey::Num(t.0),
            },
            RangeField {
                name: "name",
                kind: KeyKind::Text,
                key: |t| SortKey::Text(t.1.to_string()),
            },
        ]
    }

    fn items() -> Vec<Item> {
        vec![(3, "c"), (1, "a"), (10, "j"), (2, "b"), (4, "d")]
    }

    /// (status, versions, Next-Range)
    fn run(range: Option<&str>) -> (u16, Vec<u64>, Option<String>) {
        let p = page(items(), range, &fields()).unwrap();
        let status = if p.next_range.is_some() { 206 } else { 200 };
        (status, p.items.iter().map(|t| t.0).collect(), p.next_range)
    }

    #[test]
    fn table_of_ranges() {
        // (Range header, status, versions answered, Next-Range)
        type Case<'a> = (Option<&'a str>, u16, &'a [u64], Option<&'a str>);
        let cases: &[Case] = &[
            (None, 200, &[1, 2, 3, 4, 10], None),
            (Some(""), 200, &[1, 2, 3, 4, 10], None),
            (Some("version"), 200, &[1, 2, 3, 4, 10], None),
            (Some("version .."), 200, &[1, 2, 3, 4, 10], None),
            (Some("version ..; max=5"), 200, &[1, 2, 3, 4, 10], None),
            (
                Some("version ..; max=2"),
                206,
                &[1, 2],
                Some("version ]2..; max=2"),
            ),
            (
                Some("version ]2..; max=2"),
                206,
                &[3, 4],
                Some("version ]4..; max=2"),
            ),
            (Some("version ]4..; max=2"), 200, &[10], None),
            (Some("version 3.."), 200, &[3, 4, 10], None),
            (Some("version v3.."), 200, &[3, 4, 10], None),
            (Some("version ]3.."), 200, &[4, 10], None),
            (Some("version 2..4"), 200, &[2, 3, 4], None),
            (Some("version ..3"), 200, &[1, 2, 3], None),
            (
                Some("version 2..4; max=2"),
                206,
                &[2, 3],
                Some("version ]3..4; max=2"),
            ),
            (Some("version ]3..4; max=2"), 200, &[4], None),
            (Some("version 11.."), 200, &[], None),
            (Some("version ..; order=desc"), 200, &[10, 4, 3, 2, 1], None),
            (
                Some("version ..; max=3, order=desc"),
                206,
                &[10, 4, 3],
                Some("version ]3..; max=3, order=desc"),
            ),
            (Some("version ]3..; max=3, order=desc"), 200, &[2, 1], None),
            (Some("version 4..; order=desc"), 200, &[4, 3, 2, 1], None),
            (Some("version 4..2; order=desc"), 200, &[4, 3, 2], None),
            (
                Some("name ..; max=2"),
                206,
                &[1, 2],
                Some("name ]b..; max=2"),
            ),
            (
                Some("name ]b..; max=2"),
                206,
                &[3, 4],
                Some("name ]d..; max=2"),
            ),
            (Some("name c.."), 200, &[3, 4, 10], None),
            (
                Some("name ..; order=desc, max=1"),
                206,
                &[10],
                Some("name ]j..; max=1, order=desc"),
            ),
            (Some("version ..; max=5000"), 200, &[1, 2, 3, 4, 10], None),
            (
                Some("  version ..;  max=1 ; "),
                206,
                &[1],
                Some("version ]1..; max=1"),
            ),
        ];
        for (range, status, want, next) in cases {
            let got = run(*range);
            assert_eq!(
                got,
                (*status, want.to_vec(), next.map(str::to_string)),
                "Range {range:?}"
            );
        }
    }

    #[test]
    fn following_next_range_visits_every_item_once() {
        for max in 1..=6 {
            for desc in [false, true] {
                let mut range = format!(
                    "version ..; max={max}{}",
                    if desc { ", order=desc" } else { "" }
                );
                let mut seen = Vec::new();
                for _ in 0..10 {
                    let (status, got, next) = run(Some(&range));
                    seen.extend(got);
                    match next {
                        Some(n) => {
                            assert_eq!(status, 206);
                            range = n;
                        }
                        None => break,
                    }
                }
                let mut want = vec![1, 2, 3, 4, 10];
                if desc {
                    want.reverse();
                }
                assert_eq!(seen, want, "max={max} desc={desc}");
            }
        }
    }

    #[test]
    fn bad_ranges_are_400_naming_what_to_do() {
        for bad in [
            "size ..",
            "id ..",
            "version x..",
            "version ..y",
            "version ..; max=zero",
            "version ..; max=0",
            "version 5",
            "version ..; order=up",
        ] {
            let err = page(items(), Some(bad), &fields()).unwrap_err();
            assert_eq!((err.status.as_u16(), err.id), (400, "bad_request"), "{bad}");
        }
        let err = page(items(), Some("size .."), &fields()).unwrap_err();
        assert!(err.message.contains("version, name"), "{}", err.message);
    }

    #[test]
    fn empty_lists_and_accept_ranges() {
        let p = page(Vec::<Item>::new(), Some("version 3..; max=1"), &fields()).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next_range, None);
        assert_eq!(p.accept_ranges, "version, name");
    }

    #[test]
    fn page_answers_206_with_headers() {
        let p = page(items(), Some("version ..; max=1"), &fields()).unwrap();
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(resp.headers()["next-range"], "version ]1..; max=1");
        assert_eq!(resp.headers()["accept-ranges"], "version, name");
        let resp = page(items(), None, &fields()).unwrap().into_response();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("next-range").is_none());
    }
}

//! `Range` pagination: `Range: name ..; max=200, order=desc` → 200, or 206 with
//! `Next-Range` when the list was cut.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use haven_api::RangeSpec;

use super::ApiError;

/// A sort key of one field of a listed resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Num(u64),
    Text(String),
}

impl Key {
    fn parse_like(&self, text: &str) -> Option<Key> {
        match self {
            Key::Num(_) => text.parse().ok().map(Key::Num),
            Key::Text(_) => Some(Key::Text(text.to_string())),
        }
    }
    fn render(&self) -> String {
        match self {
            Key::Num(n) => n.to_string(),
            Key::Text(t) => t.clone(),
        }
    }
}

/// A field a list can be ranged by.
pub struct Field<T> {
    pub name: &'static str,
    pub key: fn(&T) -> Key,
}

/// One page of `items` according to the `Range` header.
pub fn page<T>(
    mut items: Vec<T>,
    range: Option<&str>,
    fields: &[Field<T>],
) -> Result<(StatusCode, HeaderMap, Vec<T>), ApiError> {
    let allowed: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        headers.insert("accept-ranges", v);
    }
    let spec = match range {
        None => RangeSpec {
            field: allowed.first().copied().unwrap_or("id").to_string(),
            start: None,
            end: None,
            max: haven_api::DEFAULT_PAGE,
            descending: false,
        },
        Some(h) => RangeSpec::parse(h).map_err(|e| ApiError::bad_request(format!("{e}; example: Range: {} ..; max=200", allowed.first().copied().unwrap_or("id"))))?,
    };
    let field = fields.iter().find(|f| f.name == spec.field).ok_or_else(|| {
        ApiError::bad_request(format!(
            "cannot range by {:?}; use one of: {}",
            spec.field,
            allowed.join(", ")
        ))
    })?;
    items.sort_by_key(|a| (field.key)(a));
    if spec.descending {
        items.reverse();
    }
    // `]value` is an exclusive start, as Heroku's Next-Range uses.
    let (start, exclusive) = match spec.start.as_deref() {
        Some(s) if s.starts_with(']') => (Some(&s[1..]), true),
        other => (other, false),
    };
    let bound = |text: &str, items: &[T]| -> Result<Option<Key>, ApiError> {
        let Some(sample) = items.first().map(|i| (field.key)(i)) else { return Ok(None) };
        sample
            .parse_like(text)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid Range value {text:?} for {}", field.name)))
    };
    let start_key = match start {
        Some(s) => bound(s, &items)?,
        None => None,
    };
    let end_key = match spec.end.as_deref() {
        Some(e) => bound(e, &items)?,
        None => None,
    };
    let in_range = |k: &Key| -> bool {
        let after_start = match &start_key {
            None => true,
            Some(s) if spec.descending => if exclusive { k < s } else { k <= s },
            Some(s) => if exclusive { k > s } else { k >= s },
        };
        let before_end = match &end_key {
            None => true,
            Some(e) if spec.descending => k >= e,
            Some(e) => k <= e,
        };
        after_start && before_end
    };
    let selected: Vec<T> = items.into_iter().filter(|i| in_range(&(field.key)(i))).collect();
    if selected.len() <= spec.max {
        return Ok((StatusCode::OK, headers, selected));
    }
    let mut selected = selected;
    selected.truncate(spec.max);
    let last = selected.last().map(|i| (field.key)(i).render()).unwrap_or_default();
    let next = RangeSpec {
        field: spec.field.clone(),
        start: Some(format!("]{last}")),
        end: None,
        max: spec.max,
        descending: spec.descending,
    };
    if let Ok(v) = HeaderValue::from_str(&next.render()) {
        headers.insert("next-range", v);
    }
    Ok((StatusCode::PARTIAL_CONTENT, headers, selected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field<(u64, &'static str)>> {
        vec![
            Field { name: "version", key: |t| Key::Num(t.0) },
            Field { name: "name", key: |t| Key::Text(t.1.to_string()) },
        ]
    }

    fn items() -> Vec<(u64, &'static str)> {
        vec![(3, "c"), (1, "a"), (10, "j"), (2, "b")]
    }

    fn versions(range: Option<&str>) -> (u16, Vec<u64>, Option<String>) {
        let (status, headers, got) = page(items(), range, &fields()).unwrap();
        (
            status.as_u16(),
            got.iter().map(|t| t.0).collect(),
            headers.get("next-range").map(|v| v.to_str().unwrap().to_string()),
        )
    }

    #[test]
    fn pages_follow_next_range() {
        assert_eq!(versions(None), (200, vec![1, 2, 3, 10], None));
        let (status, got, next) = versions(Some("version ..; max=2"));
        assert_eq!((status, got.clone()), (206, vec![1, 2]));
        let next = next.unwrap();
        assert_eq!(next, "version ]2..; max=2");
        assert_eq!(versions(Some(&next)), (200, vec![3, 10], None));
        assert_eq!(versions(Some("version ..; order=desc")).1, vec![10, 3, 2, 1]);
        let (_, got, next) = versions(Some("version ..; max=3, order=desc"));
        assert_eq!(got, vec![10, 3, 2]);
        assert_eq!(versions(Some(&next.unwrap())).1, vec![1]);
        assert_eq!(versions(Some("version 2..3")).1, vec![2, 3]);
        assert_eq!(versions(Some("name b..")).1, vec![2, 3, 10]);
    }

    #[test]
    fn bad_ranges_are_400() {
        for bad in ["size ..", "version x..", "version ..; max=zero"] {
            let err = page(items(), Some(bad), &fields()).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{bad}");
        }
    }
}

//! Human output in the Heroku CLI's style: `=== headers`, aligned key/value blocks, tables.

use chrono::{DateTime, Utc};

/// `=== title`
pub fn header(title: &str) -> String {
    format!("=== {title}")
}

/// Key/value lines with the values aligned: `Key:   value`.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table with a header row and a rule under it.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![
        line(headers.iter().map(|h| h.to_string()).collect()),
        line(widths.iter().map(|w| "─".repeat(*w)).collect()),
    ];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// "5 minutes ago" style ages, as the Heroku CLI prints them.
pub fn age(time: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(time) else {
        return time.to_string();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        0..=59 => return "less than a minute ago".into(),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_align() {
        let s = key_values(&[("Name", "x".into()), ("Web URL", "y".into())]);
        assert_eq!(s, "Name:    x\nWeb URL: y");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["v", "description"],
            &[
                vec!["v10".into(), "Set A".into()],
                vec!["v9".into(), "B".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "v    description");
        assert_eq!(lines[1], "───  ───────────");
        assert_eq!(lines[2], "v10  Set A");
        assert_eq!(lines[3], "v9   B");
    }

    #[test]
    fn ages() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(age("2026-01-01T11:59:30Z", now), "less than a minute ago");
        assert_eq!(age("2026-01-01T11:59:00Z", now), "1 minute ago");
        assert_eq!(age("2026-01-01T09:00:00Z", now), "3 hours ago");
        assert_eq!(age("2025-12-30T12:00:00Z", now), "2 days ago");
        assert_eq!(age("garbage", now), "garbage");
    }
}

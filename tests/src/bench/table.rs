//! The table of [`Row`]s as Markdown and as JSON.

use serde_json::{json, Value};

use super::{Better, Row};

/// `12345.6` → `12,346`; small figures keep decimals (`2.34`, `0.018`).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    let a = v.abs();
    if a < 1000.0 && v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    if a >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        number(v)
    } else {
        format!("{} {unit}", number(v))
    }
}

fn target_text(r: &Row) -> String {
    let Some(t) = r.target else {
        return String::new();
    };
    let op = match t.better {
        Better::Higher => "≥",
        Better::Lower => "≤",
    };
    if t.of_peer {
        let peer = r.peer.as_ref().map(|(n, _)| n.as_str()).unwrap_or("peer");
        format!("{op} {} × {peer}", number(t.value))
    } else {
        format!("{op} {}", with_unit(t.value, &r.unit))
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown table: one line per row.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Benchmark | Figure | Target | Met | Peer | Peer's figure | Ratio | Notes |\n|---|---:|---|:-:|---|---:|---:|---|\n",
    );
    for r in rows {
        let figure = r
            .figure
            .map(|f| with_unit(f, &r.unit))
            .unwrap_or_else(|| "—".into());
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let (peer, peer_fig) = match &r.peer {
            Some((n, Some(f))) => (n.clone(), with_unit(*f, &r.unit)),
            Some((n, None)) => (n.clone(), "—".into()),
            None => (String::new(), String::new()),
        };
        let ratio = r.ratio().map(|x| format!("{x:.2}×")).unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.name),
            figure,
            cell(&target_text(r)),
            met,
            cell(&peer),
            peer_fig,
            ratio,
            cell(&r.note)
        ));
    }
    out
}

/// The JSON document: when, where, which build, and every row.
pub fn document(rows: &[Row], meta: Value) -> Value {
    json!({
        "meta": meta,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "met": rows.iter().filter(|r| r.met() == Some(true)).count(),
        "missed": rows.iter().filter(|r| r.met() == Some(false)).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(999.4), "999");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(2.345), "2.35");
        assert_eq!(number(0.0123), "0.012");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(number(7.0), "7");
    }

    #[test]
    fn the_table_shows_target_peer_and_ratio() {
        let rows = vec![
            Row::new("writes", "writes/s, 1 client", 800.0, "writes/s")
                .target(Target::at_least(700.0))
                .peer("etcd", Some(1600.0)),
            Row::new("router", "router | nginx", 40000.0, "req/s")
                .target(Target::at_least_peer(0.8))
                .peer("nginx", Some(60000.0)),
            Row::missing("etcd", "etcd", "writes/s", "etcd is not installed"),
        ];
        let md = markdown(&rows);
        assert!(md.contains("| writes/s, 1 client | 800 writes/s | ≥ 700 writes/s | yes | etcd | 1,600 writes/s | 0.50× |"), "{md}");
        assert!(md.contains("router \\| nginx"), "{md}");
        assert!(md.contains("≥ 0.80 × nginx | **no**"), "{md}");
        assert!(md.contains("etcd is not installed"), "{md}");
        let doc = document(&rows, json!({}));
        assert_eq!(doc["met"], 1);
        assert_eq!(doc["missed"], 1);
        assert_eq!(doc["rows"][1]["target"]["absolute"], 48000.0);
    }
}

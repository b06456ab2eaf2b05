//! `ckpt-shim audit show`: the records, filtered, as a table or as the JSON lines.

use std::io::BufRead;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use ckpt_format::time::{parse_rfc3339, rfc3339};

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// Records at or after this time.
    pub since: Option<SystemTime>,
}

/// `since` as an RFC 3339 time or an age such as `90s`, `15m`, `2h`, `7d`.
pub fn parse_since(s: &str, now: SystemTime) -> Option<SystemTime> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    now.checked_sub(Duration::from_secs(secs))
}

/// Writes the matching records; returns how many matched.
pub fn show(
    reader: impl BufRead,
    filter: &Filter,
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<usize> {
    let since = filter.since.map(rfc3339);
    let mut n = 0;
    for line in reader.lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        if filter.pod.as_deref().is_some_and(|p| p != field("pod"))
            || filter
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != field("namespace"))
            || since.as_deref().is_some_and(|s| field("time") < s)
        {
            continue;
        }
        n += 1;
        if json {
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}  {:<10} {:<9} {:<18} {}/{}/{}  {}  {} bytes  {} ms  pid {} uid {}{}",
                field("time"),
                // Records written before restores existed were all checkpoints.
                match field("action") {
                    "" => "checkpoint",
                    a => a,
                },
                field("result"),
                field("code"),
                field("namespace"),
                field("pod"),
                field("container"),
                field("location"),
                v.get("size").and_then(Value::as_u64).unwrap_or(0),
                v.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
                v.get("caller_pid").and_then(Value::as_i64).unwrap_or(0),
                v.get("caller_uid").and_then(Value::as_u64).unwrap_or(0),
                match field("message") {
                    "" => String::new(),
                    m => format!("\n    {}", m.lines().next().unwrap_or("")),
                }
            )?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_the_action_and_filters_by_pod() {
        let log = concat!(
            r#"{"time":"2026-11-26T01:00:00Z","result":"succeeded","code":"OK","namespace":"ns","pod":"a","container":"c","location":"/x.tar","size":5,"duration_ms":7}"#,
            "\n",
            r#"{"time":"2026-11-26T02:00:00Z","action":"restore","result":"denied","code":"PermissionDenied","namespace":"ns","pod":"b","container":"c","location":"/y.tar","message":"outside"}"#,
            "\n"
        );
        let mut out = Vec::new();
        let n = show(log.as_bytes(), &Filter::default(), false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains(" checkpoint ") && lines[0].contains("ns/a/c"),
            "{text}"
        );
        assert!(
            lines[1].contains(" restore ") && lines[1].contains("denied"),
            "{text}"
        );
        assert_eq!(lines[2].trim(), "outside");
        let only_b = Filter {
            pod: Some("b".into()),
            ..Default::default()
        };
        let mut out = Vec::new();
        assert_eq!(show(log.as_bytes(), &only_b, true, &mut out).unwrap(), 1);
        assert!(String::from_utf8(out).unwrap().contains("\"restore\""));
    }
}

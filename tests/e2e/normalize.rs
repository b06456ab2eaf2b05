//! Makes two runs of the same scenario comparable: the answers are printed with `{:#?}`,
//! then what differs between any two runs (ids, uids, timestamps) is blanked and map
//! entries, which print in hash order, are sorted.

/// Fields that hold a moment in time.
const TIME_FIELDS: &[&str] = &["created_at", "started_at", "finished_at", "timestamp"];

/// `value` printed, with each `(from, to)` of `subs` replaced, timestamps set to 0 and map
/// entries sorted.
pub fn normalize(value: &impl std::fmt::Debug, subs: &[(&str, &str)]) -> String {
    normalize_text(&format!("{value:#?}"), subs)
}

/// [`normalize`] for text already printed.
pub fn normalize_text(text: &str, subs: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in subs {
        if !from.is_empty() {
            text = text.replace(from, to);
        }
    }
    sort_map_entries(&blank_times(&text))
}

fn blank_times(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            for field in TIME_FIELDS {
                if let Some(rest) = trimmed
                    .strip_prefix(field)
                    .and_then(|r| r.strip_prefix(": "))
                {
                    if rest.trim_end_matches(',').parse::<i64>().is_ok() {
                        return format!("{indent}{field}: <time>,");
                    }
                }
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// In pretty Debug output a `map<string, string>` prints one `"key": "value",` line per
/// entry; runs of such lines are sorted.
fn sort_map_entries(text: &str) -> String {
    let is_entry = |l: &str| {
        let t = l.trim_start();
        t.starts_with('"') && t.contains("\": ")
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if is_entry(lines[i]) {
            let start = i;
            while i < lines.len() && is_entry(lines[i]) {
                i += 1;
            }
            let mut run: Vec<&str> = lines[start..i].to_vec();
            run.sort_unstable();
            out.extend(run.into_iter().map(str::to_string));
        } else {
            out.push(lines[i].to_string());
            i += 1;
        }
    }
    out.join("\n")
}

/// The lines of `a` and `b` that differ, numbered, for a readable failure.
pub fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            out.push_str(&format!(
                "  line {}:\n    direct: {}\n    shim:   {}\n",
                i + 1,
                x.unwrap_or("<none>"),
                y.unwrap_or("<none>")
            ));
        }
    }
    out
}

#[test]
fn normalizes_ids_times_and_maps() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct S {
        id: String,
        created_at: i64,
        labels: std::collections::HashMap<String, String>,
    }
    let a = S {
        id: "abc".into(),
        created_at: 17,
        labels: [("b", "2"), ("a", "1"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let text = normalize(&a, &[("abc", "<id>")]);
    assert!(text.contains("id: \"<id>\""), "{text}");
    assert!(text.contains("created_at: <time>,"), "{text}");
    let a_at = text.find("\"a\"").unwrap();
    let c_at = text.find("\"c\"").unwrap();
    assert!(a_at < c_at, "{text}");
}

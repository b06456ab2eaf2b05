//! A small text tree (`├──` / `└──`) for the human-readable output.

use std::fmt::Write;

/// A labelled node with children.
#[derive(Debug, Default)]
pub struct Node {
    pub label: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(label: impl Into<String>) -> Self {
        Node {
            label: label.into(),
            children: Vec::new(),
        }
    }

    /// Adds a leaf and returns self (for chaining).
    pub fn leaf(&mut self, label: impl Into<String>) -> &mut Self {
        self.children.push(Node::new(label));
        self
    }

    /// Adds `key: value` when there is a value.
    pub fn field(&mut self, key: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.children.push(Node::new(format!("{key}: {v}")));
        }
        self
    }

    pub fn child(&mut self, node: Node) -> &mut Self {
        self.children.push(node);
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.label);
        self.render_children(&mut out, "");
        out
    }

    fn render_children(&self, out: &mut String, prefix: &str) {
        let n = self.children.len();
        for (i, c) in self.children.iter().enumerate() {
            let last = i + 1 == n;
            let _ = writeln!(
                out,
                "{prefix}{}{}",
                if last { "└── " } else { "├── " },
                c.label
            );
            let next = format!("{prefix}{}", if last { "    " } else { "│   " });
            c.render_children(out, &next);
        }
    }
}

/// Bytes as a short human size (KiB, MiB, GiB).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Control characters escaped so memory contents cannot drive the terminal.
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0x20..=0x7e => s.push(b as char),
            0 => s.push('.'),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_branches() {
        let mut root = Node::new("root");
        let mut a = Node::new("a");
        a.leaf("a1");
        root.child(a).leaf("b");
        assert_eq!(root.render(), "root\n├── a\n│   └── a1\n└── b\n");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(printable(b"a\x1b[0m\0"), "a\\x1b[0m.");
    }
}

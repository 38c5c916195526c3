//! JSON inputs for the decoder targets: a small JSON tree that can hold what `serde_json::Value`
//! cannot (duplicate keys, numbers as raw text), valid records of each format built from it,
//! and the mutations applied to them.

use proptest::prelude::*;

/// A JSON value; numbers are kept as the text that is written.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// Keys in order, duplicates allowed.
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn obj(fields: Vec<(&str, J)>) -> J {
        J::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn str(s: &str) -> J {
        J::Str(s.to_owned())
    }

    pub fn num(n: impl ToString) -> J {
        J::Num(n.to_string())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string")),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("a key"));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Calls `f` on the `n`-th object of the tree (pre-order, modulo their number); whether
    /// there was one.
    pub fn with_object(&mut self, n: usize, f: impl FnOnce(&mut Vec<(String, J)>)) -> bool {
        let count = self.objects();
        if count == 0 {
            return false;
        }
        let mut left = n % count;
        let mut f = Some(f);
        self.visit_objects(&mut left, &mut f);
        true
    }

    fn objects(&self) -> usize {
        match self {
            J::Obj(fields) => 1 + fields.iter().map(|(_, v)| v.objects()).sum::<usize>(),
            J::Arr(items) => items.iter().map(J::objects).sum(),
            _ => 0,
        }
    }

    fn visit_objects<F: FnOnce(&mut Vec<(String, J)>)>(
        &mut self,
        left: &mut usize,
        f: &mut Option<F>,
    ) {
        match self {
            J::Obj(fields) => {
                if *left == 0 {
                    if let Some(f) = f.take() {
                        f(fields);
                    }
                    return;
                }
                *left -= 1;
                for (_, v) in fields.iter_mut() {
                    v.visit_objects(left, f);
                }
            }
            J::Arr(items) => {
                for v in items {
                    v.visit_objects(left, f);
                }
            }
            _ => {}
        }
    }
}

// === values ===

/// Numbers at and past the edges of what decoders read (i64, u64, f64, exponents).
pub const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1.5",
    "-1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "1E3",
    "0.1e1",
];

/// Strings that are hard to read or that look like something else.
pub const EDGE_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝄞",
    "\u{202e}",
    "user@example.com",
    " User@Example.COM ",
    "+1 (555) 123-4567",
    "2026-11-01T00:00:00Z",
    "2026-13-45T99:99:99Z",
    "1764000000000",
    "null",
    "true",
    "5.10.x",
];

pub fn edge_number() -> impl Strategy<Value = J> {
    prop_oneof![
        proptest::sample::select(EDGE_NUMBERS).prop_map(J::num),
        any::<i64>().prop_map(J::num),
        any::<f64>()
            .prop_filter("JSON has no nan or inf", |f| f.is_finite())
            .prop_map(J::num),
    ]
}

pub fn edge_string() -> impl Strategy<Value = J> {
    prop_oneof![
        proptest::sample::select(EDGE_STRINGS).prop_map(J::str),
        "\\PC{0,12}".prop_map(J::Str),
    ]
}

/// Any small JSON value.
pub fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        edge_number(),
        edge_string(),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            proptest::collection::vec(("[a-z_]{1,6}", inner), 0..4).prop_map(J::Obj),
        ]
    })
}

// === mutations ===

/// One change to a record, structured (on the tree) or on its bytes.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replaces the value of field `field` of object `at` with `value`.
    Retype { at: usize, field: usize, value: J },
    /// Repeats field `field` of object `at` with another value.
    Duplicate { at: usize, field: usize, value: J },
    /// Removes field `field` of object `at`.
    Remove { at: usize, field: usize },
    /// Wraps the value of field `field` of object `at` in `depth` arrays or objects.
    Nest {
        at: usize,
        field: usize,
        depth: usize,
        objects: bool,
    },
    /// Cuts the line after `at` bytes (modulo its length).
    Truncate { at: usize },
    /// XORs the byte at `at` with `mask` (which can make it invalid UTF-8).
    Flip { at: usize, mask: u8 },
    /// Inserts `bytes` at `at`.
    Insert { at: usize, bytes: Vec<u8> },
}

/// Bytes worth inserting: invalid UTF-8, a BOM, control characters, JSON punctuation.
const INSERTS: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\0",
    b"\r",
    b"\t",
    b"\\",
    b"\"",
    b"{",
    b"}",
    b"[",
    b",",
    b":",
    b"\\ud800",
    b"\\u0000",
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, any::<usize>(), value()).prop_map(|(at, field, value)| Mutation::Retype {
            at,
            field,
            value
        }),
        (at, any::<usize>(), value()).prop_map(|(at, field, value)| Mutation::Duplicate {
            at,
            field,
            value
        }),
        (at, any::<usize>()).prop_map(|(at, field)| Mutation::Remove { at, field }),
        (
            at,
            any::<usize>(),
            prop_oneof![
                Just(127usize),
                Just(128),
                Just(129),
                Just(1_000),
                Just(100_000)
            ],
            any::<bool>()
        )
            .prop_map(|(at, field, depth, objects)| Mutation::Nest {
                at,
                field,
                depth,
                objects
            }),
        at.prop_map(|at| Mutation::Truncate { at }),
        (at, 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (
            at,
            prop_oneof![
                proptest::sample::select(INSERTS).prop_map(<[u8]>::to_vec),
                proptest::collection::vec(any::<u8>(), 1..4),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

/// `record` with `mutations` applied: the structured ones first, then those on bytes.
pub fn mutate(record: &J, mutations: &[Mutation]) -> Vec<u8> {
    mutate_bytes(
        mutate_tree(record, mutations).render().into_bytes(),
        mutations,
    )
}

/// `record` with the structured `mutations` applied.
pub fn mutate_tree(record: &J, mutations: &[Mutation]) -> J {
    let mut tree = record.clone();
    for m in mutations {
        let field_of =
            |fields: &Vec<(String, J)>, n: usize| (!fields.is_empty()).then(|| n % fields.len());
        match m {
            Mutation::Retype { at, field, value } => {
                tree.with_object(*at, |f| {
                    if let Some(i) = field_of(f, *field) {
                        f[i].1 = value.clone();
                    }
                });
            }
            Mutation::Duplicate { at, field, value } => {
                tree.with_object(*at, |f| {
                    if let Some(i) = field_of(f, *field) {
                        let key = f[i].0.clone();
                        f.push((key, value.clone()));
                    }
                });
            }
            Mutation::Remove { at, field } => {
                tree.with_object(*at, |f| {
                    if let Some(i) = field_of(f, *field) {
                        f.remove(i);
                    }
                });
            }
            Mutation::Nest {
                at,
                field,
                depth,
                objects,
            } => {
                tree.with_object(*at, |f| {
                    if let Some(i) = field_of(f, *field) {
                        // Rendered directly: a tree this deep would overflow the stack when
                        // dropped or rendered recursively.
                        let inner = f[i].1.render();
                        let (open, close) = if *objects {
                            ("{\"a\":", "}")
                        } else {
                            ("[", "]")
                        };
                        let text =
                            format!("{}{inner}{}", open.repeat(*depth), close.repeat(*depth));
                        f[i].1 = J::Num(text);
                    }
                });
            }
            _ => {}
        }
    }
    tree
}

/// `bytes` with the byte-level `mutations` applied.
pub fn mutate_bytes(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Truncate { at } if !bytes.is_empty() => bytes.truncate(at % bytes.len()),
            Mutation::Flip { at, mask } if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= mask;
            }
            Mutation::Insert { at, bytes: b } => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

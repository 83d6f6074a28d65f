//! A minimal JSON value: parse what iperf3, bpftool and `flow --json` print, write the report.
//!
//! Hand-written so xtask keeps its two dependencies; it handles the whole grammar but favours
//! simplicity over speed. `flow --json` under churn prints hundreds of thousands of rows, so
//! arrays can also be visited element by element without building the whole tree.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    /// Keys in insertion order, so reports read in the order they were built.
    Obj(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (`None` for other values or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Value] {
        match self {
            Value::Arr(items) => items,
            _ => &[],
        }
    }

    /// Compact JSON text.
    #[cfg(test)]
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0, false);
        out
    }

    /// Indented JSON text (two spaces), for files people read.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0, true);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize, pretty: bool) {
        let newline = |out: &mut String, depth: usize| {
            if pretty {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
        };
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            // JSON has no NaN or infinity: an unmeasurable number is null.
            Value::Num(n) if !n.is_finite() => out.push_str("null"),
            Value::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Str(s) => write_string(out, s),
            Value::Arr(items) if items.is_empty() => out.push_str("[]"),
            Value::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write(out, depth + 1, pretty);
                }
                newline(out, depth);
                out.push(']');
            }
            Value::Obj(members) if members.is_empty() => out.push_str("{}"),
            Value::Obj(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    write_string(out, key);
                    out.push_str(if pretty { ": " } else { ":" });
                    value.write(out, depth + 1, pretty);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Num(n as f64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds an object from `(key, value)` pairs: `obj([("a", 1u64.into())])`.
pub fn obj<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Obj(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Value> {
    let mut p = Parser::new(text);
    let value = p.value()?;
    p.end()?;
    Ok(value)
}

/// Calls `each` with every element of the top-level array in `text`, one at a time, so a huge
/// listing never lives in memory as a tree.
pub fn for_each_in_array(text: &str, mut each: impl FnMut(Value)) -> Result<()> {
    let mut p = Parser::new(text);
    p.expect(b'[')?;
    if !p.eat(b']') {
        loop {
            each(p.value()?);
            if p.eat(b']') {
                break;
            }
            p.expect(b',')?;
        }
    }
    p.end()
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            s: text.as_bytes(),
            i: 0,
        }
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if !self.eat(b) {
            bail!("JSON: expected `{}` at byte {}", b as char, self.i);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if self.peek().is_some() {
            bail!("JSON: trailing text at byte {}", self.i);
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        let key = self.string()?;
                        self.expect(b':')?;
                        members.push((key, self.value()?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Value::Obj(members))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Value::Arr(items))
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(_) => self.number(),
            None => bail!("JSON: unexpected end"),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value> {
        if !self.s[self.i..].starts_with(word.as_bytes()) {
            bail!("JSON: bad literal at byte {}", self.i);
        }
        self.i += word.len();
        Ok(value)
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        text.parse()
            .map(Value::Num)
            .with_context(|| format!("JSON: bad number `{text}` at byte {start}"))
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                bail!("JSON: unterminated string");
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        bail!("JSON: unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let c = self.hex4()?;
                            // A surrogate pair is two escapes; a lone half becomes U+FFFD.
                            let c = if (0xd800..0xdc00).contains(&c)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                0x10000 + ((c - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                c
                            };
                            let c = char::from_u32(c).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                b => out.push(b),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.s.get(self.i..self.i + 4).context("JSON: short \\u")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 16)
            .context("JSON: bad \\u escape")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_documents() {
        let v =
            parse(r#" {"a": [1, 2.5, -3e2], "b": {"c": "x\"y\u00e9\n"}, "d": null, "e": true} "#)
                .unwrap();
        assert_eq!(v.path(&["b", "c"]).and_then(Value::as_str), Some("x\"yé\n"));
        let a: Vec<f64> = v
            .get("a")
            .unwrap()
            .as_array()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(a, vec![1.0, 2.5, -300.0]);
        assert_eq!(v.get("d"), Some(&Value::Null));
        assert!(parse("[1,]").is_err());
        assert!(parse("{} x").is_err());
    }

    #[test]
    fn writes_what_it_parses() {
        let v = obj([
            ("name", "tab\there \"q\" \u{1}".into()),
            ("n", 3u64.into()),
            ("nan", f64::NAN.into()),
            ("list", Value::Arr(vec![Value::Bool(false), Value::Null])),
            ("empty", Value::Obj(vec![])),
        ]);
        let text = v.to_json();
        assert_eq!(
            text,
            r#"{"name":"tab\there \"q\" \u0001","n":3,"nan":null,"list":[false,null],"empty":{}}"#
        );
        let back = parse(&v.to_pretty()).unwrap();
        assert_eq!(back.get("name"), v.get("name"));
        assert_eq!(back.get("nan"), Some(&Value::Null));
    }

    #[test]
    fn visits_array_elements_one_by_one() {
        let mut sum = 0;
        for_each_in_array(r#"[{"tx_bytes": 5}, {"tx_bytes": 7}]"#, |v| {
            sum += v.get("tx_bytes").and_then(Value::as_u64).unwrap();
        })
        .unwrap();
        assert_eq!(sum, 12);
        for_each_in_array("[]", |_| panic!("empty")).unwrap();
    }
}

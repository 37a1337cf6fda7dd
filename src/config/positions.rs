//! Where each key and value of a YAML document stands, by key path.
//!
//! serde gives types, not places; the YAML event parser gives places. One pass over
//! the events records, for every path in the same notation serde_path_to_error uses
//! (`rules[2].categories[0]`), the line and column of its key and of its value, so
//! that compile errors found long after parsing still point at the right character.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::diag::Pos;

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub struct Positions {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

/// A YAML syntax error, with its place.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Positions {
    /// Parses `src` and records every position; a syntax error is returned as such.
    pub fn parse(src: &str) -> Result<Positions, SyntaxError> {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(src);
        if let Err(e) = parser.load(&mut rec, false) {
            let m = e.marker();
            return Err(SyntaxError {
                pos: Pos {
                    line: m.line(),
                    col: m.col() + 1,
                },
                message: e.info().to_string(),
            });
        }
        Ok(rec.pos)
    }

    /// Where the key at `path` is written (the value's place if it has no key).
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
            .unwrap_or_else(|| self.parent(path))
    }

    /// Where the value at `path` is written (the key's place if unknown).
    pub fn value(&self, path: &str) -> Pos {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
            .unwrap_or_else(|| self.parent(path))
    }

    /// The nearest ancestor that has a place (the document start at worst).
    fn parent(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            let cut = p.rfind(['.', '[']);
            match cut {
                Some(i) => {
                    p = &p[..i];
                    if let Some(pos) = self.keys.get(p).or_else(|| self.values.get(p)) {
                        return *pos;
                    }
                }
                None => return Pos { line: 1, col: 1 },
            }
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    pos: Positions,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Recorder {
    /// The path of the value about to be read, or `None` when a map key comes next
    /// (in which case the key is recorded).
    fn value_path(&mut self, ev: &Event, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    let k = match ev {
                        Event::Scalar(s, ..) => s.clone(),
                        _ => "?".to_string(),
                    };
                    let full = join(path, &k);
                    self.pos.keys.entry(full).or_insert(pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(p) = self.value_path(&ev, pos) {
                    self.pos.values.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                // A mapping used as a key is not supported by the policy; record a
                // placeholder key so that the frames stay balanced.
                let path = self.value_path(&ev, pos).unwrap_or_default();
                self.pos.values.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(&ev, pos).unwrap_or_default();
                self.pos.values.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_have_their_places() {
        let src = "version: 1\nrules:\n  - id: a\n    categories: [x, yy]\n  - id: b\n    domains:\n      - example.com\n";
        let p = Positions::parse(src).unwrap();
        assert_eq!(p.key("version"), Pos { line: 1, col: 1 });
        assert_eq!(p.value("version"), Pos { line: 1, col: 10 });
        assert_eq!(p.key("rules[0].categories"), Pos { line: 4, col: 5 });
        assert_eq!(p.value("rules[0].categories[1]"), Pos { line: 4, col: 21 });
        assert_eq!(p.value("rules[1].domains[0]"), Pos { line: 7, col: 9 });
        assert_eq!(p.value("rules[1].id"), Pos { line: 5, col: 9 });
        // unknown paths fall back to the nearest known ancestor
        assert_eq!(p.key("rules[1].domains[7]"), Pos { line: 6, col: 5 });
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let e = Positions::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(!e.message.is_empty());
    }
}

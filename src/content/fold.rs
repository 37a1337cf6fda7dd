//! Folding: the text the scanner matches on. Letters lower-cased, Latin accents dropped
//! (UTF-8 Latin-1 and Latin Extended-A, `œ` → `oe`, `ß` → `ss`), and every run of white
//! space (ASCII, NBSP U+00A0, narrow NBSP U+202F, the U+2000 spaces, line and paragraph
//! separators) made one ASCII space. The same function folds the dictionary words at
//! build time and the body at scan time, so both sides agree by construction.
//!
//! A [`Folder`] is a small state machine: a UTF-8 sequence split between two calls (two
//! chunks, or two `%XX` escapes) is held (at most 3 bytes) and folded when complete.
//! Bytes that are not valid UTF-8 pass through unchanged (they are not ASCII letters, so
//! they only ever act as word separators).

/// ASCII folding: upper case to lower case, white space to a space, the rest unchanged.
static ASCII: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b + 32,
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => b' ',
            _ => b,
        };
        i += 1;
    }
    t
};

/// The ASCII spelling of a Latin letter, or `None` when the code point is not one.
fn latin(cp: u32) -> Option<&'static [u8]> {
    Some(match cp {
        0xC0..=0xC5 | 0xE0..=0xE5 | 0x100..=0x105 => b"a",
        0xC6 | 0xE6 => b"ae",
        0xC7 | 0xE7 | 0x106..=0x10D => b"c",
        0xC8..=0xCB | 0xE8..=0xEB | 0x112..=0x11B => b"e",
        0xCC..=0xCF | 0xEC..=0xEF | 0x128..=0x131 => b"i",
        0xD0 | 0xF0 | 0x10E..=0x111 => b"d",
        0xD1 | 0xF1 | 0x143..=0x14B => b"n",
        0xD2..=0xD6 | 0xD8 | 0xF2..=0xF6 | 0xF8 | 0x14C..=0x151 => b"o",
        0xD9..=0xDC | 0xF9..=0xFC | 0x168..=0x173 => b"u",
        0xDD | 0xFD | 0xFF | 0x176..=0x178 => b"y",
        0xDE | 0xFE => b"th",
        0xDF => b"ss",
        0x11C..=0x123 => b"g",
        0x124..=0x127 => b"h",
        0x132 | 0x133 => b"ij",
        0x134 | 0x135 => b"j",
        0x136..=0x138 => b"k",
        0x139..=0x142 => b"l",
        0x152 | 0x153 => b"oe",
        0x154..=0x159 => b"r",
        0x15A..=0x161 | 0x17F => b"s",
        0x162..=0x167 => b"t",
        0x174 | 0x175 => b"w",
        0x179..=0x17E => b"z",
        _ => return None,
    })
}

fn is_space(cp: u32) -> bool {
    matches!(
        cp,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

/// Folds a stream of bytes given in pieces; see the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Folder {
    /// The start of a UTF-8 sequence whose continuation bytes have not come yet.
    pending: [u8; 4],
    pending_len: u8,
    /// The length `pending` must reach (2 to 4); 0 when nothing is pending.
    need: u8,
    /// The last byte written was a space (so a following white space is dropped).
    last_space: bool,
}

impl Folder {
    /// Appends the folded form of `input` to `out`.
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        // Finish a sequence begun in an earlier call.
        while self.need != 0 && i < input.len() {
            let b = input[i];
            if b & 0xC0 != 0x80 {
                self.flush_pending(out);
                break;
            }
            self.pending[self.pending_len as usize] = b;
            self.pending_len += 1;
            i += 1;
            if self.pending_len == self.need {
                self.emit_sequence(out);
            }
        }
        let input = &input[i..];
        // One resize for the worst case (never more bytes out than in: "oe" comes from
        // two bytes), then writes by index: no capacity check nor branch per byte.
        let start = out.len();
        out.resize(start + input.len(), 0);
        let mut j = start;
        let mut last = self.last_space;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            if b < 0x80 {
                let c = ASCII[b as usize];
                let space = c == b' ';
                out[j] = c;
                j += usize::from(!(space && last));
                last = space;
                continue;
            }
            let need: usize = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => 0,
            };
            let rest = &input[i..];
            let k = rest
                .iter()
                .take(need.saturating_sub(1))
                .take_while(|&&c| c & 0xC0 == 0x80)
                .count();
            if need == 0 || (k < need - 1 && k < rest.len()) {
                // Not UTF-8 (or cut by a byte that does not continue it): as it is.
                out[j] = b;
                j += 1;
                last = false;
                continue;
            }
            if k < need - 1 {
                // The input ends inside the sequence: the rest comes with the next call.
                self.pending[0] = b;
                self.pending[1..=k].copy_from_slice(rest);
                self.pending_len = 1 + k as u8;
                self.need = need as u8;
                break;
            }
            let seq = &input[i - 1..i + k];
            i += k;
            match fold_char(decode(seq)) {
                Fold::Space => {
                    out[j] = b' ';
                    j += usize::from(!last);
                    last = true;
                }
                Fold::Ascii(a) => {
                    out[j..j + a.len()].copy_from_slice(a);
                    j += a.len();
                    last = false;
                }
                Fold::Keep => {
                    out[j..j + seq.len()].copy_from_slice(seq);
                    j += seq.len();
                    last = false;
                }
            }
        }
        self.last_space = last;
        out.truncate(j);
    }

    /// The end of the text: a sequence left incomplete is written as it is.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.need != 0 {
            self.flush_pending(out);
        }
    }

    /// Writes a word separator (a part ends, for example): one space.
    pub(crate) fn separate(&mut self, out: &mut Vec<u8>) {
        self.push(b" ", out);
    }

    fn flush_pending(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pending[..self.pending_len as usize]);
        self.pending_len = 0;
        self.need = 0;
        self.last_space = false;
    }

    fn emit_sequence(&mut self, out: &mut Vec<u8>) {
        let p = &self.pending[..self.pending_len as usize];
        match fold_char(decode(p)) {
            Fold::Space => {
                if !self.last_space {
                    out.push(b' ');
                    self.last_space = true;
                }
            }
            Fold::Ascii(a) => {
                out.extend_from_slice(a);
                self.last_space = false;
            }
            Fold::Keep => {
                out.extend_from_slice(p);
                self.last_space = false;
            }
        }
        self.pending_len = 0;
        self.need = 0;
    }
}

/// The code point of a complete UTF-8 sequence (2 to 4 bytes).
fn decode(p: &[u8]) -> u32 {
    match p.len() {
        2 => ((p[0] as u32 & 0x1F) << 6) | (p[1] as u32 & 0x3F),
        3 => ((p[0] as u32 & 0x0F) << 12) | ((p[1] as u32 & 0x3F) << 6) | (p[2] as u32 & 0x3F),
        _ => {
            ((p[0] as u32 & 0x07) << 18)
                | ((p[1] as u32 & 0x3F) << 12)
                | ((p[2] as u32 & 0x3F) << 6)
                | (p[3] as u32 & 0x3F)
        }
    }
}

enum Fold {
    Space,
    Ascii(&'static [u8]),
    Keep,
}

fn fold_char(cp: u32) -> Fold {
    if is_space(cp) {
        Fold::Space
    } else if let Some(a) = latin(cp) {
        Fold::Ascii(a)
    } else {
        Fold::Keep
    }
}

/// Folds a whole word (a dictionary entry), without the spaces at its ends.
pub(crate) fn fold_word(word: &str) -> Vec<u8> {
    let mut f = Folder::default();
    let mut out = Vec::with_capacity(word.len());
    f.push(word.as_bytes(), &mut out);
    f.finish(&mut out);
    let start = out.iter().position(|&b| b != b' ').unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |e| e + 1);
    out[start..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_spaces() {
        for (input, want) in [
            ("Diffusion  Restreinte", "diffusion restreinte"),
            ("DIFFUSION\r\nRESTREINTE", "diffusion restreinte"),
            ("Données de santé", "donnees de sante"),
            ("DONNÉES\u{a0}DE\u{202f}SANTÉ", "donnees de sante"),
            ("Cœur Œuvre ÇA À Ÿ ß", "coeur oeuvre ca a y ss"),
            ("  île  ", "ile"),
            ("Łódź", "lodz"),
        ] {
            assert_eq!(fold_word(input), want.as_bytes(), "{input:?}");
        }
    }

    #[test]
    fn a_sequence_split_between_calls_is_folded() {
        let text = "Sécurité œuvre\u{202f}x".as_bytes();
        for cut in 0..=text.len() {
            let mut f = Folder::default();
            let mut out = Vec::new();
            f.push(&text[..cut], &mut out);
            f.push(&text[cut..], &mut out);
            f.finish(&mut out);
            assert_eq!(out, b"securite oeuvre x", "cut at {cut}");
        }
    }
}

//! Identifiers: French social security numbers (NIR), IBANs and payment card numbers,
//! found in the folded text and counted only when their checksum holds.
//!
//! The folded text is read one byte at a time by a small state machine, [`Runs`], that
//! wakes up only on a digit (a word-at-a-time test skips the rest). From there it
//! collects a *run*: groups of letters and digits joined by exactly one separator
//! (space, `-` or `.`), such as `1 85 05 78 006 084 36` or `FR76 3000 6000 0112`. A run
//! ends at any other byte, at a double separator, at a word of more than four letters,
//! or when it is longer than an identifier can be. Each candidate is then a sequence of
//! whole groups of the run (so it is delimited: never part of a longer digit or letter
//! run) with a shape people write (one block, or the usual groups) and a valid checksum.
//! The run is bounded (64 characters, 24 groups): the state never grows with the body.

use super::IdentifierKind;

/// The most characters a run holds (an IBAN is at most 34).
const MAX_CHARS: usize = 64;
/// The most groups a run holds.
const MAX_GROUPS: usize = 24;
/// The longest identifier, separators left out (an IBAN).
const MAX_IDENT: usize = 34;

/// A bit per kind, to skip the checks of kinds no detector asks for.
pub(crate) fn bit(kind: IdentifierKind) -> u8 {
    match kind {
        IdentifierKind::Nir => 1,
        IdentifierKind::Iban => 2,
        IdentifierKind::Card => 4,
    }
}

/// An identifier found: its kind, where it lies in the folded stream (`start..end`),
/// and where it became known (`at`, the position of the byte that ended its run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: IdentifierKind,
    pub start: u64,
    pub end: u64,
    pub at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between runs: waiting for a digit.
    Idle,
    /// Inside a word that cannot start an identifier: waiting for its end.
    Skip,
    /// Collecting a run.
    Collect,
}

fn alnum(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_lowercase()
}

fn separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

/// The run collector; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Runs {
    state: State,
    /// The run's letters and digits, separators left out.
    chars: [u8; MAX_CHARS],
    n: usize,
    /// Each group: its first index in `chars`, its length, its position in the stream.
    groups: [(u8, u8, u64); MAX_GROUPS],
    g: usize,
    /// The last byte was a letter or digit of the current group.
    in_group: bool,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            state: State::Idle,
            chars: [0; MAX_CHARS],
            n: 0,
            groups: [(0, 0, 0); MAX_GROUPS],
            g: 0,
            in_group: false,
        }
    }
}

/// The index of the first ASCII digit of `buf` at or after `i`.
fn next_digit(buf: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    while i + 8 <= buf.len() {
        let w = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
        // A digit is a byte whose XOR with '0' is below 10.
        let x = w ^ (ONES * 0x30);
        if x.wrapping_sub(ONES * 10) & !x & (ONES * 0x80) != 0 {
            if let Some(k) = buf[i..i + 8].iter().position(u8::is_ascii_digit) {
                return Some(i + k);
            }
        }
        i += 8;
    }
    buf[i..].iter().position(u8::is_ascii_digit).map(|k| i + k)
}

impl Runs {
    /// Reads `buf[from..]`, the new folded bytes; `buf[..from]` is the kept window (at
    /// least 4 bytes unless the stream is shorter), `base` the stream position of
    /// `buf[0]`. Identifiers of the kinds in `kinds` go to `out`.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        from: usize,
        base: u64,
        kinds: u8,
        out: &mut Vec<Found>,
    ) {
        let mut i = from;
        while i < buf.len() {
            match self.state {
                State::Idle => {
                    let Some(p) = next_digit(buf, i) else { return };
                    let prev = |k: usize| if p >= k { buf[p - k] } else { b' ' };
                    self.n = 0;
                    self.g = 0;
                    self.in_group = false;
                    if alnum(prev(1)) {
                        let iban_start = prev(1).is_ascii_lowercase()
                            && prev(2).is_ascii_lowercase()
                            && !alnum(prev(3));
                        if !iban_start {
                            self.state = State::Skip;
                            i = p + 1;
                            continue;
                        }
                        self.groups[0] = (0, 2, base + p as u64 - 2);
                        self.chars[0] = prev(2);
                        self.chars[1] = prev(1);
                        self.n = 2;
                        self.g = 1;
                        self.in_group = true;
                    }
                    self.state = State::Collect;
                    i = p;
                }
                State::Skip => match buf[i..].iter().position(|&b| !alnum(b)) {
                    Some(k) => {
                        i += k;
                        self.state = State::Idle;
                    }
                    None => return,
                },
                State::Collect => {
                    self.byte(buf[i], base + i as u64, kinds, out);
                    i += 1;
                }
            }
        }
    }

    /// The end of the stream at position `end`: a run in progress is checked.
    pub(crate) fn finish(&mut self, end: u64, kinds: u8, out: &mut Vec<Found>) {
        if self.state == State::Collect {
            self.close_group();
            self.eval(end, kinds, out);
        }
        self.state = State::Idle;
    }

    fn byte(&mut self, c: u8, pos: u64, kinds: u8, out: &mut Vec<Found>) {
        if alnum(c) {
            if !self.in_group {
                if self.g == MAX_GROUPS {
                    self.eval(pos, kinds, out);
                    self.state = State::Skip;
                    return;
                }
                self.groups[self.g] = (self.n as u8, 0, pos);
                self.g += 1;
                self.in_group = true;
            }
            let cur = self.groups[self.g - 1].1 as usize;
            if self.n == MAX_CHARS || cur == MAX_IDENT {
                // This group cannot be part of an identifier: the run ends before it.
                self.g -= 1;
                self.n = self.groups[self.g].0 as usize;
                self.eval(pos, kinds, out);
                self.state = State::Skip;
                return;
            }
            self.chars[self.n] = c;
            self.n += 1;
            self.groups[self.g - 1].1 += 1;
        } else if separator(c) && self.in_group {
            if self.close_group() {
                self.in_group = false;
            } else {
                self.eval(pos, kinds, out);
                self.state = State::Idle;
            }
        } else {
            self.close_group();
            self.eval(pos, kinds, out);
            self.state = State::Idle;
        }
    }

    /// Ends the current group; a word of more than four letters is dropped from the
    /// run and ends it (returns false).
    fn close_group(&mut self) -> bool {
        if !self.in_group || self.g == 0 {
            return true;
        }
        self.in_group = false;
        let (s, len, _) = self.groups[self.g - 1];
        let text = &self.chars[s as usize..s as usize + len as usize];
        if len > 4 && text.iter().all(u8::is_ascii_lowercase) {
            self.g -= 1;
            self.n = s as usize;
            return false;
        }
        true
    }

    /// Checks every candidate of the collected run, longest first from each group.
    fn eval(&mut self, at: u64, kinds: u8, out: &mut Vec<Found>) {
        if self.n < 13 {
            // Shorter than any identifier (a card has 13 digits at least): the common
            // case of dates, amounts and phone numbers, dismissed at once.
            self.n = 0;
            self.g = 0;
            self.in_group = false;
            return;
        }
        let groups = &self.groups[..self.g];
        let mut i = 0;
        while i < groups.len() {
            let first = self.chars[groups[i].0 as usize];
            let starts_iban = kinds & 2 != 0
                && groups[i].1 >= 4
                && self.chars[groups[i].0 as usize..][..4]
                    .iter()
                    .enumerate()
                    .all(|(k, b)| {
                        if k < 2 {
                            b.is_ascii_lowercase()
                        } else {
                            b.is_ascii_digit()
                        }
                    });
            if !first.is_ascii_digit() && !starts_iban {
                i += 1;
                continue;
            }
            let mut last = i;
            let mut total = groups[i].1 as usize;
            while last + 1 < groups.len() && total + (groups[last + 1].1 as usize) <= MAX_IDENT {
                last += 1;
                total += groups[last].1 as usize;
            }
            let mut matched = None;
            for j in (i..=last).rev() {
                let lens: smallvec::SmallVec<[u8; MAX_GROUPS]> =
                    groups[i..=j].iter().map(|g| g.1).collect();
                let s = groups[i].0 as usize;
                let e = groups[j].0 as usize + groups[j].1 as usize;
                let text = &self.chars[s..e];
                let (start, end) = (groups[i].2, groups[j].2 + groups[j].1 as u64);
                let mut any = false;
                for kind in [
                    IdentifierKind::Nir,
                    IdentifierKind::Iban,
                    IdentifierKind::Card,
                ] {
                    if kinds & bit(kind) != 0 && shape_ok(kind, &lens) && valid(kind, text) {
                        out.push(Found {
                            kind,
                            start,
                            end,
                            at,
                        });
                        any = true;
                    }
                }
                if any {
                    matched = Some(j);
                    break;
                }
            }
            i = matched.map_or(i + 1, |j| j + 1);
        }
        self.n = 0;
        self.g = 0;
        self.in_group = false;
    }
}

/// Whether the groups are written as people write this kind of identifier.
fn shape_ok(kind: IdentifierKind, lens: &[u8]) -> bool {
    if lens.len() == 1 {
        return true;
    }
    let (last, init) = lens.split_last().unwrap_or((&0, &[]));
    let fours = init.iter().all(|&l| l == 4) && (1..=4).contains(last);
    match kind {
        IdentifierKind::Nir => lens == [13, 2] || lens == [1, 2, 2, 2, 3, 3, 2],
        IdentifierKind::Iban => fours,
        IdentifierKind::Card => fours || lens == [4, 6, 5] || lens == [4, 6, 4],
    }
}

/// Whether `text` (folded: lower case, no separators) is a valid identifier of `kind`.
pub(crate) fn valid(kind: IdentifierKind, text: &[u8]) -> bool {
    match kind {
        IdentifierKind::Nir => nir_valid(text),
        IdentifierKind::Iban => iban_valid(text),
        IdentifierKind::Card => card_valid(text),
    }
}

/// A French NIR: sex (1, 2; 3, 4, 7, 8 for temporary numbers), year, month (01–12, or
/// 20–42 and 50–99 as INSEE allows for unknown months), department (digits, or 2A/2B
/// for Corsica, counted as 19 and 18 in the key), commune, order, and the key
/// 97 − (the 13 first digits mod 97).
pub(crate) fn nir_valid(t: &[u8]) -> bool {
    if t.len() != 15 || !b"123478".contains(&t[0]) {
        return false;
    }
    let corsica = match &t[5..7] {
        b"2a" => Some(19),
        b"2b" => Some(18),
        _ => None,
    };
    let digits_ok = t
        .iter()
        .enumerate()
        .all(|(k, b)| b.is_ascii_digit() || (corsica.is_some() && (k == 5 || k == 6)));
    if !digits_ok {
        return false;
    }
    let d = |k: usize| (t[k] - b'0') as u64;
    let month = d(3) * 10 + d(4);
    if !matches!(month, 1..=12 | 20..=42 | 50..=99) {
        return false;
    }
    let mut n: u64 = 0;
    for k in 0..13 {
        match (corsica, k) {
            (Some(dep), 5) => n = n * 100 + dep,
            (Some(_), 6) => {}
            _ => n = n * 10 + d(k),
        }
    }
    let key = d(13) * 10 + d(14);
    key == 97 - n % 97
}

/// The length of the IBANs of a country (SEPA countries), by its two letters.
fn iban_len(cc: &[u8]) -> Option<usize> {
    Some(match cc {
        b"ad" | b"cz" | b"es" | b"ro" | b"se" | b"sk" => 24,
        b"at" | b"ee" | b"lt" | b"lu" => 20,
        b"be" => 16,
        b"bg" | b"de" | b"gb" | b"ie" | b"va" => 22,
        b"ch" | b"hr" | b"li" | b"lv" => 21,
        b"cy" | b"hu" | b"pl" => 28,
        b"dk" | b"fi" | b"nl" => 18,
        b"fr" | b"gr" | b"it" | b"mc" | b"sm" => 27,
        b"gi" => 23,
        b"is" => 26,
        b"mt" => 31,
        b"no" => 15,
        b"pt" => 25,
        b"si" => 19,
        _ => return None,
    })
}

/// An IBAN: a known country, its exact length, and the ISO 13616 check (mod 97 = 1).
pub(crate) fn iban_valid(t: &[u8]) -> bool {
    if t.len() < 5 || iban_len(&t[..2]) != Some(t.len()) {
        return false;
    }
    if !t[2..4].iter().all(u8::is_ascii_digit) || !t.iter().all(|&b| alnum(b)) {
        return false;
    }
    let mut r: u32 = 0;
    for &b in t[4..].iter().chain(&t[..4]) {
        r = if b.is_ascii_digit() {
            (r * 10 + (b - b'0') as u32) % 97
        } else {
            (r * 100 + (b - b'a') as u32 + 10) % 97
        };
    }
    r == 1
}

/// A payment card number: 13–19 digits, a known issuer prefix, the Luhn check, and not
/// one digit repeated.
pub(crate) fn card_valid(t: &[u8]) -> bool {
    if !(13..=19).contains(&t.len()) || !t.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if t.iter().all(|&b| b == t[0]) {
        return false;
    }
    let p2 = (t[0] - b'0') as u32 * 10 + (t[1] - b'0') as u32;
    let p4 = p2 * 100 + (t[2] - b'0') as u32 * 10 + (t[3] - b'0') as u32;
    let issuer = t[0] == b'4'                   // Visa (and CB co-badged)
        || (51..=55).contains(&p2)              // Mastercard
        || (2221..=2720).contains(&p4)          // Mastercard, 2-series
        || p2 == 34 || p2 == 37                 // American Express
        || matches!(p2, 30 | 36 | 38 | 39)      // Diners
        || p2 == 35                             // JCB
        || t[0] == b'6'                         // Discover, UnionPay, Maestro
        || p2 == 50 || (56..=58).contains(&p2); // Maestro
    if !issuer {
        return false;
    }
    let mut sum = 0;
    for (k, &b) in t.iter().rev().enumerate() {
        let mut v = (b - b'0') as u32;
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

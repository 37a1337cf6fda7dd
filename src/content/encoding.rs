//! The request body's `Content-Encoding`, undone on the fly with a bound.
//!
//! The decoders are the libraries' own streaming ones: `flate2::Decompress` (gzip
//! members, zlib and raw deflate) and zstd's raw decoder (its window capped at 8 MiB, as
//! RFC 9659 asks of HTTP). The gzip member header (RFC 1952) is read here, byte by byte,
//! so that a header split between chunks costs nothing special. Output comes in pieces
//! of at most [`OUT`] bytes, each counted before it goes on: past
//! `Limits::max_decoded_bytes`, or past 1 MiB with more than `Limits::max_ratio` decoded
//! bytes per compressed byte consumed, decoding stops with [`ScanError::TooLarge`]. A
//! bomb is refused after about a mebibyte of work, never expanded.

use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, InBuffer, Operation, OutBuffer};

use super::{ContentEncoding, Limits, ScanError};

/// The size of one piece of decoded output.
pub(crate) const OUT: usize = 32 * 1024;
/// Below this many decoded bytes, the ratio is not checked (small bodies compress well).
const RATIO_FLOOR: u64 = 1 << 20;

/// Decoded and consumed byte counts, checked against the limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    limits: Limits,
    consumed: u64,
    decoded: u64,
}

impl Bound {
    fn add(&mut self, consumed: usize, decoded: usize) -> Result<(), ScanError> {
        self.consumed += consumed as u64;
        self.decoded += decoded as u64;
        let ratio = self.limits.max_ratio as u64;
        if self.decoded > self.limits.max_decoded_bytes
            || (ratio > 0
                && self.decoded > RATIO_FLOOR
                && self.decoded > self.consumed.saturating_mul(ratio))
        {
            return Err(ScanError::TooLarge);
        }
        Ok(())
    }
}

/// Where a gzip stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gz {
    /// In the 10 fixed header bytes, at this index.
    Fixed(u8),
    /// Reading the 2 bytes of FEXTRA's length (1: the low byte is in `extra`).
    ExtraLen(u8),
    /// Skipping this many FEXTRA bytes.
    Extra(u32),
    /// Skipping the zero-terminated file name.
    Name,
    /// Skipping the zero-terminated comment.
    Comment,
    /// Skipping this many bytes of header CRC.
    Hcrc(u8),
    /// In the deflate data.
    Data,
    /// Skipping this many bytes of trailer (CRC and size).
    Trailer(u8),
    /// Between members: the stream may end here.
    End,
}

pub(crate) enum Decoder {
    Identity,
    Gzip {
        st: Gz,
        flags: u8,
        extra: u32,
        z: Box<Decompress>,
    },
    /// `z` is made once the first two bytes tell zlib from raw deflate.
    Deflate {
        first: Option<u8>,
        z: Option<Box<Decompress>>,
        ended: bool,
    },
    Zstd {
        z: Box<zstd::stream::raw::Decoder<'static>>,
        in_frame: bool,
    },
    Unsupported(&'static str),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Identity => "Identity",
            Decoder::Gzip { .. } => "Gzip",
            Decoder::Deflate { .. } => "Deflate",
            Decoder::Zstd { .. } => "Zstd",
            Decoder::Unsupported(_) => "Unsupported",
        })
    }
}

impl Decoder {
    pub(crate) fn new(encoding: ContentEncoding) -> Decoder {
        match encoding {
            ContentEncoding::Identity => Decoder::Identity,
            ContentEncoding::Gzip => Decoder::Gzip {
                st: Gz::Fixed(0),
                flags: 0,
                extra: 0,
                z: Box::new(Decompress::new(false)),
            },
            ContentEncoding::Deflate => Decoder::Deflate {
                first: None,
                z: None,
                ended: false,
            },
            ContentEncoding::Zstd => match zstd::stream::raw::Decoder::new() {
                Ok(mut z) => {
                    if z.set_parameter(DParameter::WindowLogMax(23)).is_err() {
                        return Decoder::Unsupported("zstd");
                    }
                    Decoder::Zstd {
                        z: Box::new(z),
                        in_frame: false,
                    }
                }
                Err(_) => Decoder::Unsupported("zstd"),
            },
            ContentEncoding::Br => Decoder::Unsupported("br"),
        }
    }

    pub(crate) fn bound(limits: Limits) -> Bound {
        Bound {
            limits,
            consumed: 0,
            decoded: 0,
        }
    }

    /// Decodes `input`, handing each decoded piece to `sink`.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut [u8],
        bound: &mut Bound,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ScanError> {
        match self {
            Decoder::Identity => {
                sink(input);
                Ok(())
            }
            Decoder::Unsupported(name) => Err(ScanError::Unsupported((*name).to_string())),
            Decoder::Gzip {
                st,
                flags,
                extra,
                z,
            } => {
                while !input.is_empty() {
                    if *st == Gz::Data {
                        let (used, ended) = inflate(z, input, out, bound, sink)?;
                        input = &input[used..];
                        if ended {
                            *st = Gz::Trailer(8);
                        } else if used == 0 {
                            // Input left that inflate does not take: not deflate data.
                            return Err(ScanError::Corrupt);
                        }
                        continue;
                    }
                    let b = input[0];
                    input = &input[1..];
                    *st = gzip_header(*st, b, flags, extra)?;
                    if *st == Gz::Data {
                        z.reset(false);
                    }
                }
                Ok(())
            }
            Decoder::Deflate { first, z, ended } => {
                if *ended {
                    return if input.is_empty() {
                        Ok(())
                    } else {
                        Err(ScanError::Corrupt)
                    };
                }
                if z.is_none() {
                    let Some(&b) = input.first() else {
                        return Ok(());
                    };
                    let Some(a) = *first else {
                        *first = Some(b);
                        return self.feed(&input[1..], out, bound, sink);
                    };
                    // RFC 1950: CM = 8 and the header, read big-endian, a multiple of 31.
                    let zlib = a & 0x0F == 8 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0;
                    let mut d = Box::new(Decompress::new(zlib));
                    let (_, e) = inflate(&mut d, &[a], out, bound, sink)?;
                    *z = Some(d);
                    *ended = e;
                    return self.feed(input, out, bound, sink);
                }
                let Some(d) = z.as_mut() else { return Ok(()) };
                let (used, e) = inflate(d, input, out, bound, sink)?;
                *ended = e;
                if e && used < input.len() {
                    return Err(ScanError::Corrupt);
                }
                Ok(())
            }
            Decoder::Zstd { z, in_frame } => {
                let mut inb = InBuffer::around(input);
                loop {
                    let before = inb.pos();
                    let mut outb = OutBuffer::around(&mut *out);
                    let hint = z.run(&mut inb, &mut outb).map_err(|_| ScanError::Corrupt)?;
                    let made = outb.pos();
                    let used = inb.pos() - before;
                    // Called again with nothing to do, zstd asks for the next frame's
                    // header: that says nothing about the frame just read.
                    if used > 0 || made > 0 {
                        *in_frame = hint != 0;
                    }
                    bound.add(used, made)?;
                    if made > 0 {
                        sink(&out[..made]);
                    }
                    if (inb.pos() == input.len() && made < out.len()) || (made == 0 && used == 0) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The end of the body: the compressed stream must be complete.
    pub(crate) fn finish(
        &mut self,
        out: &mut [u8],
        bound: &mut Bound,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ScanError> {
        match self {
            Decoder::Identity => Ok(()),
            Decoder::Unsupported(name) => Err(ScanError::Unsupported((*name).to_string())),
            Decoder::Gzip { st, .. } => match st {
                Gz::End | Gz::Fixed(0) => Ok(()),
                _ => Err(ScanError::Corrupt),
            },
            Decoder::Deflate { first, z, ended } => match (first, z, ended) {
                (None, None, _) => Ok(()),
                (_, Some(_), true) => Ok(()),
                _ => Err(ScanError::Corrupt),
            },
            Decoder::Zstd { .. } => {
                self.feed(&[], out, bound, sink)?;
                match self {
                    Decoder::Zstd { in_frame: true, .. } => Err(ScanError::Corrupt),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// One byte of a gzip member's header or trailer; returns the next state.
fn gzip_header(st: Gz, b: u8, flags: &mut u8, extra: &mut u32) -> Result<Gz, ScanError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    // After the fixed bytes, or a field: the next field the flags announce.
    let after = |from: u8, flags: u8| -> Gz {
        if from < 1 && flags & FEXTRA != 0 {
            Gz::ExtraLen(0)
        } else if from < 2 && flags & FNAME != 0 {
            Gz::Name
        } else if from < 3 && flags & FCOMMENT != 0 {
            Gz::Comment
        } else if from < 4 && flags & FHCRC != 0 {
            Gz::Hcrc(2)
        } else {
            Gz::Data
        }
    };
    Ok(match st {
        Gz::Fixed(i) => {
            match (i, b) {
                (0, 0x1f) | (1, 0x8b) | (2, 8) => {}
                (3, f) if f & 0xE0 == 0 => *flags = f,
                (4..=9, _) => {}
                _ => return Err(ScanError::Corrupt),
            }
            if i == 9 {
                after(0, *flags)
            } else {
                Gz::Fixed(i + 1)
            }
        }
        Gz::ExtraLen(0) => {
            *extra = b as u32;
            Gz::ExtraLen(1)
        }
        Gz::ExtraLen(_) => {
            let len = *extra | (b as u32) << 8;
            if len == 0 {
                after(1, *flags)
            } else {
                Gz::Extra(len)
            }
        }
        Gz::Extra(n) => {
            if n == 1 {
                after(1, *flags)
            } else {
                Gz::Extra(n - 1)
            }
        }
        Gz::Name => {
            if b == 0 {
                after(2, *flags)
            } else {
                Gz::Name
            }
        }
        Gz::Comment => {
            if b == 0 {
                after(3, *flags)
            } else {
                Gz::Comment
            }
        }
        Gz::Hcrc(n) => {
            if n == 1 {
                Gz::Data
            } else {
                Gz::Hcrc(n - 1)
            }
        }
        Gz::Trailer(n) => {
            if n == 1 {
                Gz::End
            } else {
                Gz::Trailer(n - 1)
            }
        }
        // Another member begins (its first byte, 0x1f, is read here).
        Gz::End => {
            if b == 0x1f {
                Gz::Fixed(1)
            } else {
                return Err(ScanError::Corrupt);
            }
        }
        Gz::Data => Gz::Data,
    })
}

/// Inflates as much of `input` as it can; returns the bytes used and whether the
/// deflate stream ended.
fn inflate(
    z: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
    bound: &mut Bound,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(usize, bool), ScanError> {
    let mut pos = 0;
    loop {
        let (bi, bo) = (z.total_in(), z.total_out());
        let status = z
            .decompress(&input[pos..], out, FlushDecompress::None)
            .map_err(|_| ScanError::Corrupt)?;
        let used = (z.total_in() - bi) as usize;
        let made = (z.total_out() - bo) as usize;
        pos += used;
        bound.add(used, made)?;
        if made > 0 {
            sink(&out[..made]);
        }
        match status {
            Status::StreamEnd => return Ok((pos, true)),
            _ if used == 0 && made == 0 => return Ok((pos, false)),
            _ if pos == input.len() && made < out.len() => return Ok((pos, false)),
            _ => {}
        }
    }
}

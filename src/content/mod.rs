//! What a message carries: the upload scanner (DLP) and the download's file type.
//! TEMPORARY STUB of the scanner's API (the real one comes from the `scanner` branch).

pub mod filetype;

pub type DetectorId = u16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifierKind {
    Nir,
    Iban,
    Card,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Nir => "nir",
            IdentifierKind::Iban => "iban",
            IdentifierKind::Card => "card",
        }
    }
}

pub struct DictionarySpec {
    pub name: String,
    pub words: Vec<String>,
    pub min: u32,
}

pub struct IdentifierSpec {
    pub name: String,
    pub kind: IdentifierKind,
    pub min: u32,
    pub near: Vec<String>,
    pub distance: u32,
}

pub enum DetectorKind {
    Dictionary,
    Identifier(IdentifierKind),
}

pub struct Detector {
    pub name: Box<str>,
    pub kind: DetectorKind,
    pub min: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("empty")]
    Empty,
}

#[derive(Default)]
pub struct Scanner {
    detectors: Vec<Detector>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scanner")
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_decoded_bytes: u64,
    pub max_ratio: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 64 << 20,
            max_ratio: 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Raw,
    UrlEncoded,
    Json,
    Multipart,
}

impl BodyFormat {
    pub fn of(_content_type: Option<&[u8]>) -> BodyFormat {
        BodyFormat::Raw
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
    Br,
}

impl ContentEncoding {
    pub fn of(_v: Option<&[u8]>) -> Result<ContentEncoding, ScanError> {
        Ok(ContentEncoding::Identity)
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScanError {
    #[error("too large")]
    TooLarge,
    #[error("corrupt")]
    Corrupt,
    #[error("unsupported {0}")]
    Unsupported(String),
}

impl ScanError {
    pub fn code(&self) -> &'static str {
        match self {
            ScanError::TooLarge => "too-large",
            ScanError::Corrupt => "corrupt",
            ScanError::Unsupported(_) => "unsupported-encoding",
        }
    }
}

impl Scanner {
    pub fn build(
        dicts: &[DictionarySpec],
        ids: &[IdentifierSpec],
        _l: Limits,
    ) -> Result<Scanner, BuildError> {
        let mut detectors = Vec::new();
        for d in dicts {
            detectors.push(Detector {
                name: d.name.as_str().into(),
                kind: DetectorKind::Dictionary,
                min: d.min,
            });
        }
        for i in ids {
            detectors.push(Detector {
                name: i.name.as_str().into(),
                kind: DetectorKind::Identifier(i.kind),
                min: i.min,
            });
        }
        Ok(Scanner { detectors })
    }
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }
    pub fn start(&self, _f: BodyFormat, _e: ContentEncoding) -> ScanState {
        ScanState {
            findings: Findings {
                counts: vec![0; self.detectors.len()],
            },
            all: Vec::new(),
        }
    }
}

pub struct ScanState {
    findings: Findings,
    all: Vec<u8>,
}

impl ScanState {
    pub fn feed(&mut self, s: &Scanner, chunk: &[u8]) -> Result<(), ScanError> {
        self.all.extend_from_slice(chunk);
        let text = String::from_utf8_lossy(&self.all).to_lowercase();
        for (i, d) in s.detectors.iter().enumerate() {
            self.findings.counts[i] = text.matches(&*d.name).count() as u32;
        }
        Ok(())
    }
    pub fn finish(&mut self, _s: &Scanner) -> Result<(), ScanError> {
        Ok(())
    }
    pub fn findings(&self) -> &Findings {
        &self.findings
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    counts: Vec<u32>,
}

impl Findings {
    pub fn count(&self, d: DetectorId) -> u32 {
        self.counts.get(d as usize).copied().unwrap_or(0)
    }
    pub fn hits<'a>(&'a self, s: &'a Scanner) -> impl Iterator<Item = (DetectorId, u32)> + 'a {
        self.counts
            .iter()
            .enumerate()
            .filter(move |(i, c)| **c >= s.detectors[*i].min.max(1))
            .map(|(i, c)| (i as DetectorId, *c))
    }
    pub fn any_of(&self, s: &Scanner, wanted: &[DetectorId]) -> bool {
        self.hits(s).any(|(d, _)| wanted.contains(&d))
    }
}

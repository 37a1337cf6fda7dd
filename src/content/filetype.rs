//! What a download is (§6.2: « ne pas télécharger de logiciels »), from three clues that
//! a site controls separately: the file extension in the path, the declared
//! `Content-Type`, and the first bytes of the body (PE, ELF, Mach-O, MSI, a script's
//! `#!`). The kinds found are the union of the three, so an executable renamed `.pdf`
//! and served as `application/pdf` is still an executable: its first bytes say so.
//!
//! Pure and synchronous; reads at most [`MAGIC_LEN`] bytes.

/// A kind of file a rule's `file_types` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FileKind {
    /// A program: Windows PE (`MZ`), Linux ELF, macOS Mach-O; `.exe`, `.dll`, `.scr`,
    /// `.com`, `.pif`, `.cpl`, `.elf`, `.bin`…
    Executable,
    /// A Windows installer or package: MSI (an OLE compound file named `.msi`/`.msp` or
    /// declared as such), `.msix`, `.appx`, `.appxbundle`, `.msixbundle`.
    Installer,
    /// A script that runs when opened: `#!` first, or `.bat`, `.cmd`, `.ps1`, `.vbs`,
    /// `.vbe`, `.wsf`, `.wsh`, `.hta`, `.sh`, `.jse`, `.lnk`.
    Script,
}

impl FileKind {
    pub const ALL: [FileKind; 3] = [FileKind::Executable, FileKind::Installer, FileKind::Script];

    /// The name a policy writes.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Executable => "executable",
            FileKind::Installer => "installer",
            FileKind::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// French words for the block page and the trace's readers.
    pub fn label(self, en: bool) -> &'static str {
        match (self, en) {
            (FileKind::Executable, false) => "programme exécutable",
            (FileKind::Executable, true) => "executable program",
            (FileKind::Installer, false) => "paquet d'installation",
            (FileKind::Installer, true) => "installer package",
            (FileKind::Script, false) => "script",
            (FileKind::Script, true) => "script",
        }
    }
}

/// How many first bytes of a body the detection reads.
pub const MAGIC_LEN: usize = 8;

/// Which clue found a kind, for the trace (`executable (contenu)`…).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clue {
    Extension,
    ContentType,
    Magic,
}

impl Clue {
    pub fn as_str(self) -> &'static str {
        match self {
            Clue::Extension => "extension",
            Clue::ContentType => "content-type",
            Clue::Magic => "magic",
        }
    }
}

/// The OLE compound file signature (MSI, but also old Office documents).
const OLE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// The kind the last segment of `path` (query and fragment cut) names by its extension.
pub fn by_extension(path: &str) -> Option<FileKind> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    let (_, ext) = name.rsplit_once('.')?;
    // Percent-encoding of the dot or the letters would dodge this clue; the first bytes
    // still catch the file itself.
    let mut lower = [0u8; 12];
    if ext.len() > lower.len() || ext.is_empty() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(ext.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &lower[..ext.len()] {
        b"exe" | b"dll" | b"scr" | b"com" | b"pif" | b"cpl" | b"sys" | b"elf" | b"appimage"
        | b"dmg" => FileKind::Executable,
        b"msi" | b"msp" | b"msix" | b"msixbundle" | b"appx" | b"appxbundle" => FileKind::Installer,
        b"bat" | b"cmd" | b"ps1" | b"psm1" | b"vbs" | b"vbe" | b"wsf" | b"wsh" | b"hta" | b"sh"
        | b"jse" | b"lnk" => FileKind::Script,
        _ => return None,
    })
}

/// The kind a `Content-Type` value declares (parameters ignored).
pub fn by_content_type(v: &[u8]) -> Option<FileKind> {
    let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let t = v[..end].trim_ascii();
    let is = |s: &str| t.eq_ignore_ascii_case(s.as_bytes());
    if is("application/x-msdownload")
        || is("application/x-msdos-program")
        || is("application/x-dosexec")
        || is("application/vnd.microsoft.portable-executable")
        || is("application/x-executable")
        || is("application/x-elf")
        || is("application/x-mach-binary")
        || is("application/x-sharedlib")
    {
        Some(FileKind::Executable)
    } else if is("application/x-msi")
        || is("application/x-ms-installer")
        || is("application/x-ole-storage")
        || is("application/msix")
        || is("application/appx")
    {
        Some(FileKind::Installer)
    } else if is("application/x-sh")
        || is("text/x-shellscript")
        || is("application/x-bat")
        || is("application/x-powershell")
        || is("text/vbscript")
        || is("application/hta")
    {
        Some(FileKind::Script)
    } else {
        None
    }
}

/// The kind the first bytes of a body show, if any. `ole_is_installer`: the other clues
/// name an installer, so an OLE compound file is one (it would otherwise be an old
/// Office document).
pub fn by_magic(first: &[u8], ole_is_installer: bool) -> Option<FileKind> {
    if first.starts_with(b"MZ")
        || first.starts_with(b"\x7fELF")
        || first.starts_with(&[0xCF, 0xFA, 0xED, 0xFE])
        || first.starts_with(&[0xCE, 0xFA, 0xED, 0xFE])
        || first.starts_with(&[0xFE, 0xED, 0xFA, 0xCF])
        || first.starts_with(&[0xFE, 0xED, 0xFA, 0xCE])
    {
        Some(FileKind::Executable)
    } else if first.starts_with(&OLE) && ole_is_installer {
        Some(FileKind::Installer)
    } else if first.starts_with(b"#!") {
        Some(FileKind::Script)
    } else {
        None
    }
}

/// Every kind found, with the first clue that found each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub kinds: [Option<Clue>; 3],
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(Option::is_none)
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileKind, Clue)> + '_ {
        FileKind::ALL
            .into_iter()
            .filter_map(|k| self.kinds[k as usize].map(|c| (k, c)))
    }

    fn add(&mut self, k: FileKind, c: Clue) {
        self.kinds[k as usize].get_or_insert(c);
    }
}

/// Detects what a download is from its path, declared type and first bytes (an empty
/// slice when the answer has no body).
pub fn detect(path: &str, content_type: Option<&[u8]>, first: &[u8]) -> Found {
    let mut f = Found::default();
    let ext = by_extension(path);
    let declared = content_type.and_then(by_content_type);
    if let Some(k) = ext {
        f.add(k, Clue::Extension);
    }
    if let Some(k) = declared {
        f.add(k, Clue::ContentType);
    }
    let installer_named = ext == Some(FileKind::Installer) || declared == Some(FileKind::Installer);
    if let Some(k) = by_magic(first, installer_named) {
        f.add(k, Clue::Magic);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_executable_is_found_by_its_first_bytes() {
        let f = detect(
            "/rapport.pdf",
            Some(b"application/pdf"),
            b"MZ\x90\0\x03\0\0\0",
        );
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            [(FileKind::Executable, Clue::Magic)]
        );
        let f = detect("/outil", None, b"\x7fELF\x02\x01\x01\0");
        assert_eq!(f.iter().next(), Some((FileKind::Executable, Clue::Magic)));
    }

    #[test]
    fn extensions_and_types_are_clues_of_their_own() {
        assert_eq!(by_extension("/a/setup.EXE?x=1"), Some(FileKind::Executable));
        assert_eq!(by_extension("/a/b.msi#frag"), Some(FileKind::Installer));
        assert_eq!(by_extension("/run.ps1"), Some(FileKind::Script));
        assert_eq!(by_extension("/doc.pdf"), None);
        assert_eq!(by_extension("/exe"), None);
        assert_eq!(by_extension("/dir.exe/file.txt"), None);
        assert_eq!(
            by_content_type(b"application/x-msdownload; charset=binary"),
            Some(FileKind::Executable)
        );
        assert_eq!(by_content_type(b"text/html"), None);
        assert_eq!(by_content_type(b"application/octet-stream"), None);
    }

    #[test]
    fn an_ole_file_is_an_installer_only_when_named_so() {
        assert_eq!(by_magic(&OLE, false), None, "an old .doc");
        let f = detect("/setup.msi", None, &OLE);
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            [(FileKind::Installer, Clue::Extension)]
        );
        assert!(detect("/x", Some(b"application/x-msi"), &OLE).kinds[1].is_some());
    }

    #[test]
    fn ordinary_pages_and_documents_are_nothing() {
        assert!(detect("/index.html", Some(b"text/html"), b"<!doctype").is_empty());
        assert!(detect("/a.pdf", Some(b"application/pdf"), b"%PDF-1.7").is_empty());
        assert!(detect("/", None, b"").is_empty());
        assert!(detect("/", None, b"M").is_empty());
    }
}

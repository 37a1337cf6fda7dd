//! `charte-proxy ca init|show`: creates the organisation's CA and tells how to make the
//! workstations trust it. The work is in [`crate::action::ca`]; this module reads arguments and
//! prints. Messages go to stderr, `show`'s report to stdout.
//!
//! Exit codes: 0 success, 2 configuration problem (no CA yet, a CA already there, key
//! open to others, a certificate that is not a CA…), 1 runtime failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::action::ca::{self, CaError, CaFiles, CertAuthority};

#[derive(clap::Args, Debug)]
pub struct CaArgs {
    /// The data folder (the CA lives in its `ca` folder: ca.pem, ca.der, ca.key) and the
    /// server file (its `tls.ca_cert`/`tls.ca_key` name another CA).
    #[command(flatten)]
    pub data: super::DataArgs,
    /// CA certificate (PEM) instead of DATA/ca/ca.pem, e.g. a subordinate of the
    /// authority's PKI; issuers may follow it in the file. The DER copy is FILE with the
    /// extension `.der`.
    #[arg(long, value_name = "FILE", global = true)]
    pub cert: Option<PathBuf>,
    /// CA private key (PEM: PKCS#8, SEC1 or PKCS#1, not encrypted, mode 0600) instead of
    /// DATA/ca/ca.key.
    #[arg(long, value_name = "FILE", global = true)]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: CaCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum CaCmd {
    /// Create the organisation's CA (ECDSA P-256, ten years), then show it.
    Init {
        /// Common name of the CA, as users will see it in certificate details
        /// [default: "charte-proxy CA — HOSTNAME"].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Organisation (O) of the CA, e.g. "Mairie de Saint-Denis".
        #[arg(long, value_name = "NAME")]
        organisation: Option<String>,
        /// Replace an existing CA. Workstations must then be given the new certificate.
        #[arg(long)]
        force: bool,
    },
    /// Show the CA's fingerprint and how to install it on workstations.
    Show,
}

impl CaArgs {
    /// The files named by the arguments: `--cert`/`--key`, else the server file's
    /// `tls.ca_cert`/`tls.ca_key`, else the data folder's `ca/…`.
    pub fn files(&self) -> Result<CaFiles, ExitCode> {
        let cfg = self.data.settings()?;
        let default = CaFiles::in_dir(&cfg.data_dir.join("ca"));
        let (cert, key) = match (&cfg.tls.ca_cert, &cfg.tls.ca_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => (default.cert_pem, default.key_pem),
        };
        Ok(CaFiles {
            cert_pem: self.cert.clone().unwrap_or(cert),
            key_pem: self.key.clone().unwrap_or(key),
        })
    }
}

/// Runs a `ca` subcommand and returns the process exit code.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    let files = match args.files() {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    if let CaCmd::Init {
        name,
        organisation,
        force,
    } = &args.cmd
    {
        let name = name.clone().unwrap_or_else(ca::default_common_name);
        if let Err(e) = ca::init(&files, &name, organisation.as_deref(), *force) {
            return Ok(failure(&e));
        }
        eprintln!(
            "created the CA: key {} (mode 0600: keep it on this server, never on \
             workstations), certificate {} and {}",
            files.key_pem.display(),
            files.cert_pem.display(),
            files.cert_der().display()
        );
    }
    let authority = match CertAuthority::load(&files) {
        Ok(a) => a,
        Err(e) => return Ok(failure(&e)),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(show(&authority, &files).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn failure(e: &CaError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(if e.is_config() {
        EXIT_CONFIG
    } else {
        EXIT_RUNTIME
    })
}

/// The `ca show` report: the CA, then how to make each kind of workstation trust it.
pub fn show(ca: &CertAuthority, files: &CaFiles) -> String {
    let der = files.cert_der();
    let pem_name = file_name(&files.cert_pem);
    let der_name = file_name(&der);
    format!(
        "\
CA certificate
  Subject      {subject}
  Valid        {from} to {to}
  SHA-256      {fingerprint}
  Certificate  {pem} (PEM)
               {der} (DER)
  Private key  {key} (stays on this server)

Make every workstation trust this certificate (never the key), then check that the
SHA-256 fingerprint it shows is the one above.

Windows — Edge, Chrome and most applications use the Windows store
  Group policy: Computer Configuration > Policies > Windows Settings > Security Settings
    > Public Key Policies > Trusted Root Certification Authorities > Import… > {der_name}
  One machine, as administrator:
    certutil -addstore -f Root {der_name}

Firefox — has its own store
  Enterprise policy (policies.json, or the Firefox group policy templates):
    {{\"policies\": {{\"Certificates\": {{\"ImportEnterpriseRoots\": true}}}}}}
    makes Firefox trust the roots of Windows and macOS (the setting
    security.enterprise_roots.enabled = true); or install the file itself:
    {{\"policies\": {{\"Certificates\": {{\"Install\": [\"/path/to/{pem_name}\"]}}}}}}
  By hand: Settings > Privacy & Security > Certificates > View Certificates
    > Authorities > Import… > {pem_name}, tick \"Trust this CA to identify websites\".

Linux — Debian, Ubuntu
  sudo cp {pem_name} /usr/local/share/ca-certificates/charte-proxy.crt
  sudo update-ca-certificates
  Chromium and Chrome read the user's NSS database instead (certutil is in the
  libnss3-tools package):
    certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n charte-proxy -i {pem_name}

macOS
  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {pem_name}
",
        subject = ca.subject(),
        from = ca::show_time(ca.not_before()),
        to = ca::show_time(ca.not_after()),
        fingerprint = ca.fingerprint(),
        pem = files.cert_pem.display(),
        der = der.display(),
        key = files.key_pem.display(),
    )
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

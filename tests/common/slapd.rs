//! A throw-away OpenLDAP directory for the integration tests: `slapd.conf`, an mdb
//! database loaded with `slapadd`, and a certificate from a throw-away CA in a temp
//! folder; `slapd` in the foreground on two free loopback ports, `ldap://` (StartTLS
//! offered) and `ldaps://`. A slapd the Debian package may have started on the machine
//! (port 389, `/etc/ldap/slapd.d`) is neither needed nor disturbed.
//!
//! The data, under `dc=mairie,dc=test`:
//!
//! ```text
//! ou=Users      uid=alice, uid=bob, uid=carol (inetOrgPerson, plaintext userPassword)
//! ou=Services   cn=proxy-svc (the proxy's search account)
//! ou=Groupes    cn=GG-Internet-Communication: member alice, member cn=GG-Com-Nested
//!               cn=GG-Com-Nested: member bob
//!               (carol is in no group; groupOfNames, no memberOf overlay)
//! ```
//!
//! Anonymous binds are refused and every operation needs a bound user (`disallow
//! bind_anon`, `require authc`); a bound user, service account or not, may read every
//! entry but the passwords, which serve only to bind.
//!
//! Debian's slapd is linked with GnuTLS; it reads the PKCS#8 PEM key rcgen writes.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The users of the directory and their passwords (the KDC tests create the same).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
];

/// The groups, each with its members as (kind, name): a user's `uid` or a group's `cn`.
pub const GROUPS: &[(&str, &[Member])] = &[
    (
        "GG-Internet-Communication",
        &[Member::User("alice"), Member::Group("GG-Com-Nested")],
    ),
    ("GG-Com-Nested", &[Member::User("bob")]),
];

/// A `member` value of a group.
#[derive(Clone, Copy, Debug)]
pub enum Member {
    User(&'static str),
    Group(&'static str),
}

/// A running (or, after [`Slapd::stop`], stopped) directory.
pub struct Slapd {
    pub port: u16,
    /// `ldap://127.0.0.1:PORT` (StartTLS available).
    pub url: String,
    pub base_dn: String,
    /// The rootdn, which may do anything.
    pub admin_dn: String,
    pub admin_password: String,
    /// The account the proxy searches with.
    pub service_dn: String,
    pub service_password: String,
    /// The CA that signed slapd's certificate (for 127.0.0.1 and localhost).
    pub ca_pem: PathBuf,
    pub ldaps_port: u16,
    /// `ldaps://127.0.0.1:LDAPS_PORT`.
    pub ldaps_url: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Slapd {
    /// Writes the configuration, the certificates and the data, starts slapd and returns
    /// once it answers a search.
    pub fn start() -> Slapd {
        let dir = tempfile::Builder::new().prefix("slapd-").tempdir().unwrap();
        let d = dir.path();
        let base_dn = "dc=mairie,dc=test".to_string();
        let ca_pem = d.join("ca.pem");
        write_tls(d, &ca_pem);
        std::fs::create_dir(d.join("db")).unwrap();
        std::fs::write(d.join("slapd.conf"), slapd_conf(d, &base_dn)).unwrap();
        std::fs::write(d.join("data.ldif"), data_ldif(&base_dn)).unwrap();
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("slapadd runs (Debian package slapd)");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            port: 0,
            url: String::new(),
            base_dn: base_dn.clone(),
            admin_dn: format!("cn=admin,{base_dn}"),
            admin_password: "admin-pw".into(),
            service_dn: format!("cn=proxy-svc,ou=Services,{base_dn}"),
            service_password: "svc-pw".into(),
            ca_pem,
            ldaps_port: 0,
            ldaps_url: String::new(),
            dir,
            child: None,
        };
        // A free port may be taken again between our probe and slapd's bind; then slapd
        // exits and other ports are tried.
        let mut last_error = String::new();
        for _ in 0..5 {
            let (port, ldaps_port) = two_free_ports();
            s.port = port;
            s.url = format!("ldap://127.0.0.1:{port}");
            s.ldaps_port = ldaps_port;
            s.ldaps_url = format!("ldaps://127.0.0.1:{ldaps_port}");
            match s.launch() {
                Ok(()) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!("slapd did not start: {last_error}");
    }

    /// Kills slapd and waits for it: the directory is down until [`Slapd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts slapd again on the same ports with the same data, returning once it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("slapd did not restart: {e}");
        }
    }

    /// `uid=NAME,ou=Users,dc=mairie,dc=test`.
    pub fn user_dn(&self, name: &str) -> String {
        format!("uid={name},ou=Users,{}", self.base_dn)
    }

    /// `cn=NAME,ou=Groupes,dc=mairie,dc=test`.
    pub fn group_dn(&self, name: &str) -> String {
        format!("cn={name},ou=Groupes,{}", self.base_dn)
    }

    /// The environment of an OpenLDAP client (ldapsearch) trusting [`Slapd::ca_pem`].
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("LDAPTLS_CACERT", self.ca_pem.clone().into()),
            ("LDAPTLS_REQCERT", "demand".into()),
        ]
    }

    /// `ldapsearch` with [`Slapd::client_env`], a 5 s network timeout and LDIF output
    /// without comments; the caller adds `-H`, the bind and the search.
    pub fn ldapsearch(&self) -> Command {
        let mut c = Command::new("ldapsearch");
        c.envs(self.client_env())
            .args(["-LLL", "-o", "nettimeout=5", "-o", "ldif-wrap=no"])
            .stdin(Stdio::null());
        c
    }

    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("slapd.out"))
            .unwrap();
        let mut child = Command::new("slapd")
            // Any -d keeps slapd in the foreground; 0 logs nothing more.
            .args(["-d", "0", "-f"])
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/ {}/", self.url, self.ldaps_url))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("slapd runs (Debian package slapd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "slapd exited: {status}\n{}",
                    std::fs::read_to_string(d.join("slapd.out")).unwrap_or_default()
                ));
            }
            let probe = self
                .ldapsearch()
                .args(["-H", &self.url, "-x", "-D", &self.admin_dn, "-w"])
                .arg(&self.admin_password)
                .args(["-s", "base", "-b", &self.base_dn, "dn"])
                .output()
                .expect("ldapsearch runs (Debian package ldap-utils)");
            if probe.status.success() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "slapd did not answer within 20 s: {}",
                    String::from_utf8_lossy(&probe.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn slapd_conf(dir: &Path, base_dn: &str) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile "{d}/slapd.pid"
argsfile "{d}/slapd.args"

TLSCACertificateFile "{d}/ca.pem"
TLSCertificateFile "{d}/server.pem"
TLSCertificateKeyFile "{d}/server.key"

disallow bind_anon
require authc

database mdb
suffix "{base_dn}"
rootdn "cn=admin,{base_dn}"
rootpw admin-pw
directory "{d}/db"
index objectClass,uid,cn,member eq

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none
"#
    )
}

fn data_ldif(base: &str) -> String {
    let mut l = format!(
        "dn: {base}
objectClass: dcObject
objectClass: organization
dc: mairie
o: Mairie

dn: ou=Users,{base}
objectClass: organizationalUnit
ou: Users

dn: ou=Services,{base}
objectClass: organizationalUnit
ou: Services

dn: ou=Groupes,{base}
objectClass: organizationalUnit
ou: Groupes

dn: cn=proxy-svc,ou=Services,{base}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: proxy-svc
userPassword: svc-pw
"
    );
    for (uid, password) in USERS {
        write!(
            l,
            "
dn: uid={uid},ou=Users,{base}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
mail: {uid}@mairie.test
userPassword: {password}
"
        )
        .unwrap();
    }
    for (cn, members) in GROUPS {
        write!(
            l,
            "
dn: cn={cn},ou=Groupes,{base}
objectClass: groupOfNames
cn: {cn}
"
        )
        .unwrap();
        for m in *members {
            match m {
                Member::User(uid) => writeln!(l, "member: uid={uid},ou=Users,{base}"),
                Member::Group(g) => writeln!(l, "member: cn={g},ou=Groupes,{base}"),
            }
            .unwrap();
        }
    }
    l
}

/// A CA (written to `ca_pem`) and slapd's certificate for 127.0.0.1 and localhost.
fn write_tls(dir: &Path, ca_pem: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "charte-proxy test LDAP CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(ca_pem, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// Two distinct loopback TCP ports free right now.
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

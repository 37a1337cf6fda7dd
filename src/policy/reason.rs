//! `Reason`: why a request was allowed or blocked. One value feeds the trace field, the
//! metric label (its code), the block page and the `X-Charte-Reason` header; no reason
//! text is built anywhere else.

use std::borrow::Cow;

use super::{Policy, RuleIdx};

/// Language of what people read. French by default; English when the browser asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }
}

/// A text written by administrators, in French and optionally in English.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub fr: Box<str>,
    pub en: Option<Box<str>>,
}

impl Text {
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => self.en.as_deref().unwrap_or(&self.fr),
            Lang::Fr => &self.fr,
        }
    }
}

/// Stable reason codes: metric labels, trace fields, tests. Never renamed. Every code
/// the trace can hold is here: the policy's (allow, block), the proxy's own refusals,
/// and what ended an exchange that was allowed (the site, its TLS, the client's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// An `allow` rule matched.
    RuleAllow,
    /// No rule matched; the default allows.
    DefaultAllow,
    /// A `block-upload` rule matched a request that only reads.
    UploadReadAllowed,
    /// A `block` rule matched.
    RuleBlock,
    /// No rule matched; the default blocks.
    DefaultBlock,
    /// A `block-upload` rule matched a request that sends data.
    UploadBlocked,
    /// A `block-upload` rule matched a tunnel that is not inspected.
    UploadTunnelBlocked,
    /// A `block` rule with a `content` condition matched what the body carries.
    ContentBlocked,
    /// A `block` rule with a `file_types` condition matched what the answer is.
    FileTypeBlocked,
    /// A `content` rule waited for the body and it could not be read for checking:
    /// compressed beyond the proxy's bound (a bomb), corrupt, or in an encoding the
    /// proxy does not decode. It is refused rather than let through unread.
    ContentUnchecked,
    /// A tunnel to a port the server configuration does not allow.
    PortNotAllowed,
    /// Proxy authentication is required and was missing or wrong.
    AuthRequired,
    /// The request names no valid host.
    BadHost,
    /// The TLS name (SNI) differs from the host given in CONNECT.
    SniMismatch,
    /// Inside an inspected tunnel, the request's Host or `:authority` differs from the
    /// TLS name.
    HostMismatch,
    /// A tunnel that must be inspected does not carry TLS.
    TlsRequired,
    /// The site is at an internal address (loopback, private, link-local…) that
    /// `internal_sites` does not open, or is the proxy itself.
    InternalDestination,
    /// A method the proxy never relays: TRACE and TRACK (they echo the request back,
    /// credentials included), CONNECT inside a bumped tunnel (a tunnel in a tunnel).
    MethodNotAllowed,
    /// The request head is longer than `limits.max_head_bytes`.
    HeadTooLarge,
    /// The site is one of the proxy's own listeners.
    OwnListener,
    /// The request already went through this proxy (its `Via`): a loop.
    Loop,
    /// The line of an inspected tunnel: its requests have lines of their own.
    Bump,
    /// The tunnel could not be inspected: the proxy's TLS set-up failed.
    BumpConfig,
    /// The client's request body was malformed or cut.
    ClientBodyMalformed,
    /// The client stopped sending its request body.
    ClientBodyIdle,
    /// The workstation refused the proxy's certificate (the organisation's CA is not
    /// installed on it, or the application pins its certificates).
    ClientUntrustedCa,
    /// The client's TLS handshake with the proxy failed otherwise.
    ClientHandshake,
    /// The client's ClientHello: cut short, not TLS, malformed, too large, ended, late,
    /// or unreadable.
    HelloIncomplete,
    HelloNotTls,
    HelloMalformed,
    HelloTooLarge,
    HelloEof,
    HelloTimeout,
    HelloIo,
    /// The site's name does not resolve.
    UpstreamDns,
    /// The site could not be connected to.
    UpstreamConnect,
    /// The site did not answer in time.
    UpstreamTimeout,
    /// The site's answer failed after the connection (cut, malformed).
    UpstreamError,
    /// The site switched protocols when no switch was relayed, or to another protocol
    /// than the WebSocket asked for.
    UpstreamSwitch,
    /// The site's certificate: expired, not yet valid, for another name, self-signed,
    /// from an unknown CA, revoked, invalid; its TLS too old; its handshake failed.
    UpstreamCertExpired,
    UpstreamCertNotYetValid,
    UpstreamCertName,
    UpstreamCertSelfSigned,
    UpstreamCertUnknownCa,
    UpstreamCertRevoked,
    UpstreamCertInvalid,
    UpstreamTlsVersion,
    UpstreamTls,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 48] = [
        ReasonCode::RuleAllow,
        ReasonCode::DefaultAllow,
        ReasonCode::UploadReadAllowed,
        ReasonCode::RuleBlock,
        ReasonCode::DefaultBlock,
        ReasonCode::UploadBlocked,
        ReasonCode::UploadTunnelBlocked,
        ReasonCode::ContentBlocked,
        ReasonCode::FileTypeBlocked,
        ReasonCode::ContentUnchecked,
        ReasonCode::PortNotAllowed,
        ReasonCode::AuthRequired,
        ReasonCode::BadHost,
        ReasonCode::SniMismatch,
        ReasonCode::HostMismatch,
        ReasonCode::TlsRequired,
        ReasonCode::InternalDestination,
        ReasonCode::MethodNotAllowed,
        ReasonCode::HeadTooLarge,
        ReasonCode::OwnListener,
        ReasonCode::Loop,
        ReasonCode::Bump,
        ReasonCode::BumpConfig,
        ReasonCode::ClientBodyMalformed,
        ReasonCode::ClientBodyIdle,
        ReasonCode::ClientUntrustedCa,
        ReasonCode::ClientHandshake,
        ReasonCode::HelloIncomplete,
        ReasonCode::HelloNotTls,
        ReasonCode::HelloMalformed,
        ReasonCode::HelloTooLarge,
        ReasonCode::HelloEof,
        ReasonCode::HelloTimeout,
        ReasonCode::HelloIo,
        ReasonCode::UpstreamDns,
        ReasonCode::UpstreamConnect,
        ReasonCode::UpstreamTimeout,
        ReasonCode::UpstreamError,
        ReasonCode::UpstreamSwitch,
        ReasonCode::UpstreamCertExpired,
        ReasonCode::UpstreamCertNotYetValid,
        ReasonCode::UpstreamCertName,
        ReasonCode::UpstreamCertSelfSigned,
        ReasonCode::UpstreamCertUnknownCa,
        ReasonCode::UpstreamCertRevoked,
        ReasonCode::UpstreamCertInvalid,
        ReasonCode::UpstreamTlsVersion,
        ReasonCode::UpstreamTls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::RuleAllow => "allow-rule",
            ReasonCode::DefaultAllow => "allow-default",
            ReasonCode::UploadReadAllowed => "allow-read-only",
            ReasonCode::RuleBlock => "block-rule",
            ReasonCode::DefaultBlock => "block-default",
            ReasonCode::UploadBlocked => "block-upload",
            ReasonCode::UploadTunnelBlocked => "block-upload-tunnel",
            ReasonCode::ContentBlocked => "block-content",
            ReasonCode::FileTypeBlocked => "block-file-type",
            ReasonCode::ContentUnchecked => "block-content-unchecked",
            ReasonCode::PortNotAllowed => "block-port",
            ReasonCode::AuthRequired => "auth-required",
            ReasonCode::BadHost => "bad-host",
            ReasonCode::SniMismatch => "sni-mismatch",
            ReasonCode::HostMismatch => "host-mismatch",
            ReasonCode::TlsRequired => "tls-required",
            ReasonCode::InternalDestination => "block-internal",
            ReasonCode::MethodNotAllowed => "block-method",
            ReasonCode::HeadTooLarge => "head-too-large",
            ReasonCode::OwnListener => "block-own-listener",
            ReasonCode::Loop => "loop",
            ReasonCode::Bump => "bump",
            ReasonCode::BumpConfig => "bump-config",
            ReasonCode::ClientBodyMalformed => "client-body-malformed",
            ReasonCode::ClientBodyIdle => "client-body-idle",
            ReasonCode::ClientUntrustedCa => "client-untrusted-ca",
            ReasonCode::ClientHandshake => "client-handshake",
            ReasonCode::HelloIncomplete => "hello-incomplete",
            ReasonCode::HelloNotTls => "hello-not-tls",
            ReasonCode::HelloMalformed => "hello-malformed",
            ReasonCode::HelloTooLarge => "hello-too-large",
            ReasonCode::HelloEof => "hello-eof",
            ReasonCode::HelloTimeout => "hello-timeout",
            ReasonCode::HelloIo => "hello-io",
            ReasonCode::UpstreamDns => "upstream-dns",
            ReasonCode::UpstreamConnect => "upstream-connect",
            ReasonCode::UpstreamTimeout => "upstream-timeout",
            ReasonCode::UpstreamError => "upstream-error",
            ReasonCode::UpstreamSwitch => "upstream-switch",
            ReasonCode::UpstreamCertExpired => "upstream-cert-expired",
            ReasonCode::UpstreamCertNotYetValid => "upstream-cert-not-yet-valid",
            ReasonCode::UpstreamCertName => "upstream-cert-name",
            ReasonCode::UpstreamCertSelfSigned => "upstream-cert-self-signed",
            ReasonCode::UpstreamCertUnknownCa => "upstream-cert-unknown-ca",
            ReasonCode::UpstreamCertRevoked => "upstream-cert-revoked",
            ReasonCode::UpstreamCertInvalid => "upstream-cert-invalid",
            ReasonCode::UpstreamTlsVersion => "upstream-tls-version",
            ReasonCode::UpstreamTls => "upstream-tls",
        }
    }

    pub fn is_block(self) -> bool {
        matches!(
            self,
            ReasonCode::RuleBlock
                | ReasonCode::DefaultBlock
                | ReasonCode::UploadBlocked
                | ReasonCode::UploadTunnelBlocked
                | ReasonCode::ContentBlocked
                | ReasonCode::FileTypeBlocked
                | ReasonCode::ContentUnchecked
                | ReasonCode::PortNotAllowed
                | ReasonCode::AuthRequired
                | ReasonCode::BadHost
                | ReasonCode::SniMismatch
                | ReasonCode::HostMismatch
                | ReasonCode::TlsRequired
                | ReasonCode::InternalDestination
                | ReasonCode::OwnListener
                | ReasonCode::MethodNotAllowed
                | ReasonCode::HeadTooLarge
        )
    }
}

/// Why: a code and the rule it came from (`None`: the policy's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub rule: Option<RuleIdx>,
}

impl Reason {
    pub fn new(code: ReasonCode, rule: Option<RuleIdx>) -> Reason {
        Reason { code, rule }
    }
}

const DEFAULT_BLOCK_FR: &str = "Site non autorisé : aucune règle ne l'ouvre et la politique le bloque par défaut (charte §6.3)";
const DEFAULT_BLOCK_EN: &str =
    "Site not allowed: no rule opens it and the policy blocks by default (charter §6.3)";
const TUNNEL_FR: &str = "Ce site n'est pas inspecté : le proxy ne peut pas distinguer la lecture de l'envoi de données, la connexion chiffrée est donc refusée en entier.";
const TUNNEL_EN: &str = "This site is not inspected: the proxy cannot tell reading from sending data, so the encrypted connection is refused as a whole.";

impl Policy {
    /// The text of a reason, for people, in their language.
    pub fn reason_text(&self, r: &Reason, lang: Lang) -> Cow<'_, str> {
        let en = lang == Lang::En;
        let rule = r.rule.map(|i| self.rule(i));
        let configured = match rule {
            Some(rule) => rule.reason.as_ref(),
            None => self.default.reason.as_ref(),
        };
        match r.code {
            ReasonCode::RuleAllow => match configured {
                Some(t) => Cow::Borrowed(t.get(lang)),
                None => {
                    let id = rule.map_or("", |r| &r.id);
                    Cow::Owned(if en {
                        format!("Allowed by rule \u{ab} {id} \u{bb}")
                    } else {
                        format!("Autorisé par la règle \u{ab} {id} \u{bb}")
                    })
                }
            },
            ReasonCode::DefaultAllow => Cow::Borrowed(match (configured, en) {
                (Some(t), _) => t.get(lang),
                (None, true) => "Allowed: no rule applies to this site",
                (None, false) => "Autorisé : aucune règle ne s'applique à ce site",
            }),
            ReasonCode::UploadReadAllowed => {
                let base = configured.map_or("", |t| t.get(lang));
                Cow::Owned(if en {
                    format!("Reading allowed; sending data is refused. {base}")
                } else {
                    format!("Lecture autorisée ; l'envoi de données est refusé. {base}")
                })
            }
            ReasonCode::ContentUnchecked => Cow::Borrowed(if en {
                "The data sent could not be checked against the charter (compressed beyond \
                 the proxy's bound, damaged, or in an encoding it does not read): it is \
                 refused rather than sent unread (charter §5.9 and §6.5)"
            } else {
                "Les données envoyées n'ont pas pu être vérifiées au regard de la charte \
                 (compressées au-delà de la limite du proxy, abîmées ou dans un codage qu'il \
                 ne lit pas) : elles sont refusées plutôt qu'envoyées sans contrôle (charte \
                 §5.9 et §6.5)"
            }),
            ReasonCode::RuleBlock
            | ReasonCode::UploadBlocked
            | ReasonCode::ContentBlocked
            | ReasonCode::FileTypeBlocked => Cow::Borrowed(configured.map_or("", |t| t.get(lang))),
            ReasonCode::DefaultBlock => Cow::Borrowed(match (configured, en) {
                (Some(t), _) => t.get(lang),
                (None, true) => DEFAULT_BLOCK_EN,
                (None, false) => DEFAULT_BLOCK_FR,
            }),
            ReasonCode::PortNotAllowed => Cow::Borrowed(if en {
                "This port is not allowed for encrypted connections through the proxy (charter §6.4: security tools must not be bypassed)"
            } else {
                "Ce port n'est pas autorisé pour les connexions chiffrées via le proxy (charte §6.4 : pas de contournement des outils de sécurité)"
            }),
            ReasonCode::AuthRequired => Cow::Borrowed(if en {
                "Identification required: sign in with your account to use the Internet (charter §4.8)"
            } else {
                "Identification requise : connectez-vous avec votre compte pour accéder à Internet (charte §4.8)"
            }),
            ReasonCode::BadHost => Cow::Borrowed(if en {
                "The address of the site is not valid"
            } else {
                "L'adresse du site n'est pas valide"
            }),
            ReasonCode::SniMismatch => Cow::Borrowed(if en {
                "The name announced to the proxy is not the one asked of the server (TLS SNI \
                 differs from CONNECT): a known way to slip past filters"
            } else {
                "Le nom annoncé au proxy n'est pas celui demandé au serveur (SNI TLS différent \
                 du CONNECT) : un moyen connu de contourner le filtrage"
            }),
            ReasonCode::HostMismatch => Cow::Borrowed(if en {
                "The request names another site than the one of the secure connection \
                 (Host differs from the TLS name)"
            } else {
                "La requête vise un autre site que celui de la connexion sécurisée (Host \
                 différent du nom TLS)"
            }),
            ReasonCode::TlsRequired => Cow::Borrowed(if en {
                "This connection must be inspected and does not use TLS: it cannot be checked \
                 against the charter"
            } else {
                "Cette connexion doit être inspectée et n'utilise pas TLS : elle ne peut pas \
                 être vérifiée au regard de la charte"
            }),
            ReasonCode::InternalDestination => Cow::Borrowed(if en {
                "This site is on the internal network: the proxy does not connect to internal \
                 addresses unless the policy opens them (internal_sites)"
            } else {
                "Ce site est sur le réseau interne : le proxy ne se connecte pas aux adresses \
                 internes que la politique n'ouvre pas (internal_sites)"
            }),
            ReasonCode::MethodNotAllowed => Cow::Borrowed(if en {
                "Method not relayed by the proxy: TRACE and TRACK would send the request back \
                 as it is (cookies and credentials included), and no tunnel is opened inside \
                 another one"
            } else {
                "Méthode non relayée par le proxy : TRACE et TRACK renverraient la requête \
                 telle quelle (cookies et identifiants compris), et aucun tunnel ne s'ouvre \
                 dans un autre"
            }),
            ReasonCode::HeadTooLarge => Cow::Borrowed(if en {
                "The request head (its address and header fields) is larger than the proxy \
                 accepts"
            } else {
                "L'en-tête de la requête (son adresse et ses champs) dépasse la taille que le \
                 proxy accepte"
            }),
            ReasonCode::UploadTunnelBlocked => {
                let base = configured.map_or("", |t| t.get(lang));
                Cow::Owned(format!("{base} {}", if en { TUNNEL_EN } else { TUNNEL_FR }))
            }
            ReasonCode::OwnListener => Cow::Borrowed(if en {
                "The proxy does not connect to itself"
            } else {
                "Le proxy ne se connecte pas à lui-même"
            }),
            ReasonCode::Loop => Cow::Borrowed(if en {
                "Loop detected: the request comes back to the proxy"
            } else {
                "Boucle détectée : la requête revient vers le proxy"
            }),
            // The exchange was allowed and ended otherwise: the page and the trace's
            // `error` say what happened; these words only name the kind.
            c => Cow::Owned(if en {
                format!("The exchange could not be completed ({})", c.as_str())
            } else {
                format!("L'échange n'a pas pu aboutir ({})", c.as_str())
            }),
        }
    }

    /// The id of the rule behind a reason, or `default`.
    pub fn reason_rule_id(&self, r: &Reason) -> &str {
        r.rule.map_or("default", |i| &self.rule(i).id)
    }
}

//! Reverse proxy configuration: `[[upstream]]` pools and `proxy = "pool"` locations.
//!
//! ```toml
//! [[upstream]]
//! name = "app"                       # required, unique; locations refer to it
//! members = ["127.0.0.1:8001", "http://app-2:8080", "https://api.example.com"]
//! balance = "round_robin"            # round_robin | weighted | least_conn | ip_hash |
//!                                    # consistent_hash | random_two
//! hash_key = "header:X-User"         # consistent_hash key: "path" (default), "header:NAME",
//!                                    # "cookie:NAME"
//! protocol = "http1"                 # http1 | h2 (TLS members, ALPN h2) | h2c (prior knowledge)
//! max_conns = 256                    # per member, default for members that set none
//! max_idle = 64                      # idle keep-alive connections kept per member
//! max_tries = 3                      # members tried for one request (failover)
//! retry_on = [502, 503, 504]         # member answers that count as failures and are retried
//! queue = 1024                       # requests waiting when every member is at max_conns
//! queue_timeout = "5s"               # then 503
//! connect_timeout = "3s"
//! send_timeout = "60s"               # longest pause while sending to the member
//! read_timeout = "60s"               # longest wait for the member's head or next body bytes
//! idle_timeout = "60s"               # idle pooled connections are closed after this
//! resolve_interval = "30s"           # host names are resolved again this often
//! tls_ca = "ca.pem"                  # https members: verify against this CA (default: webpki roots)
//! tls_verify = true                  # false skips certificate verification (testing only)
//! tls_server_name = "api.internal"   # SNI and verified name, default the member's host
//!
//! [[upstream.member]]                # the long form of a member
//! address = "10.0.0.5:8080"          # host:port or http(s)://host[:port]
//! weight = 2                         # 1..=1000, default 1
//! max_conns = 32
//! backup = true                      # only used when no other member is available
//!
//! [upstream.health]                  # active checks (off unless this table is present)
//! path = "/healthz"
//! method = "GET"
//! expect = 200                       # expected status; default: any 2xx or 3xx
//! interval = "2s"
//! timeout = "1s"
//! rise = 2                           # consecutive passes to come back
//! fall = 3                           # consecutive failures to go out
//!
//! [upstream.passive]                 # passive marking from live traffic
//! failures = 3                       # this many failures ...
//! window = "10s"                     # ... within this window take the member out ...
//! cooldown = "10s"                   # ... for this long; 0 failures disables
//!
//! [[vhost.location]]
//! path = "/api/"
//! proxy = "app"                      # instead of root
//! strip_prefix = true                # /api/x → /x
//! max_body = "0"                     # request body limit; 0 (default) = unlimited, streamed
//! forwarded = true                   # X-Forwarded-For/-Proto/-Host and Via (default true)
//! request_headers = { set = { "X-App" = "1" }, add = {}, remove = ["Cookie"] }
//! response_headers = { set = {}, add = {}, remove = ["Server"] }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ConfError;
use crate::source::Source;
use crate::units::parse_duration;

/// A named pool of members that proxy locations send requests to.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub members: Vec<Member>,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub protocol: UpstreamProtocol,
    /// Idle keep-alive connections kept per member.
    pub max_idle: usize,
    /// Members tried for one request, the first included.
    pub max_tries: usize,
    /// Member statuses treated as failures and retried (idempotent requests).
    pub retry_on: Vec<u16>,
    /// Requests that may wait for a connection when every member is at its cap.
    pub queue: usize,
    pub queue_timeout: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub resolve_interval: Duration,
    pub tls: UpstreamTls,
    pub health: Option<HealthCheck>,
    pub passive: PassiveHealth,
}

/// One configured member; a host name may stand for several addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `https://`: TLS to the member.
    pub tls: bool,
    pub weight: u32,
    pub max_conns: usize,
    pub backup: bool,
}

impl Member {
    /// `host:port` as written in a `Host` header or an error message.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    Weighted,
    LeastConn,
    IpHash,
    ConsistentHash,
    RandomTwo,
}

impl Balance {
    pub fn parse(text: &str) -> Result<Balance, String> {
        Ok(match text {
            "round_robin" => Balance::RoundRobin,
            "weighted" => Balance::Weighted,
            "least_conn" => Balance::LeastConn,
            "ip_hash" => Balance::IpHash,
            "consistent_hash" => Balance::ConsistentHash,
            "random_two" => Balance::RandomTwo,
            other => {
                return Err(format!(
                    "unknown policy {other:?}, expected round_robin, weighted, least_conn, \
                     ip_hash, consistent_hash or random_two"
                ));
            }
        })
    }
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    #[default]
    Path,
    Header(String),
    Cookie(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: over TLS for `https://` members, prior knowledge (h2c) otherwise.
    H2,
    H2c,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Verify against this CA bundle instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub method: String,
    pub path: String,
    /// `None`: any 2xx or 3xx passes.
    pub expect: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealth {
    /// 0 disables passive marking.
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(10),
        }
    }
}

impl Upstream {
    /// A pool with every setting at its default (the `proxy` command's pool).
    pub fn with_members(name: &str, members: Vec<Member>) -> Upstream {
        Upstream {
            name: name.to_owned(),
            members,
            balance: Balance::default(),
            hash_key: HashKey::default(),
            protocol: UpstreamProtocol::default(),
            max_idle: 64,
            max_tries: 3,
            retry_on: vec![502, 503, 504],
            queue: 1024,
            queue_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            resolve_interval: Duration::from_secs(30),
            tls: UpstreamTls {
                ca_file: None,
                verify: true,
                server_name: None,
            },
            health: None,
            passive: PassiveHealth::default(),
        }
    }
}

pub const DEFAULT_MAX_CONNS: usize = 256;

/// Parse `host:port`, `[v6]:port`, `http://host[:port]` or `https://host[:port]` (a path is
/// refused: locations decide paths).
pub fn parse_member(text: &str) -> Result<Member, String> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else if text.contains("://") {
        return Err(format!(
            "{text:?}: only http:// and https:// members are supported"
        ));
    } else {
        (false, text)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(format!(
            "{text:?}: a member is host:port or a URL without a path"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let has_scheme = text.contains("://");
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!("{text:?}: unclosed '['"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => p.to_owned(),
            None if after.is_empty() && has_scheme => default_port.to_string(),
            None => return Err(format!("{text:?}: missing :port")),
        };
        (host.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.to_owned()),
            None if has_scheme => (rest.to_owned(), default_port.to_string()),
            None => return Err(format!("{text:?}: missing :port (or write http://{text})")),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: missing host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?}: invalid port {port:?}"))?;
    Ok(Member {
        host,
        port,
        tls,
        weight: 1,
        max_conns: DEFAULT_MAX_CONNS,
        backup: false,
    })
}

/// A location that proxies to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyLocation {
    pub upstream: String,
    pub strip_prefix: bool,
    /// Request body limit in bytes; `None` is unlimited (streamed either way).
    pub max_body: Option<u64>,
    pub forwarded: bool,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
}

impl ProxyLocation {
    pub fn new(upstream: &str) -> ProxyLocation {
        ProxyLocation {
            upstream: upstream.to_owned(),
            strip_prefix: false,
            max_body: None,
            forwarded: true,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
        }
    }
}

/// Header rewrites, applied in the order remove, set, add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdits {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Raw (as written)

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub name: Option<Spanned<String>>,
    pub members: Option<Vec<Spanned<String>>>,
    pub member: Option<Vec<Spanned<RawMember>>>,
    pub balance: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub max_conns: Option<Spanned<i64>>,
    pub max_idle: Option<Spanned<i64>>,
    pub max_tries: Option<Spanned<i64>>,
    pub retry_on: Option<Vec<Spanned<i64>>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub resolve_interval: Option<Spanned<String>>,
    pub tls_ca: Option<Spanned<String>>,
    pub tls_verify: Option<bool>,
    pub tls_server_name: Option<Spanned<String>>,
    pub health: Option<Spanned<RawHealth>>,
    pub passive: Option<Spanned<RawPassive>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub max_conns: Option<Spanned<i64>>,
    pub backup: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub expect: Option<Spanned<i64>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassive {
    pub failures: Option<Spanned<i64>>,
    pub window: Option<Spanned<String>>,
    pub cooldown: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderEdits {
    pub set: Option<BTreeMap<String, Spanned<String>>>,
    pub add: Option<BTreeMap<String, Spanned<String>>>,
    pub remove: Option<Vec<Spanned<String>>>,
}

/// The proxy keys of a `[[vhost.location]]`.
#[derive(Debug, Default)]
pub(crate) struct RawProxyLocation<'a> {
    pub proxy: Option<&'a Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub max_body: Option<&'a Spanned<crate::raw::RawSize>>,
    pub forwarded: Option<bool>,
    pub request_headers: Option<&'a Spanned<RawHeaderEdits>>,
    pub response_headers: Option<&'a Spanned<RawHeaderEdits>>,
}

// ---------------------------------------------------------------------------------------------
// Validation

fn err<T>(source: &Source, item: &Spanned<T>, key: &str, msg: impl std::fmt::Display) -> ConfError {
    source.error(item.span(), key, msg)
}

fn positive(source: &Source, item: &Spanned<i64>, key: &str, max: i64) -> Result<i64, ConfError> {
    let v = *item.get_ref();
    if v < 1 || v > max {
        return Err(err(source, item, key, format_args!("must be 1..={max}")));
    }
    Ok(v)
}

fn dur(
    source: &Source,
    item: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfError> {
    let Some(item) = item else {
        return Ok(default);
    };
    let d = parse_duration(item.get_ref()).map_err(|e| err(source, item, key, e))?;
    if d.is_zero() && !zero_ok {
        return Err(err(source, item, key, "must be greater than 0"));
    }
    Ok(d)
}

/// Every `[[upstream]]` of every file, in order. Names are unique.
pub(crate) fn upstreams(sources: &[Source], base: &Path) -> Result<Vec<Upstream>, ConfError> {
    let mut out: Vec<Upstream> = Vec::new();
    let mut i = 0;
    for source in sources {
        for item in source.raw.upstream.iter().flatten() {
            let up = upstream(source, item, &format!("upstream[{i}]"), base)?;
            if out.iter().any(|u| u.name == up.name) {
                let name = item.get_ref().name.as_ref().expect("checked by upstream()");
                return Err(err(
                    source,
                    name,
                    &format!("upstream[{i}].name"),
                    format_args!("duplicate upstream {:?}", up.name),
                ));
            }
            out.push(up);
            i += 1;
        }
    }
    Ok(out)
}

fn upstream(
    source: &Source,
    item: &Spanned<RawUpstream>,
    key: &str,
    base: &Path,
) -> Result<Upstream, ConfError> {
    let raw = item.get_ref();
    let Some(name) = &raw.name else {
        return Err(err(source, item, &format!("{key}.name"), "missing"));
    };
    if name.get_ref().is_empty() {
        return Err(err(
            source,
            name,
            &format!("{key}.name"),
            "must not be empty",
        ));
    }
    let default_conns = match &raw.max_conns {
        Some(n) => positive(source, n, &format!("{key}.max_conns"), 1 << 20)? as usize,
        None => DEFAULT_MAX_CONNS,
    };
    let mut members = Vec::new();
    for (n, m) in raw.members.iter().flatten().enumerate() {
        let mut member = parse_member(m.get_ref())
            .map_err(|e| err(source, m, &format!("{key}.members[{n}]"), e))?;
        member.max_conns = default_conns;
        members.push(member);
    }
    for (n, m) in raw.member.iter().flatten().enumerate() {
        let k = format!("{key}.member[{n}]");
        let rm = m.get_ref();
        let Some(address) = &rm.address else {
            return Err(err(source, m, &format!("{k}.address"), "missing"));
        };
        let mut member = parse_member(address.get_ref())
            .map_err(|e| err(source, address, &format!("{k}.address"), e))?;
        member.max_conns = default_conns;
        if let Some(w) = &rm.weight {
            member.weight = positive(source, w, &format!("{k}.weight"), 1000)? as u32;
        }
        if let Some(c) = &rm.max_conns {
            member.max_conns = positive(source, c, &format!("{k}.max_conns"), 1 << 20)? as usize;
        }
        member.backup = rm.backup.unwrap_or(false);
        members.push(member);
    }
    if members.is_empty() {
        return Err(err(
            source,
            item,
            &format!("{key}.members"),
            "at least one member is required",
        ));
    }
    let mut up = Upstream::with_members(name.get_ref(), members);
    if let Some(b) = &raw.balance {
        up.balance = Balance::parse(b.get_ref())
            .map_err(|e| err(source, b, &format!("{key}.balance"), e))?;
    }
    if let Some(h) = &raw.hash_key {
        let text = h.get_ref();
        up.hash_key = if text == "path" {
            HashKey::Path
        } else if let Some(name) = text.strip_prefix("header:").filter(|n| !n.is_empty()) {
            if http_name(name).is_none() {
                return Err(err(
                    source,
                    h,
                    &format!("{key}.hash_key"),
                    "invalid header name",
                ));
            }
            HashKey::Header(name.to_ascii_lowercase())
        } else if let Some(name) = text.strip_prefix("cookie:").filter(|n| !n.is_empty()) {
            HashKey::Cookie(name.to_owned())
        } else {
            return Err(err(
                source,
                h,
                &format!("{key}.hash_key"),
                "expected \"path\", \"header:NAME\" or \"cookie:NAME\"",
            ));
        };
    }
    if let Some(p) = &raw.protocol {
        up.protocol = match p.get_ref().as_str() {
            "http1" => UpstreamProtocol::Http1,
            "h2" => UpstreamProtocol::H2,
            "h2c" => UpstreamProtocol::H2c,
            other => {
                return Err(err(
                    source,
                    p,
                    &format!("{key}.protocol"),
                    format_args!("unknown protocol {other:?}, expected http1, h2 or h2c"),
                ));
            }
        };
    }
    if let Some(n) = &raw.max_idle {
        let v = *n.get_ref();
        if !(0..=1 << 20).contains(&v) {
            return Err(err(
                source,
                n,
                &format!("{key}.max_idle"),
                "must be 0..=1048576",
            ));
        }
        up.max_idle = v as usize;
    }
    if let Some(n) = &raw.max_tries {
        up.max_tries = positive(source, n, &format!("{key}.max_tries"), 100)? as usize;
    }
    if let Some(list) = &raw.retry_on {
        up.retry_on = Vec::new();
        for (n, s) in list.iter().enumerate() {
            let v = *s.get_ref();
            if !(500..=599).contains(&v) {
                return Err(err(
                    source,
                    s,
                    &format!("{key}.retry_on[{n}]"),
                    "must be a 5xx status",
                ));
            }
            up.retry_on.push(v as u16);
        }
    }
    if let Some(n) = &raw.queue {
        let v = *n.get_ref();
        if !(0..=1 << 24).contains(&v) {
            return Err(err(
                source,
                n,
                &format!("{key}.queue"),
                "must be 0..=16777216",
            ));
        }
        up.queue = v as usize;
    }
    up.queue_timeout = dur(
        source,
        raw.queue_timeout.as_ref(),
        &format!("{key}.queue_timeout"),
        up.queue_timeout,
        false,
    )?;
    up.connect_timeout = dur(
        source,
        raw.connect_timeout.as_ref(),
        &format!("{key}.connect_timeout"),
        up.connect_timeout,
        false,
    )?;
    up.send_timeout = dur(
        source,
        raw.send_timeout.as_ref(),
        &format!("{key}.send_timeout"),
        up.send_timeout,
        false,
    )?;
    up.read_timeout = dur(
        source,
        raw.read_timeout.as_ref(),
        &format!("{key}.read_timeout"),
        up.read_timeout,
        false,
    )?;
    up.idle_timeout = dur(
        source,
        raw.idle_timeout.as_ref(),
        &format!("{key}.idle_timeout"),
        up.idle_timeout,
        false,
    )?;
    up.resolve_interval = dur(
        source,
        raw.resolve_interval.as_ref(),
        &format!("{key}.resolve_interval"),
        up.resolve_interval,
        false,
    )?;
    if let Some(ca) = &raw.tls_ca {
        let path = base.join(ca.get_ref());
        if !path.is_file() {
            return Err(err(
                source,
                ca,
                &format!("{key}.tls_ca"),
                format_args!("{} is not a file", path.display()),
            ));
        }
        up.tls.ca_file = Some(path);
    }
    if let Some(v) = raw.tls_verify {
        up.tls.verify = v;
    }
    if let Some(sni) = &raw.tls_server_name {
        if rustls_name_ok(sni.get_ref()).is_none() {
            return Err(err(
                source,
                sni,
                &format!("{key}.tls_server_name"),
                "not a DNS name or IP address",
            ));
        }
        up.tls.server_name = Some(sni.get_ref().clone());
    }
    if let Some(h) = &raw.health {
        let k = format!("{key}.health");
        let rh = h.get_ref();
        let path = rh
            .path
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') {
            let p = rh.path.as_ref().expect("not the default");
            return Err(err(
                source,
                p,
                &format!("{k}.path"),
                "must start with \"/\"",
            ));
        }
        let method = rh
            .method
            .as_ref()
            .map(|m| m.get_ref().clone())
            .unwrap_or_else(|| "GET".to_owned());
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            let m = rh.method.as_ref().expect("not the default");
            return Err(err(
                source,
                m,
                &format!("{k}.method"),
                "must be an upper-case method name",
            ));
        }
        let expect = match &rh.expect {
            Some(e) => {
                let v = *e.get_ref();
                if !(100..=599).contains(&v) {
                    return Err(err(
                        source,
                        e,
                        &format!("{k}.expect"),
                        "must be a status 100..=599",
                    ));
                }
                Some(v as u16)
            }
            None => None,
        };
        up.health = Some(HealthCheck {
            method,
            path,
            expect,
            interval: dur(
                source,
                rh.interval.as_ref(),
                &format!("{k}.interval"),
                Duration::from_secs(2),
                false,
            )?,
            timeout: dur(
                source,
                rh.timeout.as_ref(),
                &format!("{k}.timeout"),
                Duration::from_secs(1),
                false,
            )?,
            rise: match &rh.rise {
                Some(n) => positive(source, n, &format!("{k}.rise"), 1000)? as u32,
                None => 2,
            },
            fall: match &rh.fall {
                Some(n) => positive(source, n, &format!("{k}.fall"), 1000)? as u32,
                None => 3,
            },
        });
    }
    if let Some(p) = &raw.passive {
        let k = format!("{key}.passive");
        let rp = p.get_ref();
        if let Some(f) = &rp.failures {
            let v = *f.get_ref();
            if !(0..=1_000_000).contains(&v) {
                return Err(err(
                    source,
                    f,
                    &format!("{k}.failures"),
                    "must be 0..=1000000",
                ));
            }
            up.passive.failures = v as u32;
        }
        up.passive.window = dur(
            source,
            rp.window.as_ref(),
            &format!("{k}.window"),
            up.passive.window,
            false,
        )?;
        up.passive.cooldown = dur(
            source,
            rp.cooldown.as_ref(),
            &format!("{k}.cooldown"),
            up.passive.cooldown,
            false,
        )?;
    }
    Ok(up)
}

fn http_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(())
}

fn rustls_name_ok(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':')))
    .then_some(())
}

fn edits(
    source: &Source,
    item: Option<&Spanned<RawHeaderEdits>>,
    key: &str,
) -> Result<HeaderEdits, ConfError> {
    let mut out = HeaderEdits::default();
    let Some(item) = item else {
        return Ok(out);
    };
    let raw = item.get_ref();
    for (what, map, into) in [
        ("set", &raw.set, &mut out.set),
        ("add", &raw.add, &mut out.add),
    ] {
        for (name, value) in map.iter().flatten() {
            if http_name(name).is_none() {
                return Err(err(
                    source,
                    value,
                    &format!("{key}.{what}"),
                    format_args!("{name:?} is not a header name"),
                ));
            }
            if value
                .get_ref()
                .bytes()
                .any(|b| b == b'\r' || b == b'\n' || b == 0)
            {
                return Err(err(
                    source,
                    value,
                    &format!("{key}.{what}.{name}"),
                    "must not contain CR, LF or NUL",
                ));
            }
            into.push((name.to_ascii_lowercase(), value.get_ref().clone()));
        }
    }
    for (n, name) in raw.remove.iter().flatten().enumerate() {
        if http_name(name.get_ref()).is_none() {
            return Err(err(
                source,
                name,
                &format!("{key}.remove[{n}]"),
                "not a header name",
            ));
        }
        out.remove.push(name.get_ref().to_ascii_lowercase());
    }
    Ok(out)
}

/// The proxy handler of one location; `upstreams` are the validated pools it may name.
pub(crate) fn proxy_location(
    source: &Source,
    raw: &RawProxyLocation<'_>,
    key: &str,
    upstreams: &[Upstream],
) -> Result<ProxyLocation, ConfError> {
    let proxy = raw.proxy.expect("called for proxy locations");
    if !upstreams.iter().any(|u| &u.name == proxy.get_ref()) {
        return Err(err(
            source,
            proxy,
            &format!("{key}.proxy"),
            format_args!("no [[upstream]] named {:?}", proxy.get_ref()),
        ));
    }
    let mut loc = ProxyLocation::new(proxy.get_ref());
    loc.strip_prefix = raw.strip_prefix.unwrap_or(false);
    loc.forwarded = raw.forwarded.unwrap_or(true);
    if let Some(size) = raw.max_body {
        let v = size
            .get_ref()
            .bytes()
            .map_err(|e| err(source, size, &format!("{key}.max_body"), e))?;
        loc.max_body = (v > 0).then_some(v);
    }
    loc.request_headers = edits(
        source,
        raw.request_headers,
        &format!("{key}.request_headers"),
    )?;
    loc.response_headers = edits(
        source,
        raw.response_headers,
        &format!("{key}.response_headers"),
    )?;
    Ok(loc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Upstream>, ConfError> {
        let source = Source::parse("t.toml".into(), text.to_owned())?;
        upstreams(&[source], Path::new("/"))
    }

    #[test]
    fn a_full_upstream_parses() {
        let ups = parse(
            r#"
[[upstream]]
name = "app"
members = ["127.0.0.1:1", "https://example.com"]
balance = "consistent_hash"
hash_key = "header:X-User"
protocol = "h2"
max_conns = 8
max_tries = 2
retry_on = [502]
queue = 3
queue_timeout = "250ms"
[[upstream.member]]
address = "10.0.0.1:80"
weight = 4
backup = true
[upstream.health]
path = "/hz"
expect = 204
rise = 1
fall = 5
[upstream.passive]
failures = 0
"#,
        )
        .expect("valid");
        let up = &ups[0];
        assert_eq!(up.members.len(), 3);
        assert!(up.members[1].tls && up.members[1].port == 443);
        assert_eq!((up.members[2].weight, up.members[2].backup), (4, true));
        assert!(up.members.iter().all(|m| m.max_conns == 8));
        assert_eq!(up.balance, Balance::ConsistentHash);
        assert_eq!(up.hash_key, HashKey::Header("x-user".into()));
        assert_eq!(up.protocol, UpstreamProtocol::H2);
        assert_eq!((up.max_tries, up.queue), (2, 3));
        assert_eq!(up.retry_on, vec![502]);
        assert_eq!(up.queue_timeout, Duration::from_millis(250));
        let health = up.health.as_ref().expect("health");
        assert_eq!(
            (
                health.path.as_str(),
                health.expect,
                health.rise,
                health.fall
            ),
            ("/hz", Some(204), 1, 5)
        );
        assert_eq!(up.passive.failures, 0);
    }

    #[test]
    fn mistakes_name_the_key_and_position() {
        let cases = [
            ("[[upstream]]\nmembers = [\"a:1\"]", "upstream[0].name"),
            ("[[upstream]]\nname = \"x\"", "upstream[0].members"),
            (
                "[[upstream]]\nname = \"x\"\nmembers = [\"a:1\"]\nretry_on = [404]",
                "upstream[0].retry_on[0]",
            ),
            (
                "[[upstream]]\nname = \"x\"\nmembers = [\"a:1\"]\nhash_key = \"ip\"",
                "upstream[0].hash_key",
            ),
            (
                "[[upstream]]\nname = \"x\"\nmembers = [\"a:1\"]\n[[upstream]]\nname = \"x\"\nmembers = [\"a:1\"]",
                "duplicate upstream",
            ),
            (
                "[[upstream]]\nname = \"x\"\nmembers = [\"a:1\"]\nqueue_timeout = \"0s\"",
                "upstream[0].queue_timeout",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want) && e.starts_with("t.toml:"), "{text}: {e}");
        }
    }

    #[test]
    fn members_parse() {
        let m = parse_member("127.0.0.1:8080").expect("valid");
        assert_eq!((m.host.as_str(), m.port, m.tls), ("127.0.0.1", 8080, false));
        let m = parse_member("https://api.example.com").expect("valid");
        assert_eq!(
            (m.host.as_str(), m.port, m.tls),
            ("api.example.com", 443, true)
        );
        let m = parse_member("http://[::1]:81/").expect("valid");
        assert_eq!((m.host.as_str(), m.port), ("::1", 81));
        assert_eq!(m.authority(), "[::1]:81");
        assert!(parse_member("example.com").is_err());
        assert!(parse_member("http://x/path").is_err());
        assert!(parse_member("ftp://x").is_err());
        assert!(parse_member("x:0").is_err());
    }
}

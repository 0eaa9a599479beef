//! Hipache's route table layout in Redis, as plain functions: key names, wildcard candidates,
//! the parsed route, keyspace notification channels and the `notify-keyspace-events` flags.
//!
//! # Layout (Hipache 0.3+, redis driver)
//!
//! * `<prefix>frontend:<name>` — a **list**: the first element is an identifier (a label for
//!   humans, unused for routing), the rest backend URLs: `RPUSH frontend:www.example.com mysite
//!   http://10.0.0.1:8080 http://10.0.0.2:8080`.
//! * `<name>` is a host without port, lowercase, or a wildcard `*.example.com` that matches any
//!   host below `example.com` (the most specific wildcard wins; an exact name wins over all),
//!   or `*` alone, Hipache's catch-all, tried last.
//! * `<prefix>dead:<host>` — a **set** of the 0-based positions, among the backends (the
//!   identifier not counted), of backends marked dead for requests to `<host>`, the request's
//!   host even when a wildcard frontend matched (that is what Hipache reads and writes). Its
//!   health logic writes it with `SADD` and `EXPIRE` (`deadBackendTTL`, 30 s by default) and
//!   announces it with `PUBLISH dead "<host>;<url>;<index>;<count>"`; we do the same, so
//!   instances sharing one Redis agree on which backends are out. As an extension, a set named
//!   after a wildcard frontend (`dead:*.example.com`) applies to every host it serves.

use std::fmt;

/// Key names under one prefix and database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    db: u32,
}

/// What a keyspace notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// `frontend:<name>` changed.
    Frontend(String),
    /// `dead:<name>` changed.
    Dead(String),
}

impl Keys {
    pub fn new(prefix: &str, db: u32) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            db,
        }
    }

    pub fn frontend(&self, name: &str) -> String {
        format!("{}frontend:{name}", self.prefix)
    }

    pub fn dead(&self, name: &str) -> String {
        format!("{}dead:{name}", self.prefix)
    }

    /// The keyspace channels to `PSUBSCRIBE` to. Glob characters in the prefix are escaped.
    pub fn patterns(&self) -> [String; 2] {
        let prefix = glob_escape(&self.prefix);
        [
            format!("__keyspace@{}__:{prefix}frontend:*", self.db),
            format!("__keyspace@{}__:{prefix}dead:*", self.db),
        ]
    }

    /// Which route a notification on `channel` is about, if it is one of ours.
    pub fn changed(&self, channel: &str) -> Option<Changed> {
        let key = channel.strip_prefix(&format!("__keyspace@{}__:", self.db))?;
        let key = key.strip_prefix(&self.prefix)?;
        if let Some(name) = key.strip_prefix("frontend:") {
            return Some(Changed::Frontend(name.to_owned()));
        }
        key.strip_prefix("dead:")
            .map(|name| Changed::Dead(name.to_owned()))
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A request's host as a frontend name: lowercase, without port (IPv6 brackets kept).
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.');
    let without_port = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.to_ascii_lowercase()
}

/// The frontend names to try for `host` (already normalised), best first: the host itself,
/// then `*.<parent>` for each parent domain with at least two labels, most specific first,
/// then the catch-all `*`: `a.b.example.com` → `a.b.example.com`, `*.b.example.com`,
/// `*.example.com`, `*`.
pub fn candidates(host: &str) -> Vec<String> {
    let mut out = vec![host.to_owned()];
    let address = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        if address || !parent.contains('.') {
            break; // addresses have no parent domains; never `*.com`
        }
        out.push(format!("*.{parent}"));
        rest = parent;
    }
    out.push("*".to_owned());
    out
}

/// One host's route: its frontend's backends, with the dead marks applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The (normalised) host looked up: the name of its `dead:` set.
    pub host: String,
    /// The frontend name that matched (`www.example.com` or `*.example.com`).
    pub frontend: String,
    /// The list's first element.
    pub identifier: String,
    pub backends: Vec<Backend>,
}

/// One backend of a [`Route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Position among the backends (the `dead:` set's member for it).
    pub index: usize,
    pub url: String,
    /// Listed in the frontend's `dead:` set.
    pub dead: bool,
}

impl Route {
    /// Build from a `frontend:` list (`LRANGE 0 -1`) and the members of the `dead:` sets that
    /// apply. `None` when the list has no backend (absent key, or only an identifier).
    pub fn parse(host: &str, frontend: &str, list: &[String], dead: &[String]) -> Option<Route> {
        let (identifier, urls) = list.split_first()?;
        if urls.is_empty() {
            return None;
        }
        let dead: Vec<usize> = dead.iter().filter_map(|d| d.trim().parse().ok()).collect();
        Some(Route {
            host: host.to_owned(),
            frontend: frontend.to_owned(),
            identifier: identifier.clone(),
            backends: urls
                .iter()
                .enumerate()
                .map(|(index, url)| Backend {
                    index,
                    url: url.clone(),
                    dead: dead.contains(&index),
                })
                .collect(),
        })
    }

    /// Backends not marked dead, in list order.
    pub fn alive(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().filter(|b| !b.dead)
    }

    /// What Hipache publishes on the `dead` channel when `backend` is marked dead.
    pub fn dead_announcement(&self, backend: &Backend) -> String {
        format!(
            "{};{};{};{}",
            self.host,
            backend.url,
            backend.index,
            self.backends.len()
        )
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {} ({}):",
            self.host, self.frontend, self.identifier
        )?;
        for b in &self.backends {
            write!(f, " {}{}", b.url, if b.dead { " (dead)" } else { "" })?;
        }
        Ok(())
    }
}

/// The event classes the keyspace notifications must include: `K` (keyspace channel), `g`
/// (DEL, EXPIRE, RENAME), `l` (lists), `s` (sets), `x` (expired keys). `A` stands for
/// `g$lshzxetd` (Redis's `notify-keyspace-events` syntax).
const NEEDED: [char; 4] = ['g', 'l', 's', 'x'];

/// The `notify-keyspace-events` value that keeps what the server has and adds what routes
/// need, or `None` when `current` already has it all.
pub fn notify_flags(current: &str) -> Option<String> {
    let has = |c: char| current.contains(c) || (c != 'K' && c != 'E' && current.contains('A'));
    let keyspace = current.contains('K');
    let missing: Vec<char> = NEEDED.iter().copied().filter(|&c| !has(c)).collect();
    if keyspace && missing.is_empty() {
        return None;
    }
    let mut flags = current.to_owned();
    if !keyspace {
        flags.push('K');
    }
    flags.extend(missing);
    Some(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hosts_and_candidates() {
        let cases = [
            ("WWW.Example.com:8080", "www.example.com"),
            ("example.com.", "example.com"),
            ("[::1]:443", "[::1]"),
            ("10.0.0.1:80", "10.0.0.1"),
            ("localhost", "localhost"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
        assert_eq!(
            candidates("a.b.example.com"),
            ["a.b.example.com", "*.b.example.com", "*.example.com", "*"]
        );
        assert_eq!(candidates("example.com"), ["example.com", "*"]);
        assert_eq!(
            candidates("www.example.com"),
            ["www.example.com", "*.example.com", "*"]
        );
        assert_eq!(candidates("localhost"), ["localhost", "*"]);
        assert_eq!(candidates("10.0.0.1"), ["10.0.0.1", "*"]);
        assert_eq!(candidates("[::1]"), ["[::1]", "*"]);
    }

    #[test]
    fn keys_and_channels() {
        let keys = Keys::new("hip:", 3);
        assert_eq!(keys.frontend("a.test"), "hip:frontend:a.test");
        assert_eq!(keys.dead("*.test"), "hip:dead:*.test");
        assert_eq!(
            keys.patterns(),
            ["__keyspace@3__:hip:frontend:*", "__keyspace@3__:hip:dead:*"]
        );
        assert_eq!(
            keys.changed("__keyspace@3__:hip:frontend:*.a.test"),
            Some(Changed::Frontend("*.a.test".into()))
        );
        assert_eq!(
            keys.changed("__keyspace@3__:hip:dead:a.test"),
            Some(Changed::Dead("a.test".into()))
        );
        assert_eq!(keys.changed("__keyspace@0__:hip:frontend:a.test"), None);
        assert_eq!(keys.changed("__keyspace@3__:other:frontend:a.test"), None);
        assert_eq!(
            Keys::new("a*[b]", 0).patterns()[0],
            "__keyspace@0__:a\\*\\[b\\]frontend:*"
        );
    }

    #[test]
    fn routes_from_lists_and_dead_sets() {
        let list = strings(&["mysite", "http://a:1", "http://b:2", "http://c:3"]);
        let route =
            Route::parse("a.x.test", "*.x.test", &list, &strings(&["1", "junk", "9"])).unwrap();
        assert_eq!(route.identifier, "mysite");
        let alive: Vec<&str> = route.alive().map(|b| b.url.as_str()).collect();
        assert_eq!(alive, ["http://a:1", "http://c:3"]);
        assert!(route.backends[1].dead);
        assert_eq!(
            route.dead_announcement(&route.backends[2]),
            "a.x.test;http://c:3;2;3"
        );
        assert_eq!(Route::parse("h", "h", &[], &[]), None);
        assert_eq!(Route::parse("h", "h", &strings(&["only-id"]), &[]), None);
    }

    #[test]
    fn keyspace_flags() {
        let cases = [
            ("", Some("Kglsx")),
            ("KA", None),
            ("AK", None),
            ("Kglsx", None),
            ("Ex", Some("ExKgls")),
            ("KEA", None),
            ("Kl", Some("Klgsx")),
            ("A", Some("AK")),
        ];
        for (current, want) in cases {
            assert_eq!(notify_flags(current).as_deref(), want, "{current:?}");
        }
    }
}

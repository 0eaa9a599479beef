//! `[cache]`, a location's `cache` switch and `[redis_routes]` as an operator meets them.

use super::*;
use ipnet::IpNet;

/// A site whose only location opts into the cache.
const CACHED_SITE: &str =
    "[[vhost]]\n[[vhost.location]]\npath = \"/\"\nroot = \"www\"\ncache = true\n";

#[test]
fn no_section_means_no_cache_and_no_redis() {
    let (_dir, config) = load_one(SITE);
    let config = config.unwrap();
    assert_eq!(config.cache, CacheConfig::default());
    assert!(!config.cache.enabled);
    assert!(!config.vhosts[0].locations[0].cache);
    assert_eq!(config.redis_routes, None);
}

#[test]
fn every_cache_key_is_parsed() {
    let text = format!(
        r#"
[cache]
memory_size = "2MiB"
disk_dir = "var/cache"
disk_size = "10MB"
max_object_size = 4096
default_ttl = "30s"
heuristic_max_ttl = "0s"
purge_allow = ["10.1.2.3/8", "::1", "192.0.2.7"]
lock_timeout = "250ms"
{CACHED_SITE}"#
    );
    let (dir, config) = load_one(&text);
    let config = config.unwrap();
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        config.cache,
        CacheConfig {
            enabled: true,
            memory_size: 2 << 20,
            disk: Some(DiskTier {
                dir: base.join("var/cache"),
                max_size: 10_000_000,
            }),
            max_object_size: 4096,
            default_ttl: Duration::from_secs(30),
            heuristic_max_ttl: Duration::ZERO,
            purge_allow: ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]
                .iter()
                .map(|n| n.parse::<IpNet>().unwrap())
                .collect(),
            lock_timeout: Duration::from_millis(250),
        }
    );
    assert!(config.vhosts[0].locations[0].cache);
}

#[test]
fn purge_allow_matches_addresses_and_mapped_v4() {
    let (_dir, config) = load_one(&format!(
        "[cache]\npurge_allow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n{SITE}"
    ));
    let cache = config.unwrap().cache;
    let cases = [
        ("10.9.8.7", true),
        ("11.0.0.1", false),
        ("127.0.0.1", false),
        ("2001:db8::1", true),
        ("2001:db9::1", false),
        ("::ffff:10.1.1.1", true),
    ];
    for (addr, allowed) in cases {
        assert_eq!(cache.may_purge(addr.parse().unwrap()), allowed, "{addr}");
    }
    // The default lets only loopback purge.
    let default = CacheConfig::default();
    assert!(default.may_purge("127.0.0.1".parse().unwrap()));
    assert!(default.may_purge("::1".parse().unwrap()));
    assert!(!default.may_purge("192.0.2.1".parse().unwrap()));
}

#[test]
fn a_disk_dir_alone_gets_the_default_size() {
    let (_dir, config) = load_one(&format!("[cache]\ndisk_dir = \"c\"\n{SITE}"));
    assert_eq!(config.unwrap().cache.disk.unwrap().max_size, 1 << 30);
}

#[test]
fn cache_errors_name_key_and_position() {
    let cases: &[(&str, &str)] = &[
        (
            "[cache]\nmemory_size = 0\n",
            "DIR/sy.toml:2:15: cache.memory_size: must be greater than 0",
        ),
        (
            "[cache]\nmax_object_size = \"1m\"\n",
            "DIR/sy.toml:2:19: cache.max_object_size: invalid size \"1m\": ambiguous unit \"m\", write MiB (powers of 1024) or MB (powers of 1000)",
        ),
        (
            "[cache]\ndisk_size = \"1GiB\"\n",
            "DIR/sy.toml:2:13: cache.disk_size: needs cache.disk_dir (the directory of the disk tier)",
        ),
        (
            "[cache]\ndisk_dir = \"\"\n",
            "DIR/sy.toml:2:12: cache.disk_dir: must not be empty",
        ),
        (
            "[cache]\ndisk_dir = \"sy.toml\"\n",
            "DIR/sy.toml:2:12: cache.disk_dir: DIR/sy.toml is not a directory",
        ),
        (
            "[cache]\npurge_allow = [\"::1\", \"10.0.0.0/33\"]\n",
            "DIR/sy.toml:2:23: cache.purge_allow[1]: \"10.0.0.0/33\" is not an address or a CIDR block (e.g. \"10.0.0.0/8\", \"::1\")",
        ),
        (
            "[cache]\nlock_timeout = \"0s\"\n",
            "DIR/sy.toml:2:16: cache.lock_timeout: must be greater than 0",
        ),
        (
            "[cache]\ndefault_ttl = \"soon\"\n",
            "DIR/sy.toml:2:15: cache.default_ttl: invalid duration \"soon\": expected number at 0 (write e.g. \"10s\", \"500ms\", \"2m\")",
        ),
        (
            "[cache]\nsize = 1\n",
            "DIR/sy.toml:2:1: unknown field `size`, expected one of `enabled`, `memory_size`, `disk_dir`, `disk_size`, `max_object_size`, `default_ttl`, `heuristic_max_ttl`, `purge_allow`, `lock_timeout`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&error_of(&format!("{text}{SITE}")), want, "{text}");
    }
}

#[test]
fn a_cached_location_needs_the_cache() {
    let want = "DIR/sy.toml:5:9: vhost[0].location[0].cache: the cache is not enabled: add a [cache] section (or remove enabled = false)";
    assert_eq!(error_of(CACHED_SITE), want);
    let disabled = format!("[cache]\nenabled = false\n{CACHED_SITE}");
    assert_eq!(
        error_of(&disabled),
        want.replace("sy.toml:5:9", "sy.toml:7:9")
    );
    let (_dir, config) = load_one(&format!("[cache]\n{CACHED_SITE}"));
    assert!(config.unwrap().cache.enabled);
}

#[test]
fn cache_keys_merge_from_conf_d() {
    let dir = tree(&[
        (
            "sy.toml",
            &format!("[cache]\nmemory_size = \"1MiB\"\nlock_timeout = \"1s\"\n{SITE}"),
        ),
        ("conf.d/10-cache.toml", "[cache]\nmemory_size = \"3MiB\"\n"),
    ]);
    let cache = load(&dir.path().join("sy.toml")).unwrap().cache;
    assert_eq!(cache.memory_size, 3 << 20);
    assert_eq!(cache.lock_timeout, Duration::from_secs(1));
}

#[test]
fn redis_routes_keys() {
    let text = format!(
        r#"
[redis_routes]
url = "redis://10.0.0.5:6380/"
db = 3
prefix = "hipache:"
cache_ttl = "2s"
cache_entries = 50
dead_ttl = "1m"
max_body = "16MiB"
{SITE}"#
    );
    let (_dir, config) = load_one(&text);
    assert_eq!(
        config.unwrap().redis_routes,
        Some(RedisRoutesConfig {
            url: "redis://10.0.0.5:6380".into(),
            db: 3,
            prefix: "hipache:".into(),
            cache_ttl: Duration::from_secs(2),
            cache_entries: 50,
            dead_ttl: Duration::from_secs(60),
            max_body: Some(16 << 20),
        })
    );
    let (_dir, config) = load_one(&format!(
        "[redis_routes]\nurl = \"redis://localhost\"\n{SITE}"
    ));
    assert_eq!(
        config.unwrap().redis_routes,
        Some(RedisRoutesConfig::new("redis://localhost"))
    );
}

#[test]
fn redis_routes_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "[redis_routes]\ndb = 1\n",
            "DIR/sy.toml: redis_routes.url: missing (e.g. url = \"redis://127.0.0.1:6379\")",
        ),
        (
            "[redis_routes]\nurl = \"http://x\"\n",
            "DIR/sy.toml:2:7: redis_routes.url: \"http://x\": expected redis://host[:port]",
        ),
        (
            "[redis_routes]\nurl = \"redis://x:1/2\"\n",
            "DIR/sy.toml:2:7: redis_routes.url: \"redis://x:1/2\": expected redis://host[:port] (the database goes in `db`)",
        ),
        (
            "[redis_routes]\nurl = \"redis://x\"\ndb = -1\n",
            "DIR/sy.toml:3:6: redis_routes.db: must be 0 or more",
        ),
        (
            "[redis_routes]\nurl = \"redis://x\"\ncache_entries = 0\n",
            "DIR/sy.toml:3:17: redis_routes.cache_entries: must be greater than 0",
        ),
        (
            "[redis_routes]\nurl = \"redis://x\"\ncache_ttl = \"0s\"\n",
            "DIR/sy.toml:3:13: redis_routes.cache_ttl: must be greater than 0",
        ),
        (
            "[redis_routes]\nurl = \"redis://x\"\ndead_ttl = \"0s\"\n",
            "DIR/sy.toml:3:12: redis_routes.dead_ttl: must be greater than 0",
        ),
        (
            "[redis_routes]\nurl = \"redis://x\"\nmax_body = \"lots\"\n",
            "DIR/sy.toml:3:12: redis_routes.max_body: invalid size \"lots\": expected whole bytes with an optional unit: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&error_of(&format!("{text}{SITE}")), want, "{text}");
    }
}

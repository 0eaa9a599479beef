//! The Hipache route provider against a real `redis-server` started by each test on a free
//! loopback port (Debian's `redis-server`, installed by `interop/test.sh`): lookups, wildcards,
//! dead marks, live changes through keyspace notifications, and Redis going away and coming
//! back.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_conf::RedisRoutesConfig;
use switchyard_services::redis_routes::{RedisRoutes, Route, Unavailable};

/// A `redis-server` child process on `port`, without persistence; killed on drop.
struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        RedisServer::start_on(port)
    }

    fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (interop/test.sh installs it: apt-get install redis-server)");
        let server = RedisServer { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.ping().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.client().get_connection()?;
        redis::cmd("PING").query::<String>(&mut conn).map(|_| ())
    }

    /// Run one command on database `db`.
    fn cmd(&self, db: u32, args: &[&str]) {
        let client = redis::Client::open(format!("{}/{db}", self.url())).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query::<redis::Value>(&mut conn).unwrap();
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(server: &RedisServer, cache_ttl: Duration) -> RedisRoutesConfig {
    RedisRoutesConfig {
        db: 2,
        prefix: "hip:".into(),
        cache_ttl,
        ..RedisRoutesConfig::new(server.url())
    }
}

async fn connected(routes: &RedisRoutes, sessions: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(routes.is_connected() && routes.sessions() >= sessions) {
        assert!(Instant::now() < deadline, "the provider did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn urls(route: &Route) -> Vec<&str> {
    route.alive().map(|b| b.url.as_str()).collect()
}

/// Poll `lookup(host)` until `check` holds for its route; how long it took. Fails past
/// `within` or when Redis cannot be asked.
async fn eventually(
    routes: &RedisRoutes,
    host: &str,
    within: Duration,
    check: impl Fn(Option<&Route>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = routes.lookup(host).await;
        assert!(got.is_ok(), "{host}: {got:?}");
        if check(got.as_ref().ok().and_then(|r| r.as_deref())) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{host}: still {got:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_and_wildcard_frontends() {
    let redis = RedisServer::start();
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:www.a.test",
            "site-a",
            "http://10.0.0.1:80",
            "http://10.0.0.2:80",
        ],
    );
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:*.b.test",
            "wild-b",
            "http://10.0.1.1:80",
        ],
    );
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:*.deep.b.test",
            "deep-b",
            "http://10.0.2.1:80",
        ],
    );
    redis.cmd(2, &["RPUSH", "hip:frontend:only-id.test", "no-backends"]);
    // The same key in another database or without the prefix is not ours.
    redis.cmd(
        0,
        &["RPUSH", "hip:frontend:other.test", "x", "http://10.9.9.9"],
    );
    redis.cmd(2, &["RPUSH", "frontend:other.test", "x", "http://10.9.9.9"]);

    let routes = RedisRoutes::start(&config(&redis, Duration::from_secs(60))).unwrap();
    connected(&routes, 1).await;

    let a = routes.lookup("WWW.A.test:8443").await.unwrap().unwrap();
    assert_eq!(a.frontend, "www.a.test");
    assert_eq!(a.identifier, "site-a");
    assert_eq!(urls(&a), ["http://10.0.0.1:80", "http://10.0.0.2:80"]);
    let b = routes.lookup("api.b.test").await.unwrap().unwrap();
    assert_eq!(
        (b.frontend.as_str(), urls(&b)),
        ("*.b.test", vec!["http://10.0.1.1:80"])
    );
    let deep = routes.lookup("x.deep.b.test").await.unwrap().unwrap();
    assert_eq!(deep.frontend, "*.deep.b.test");
    assert_eq!(routes.lookup("b.test").await, Ok(None));
    assert_eq!(routes.lookup("only-id.test").await, Ok(None));
    assert_eq!(routes.lookup("other.test").await, Ok(None));
    // Hipache's catch-all answers every host nothing else matches.
    redis.cmd(
        2,
        &["RPUSH", "hip:frontend:*", "default", "http://10.0.9.1:80"],
    );
    eventually(&routes, "b.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| r.frontend == "*")
    })
    .await;
    let a = routes.lookup("www.a.test").await.unwrap().unwrap();
    assert_eq!(a.frontend, "www.a.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_apply_live_through_notifications() {
    let redis = RedisServer::start();
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:live.test",
            "live",
            "http://10.0.0.1:80",
        ],
    );
    // A long TTL: only a notification can make the change visible within a second.
    let routes = RedisRoutes::start(&config(&redis, Duration::from_secs(300))).unwrap();
    connected(&routes, 1).await;
    let before = routes.lookup("live.test").await.unwrap().unwrap();
    assert_eq!(urls(&before), ["http://10.0.0.1:80"]);

    redis.cmd(
        2,
        &["RPUSH", "hip:frontend:live.test", "http://10.0.0.2:80"],
    );
    let took = eventually(&routes, "live.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| r.backends.len() == 2)
    })
    .await;
    eprintln!("backend added: visible after {took:?}");

    // A new host under a wildcard, and its removal.
    assert_eq!(routes.lookup("new.w.test").await, Ok(None));
    redis.cmd(
        2,
        &["RPUSH", "hip:frontend:*.w.test", "w", "http://10.0.3.1:80"],
    );
    eventually(&routes, "new.w.test", Duration::from_secs(1), |r| {
        r.is_some()
    })
    .await;
    redis.cmd(2, &["DEL", "hip:frontend:*.w.test"]);
    eventually(&routes, "new.w.test", Duration::from_secs(1), |r| {
        r.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_marks_are_shared_between_instances() {
    let redis = RedisServer::start();
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:*.shop.test",
            "shop",
            "http://10.0.0.1:80",
            "http://10.0.0.2:80",
            "http://10.0.0.3:80",
        ],
    );
    let cfg = RedisRoutesConfig {
        dead_ttl: Duration::from_secs(1),
        ..config(&redis, Duration::from_secs(300))
    };
    let one = RedisRoutes::start(&cfg).unwrap();
    let two = RedisRoutes::start(&cfg).unwrap();
    connected(&one, 1).await;
    connected(&two, 1).await;
    let route = one.lookup("www.shop.test").await.unwrap().unwrap();
    assert_eq!(route.frontend, "*.shop.test");
    assert_eq!(
        two.lookup("www.shop.test")
            .await
            .unwrap()
            .unwrap()
            .alive()
            .count(),
        3
    );

    // Instance one's health check marks backend 1 dead (Hipache's dead:<host> set); instance
    // two sees it, other hosts of the wildcard do not (as in Hipache).
    one.mark_dead(&route, 1).await.unwrap();
    eventually(&two, "www.shop.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| urls(r) == ["http://10.0.0.1:80", "http://10.0.0.3:80"])
    })
    .await;
    assert_eq!(
        two.lookup("api.shop.test")
            .await
            .unwrap()
            .unwrap()
            .alive()
            .count(),
        3
    );
    // The mark expires after dead_ttl (an `expired` notification), and the backend is back.
    eventually(&two, "www.shop.test", Duration::from_secs(3), |r| {
        r.is_some_and(|r| r.alive().count() == 3)
    })
    .await;
    // A mark written by Hipache itself (or by hand); mark_alive clears it.
    redis.cmd(2, &["SADD", "hip:dead:www.shop.test", "0"]);
    eventually(&one, "www.shop.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| r.backends[0].dead)
    })
    .await;
    two.mark_alive(&route, 0).await.unwrap();
    eventually(&one, "www.shop.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| r.alive().count() == 3)
    })
    .await;
    // A set named after the wildcard takes a backend out for every host it serves.
    redis.cmd(2, &["SADD", "hip:dead:*.shop.test", "2"]);
    for host in ["www.shop.test", "api.shop.test"] {
        eventually(&one, host, Duration::from_secs(1), |r| {
            r.is_some_and(|r| urls(r) == ["http://10.0.0.1:80", "http://10.0.0.2:80"])
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_cached_routes_and_reconnects() {
    let redis = RedisServer::start();
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:kept.test",
            "kept",
            "http://10.0.0.1:80",
        ],
    );
    // A zero TTL (below what the configuration allows): every lookup asks Redis, so once it
    // is gone, answers come from the stale cache.
    let routes = RedisRoutes::start(&config(&redis, Duration::ZERO)).unwrap();
    connected(&routes, 1).await;
    assert!(routes.lookup("kept.test").await.unwrap().is_some());

    let port = redis.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while routes.is_connected() {
        assert!(
            Instant::now() < deadline,
            "the loss of Redis went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = routes.lookup("kept.test").await.unwrap().unwrap();
    assert_eq!(urls(&kept), ["http://10.0.0.1:80"]);
    assert_eq!(routes.lookup("never-seen.test").await, Err(Unavailable));

    // Redis comes back (empty: no persistence) on the same address; the provider reconnects
    // and fetches again, and notifications work on the new connection.
    let redis = RedisServer::start_on(port);
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:kept.test",
            "kept",
            "http://10.0.0.9:80",
        ],
    );
    connected(&routes, 2).await;
    eventually(&routes, "kept.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| urls(r) == ["http://10.0.0.9:80"])
    })
    .await;
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:fresh.test",
            "fresh",
            "http://10.0.0.5:80",
        ],
    );
    eventually(&routes, "fresh.test", Duration::from_secs(1), |r| {
        r.is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_redis_costs_one_timeout_not_one_per_lookup() {
    let redis = RedisServer::start();
    redis.cmd(
        2,
        &[
            "RPUSH",
            "hip:frontend:slow.test",
            "slow",
            "http://10.0.0.1:80",
        ],
    );
    // A zero TTL (below what the configuration allows): every lookup asks Redis.
    let routes = RedisRoutes::start(&config(&redis, Duration::ZERO)).unwrap();
    connected(&routes, 1).await;
    assert!(routes.lookup("slow.test").await.unwrap().is_some());

    // Redis stops answering (the connection stays open): the next lookup waits for its
    // timeout once, answers from the cache, and the ones after it do not wait at all.
    redis.cmd(0, &["CLIENT", "PAUSE", "3000", "ALL"]);
    let first = Instant::now();
    assert!(routes.lookup("slow.test").await.unwrap().is_some());
    assert!(
        first.elapsed() >= Duration::from_millis(900),
        "{:?}",
        first.elapsed()
    );
    let second = Instant::now();
    assert!(routes.lookup("slow.test").await.unwrap().is_some());
    assert!(
        second.elapsed() < Duration::from_millis(200),
        "{:?}",
        second.elapsed()
    );
    // Once Redis answers again the provider is back on a new connection.
    connected(&routes, 2).await;
    redis.cmd(
        2,
        &["RPUSH", "hip:frontend:slow.test", "http://10.0.0.2:80"],
    );
    eventually(&routes, "slow.test", Duration::from_secs(1), |r| {
        r.is_some_and(|r| r.backends.len() == 2)
    })
    .await;
}

//! TLS on the shared port: sniffed ClientHellos are terminated with rustls; plain HTTP keeps
//! working beside them. Clients: curl (OpenSSL) and `openssl s_client`, certificates made by
//! `openssl req` for each test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchyard_interop::*;

const HELLO: &[u8] = b"hello over tls\n";

fn site() -> WebRoot {
    let www = WebRoot::new();
    www.file("a.txt", HELLO);
    www
}

/// `curl ARGS https://NAME:PORT/PATH` with NAME resolved to the server's address.
fn curl_https(server: &Server, name: &str, path: &str, extra: &[&str]) -> CurlOutput {
    let port = server.addr().port();
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    args.push("--resolve".into());
    args.push(format!("{name}:{port}:127.0.0.1"));
    args.push(format!("https://{name}:{port}{path}"));
    curl(&args)
}

/// `openssl s_client` against the server; returns its combined output.
fn s_client(server: &Server, args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(server.addr().to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("s_client output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const REQUEST_AND_CLOSE: &str =
    "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn tls_and_plain_http_are_answered_on_the_same_port() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let tls = curl_https(&server, "localhost", "/a.txt", &["-k", "--http1.1"]);
    assert_eq!((tls.exit, tls.status), (0, 200), "{}", tls.stderr);
    assert_eq!(tls.body, HELLO);
    server.assert_serves("/a.txt", HELLO);
}

#[test]
fn the_self_signed_certificate_fingerprint_is_logged_and_presented() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let shown = s_client(&server, &["-servername", "localhost"], "");
    let pem_start = shown
        .find("-----BEGIN CERTIFICATE-----")
        .expect("server sent a certificate");
    let pem_end = shown
        .find("-----END CERTIFICATE-----")
        .expect("end of certificate")
        + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    {
        use std::io::Write;
        let mut stdin = x509.stdin.take().expect("stdin");
        stdin
            .write_all(&shown.as_bytes()[pem_start..pem_end])
            .expect("write pem");
    }
    let out = x509.wait_with_output().expect("x509 output");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex: String = line
        .split('=')
        .nth(1)
        .expect("fingerprint line")
        .trim()
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(hex.len(), 64, "{line}");
    let log = server.stderr().to_ascii_lowercase().replace(':', "");
    assert!(
        log.contains(&hex),
        "fingerprint {hex} not in the log:\n{}",
        server.stderr()
    );
}

#[test]
fn a_configured_certificate_verifies_with_its_ca_file() {
    let www = site();
    let (cert, key) = certificate(www.outside(), "localhost", &["localhost"]);
    let server = Server::serve(www.root())
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .start();
    let cacert = cert.to_string_lossy().into_owned();
    let ok = curl_https(&server, "localhost", "/a.txt", &["--cacert", &cacert]);
    assert_eq!((ok.exit, ok.status), (0, 200), "{}", ok.stderr);
    assert_eq!(ok.body, HELLO);
}

#[test]
fn sni_selects_the_certificate_for_the_name() {
    let www = site();
    let (default_cert, default_key) = certificate(www.outside(), "default", &["default.test"]);
    let (a_cert, a_key) = certificate(www.outside(), "a", &["a.test"]);
    let (b_cert, b_key) = certificate(www.outside(), "b", &["b.test", "*.b.test"]);
    let extra = format!(
        "[tls]\ncert = {}\nkey = {}\n\n[[tls.certificate]]\nnames = [\"a.test\"]\ncert = {}\nkey = {}\n\n\
         [[tls.certificate]]\nnames = [\"b.test\", \"*.b.test\"]\ncert = {}\nkey = {}\n",
        toml_path(&default_cert),
        toml_path(&default_key),
        toml_path(&a_cert),
        toml_path(&a_key),
        toml_path(&b_cert),
        toml_path(&b_key),
    );
    let server = Server::run_config(&config(www.root(), "", &extra)).start();
    let ca = |p: &Path| p.to_string_lossy().into_owned();
    // Trusting only the certificate meant for a name, the connection verifies: that
    // certificate is the one the server chose.
    for (name, cert) in [
        ("a.test", &a_cert),
        ("b.test", &b_cert),
        ("www.b.test", &b_cert),
    ] {
        let cacert = ca(cert);
        let out = curl_https(&server, name, "/a.txt", &["--cacert", &cacert]);
        assert_eq!((out.exit, out.status), (0, 200), "{name}: {}", out.stderr);
    }
    // Trusting only a.test's certificate, b.test must fail verification: it got its own.
    let a_only = ca(&a_cert);
    let wrong = curl_https(&server, "b.test", "/a.txt", &["--cacert", &a_only]);
    assert_ne!(
        wrong.exit, 0,
        "b.test verified against a.test's certificate"
    );
    // An unknown name gets the default certificate.
    let shown = s_client(&server, &["-servername", "other.test"], "");
    assert!(
        shown.contains("CN = default.test") || shown.contains("CN=default.test"),
        "{shown}"
    );
}

#[test]
fn tls13_session_resumption_is_observed_by_the_client() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let session = www.outside().join("session.pem");
    let session_arg = session.to_string_lossy().into_owned();
    let first = s_client(
        &server,
        &["-tls1_3", "-ign_eof", "-sess_out", &session_arg],
        REQUEST_AND_CLOSE,
    );
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(session.is_file(), "no session ticket was saved:\n{first}");
    let second = s_client(
        &server,
        &["-tls1_3", "-ign_eof", "-sess_in", &session_arg],
        REQUEST_AND_CLOSE,
    );
    assert!(
        second.contains("Reused, TLSv1.3"),
        "second handshake was not resumed:\n{second}"
    );
    assert!(second.contains("hello over tls"), "{second}");
}

#[test]
fn tls12_session_resumption_is_observed_by_the_client() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let session = www.outside().join("session12.pem");
    let session_arg = session.to_string_lossy().into_owned();
    let first = s_client(
        &server,
        &["-tls1_2", "-ign_eof", "-sess_out", &session_arg],
        REQUEST_AND_CLOSE,
    );
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let second = s_client(
        &server,
        &["-tls1_2", "-ign_eof", "-sess_in", &session_arg],
        REQUEST_AND_CLOSE,
    );
    assert!(
        second.contains("Reused, TLSv1.2"),
        "second handshake was not resumed:\n{second}"
    );
}

#[test]
fn a_mismatched_certificate_and_key_fail_at_start_and_in_check() {
    let www = site();
    let (cert, _) = certificate(www.outside(), "one", &["localhost"]);
    let (_, other_key) = certificate(www.outside(), "two", &["localhost"]);
    let out = Command::new(binary())
        .args(["serve"])
        .arg(www.root())
        .args(["--listen", "127.0.0.1:0", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&other_key)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard serve");
    assert!(
        !out.status.success(),
        "started with a key that does not match its certificate"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("key"), "{stderr}");

    let extra = format!(
        "[tls]\ncert = {}\nkey = {}\n",
        toml_path(&cert),
        toml_path(&other_key)
    );
    let path = www.outside().join("mismatch.toml");
    std::fs::write(&path, config(www.root(), "", &extra)).expect("write config");
    let checked = check(&path);
    assert!(!checked.status.success(), "check accepted a mismatched key");
    let text = String::from_utf8_lossy(&checked.stderr).into_owned()
        + &String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains("tls."),
        "the message does not name the key: {text}"
    );

    let missing = format!(
        "[tls]\ncert = {}\nkey = \"/nonexistent/key.pem\"\n",
        toml_path(&cert)
    );
    std::fs::write(&path, config(www.root(), "", &missing)).expect("write config");
    let checked = check(&path);
    assert!(
        !checked.status.success(),
        "check accepted an unreadable key file"
    );
}

#[test]
fn a_failed_handshake_closes_only_that_connection() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let mut bad = server.connect();
    // A TLS record header announcing a ClientHello, followed by garbage.
    bad.send(b"\x16\x03\x01\x00\x30\x01\x00\x00\x2cthis is not a client hello at all, no...");
    let closed = bad.wait_closed(CLOSE_TIMEOUT);
    assert!(closed.closed, "a broken handshake left the connection open");
    let ok = curl_https(&server, "localhost", "/a.txt", &["-k"]);
    assert_eq!((ok.exit, ok.status), (0, 200), "{}", ok.stderr);
    server.assert_serves("/a.txt", HELLO);
}

#[test]
fn an_unfinished_handshake_times_out() {
    let www = site();
    let server = Server::run_config(&config(
        www.root(),
        "",
        "[timeouts]\ntls_handshake = \"1s\"\n",
    ))
    .start();
    let mut slow = server.connect();
    slow.send(b"\x16\x03\x01\x02\x00\x01");
    let closed = slow.wait_closed(CLOSE_TIMEOUT);
    assert!(closed.closed, "a stalled handshake was never closed");
    assert!(
        closed.elapsed >= Duration::from_millis(500),
        "closed before the timeout: {:?}",
        closed.elapsed
    );
    server.assert_serves("/a.txt", HELLO);
}

#[test]
fn a_large_file_over_tls_arrives_intact() {
    let www = site();
    let data = pseudo_random(8 * 1024 * 1024 + 123, 7);
    www.file("big.bin", &data);
    let server = Server::serve(www.root()).start();
    let dest = www.outside().join("big.download");
    let port = server.addr().port();
    let out = curl_to(
        &dest,
        &[
            "-k".to_owned(),
            "--resolve".to_owned(),
            format!("localhost:{port}:127.0.0.1"),
            format!("https://localhost:{port}/big.bin"),
        ],
    );
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
    assert_eq!(sha256_file(&dest), sha256(&data));
}

#[test]
fn ranges_and_conditionals_behave_as_over_plain_http() {
    let www = site();
    let server = Server::serve(www.root()).start();
    let range = curl_https(
        &server,
        "localhost",
        "/a.txt",
        &["-k", "-H", "Range: bytes=0-4"],
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.body, b"hello");
    let etag = curl_https(&server, "localhost", "/a.txt", &["-k"])
        .header("etag")
        .expect("etag")
        .to_owned();
    let inm = format!("If-None-Match: {etag}");
    let not_modified = curl_https(&server, "localhost", "/a.txt", &["-k", "-H", &inm]);
    assert_eq!(not_modified.status, 304);
}

/// A keep-alive client over TLS (python's `ssl`): two requests with a pause shorter than the
/// keep-alive timeout between them, then silence. Prints each status and how long after the
/// second answer the server closed.
/// Python: a TLS connection to 127.0.0.1:argv[1] (certificate not checked) and `get(path)`,
/// which asks on it and returns the status once the whole body arrived.
macro_rules! tls_client_py {
    () => {
        r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.settimeout(10)
def get(path):
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = [l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    while len(body) < int(length[0]):
        body += s.recv(4096)
    return head.split(b" ")[1].decode()
"#
    };
}

const TLS_KEEPALIVE_CLIENT: &str = concat!(
    tls_client_py!(),
    r#"print(get("/a.txt"))
time.sleep(float(sys.argv[2]))
print(get("/a.txt"))
start = time.monotonic()
try:
    while s.recv(4096):
        pass
except (ssl.SSLError, ConnectionResetError):
    pass
except socket.timeout:
    print("still open")
print("closed after %.3f" % (time.monotonic() - start))
"#
);

#[test]
fn an_idle_tls_connection_is_kept_for_the_keepalive_timeout_then_closed() {
    let www = site();
    let (cert, key) = certificate(www.outside(), "localhost", &["localhost"]);
    let extra = format!(
        "[tls]\ncert = {}\nkey = {}\n\n[timeouts]\nkeepalive = \"1500ms\"\n",
        toml_path(&cert),
        toml_path(&key),
    );
    let server = Server::run_config(&config(www.root(), "", &extra)).start();
    let out = Command::new("python3")
        .args(["-c", TLS_KEEPALIVE_CLIENT])
        .arg(server.addr().port().to_string())
        .arg("0.5")
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.get(..2),
        Some(&["200", "200"][..]),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: f64 = lines
        .get(2)
        .and_then(|l| l.strip_prefix("closed after "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no close seen: {text}"));
    assert!(
        (1.0..6.0).contains(&after),
        "closed {after} s after the last answer with keepalive = 1.5 s"
    );
    server.assert_serves("/a.txt", HELLO);
}

/// A TLS keep-alive client that asks for /a.txt, prints the status, and asks again on the same
/// connection each time a line arrives on stdin.
const WAITING_CLIENT: &str = concat!(
    tls_client_py!(),
    r#"print(get("/a.txt"), flush=True)
for line in sys.stdin:
    print(get("/a.txt"), flush=True)
"#
);

#[test]
fn sighup_answers_new_handshakes_with_renewed_certificates_and_keeps_connections() {
    use std::io::{BufRead, BufReader, Write};
    let www = site();
    let dir = www.outside();
    let (old_cert, old_key) = certificate(dir, "old", &["localhost"]);
    let (new_cert, new_key) = certificate(dir, "new", &["localhost"]);
    let (live_cert, live_key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&old_cert, &live_cert).expect("copy certificate");
    std::fs::copy(&old_key, &live_key).expect("copy key");
    let extra = format!(
        "[tls]\ncert = {}\nkey = {}\n",
        toml_path(&live_cert),
        toml_path(&live_key)
    );
    let server = Server::run_config(&config(www.root(), "", &extra)).start();
    // Whether a client trusting only `cert` is answered: that certificate is the one shown.
    let verifies = |cert: &Path| {
        let cacert = cert.to_string_lossy().into_owned();
        let out = curl_https(&server, "localhost", "/a.txt", &["--cacert", &cacert]);
        out.exit == 0 && out.status == 200 && out.body == HELLO
    };
    assert!(verifies(&old_cert) && !verifies(&new_cert));

    // A connection opened before the renewal.
    let mut open = Command::new("python3")
        .args(["-c", WAITING_CLIENT])
        .arg(server.addr().port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut ask = open.stdin.take().expect("piped stdin");
    let mut answers = BufReader::new(open.stdout.take().expect("piped stdout")).lines();
    let mut next_answer = || answers.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next_answer(), "200");

    // Half a renewal (the new certificate beside the old key) is refused: the old pair answers.
    std::fs::copy(&new_cert, &live_cert).expect("copy certificate");
    server.signal(Signal::HUP);
    wait_until(IO_TIMEOUT, "the mismatched pair is reported", || {
        server.stderr().contains("reload failed")
    });
    assert!(server.stderr().contains("tls.key: "), "{}", server.stderr());
    assert!(
        verifies(&old_cert),
        "a refused reload changed the certificate"
    );

    // The whole renewal answers every new handshake.
    std::fs::copy(&new_key, &live_key).expect("copy key");
    server.signal(Signal::HUP);
    wait_until(IO_TIMEOUT, "the renewed certificate is shown", || {
        verifies(&new_cert)
    });
    assert!(!verifies(&old_cert), "the old certificate is still shown");
    assert!(server.stderr().contains("configuration reloaded"));

    // The connection from before goes on.
    writeln!(ask, "again").expect("ask again");
    assert_eq!(next_answer(), "200", "the open connection was not served");
    drop(ask);
    assert!(open.wait().expect("client exit").success());
}

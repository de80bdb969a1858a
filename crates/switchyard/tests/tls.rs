//! TLS termination: `bind ... ssl crt A crt B alpn ...` checked with `openssl s_client`
//! (SNI picks the certificate, ALPN is negotiated, the chain verifies against the test CA),
//! and PostgreSQL's in-protocol TLS (`postgres-ssl`) with psql `sslmode=require`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchyard_testkit::{
    free_port, greeter, pg_tool, require_command, require_postgres_or_return, run_with_timeout,
    PgInstance, Switchyard, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and, for each name, `NAME.pem` holding its certificate and key.
fn certificates(dir: &Path, names: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Switchyard test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    for name in names {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{name}\n")).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        );
        let pem = format!(
            "{}{}",
            std::fs::read_to_string(dir.join(&crt)).unwrap(),
            std::fs::read_to_string(dir.join(&key)).unwrap()
        );
        std::fs::write(dir.join(format!("{name}.pem")), pem).unwrap();
    }
}

/// `openssl s_client` output for a connection to `port` with `sni` and ALPN `h2`.
fn s_client(dir: &Path, port: u16, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
        "ca.pem",
        "-alpn",
        "h2",
        "-ign_eof",
    ])
    .current_dir(dir)
    .stdin(Stdio::null());
    if let Some(name) = sni {
        cmd.args(["-servername", name]);
    } else {
        cmd.arg("-noservername");
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20)).unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tls_is_terminated_with_the_certificate_sni_asks_for() {
    if !require_command("openssl", "openssl") {
        return;
    }
    let dir = TempDir::new("switchyard-tls").unwrap();
    certificates(dir.path(), &["a.test", "b.test"]);
    let (front, backend) = (free_port(), greeter("plain backend"));
    let _sy = Switchyard::start(
        BIN,
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen tls\n    bind 127.0.0.1:{front} ssl crt {a} crt {b} alpn h2,http/1.1\n    \
             server s 127.0.0.1:{backend}\n",
            a = dir.path().join("a.test.pem").display(),
            b = dir.path().join("b.test.pem").display(),
        ),
    )
    .unwrap();
    for (sni, expected) in [
        (Some("b.test"), "b.test"),
        (Some("a.test"), "a.test"),
        (None, "a.test"),
    ] {
        let out = s_client(dir.path(), front, sni);
        assert!(
            out.contains(&format!("CN = {expected}")) || out.contains(&format!("CN={expected}")),
            "{sni:?}: {out}"
        );
        assert!(out.contains("ALPN protocol: h2"), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        // The backend's greeting arrived decrypted through the tunnel.
        assert!(out.contains("plain backend"), "{out}");
    }
}

#[test]
fn postgres_clients_with_sslmode_require_get_tls_from_the_balancer() {
    require_postgres_or_return!();
    if !require_command("openssl", "openssl") {
        return;
    }
    let dir = TempDir::new("switchyard-pgtls").unwrap();
    certificates(dir.path(), &["db.test"]);
    let pg = PgInstance::start_named("tls").unwrap();
    let front = free_port();
    let _sy = Switchyard::start(
        BIN,
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
             listen pg\n    bind 127.0.0.1:{front} ssl crt {crt} postgres-ssl\n    server db 127.0.0.1:{port}\n",
            crt = dir.path().join("db.test.pem").display(),
            port = pg.port(),
        ),
    )
    .unwrap();
    let psql = |sslmode: &str, sql: &str| {
        let mut cmd = Command::new(pg_tool("psql").unwrap());
        cmd.args(["-X", "-At", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={front} user=postgres dbname=postgres sslmode={sslmode} sslrootcert={}",
                dir.path().join("ca.pem").display()
            ));
        let out = run_with_timeout(&mut cmd, Duration::from_secs(20)).unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = psql("require", "select current_setting('cluster_name')");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "tls");
    // verify-ca: libpq itself checks the chain against the test CA.
    let (ok, out) = psql("verify-ca", "select 1");
    assert!(ok, "{out}");
    let mut info = Command::new(pg_tool("psql").unwrap());
    info.args(["-X", "-c", "\\conninfo"]).arg(format!(
        "host=127.0.0.1 port={front} user=postgres dbname=postgres sslmode=require"
    ));
    let out = run_with_timeout(&mut info, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SSL connection (protocol: TLSv1."), "{text}");
    // A client that does not ask for TLS is turned away with PostgreSQL's own error form.
    let (ok, out) = psql("disable", "select 1");
    assert!(!ok);
    assert!(out.contains("SSL is required by this listener"), "{out}");
}

#[test]
fn tls_towards_servers_verifies_the_certificate_unless_told_not_to() {
    if !require_command("openssl", "openssl") {
        return;
    }
    let dir = TempDir::new("switchyard-tls-server").unwrap();
    certificates(dir.path(), &["a.test", "b.test"]);
    let (terminator, backend) = (free_port(), greeter("behind tls"));
    // The TLS server side: another Switchyard terminating TLS with two certificates.
    let _server = Switchyard::start(
        BIN,
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen tls\n    bind 127.0.0.1:{terminator} ssl crt {a} crt {b}\n    server s 127.0.0.1:{backend}\n",
            a = dir.path().join("a.test.pem").display(),
            b = dir.path().join("b.test.pem").display(),
        ),
    )
    .unwrap();
    let ca = dir.path().join("ca.pem");
    let (verified, mismatch, unverified) = (free_port(), free_port(), free_port());
    let _client = Switchyard::start(
        BIN,
        &format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             listen verified\n    bind 127.0.0.1:{verified}\n    \
             server t 127.0.0.1:{terminator} ssl verify required ca-file {ca} sni str(b.test)\n\
             listen mismatch\n    bind 127.0.0.1:{mismatch}\n    retries 0\n    \
             server t 127.0.0.1:{terminator} ssl verify required ca-file {ca} sni str(c.test)\n\
             listen unverified\n    bind 127.0.0.1:{unverified}\n    \
             server t 127.0.0.1:{terminator} ssl verify none sni str(c.test)\n",
            ca = ca.display(),
        ),
    )
    .unwrap();
    assert_eq!(switchyard_testkit::greeting_through(verified), "behind tls");
    // c.test gets the default certificate (a.test), which does not match: refused.
    assert_eq!(switchyard_testkit::greeting_through(mismatch), "");
    assert_eq!(
        switchyard_testkit::greeting_through(unverified),
        "behind tls"
    );

    // `ssl` without CAs cannot verify: a clear start-up error, as HAProxy gives.
    let out = Command::new(BIN)
        .arg("-f")
        .arg(write_config(
            dir.path(),
            "defaults\n    mode tcp\n    timeout connect 1s\nlisten l\n    bind 127.0.0.1:1\n    server t 127.0.0.1:2 ssl\n",
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ca-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("bad.cfg");
    std::fs::write(&path, text).unwrap();
    path
}

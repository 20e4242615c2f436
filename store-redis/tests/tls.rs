//! `rediss://` against a private redis-server with TLS and a private certificate
//! authority. Runs with the `tls` feature:
//! `cargo test -p taskmill-redis --features tls --test tls` (needs the `openssl` CLI to
//! make the certificates, and a redis-server built with TLS, as Debian's is).

use std::process::Command;
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Store, Task, Timestamp};
use taskmill_redis::{RedisOptions, RedisStore};
use taskmill_testkit::redis::{free_port, fresh_namespace, RedisServer, ServerConfig};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command makes the test certificates: apt-get install openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

#[tokio::test]
async fn rediss_with_a_private_authority() {
    let dir = taskmill_testkit::temp_dir();
    let dir = dir.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    let tls_port = free_port();
    let path = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let server = RedisServer::start_with(ServerConfig::default().args([
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        path("server.crt"),
        "--tls-key-file".to_owned(),
        path("server.key"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.crt"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ]));
    let url = format!(
        "rediss://127.0.0.1:{tls_port}/0?namespace={}",
        fresh_namespace()
    );
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let trusted = RedisOptions::default().tls_root_certificate(ca);
    let store = RedisStore::open_with(&url, trusted).await.unwrap();
    let id = store
        .enqueue(
            vec![Task::new("t", &1).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap()[0]
        .id();
    assert!(store.get(id).await.unwrap().is_some());
    // The authority from a file the URL names, as `taskmill::open` and the bench pass it.
    let by_url = RedisStore::open(&format!("{url}&cacert={}", path("ca.crt")))
        .await
        .unwrap();
    assert!(by_url.delete_namespace().await.unwrap() > 0);
    assert!(store.get(id).await.unwrap().is_none());
    // Without the authority the server's certificate is not trusted.
    assert!(RedisStore::from_url(&url).await.is_err());
    drop(server);
}

//! Exploitation catalogs fetched from a real local HTTP server (a std TcpListener serving the
//! KEV feed of examples/exploitation), refreshed, kept on disk, and kept on a failed refresh.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vulngate_server::catalog::{CatalogStore, Kind};
use vulngate_server::config::{CatalogConfig, Config};

fn example(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/exploitation")
        .join(name);
    std::fs::read(p).expect("example file")
}

/// Serves whatever `body` holds (status, bytes) to every GET, on 127.0.0.1.
fn serve(body: Arc<Mutex<(u16, Vec<u8>)>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let (status, bytes) = body.lock().expect("lock").clone();
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&bytes);
        }
    });
    format!("http://{addr}/known_exploited_vulnerabilities.json")
}

fn config(dir: &std::path::Path, url: &str, max_bytes: Option<u64>) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        kev: Some(CatalogConfig {
            url: Some(url.to_string()),
            max_bytes,
            ..CatalogConfig::default()
        }),
        ..Config::default()
    }
}

#[tokio::test]
async fn url_refresh_keeps_the_last_good_copy_on_failure_and_on_disk() {
    let body = Arc::new(Mutex::new((200, example("kev.json"))));
    let url = serve(body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CatalogStore::load(&config(dir.path(), &url, None)).expect("loads");
    assert!(store.current().kev.is_none(), "nothing fetched yet");
    let src = store.source(Kind::Kev).expect("kev source").clone();

    src.refresh().await.expect("first refresh");
    let kev = store.current().kev.expect("loaded");
    assert!(kev.get("CVE-2021-44228").is_some());
    assert_eq!(kev.len(), 2);
    assert!(dir.path().join("catalogs/kev.json").exists());

    // A failed refresh (server error, then a truncated file) keeps the last good copy.
    *body.lock().unwrap() = (500, b"oops".to_vec());
    let e = src.refresh().await.expect_err("HTTP 500 fails");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    let truncated = example("kev.json")[..200].to_vec();
    *body.lock().unwrap() = (200, truncated);
    assert!(src.refresh().await.is_err());
    assert!(store
        .current()
        .kev
        .expect("still loaded")
        .get("CVE-2021-44228")
        .is_some());

    // A restart with the server down starts from the copy on disk.
    *body.lock().unwrap() = (503, Vec::new());
    let again = CatalogStore::load(&config(dir.path(), &url, None)).expect("loads");
    assert!(again
        .current()
        .kev
        .expect("from disk")
        .get("CVE-2014-0160")
        .is_some());
}

#[tokio::test]
async fn download_beyond_max_bytes_and_redirects_are_refused() {
    let body = Arc::new(Mutex::new((200, example("kev.json"))));
    let url = serve(body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CatalogStore::load(&config(dir.path(), &url, Some(100))).expect("loads");
    let src = store.source(Kind::Kev).expect("kev").clone();
    let e = src.refresh().await.expect_err("too large");
    assert!(e.to_string().contains("more than 100 bytes"), "{e}");
    *body.lock().unwrap() = (302, Vec::new());
    let store = CatalogStore::load(&config(dir.path(), &url, None)).expect("loads");
    let e = store
        .source(Kind::Kev)
        .unwrap()
        .refresh()
        .await
        .expect_err("redirect");
    assert!(e.to_string().contains("redirects are not followed"), "{e}");
    assert!(store.current().kev.is_none());
}

#[test]
fn a_bad_file_source_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("epss.csv");
    std::fs::write(&f, "cve,epss\n").unwrap();
    let cfg = Config {
        epss: Some(CatalogConfig {
            file: Some(f),
            ..CatalogConfig::default()
        }),
        ..Config::default()
    };
    let e = CatalogStore::load(&cfg).expect_err("bad header");
    assert!(e.to_string().contains("cve,epss,percentile"), "{e}");
}

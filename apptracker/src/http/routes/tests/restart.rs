//! A restarted AppTracker honours the download URLs it handed out before
//! (issue 22, review L8): the key signing them is kept in `data_dir`
//! (mode 0600), not drawn anew by each process.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn download_urls_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || crate::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        builder: crate::config::BuilderConfig::disabled(),
        ..crate::Config::default()
    };
    let key = "hello/hello-1-aaaaaaa.tar.gz";
    let bytes = b"the artifact's bytes".to_vec();
    let url = {
        let app = crate::Application::build(config()).await.unwrap();
        let t = app.tracker().clone();
        let file = dir.path().join("upload");
        std::fs::write(&file, &bytes).unwrap();
        t.store().put(key, &file).await.unwrap();
        t.store().download_url(key).await.unwrap()
    };
    let key_file = dir.path().join("url-signing.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Another process on the same data_dir.
    let app = crate::Application::build(config()).await.unwrap();
    let t = app.tracker().clone();
    drop(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router =
        crate::http::api(t.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let path = &url[url.find("/artifacts/").unwrap()..];
    // The typed client sets up TLS (rustls' provider) for reqwest.
    let http = deploy::Client::new(base.clone()).http().clone();
    let resp = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);

    // A tampered URL still fails.
    let last = path.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &path[..path.len() - 1]);
    let resp = http.get(format!("{base}{tampered}")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    server.abort();
}

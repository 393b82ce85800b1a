//! Tests of the HTTP layer as a whole: the OpenAPI document against the
//! router that serves it, and the JSON errors of unknown routes and methods.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::http::document_json as json;
use crate::http::error::ERROR_CODES;

/// The methods a route can have that the document describes.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn doc() -> Value {
    serde_json::from_str(&json()).expect("the served document is JSON")
}

/// Every (method, path) the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// The sources of this crate without their test modules (which name
/// paths that are not routes on purpose).
fn sources() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut out = Vec::new();
    // Subdirectories too (`db/`).
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    let mut paths = Vec::new();
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    for path in paths {
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.push((path.display().to_string(), code));
        }
    }
    out
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_error_codes() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let description = doc["info"]["description"].as_str().expect("description");
    for (code, _, _) in ERROR_CODES {
        assert!(description.contains(&format!("`{code}`")), "{code}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Every operation says how it fails; token-guarded ones say 401.
    for (m, path) in operations(&doc) {
        let op = &doc["paths"][&path][&m];
        assert!(op["responses"]["default"].is_object(), "{m} {path}");
        if op.get("security").is_none() {
            assert!(op["responses"]["401"].is_object(), "{m} {path}");
        }
    }
}

/// utoipa does not check that an operation declares the parameters its
/// path template names; a document where it does not is invalid.
#[test]
fn every_path_parameter_is_declared() {
    let doc = doc();
    let template = regex::Regex::new(r"\{([a-z_][a-z0-9_]*)\}").expect("regex");
    for (m, path) in operations(&doc) {
        let named: BTreeSet<&str> = template
            .captures_iter(&path)
            .filter_map(|c| c.get(1).map(|g| g.as_str()))
            .collect();
        let declared: BTreeSet<&str> = doc["paths"][&path][&m]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(named, declared, "{m} {path}");
    }
}

/// The router serves exactly the documented operations: each documented
/// method reaches a handler, every other method of the path is a 405,
/// and no route literal in the sources is missing from the document
/// (a `.route("/api/v1/…")` that bypasses `routes!`).
#[tokio::test]
async fn the_router_and_the_document_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        builder: crate::config::BuilderConfig::disabled(),
        ..crate::Config::default()
    };
    let app = crate::Application::build(config).await.expect("app");
    let router = crate::http::api(app.tracker().clone());
    let doc = doc();
    let ops = operations(&doc);
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    assert!(paths.iter().any(|p| p.as_str() == "/api/v1/openapi.json"));

    let param = regex::Regex::new(r"\{[a-z_]+\}").expect("regex");
    for path in &paths {
        let concrete = param.replace_all(path, "x1");
        for m in METHODS {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            let req = Request::builder()
                .method(method)
                .uri(concrete.as_ref())
                .body(Body::empty())
                .expect("request");
            let resp = router.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let documented = ops.contains(&(m.to_string(), path.to_string()));
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                assert_ne!(
                    body["message"], "no such endpoint",
                    "{m} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is routed but not documented"
                );
                assert_eq!(body["code"], "method_not_allowed", "{m} {path}");
            }
        }
    }

    let route =
        regex::Regex::new(r#""((?:/api/v1|/artifacts)(?:/[a-z0-9_.-]+|/\{[a-z_]+\})+|/healthz)""#)
            .expect("regex");
    for (file, code) in sources() {
        for c in route.captures_iter(&code) {
            let literal = &c[1];
            assert!(
                paths.iter().any(|p| p.as_str() == literal),
                "{file} names the route {literal}, which the document lacks: \
                 register it with `.routes(routes!(handler))` and a #[utoipa::path]"
            );
        }
    }
}

/// Unknown routes and wrong methods answer JSON errors like the rest.
#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        builder: crate::config::BuilderConfig::disabled(),
        ..crate::Config::default()
    };
    let app = crate::Application::build(config).await.expect("app");
    let token = app
        .tracker()
        .create_token("admin", "admin", None)
        .await
        .expect("token");
    let router = crate::http::api(app.tracker().clone());
    for (method, uri, status, code) in [
        (Method::GET, "/api/v1/nope", 404, "not_found"),
        (Method::DELETE, "/api/v1/apps", 405, "method_not_allowed"),
        (Method::GET, "/api/v1/apps/%FF", 400, "invalid_input"),
        (Method::GET, "/api/v1/apps?limit=abc", 400, "invalid_input"),
        (Method::GET, "/api/v1/apps?limit=0", 400, "invalid_input"),
        (Method::GET, "/api/v1/apps?limit=-1", 400, "invalid_input"),
        (Method::GET, "/api/v1/apps?limit=1001", 400, "invalid_input"),
        (
            Method::GET,
            "/api/v1/deploys?limit=99999999999999999999",
            400,
            "invalid_input",
        ),
        (
            Method::GET,
            "/api/v1/deploys?cursor=abc",
            400,
            "invalid_input",
        ),
        (
            Method::GET,
            "/api/v1/hosts?cursor=nope",
            400,
            "invalid_input",
        ),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
        if status == 405 {
            assert!(resp.headers().contains_key("allow"), "{method} {uri}");
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: deploy::ErrorBody = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(body.code, code, "{method} {uri}");
    }
}

/// Handlers never hold the database: they change state through the
/// tracker's methods and read through `Tracker::queries`, which has no
/// write. A `t.db()` (or a `Db`) anywhere in the HTTP layer would let a
/// handler write around the tracker.
#[test]
fn the_http_layer_never_reaches_the_database() {
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = vec![root.join("http.rs")];
    let mut dirs = vec![root.join("http")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                files.push(path);
            }
        }
    }
    let forbidden = regex::Regex::new(r"\.db\(\)|\bDb\b").expect("regex");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !forbidden.is_match(code),
                "{}:{}: the HTTP layer reaches the database: call a tracker method (writes) or \
                 `t.queries()` (reads) instead",
                path.display(),
                n + 1
            );
        }
    }
}

/// The API's contract changes only on purpose: the document is committed
/// (`apptracker/openapi.json`) and must match what the code generates.
#[test]
fn the_document_is_the_committed_one() {
    let committed = include_str!("../../openapi.json");
    assert!(
        format!("{}\n", json()) == committed,
        "the OpenAPI document differs from apptracker/openapi.json; if the change is meant, \
         write it with `cargo run -p apptracker -- openapi > apptracker/openapi.json` and say \
         why in the commit"
    );
}

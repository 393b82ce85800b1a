//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`.
//!
//! It is generated, never written: each handler in `routes.rs` carries a
//! `#[utoipa::path]` annotation and is registered with utoipa-axum's
//! `routes!`, which adds the route to the axum router and the operation to
//! the document in one call; the wire types in `deploy::api` derive their
//! schemas (feature `openapi`). [`base`] adds what is the same everywhere
//! (the bearer scheme, the error body, the table of error codes), and
//! [`finish`] gives every operation the error answers it shares with all the
//! others.

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::error::ERROR_CODES;

/// The body of answers without content (`{}`).
#[derive(utoipa::ToSchema)]
pub struct Empty {}

/// The name of the security scheme: a bearer token.
const BEARER: &str = "bearer";

/// The shared error answer, in `components.responses`.
const ERROR_RESPONSE: &str = "Error";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Slipway AppTracker API",
        description = "The control plane of Slipway, an internal PaaS deploy pipeline.",
    ),
    security(("bearer" = [])),
    components(schemas(
        deploy::ErrorBody,
        deploy::AppName,
        deploy::Cluster,
        deploy::HostName,
        deploy::Version,
        deploy::Sha256,
        deploy::GitRef,
        deploy::HostSelector,
        deploy::DeployId,
        deploy::BuildId,
        deploy::Timestamp,
        deploy::Portion,
        deploy::BuildType,
        Empty,
    )),
    tags(
        (name = "apps", description = "Registered apps"),
        (name = "builds", description = "Builds of an app at a commit"),
        (name = "build workers", description = "The build queue, worked by packer workers (agent tokens)"),
        (name = "deploys", description = "Deploys, rollouts, retries, rollbacks and pins"),
        (name = "hosts", description = "The host registry"),
        (name = "agents", description = "The grabbers' protocol (agent tokens of the cluster)"),
        (name = "webhooks", description = "VCS push webhooks and secret build-trigger URLs"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "audit", description = "Who changed what (deployers and admins)"),
        (name = "artifacts", description = "Artifact downloads of the local store (signed URLs)"),
        (name = "meta", description = "Liveness and this document"),
    )
)]
struct ApiDoc;

/// What the document says before the routes add their operations.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.description = Some(description());
    let components = doc
        .components
        .get_or_insert_with(utoipa::openapi::Components::new);
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API token (`slp_…`): `apptracker token create`, or `POST /api/v1/tokens`",
                ))
                .build(),
        ),
    );
    components.responses.insert(
        ERROR_RESPONSE.into(),
        RefOr::T(
            ResponseBuilder::new()
                .description("An error: a stable `code` (see the table above) and a message")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        ),
    );
    doc
}

/// The document's description: how to use the API, and the error codes.
fn description() -> String {
    let mut d = String::from(
        "The control plane of Slipway, an internal PaaS deploy pipeline.\n\n\
         **Authentication.** Every endpoint except webhooks, build triggers, signed artifact \
         URLs, `/healthz` and this document takes `Authorization: Bearer <token>`. People hold \
         `viewer` (reads), `deployer` (also builds and deploys) or `admin` tokens; grabbers \
         and packer workers hold `agent` tokens of one cluster.\n\n\
         **Pages.** Every list takes `limit` (1 to 1000, 100 when absent) and `cursor`, and \
         answers a JSON array. When more items follow, the `X-Next-Cursor` header holds the \
         cursor of the next page: pass it back as `cursor`. Cursors are opaque.\n\n\
         **Errors.** Every error answer is JSON `{\"code\": …, \"message\": …}`: `code` is \
         stable and made for programs, `message` for people. The codes:\n\n\
         | code | status | when |\n|---|---|---|\n",
    );
    for (code, status, when) in ERROR_CODES {
        d.push_str(&format!("| `{code}` | {status} | {when} |\n"));
    }
    d
}

/// Every operation answers errors in the shared shape: `default` says so,
/// and those behind the bearer token list `401` too.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_errors(op);
        }
    }
    doc
}

fn add_errors(op: &mut Operation) {
    let error = || RefOr::Ref(Ref::from_response_name(ERROR_RESPONSE));
    let responses = &mut op.responses.responses;
    // An operation without its own `security` takes the document's: the token.
    if op.security.is_none() {
        responses.entry("401".into()).or_insert_with(error);
    }
    responses.entry("default".into()).or_insert_with(error);
}

/// The whole document, as built from the routes.
pub fn document() -> utoipa::openapi::OpenApi {
    finish(crate::routes::api_routes().into_openapi())
}

/// The document as served: generated once.
pub fn json() -> String {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the document: {e}\"}}"))
    });
    JSON.clone()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

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
        let template = regex::Regex::new(r"\{([a-z_]+)\}").expect("regex");
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
        let router = crate::routes::api(app.tracker().clone());
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

        let route = regex::Regex::new(
            r#""((?:/api/v1|/artifacts)(?:/[a-z0-9_.-]+|/\{[a-z_]+\})+|/healthz)""#,
        )
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
        let router = crate::routes::api(app.tracker().clone());
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
}

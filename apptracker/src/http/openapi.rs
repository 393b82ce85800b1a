//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`.
//!
//! It is generated, never written: each handler in `http/routes/` carries a
//! `#[utoipa::path]` annotation and is registered with utoipa-axum's
//! `routes!`, which adds the route to the axum router and the operation to
//! the document in one call; the wire types in `deploy::api` derive their
//! schemas (feature `openapi`). [`base`] adds what is the same everywhere
//! (the bearer scheme, the error body, the table of error codes), and
//! [`finish`] gives every operation the error answers it shares with all the
//! others. `http.rs` builds the whole document from its route list.

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::http::error::ERROR_CODES;

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
        (name = "config", description = "Apps' config and secrets (`deploy env`), and restarting, stopping, starting them"),
        (name = "hosts", description = "The host registry"),
        (name = "notifications", description = "Deploy events sent out, signed (Slack or JSON), and their deliveries"),
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

//! OpenAPI schemas (utoipa) of the types whose serde form is not what their
//! Rust shape suggests: the validated newtypes (strings with a pattern and a
//! length, ids that are positive integers), timestamps, portions and host
//! selectors. The plain wire structs derive theirs beside `Serialize`
//! (`api/`, `drift.rs`, `report.rs`, `manifest.rs`).

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::api::Portion;
use crate::{
    AppName, BuildId, Cluster, DeployId, GitRef, HostName, HostSelector, ProcessName, Sha256,
    Timestamp, Version,
};

/// A string schema with the rules its `parse` enforces.
fn string(description: &str, pattern: Option<&str>, min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .min_length(Some(min))
        .max_length(Some(max))
}

macro_rules! schema {
    ($ty:ty, $build:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let b: ObjectBuilder = $build;
                b.into()
            }
        }
        impl ToSchema for $ty {}
    };
}

schema!(
    AppName,
    string(
        "An app's name: lowercase letters, digits and '-'",
        Some("^[a-z0-9][a-z0-9-]*$"),
        1,
        63
    )
    .examples(["hello"])
);
schema!(
    Cluster,
    string(
        "A cluster's name: lowercase letters, digits and '-'",
        Some("^[a-z0-9][a-z0-9-]*$"),
        1,
        63
    )
    .examples(["prod"])
);
schema!(
    HostName,
    string(
        "A host's name, as in DNS: letters, digits, '-' and '.'",
        Some("^[A-Za-z0-9][A-Za-z0-9.-]*$"),
        1,
        253
    )
    .examples(["web-1"])
);
schema!(
    ProcessName,
    string(
        "A process type of an app: lowercase letters, digits, '-' and '_', starting with a letter",
        Some("^[a-z][a-z0-9_-]*$"),
        1,
        32
    )
    .examples(["worker"])
);
schema!(
    Version,
    string(
        "A release version, `<build number>-<short sha>` for built releases",
        Some("^[A-Za-z0-9][A-Za-z0-9._+-]*$"),
        1,
        128
    )
    .examples(["17-3f9c2ab"])
);
schema!(
    Sha256,
    string(
        "A SHA-256 digest as 64 lowercase hex digits",
        Some("^[0-9a-f]{64}$"),
        64,
        64
    )
);
schema!(
    GitRef,
    string(
        "One commit: a branch, a tag, a full ref name, a full or short sha, or `HEAD` (the tip of \
         the app's branch), with optional `~N`, `^` or `^N` steps back (`main~2`, `v1.4^`, \
         `HEAD~1`); no whitespace, leading '-', ranges (`..`), paths (`:`), reflog entries (`@{`) \
         or patterns (`*?[\\`)",
        Some("^[^-\\s~^:?*\\[\\\\][^\\s:?*\\[\\\\]*$"),
        1,
        255
    )
    .examples(["main", "HEAD~1"])
);
schema!(
    HostSelector,
    string(
        "A regular expression (Rust `regex` syntax) the whole host name must match",
        None,
        1,
        HostSelector::MAX_LEN
    )
    .examples(["web-.*"])
);

fn id(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(description))
}

schema!(DeployId, id("A deploy's id"));
schema!(BuildId, id("A build's id"));
schema!(
    Timestamp,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("A point in time, in unix milliseconds (UTC)"))
);

impl PartialSchema for Portion {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            )
            .item(string(
                "a percentage of the deploy's hosts",
                Some("^([0-9]|[1-9][0-9]|100)%$"),
                2,
                4,
            ))
            .description(Some(
                "A number of hosts (`3`) or a share of the deploy's hosts (`\"25%\"`)",
            ))
            .into()
    }
}
impl ToSchema for Portion {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns in the document accept what `parse` accepts, for the
    /// examples at least (a client generating from the schema must not be
    /// refused for valid input).
    #[test]
    fn examples_parse() {
        let example = |s: RefOr<Schema>| -> String {
            let v = serde_json::to_value(s).unwrap();
            v["examples"][0].as_str().unwrap().to_string()
        };
        AppName::parse(example(AppName::schema())).unwrap();
        Cluster::parse(example(Cluster::schema())).unwrap();
        HostName::parse(example(HostName::schema())).unwrap();
        Version::parse(example(Version::schema())).unwrap();
        GitRef::parse(example(GitRef::schema())).unwrap();
        let v = serde_json::to_value(GitRef::schema()).unwrap();
        GitRef::parse(v["examples"][1].as_str().unwrap()).unwrap();
        HostSelector::parse(example(HostSelector::schema())).unwrap();
    }
}

//! The exit codes of `deploy`, one per kind of outcome, so a script can
//! tell a failed deploy from a typo, a refused token or a server that is
//! down (README "Exit codes"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation ran and failed (a deploy that failed or was partial, a build that failed, drift found) |
//! | 2 | usage error (a bad flag or value, a missing token file, input the server calls invalid) |
//! | 3 | not authenticated, or not allowed |
//! | 4 | not found (an app, a deploy, a build, a host, a ref) |
//! | 5 | refused by a rule (a deploy in progress, a frozen cluster, a pin, a confirmation needed) |
//! | 6 | AppTracker unreachable, or answering 5xx |
//! | 130 | interrupted (Ctrl-C) |
//!
//! `deploy --help` says the same (`args.rs`).

use std::fmt;

use deploy::{ClientError, ErrorCode};

/// The operation ran and failed.
pub(crate) const FAILED: u8 = 1;
/// Bad flags or values.
pub(crate) const USAGE: u8 = 2;
/// No token, a token AppTracker does not know, or one without the role.
pub(crate) const AUTH: u8 = 3;
/// What was named does not exist.
pub(crate) const NOT_FOUND: u8 = 4;
/// A rule refused it (in progress, frozen, pinned, confirmation needed).
pub(crate) const REFUSED: u8 = 5;
/// AppTracker could not be reached, or failed (5xx).
pub(crate) const UNREACHABLE: u8 = 6;
/// Ctrl-C.
pub(crate) const INTERRUPTED: u8 = 130;

/// An error the CLI raises itself, with the exit code it stands for.
#[derive(Debug)]
pub(crate) struct Coded {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error exiting with `code`.
pub(crate) fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    Coded {
        code,
        message: message.into(),
    }
    .into()
}

/// The exit code an error stands for: the first cause that says (a
/// [`Coded`] error, an API answer, a value that did not parse); 2 for
/// anything else (a token file that cannot be read, a bad CA file).
pub(crate) fn code_for(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return client_code(c);
        }
    }
    USAGE
}

/// The exit code of an API client's error.
pub(crate) fn client_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Transport { .. } | ClientError::Tls { .. } | ClientError::Decode { .. } => {
            UNREACHABLE
        }
        ClientError::Api { status, code, .. } => match ErrorCode::parse(code) {
            ErrorCode::Unauthorized | ErrorCode::Forbidden => AUTH,
            ErrorCode::NotFound | ErrorCode::BadRef => NOT_FOUND,
            ErrorCode::InvalidInput | ErrorCode::PayloadTooLarge | ErrorCode::MethodNotAllowed => {
                USAGE
            }
            ErrorCode::Internal | ErrorCode::RequestTimeout => UNREACHABLE,
            ErrorCode::Unknown => match status {
                401 | 403 => AUTH,
                404 => NOT_FOUND,
                409 | 422 | 423 | 429 => REFUSED,
                s if *s >= 500 => UNREACHABLE,
                _ => USAGE,
            },
            // Every other code is a rule saying no (409 and 422).
            _ => REFUSED,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn each_kind_of_answer_has_its_code() {
        assert_eq!(client_code(&api(401, "unauthorized")), AUTH);
        assert_eq!(client_code(&api(403, "forbidden")), AUTH);
        assert_eq!(client_code(&api(404, "not_found")), NOT_FOUND);
        assert_eq!(client_code(&api(422, "bad_ref")), NOT_FOUND);
        assert_eq!(client_code(&api(409, "cluster_frozen")), REFUSED);
        assert_eq!(client_code(&api(409, "deploy_in_progress")), REFUSED);
        assert_eq!(client_code(&api(422, "confirmation_required")), REFUSED);
        assert_eq!(client_code(&api(400, "invalid_input")), USAGE);
        assert_eq!(client_code(&api(500, "internal")), UNREACHABLE);
        // A newer server's code goes by its status.
        assert_eq!(client_code(&api(409, "rate_limited")), REFUSED);
        assert_eq!(client_code(&api(503, "http_error")), UNREACHABLE);
        // Every known code maps somewhere other than success or failure.
        for code in ErrorCode::ALL {
            let c = client_code(&api(code.status(), code.as_str()));
            assert!((2..=6).contains(&c), "{code}: {c}");
        }
    }

    #[test]
    fn the_first_cause_that_knows_decides() {
        let e = anyhow::Error::from(api(404, "not_found")).context("reading the app");
        assert_eq!(code_for(&e), NOT_FOUND);
        assert_eq!(code_for(&coded(REFUSED, "no")), REFUSED);
        assert_eq!(code_for(&anyhow::anyhow!("cannot read a file")), USAGE);
    }
}

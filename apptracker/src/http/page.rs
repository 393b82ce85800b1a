//! Pages of the list endpoints. Every list takes `limit` (1..=1000, 100 by
//! default) and `cursor`, answers a plain JSON array (so clients that know
//! nothing of pages keep working) and names where the next page starts in
//! the `X-Next-Cursor` header, absent on the last page.
//!
//! Pages are keyset pages: the cursor is the sort key of the last item
//! sent (an id, a name, `cluster/host`), and the next page is the items
//! after it. Unlike offsets, a page does not shift when rows are added
//! meanwhile. Cursors are opaque to clients; here they are parsed as
//! strictly as the names they hold, so a bad one is a `400`, never a query
//! error.

use std::str::FromStr;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use deploy::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, NEXT_CURSOR_HEADER, ParseError};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::extract::ApiJson;

/// The page size asked for, checked: absent is the default, out of range a
/// `400` (not silently clamped, so a client learns its page is not what it
/// asked for).
pub fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::Invalid(format!(
            "`limit` must be 1 to {MAX_PAGE_LIMIT}, not {n}"
        ))),
    }
}

/// How many rows to read for a page of `limit`: one more, to know whether
/// there is a next page without asking again.
pub fn rows(limit: u32) -> i64 {
    i64::from(limit) + 1
}

fn bad_cursor(cursor: &str, why: impl std::fmt::Display) -> ApiError {
    let shown: String = cursor.chars().take(80).collect();
    ApiError::Invalid(format!(
        "invalid `cursor` {shown:?}: {why}; pass back the X-Next-Cursor of the page before"
    ))
}

/// A cursor that is an id (lists sorted by id).
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| match c.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err(bad_cursor(c, "not a positive number")),
        })
        .transpose()
}

/// A cursor that is a name (`AppName`, `Cluster`, …).
pub fn name_cursor<T: FromStr<Err = ParseError>>(
    cursor: Option<&str>,
) -> Result<Option<T>, ApiError> {
    cursor
        .map(|c| c.parse::<T>().map_err(|e| bad_cursor(c, e)))
        .transpose()
}

/// A cursor of two names, `first/second` (hosts: cluster and name).
pub fn pair_cursor<A, B>(cursor: Option<&str>) -> Result<Option<(A, B)>, ApiError>
where
    A: FromStr<Err = ParseError>,
    B: FromStr<Err = ParseError>,
{
    cursor
        .map(|c| {
            let (a, b) = c
                .split_once('/')
                .ok_or_else(|| bad_cursor(c, "not of the form `a/b`"))?;
            Ok((
                a.parse::<A>().map_err(|e| bad_cursor(c, e))?,
                b.parse::<B>().map_err(|e| bad_cursor(c, e))?,
            ))
        })
        .transpose()
}

/// A cursor that is free text (token names): no control characters, which
/// PostgreSQL refuses in text (NUL) and which no name holds.
pub fn text_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    cursor
        .map(|c| {
            if c.is_empty() || c.len() > 512 || c.chars().any(char::is_control) {
                Err(bad_cursor(c, "not a name"))
            } else {
                Ok(c)
            }
        })
        .transpose()
}

/// One page of a list as the answer: the items as a JSON array, and the
/// `X-Next-Cursor` header when more follow.
pub struct Paged<T> {
    items: Vec<T>,
    next: Option<String>,
}

impl<T> Paged<T> {
    /// The page of `limit` items out of `rows` (read with [`rows`], so at
    /// most one more than `limit`); `key` gives an item's cursor.
    pub fn cut(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let limit = limit as usize;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self { items: rows, next }
    }

    /// The same page with each item changed (after `cut` took the cursor
    /// from what the answer does not show).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

impl<T: Serialize> IntoResponse for Paged<T> {
    fn into_response(self) -> Response {
        let mut resp = ApiJson(self.items).into_response();
        if let Some(next) = self.next
            && let Ok(value) = HeaderValue::from_str(&next)
        {
            resp.headers_mut().insert(NEXT_CURSOR_HEADER, value);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy::{AppName, Cluster, HostName};

    #[test]
    fn limits_are_checked_not_clamped() {
        assert_eq!(limit(None).unwrap(), DEFAULT_PAGE_LIMIT);
        assert_eq!(limit(Some(1)).unwrap(), 1);
        assert_eq!(limit(Some(MAX_PAGE_LIMIT)).unwrap(), MAX_PAGE_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_PAGE_LIMIT + 1)).is_err());
    }

    #[test]
    fn cursors_parse_strictly() {
        assert_eq!(id_cursor(Some("42")).unwrap(), Some(42));
        assert_eq!(id_cursor(None).unwrap(), None);
        for bad in ["0", "-1", "abc", "", "99999999999999999999"] {
            assert!(id_cursor(Some(bad)).is_err(), "{bad}");
        }
        assert!(name_cursor::<AppName>(Some("hello")).unwrap().is_some());
        assert!(name_cursor::<AppName>(Some("a\0b")).is_err());
        let (c, h) = pair_cursor::<Cluster, HostName>(Some("prod/web-1"))
            .unwrap()
            .unwrap();
        assert_eq!((c.as_str(), h.as_str()), ("prod", "web-1"));
        assert!(pair_cursor::<Cluster, HostName>(Some("prod")).is_err());
        assert!(text_cursor(Some("ci")).unwrap().is_some());
        assert!(text_cursor(Some("a\0")).is_err());
    }

    #[test]
    fn a_page_names_its_successor_only_when_one_follows() {
        let page = Paged::cut(vec![5, 4, 3], 2, |n| n.to_string());
        assert_eq!((page.items, page.next), (vec![5, 4], Some("4".into())));
        let last = Paged::cut(vec![2, 1], 2, |n| n.to_string());
        assert_eq!((last.items, last.next), (vec![2, 1], None));
    }
}

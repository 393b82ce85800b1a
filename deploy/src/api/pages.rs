//! Paging of every list endpoint: the `limit`/`cursor` query, the
//! `X-Next-Cursor` header, and a page as the client returns it.

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

/// Items per page when a list request gives no `limit`.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The largest `limit` a list accepts; more is a `400 invalid_input`.
pub const MAX_PAGE_LIMIT: u32 = 1000;
/// The response header of a list that says where the next page starts;
/// absent on the last page. The body stays a plain JSON array, so clients
/// that know nothing of pages keep working.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// The paging parameters every list endpoint takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts: the `X-Next-Cursor` header of the page
    /// before. Opaque; the first page when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            cursor: None,
        }
    }
}

/// One page of a list, and where the next one starts (none on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

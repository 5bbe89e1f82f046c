//! The one list envelope of the API: `{"items": [...], "next_cursor": ...}`.

use serde::Serialize;
use utoipa::ToSchema;

/// A page of a list, newest or first items first; `next_cursor` is null on the last page (lists
/// that are not paged yet always answer null).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null when there is none.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// A list that is not paged: everything, no cursor.
    pub fn all(items: Vec<T>) -> Page<T> {
        Page {
            items,
            next_cursor: None,
        }
    }
}

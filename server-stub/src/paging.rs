//! Cursor paging for every list: newest first, `?limit=` (at most [`MAX_PAGE_LIMIT`]) and
//! `?cursor=` taken from the previous page's `next_cursor`.
//!
//! A cursor names the last row of the previous page by its sort key (a time or row id and
//! a tie-breaker), so pages stay stable while new rows arrive at the front. Clients treat
//! it as opaque.

use serde::Deserialize;

use crate::error::{ApiError, ApiResult};

/// Rows in a page when the client does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Most rows in one page.
pub const MAX_PAGE_LIMIT: u32 = 100;
/// Longest cursor accepted.
const MAX_CURSOR_LEN: usize = 128;

/// The query string of a list endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Rows per page, 1 to 100 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A checked page request: rows strictly after (older than) `after`, at most `limit`.
#[derive(Debug, Clone)]
pub struct PageParams {
    pub limit: u32,
    pub after: Option<(i64, String)>,
}

impl PageQuery {
    pub fn parse(self) -> ApiResult<PageParams> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidRequest(format!(
                "limit must be 1 to {MAX_PAGE_LIMIT}"
            )));
        }
        let after = self
            .cursor
            .filter(|c| !c.is_empty())
            .map(|c| decode(&c))
            .transpose()?;
        Ok(PageParams { limit, after })
    }
}

impl PageParams {
    /// The sort key to continue after: `(i64::MAX, "")` for the first page.
    pub fn key(&self) -> (i64, String) {
        self.after.clone().unwrap_or((i64::MAX, String::new()))
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts `rows` (fetched with [`fetch`](Self::fetch)) to the page and returns the
    /// cursor of the next page, if there is one.
    pub fn finish<T>(
        &self,
        rows: &mut Vec<T>,
        key: impl Fn(&T) -> (i64, String),
    ) -> Option<String> {
        if rows.len() as i64 <= i64::from(self.limit) {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|r| {
            let (n, s) = key(r);
            encode(n, &s)
        })
    }
}

fn encode(n: i64, s: &str) -> String {
    format!("{n}.{s}")
}

fn decode(c: &str) -> ApiResult<(i64, String)> {
    let bad =
        || ApiError::InvalidRequest("malformed cursor: pass next_cursor back as it came".into());
    if c.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let (n, s) = c.split_once('.').ok_or_else(bad)?;
    let n: i64 = n.parse().map_err(|_| bad())?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad());
    }
    Ok((n, s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        assert_eq!(
            decode(&encode(1_700, "ab-C_9")).unwrap(),
            (1_700, "ab-C_9".into())
        );
        for bad in ["", "x.y", "12", "12.a b", "12.a'--", &"9".repeat(200)] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let q = PageQuery {
            limit: Some(0),
            cursor: None,
        };
        assert!(q.parse().is_err());
        let q = PageQuery {
            limit: Some(101),
            cursor: None,
        };
        assert!(q.parse().is_err());
    }

    #[test]
    fn finish_cuts_the_extra_row_and_names_the_last_kept() {
        let p = PageQuery {
            limit: Some(2),
            cursor: None,
        }
        .parse()
        .unwrap();
        let mut rows = vec![(30, "c"), (20, "b"), (10, "a")];
        let next = p.finish(&mut rows, |r| (r.0, r.1.to_owned()));
        assert_eq!(rows.len(), 2);
        assert_eq!(next.as_deref(), Some("20.b"));
        let mut rows = vec![(30, "c")];
        assert_eq!(p.finish(&mut rows, |r| (r.0, r.1.to_owned())), None);
    }
}

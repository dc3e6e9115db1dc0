//! Full-text search over titles and message text (FTS5, bm25 ranking).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::{params, ErrorCode};

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::SearchHit;

/// Marks the start and end of a match in [`SearchHit::snippet`].
pub const MATCH_START: char = '\u{1}';
pub const MATCH_END: char = '\u{2}';
/// Words of context a snippet shows around the matches.
const SNIPPET_TOKENS: i32 = 12;
/// Ranking scores every matching message; for a word in most of a million
/// messages that takes seconds, so past this budget the newest matches are
/// shown instead.
const RANKING_BUDGET: Duration = Duration::from_millis(60);

/// Turns what the user typed into an FTS5 query that cannot be FTS syntax:
/// every word becomes a quoted string (quotes doubled), all must match, and the
/// last word matches as a prefix while the user is still typing it.
pub fn fts_query(input: &str) -> Option<String> {
    let words: Vec<&str> = input.split_whitespace().collect();
    let last = words.len().checked_sub(1)?;
    let still_typing = !input.ends_with(char::is_whitespace);
    let terms: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let quoted = format!("\"{}\"", word.replace('"', "\"\""));
            if i == last && still_typing {
                quoted + "*"
            } else {
                quoted
            }
        })
        .collect();
    Some(terms.join(" "))
}

impl Store {
    /// The best `limit` matches for `input` among conversations not in the
    /// trash: conversations whose title matches first, then messages, each by
    /// bm25 relevance (scores of titles and messages are not comparable, so they
    /// are not mixed). An empty input finds nothing.
    pub fn search(&self, input: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(query) = fts_query(input) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut hits = self.search_titles(&query, limit)?;
        hits.extend(self.search_messages(&query, limit)?);
        hits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(hits)
    }

    /// Ranking and snippets happen inside FTS5 (`ORDER BY rank LIMIT`), so only
    /// the returned rows get a snippet. The trash filter comes after the limit,
    /// so the limit is widened by the number of rows in the trash.
    fn search_titles(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let trashed: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM conversations WHERE deleted_at IS NOT NULL")?
            .query_row([], |row| row.get(0))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.id, c.title, f.marked, f.rank
             FROM (SELECT rowid, highlight(conversations_fts, 0, char(1), char(2)) AS marked, rank
                   FROM conversations_fts WHERE conversations_fts MATCH ?1 ORDER BY rank LIMIT ?2) f
             JOIN conversations c ON c.seq = f.rowid
             WHERE c.deleted_at IS NULL
             ORDER BY f.rank LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![query, limit.saturating_add(trashed), limit],
            |row| {
                Ok(SearchHit {
                    conversation_id: row.get(0)?,
                    message_id: None,
                    title: row.get(1)?,
                    snippet: row.get(2)?,
                    rank: -row.get::<_, f64>(3)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn search_messages(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        match self.within(RANKING_BUDGET, || {
            self.search_messages_by(query, limit, "rank")
        })? {
            Some(hits) => Ok(hits),
            None => self.search_messages_by(query, limit, "rowid DESC"),
        }
    }

    /// `order` is `rank` or `rowid DESC` (newest first), both of which FTS5
    /// serves itself, so only returned rows get a snippet.
    fn search_messages_by(&self, query: &str, limit: i64, order: &str) -> Result<Vec<SearchHit>> {
        let trashed: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM conversations c JOIN messages m ON m.conversation_id = c.id
                 WHERE c.deleted_at IS NOT NULL",
            )?
            .query_row([], |row| row.get(0))?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT m.conversation_id, m.id, c.title, f.snip, f.rank
             FROM (SELECT rowid, snippet(messages_fts, 0, char(1), char(2), '…', ?4) AS snip, rank
                   FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY {order} LIMIT ?2) f
             JOIN messages m ON m.seq = f.rowid
             JOIN conversations c ON c.id = m.conversation_id
             WHERE c.deleted_at IS NULL
             ORDER BY f.{order} LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![query, limit.saturating_add(trashed), limit, SNIPPET_TOKENS],
            |row| {
                Ok(SearchHit {
                    conversation_id: row.get(0)?,
                    message_id: Some(row.get(1)?),
                    title: row.get(2)?,
                    snippet: row.get(3)?,
                    rank: -row.get::<_, f64>(4)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Runs `query`, interrupting it after `budget`; `None` when interrupted.
    fn within<T>(&self, budget: Duration, query: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        let handle = self.conn.get_interrupt_handle();
        let (done, wait) = mpsc::channel::<()>();
        let timer = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(budget) {
                handle.interrupt();
            }
        });
        let result = query();
        drop(done);
        // Joined before returning, so a late interrupt cannot hit the next
        // statement (SQLite clears it when the next statement starts anyway).
        let _ = timer.join();
        match result {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::Sqlite(e))
                if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fts_query;
    use crate::Store;

    #[test]
    fn the_fallback_for_common_words_lists_the_newest_matches_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let chat = store.create_conversation(None).unwrap();
        let mut parent = None;
        for text in ["llama one", "llama llama llama two", "llama three"] {
            parent = Some(
                store
                    .add_user_message(&chat.id, parent.as_deref(), text, &[])
                    .unwrap(),
            );
        }
        let query = fts_query("llama ").unwrap();
        let newest: Vec<String> = store
            .search_messages_by(&query, 10, "rowid DESC")
            .unwrap()
            .into_iter()
            .map(|hit| hit.snippet)
            .collect();
        assert_eq!(
            newest,
            [
                "\u{1}llama\u{2} three",
                "\u{1}llama\u{2} \u{1}llama\u{2} \u{1}llama\u{2} two",
                "\u{1}llama\u{2} one"
            ]
        );
        let ranked = store.search_messages_by(&query, 10, "rank").unwrap();
        assert!(
            ranked[0].snippet.ends_with("two"),
            "the densest match ranks first"
        );
    }

    #[test]
    fn quotes_every_word_and_prefixes_the_last_while_typing() {
        assert_eq!(fts_query("red ca").as_deref(), Some("\"red\" \"ca\"*"));
        assert_eq!(fts_query("red cat ").as_deref(), Some("\"red\" \"cat\""));
        assert_eq!(fts_query("a\"b OR").as_deref(), Some("\"a\"\"b\" \"OR\"*"));
        assert_eq!(fts_query("   "), None);
    }
}

//! Conversation rows: create, list, rename, pin, trash, restore, purge, settings.

use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::store::{write_tx, Store};
use crate::time::now_ms;
use crate::types::{Conversation, ConversationSummary, GcReport};

/// Title of a conversation created without one; the first user message replaces it.
pub const DEFAULT_TITLE: &str = "New chat";
const AUTO_TITLE_CHARS: usize = 60;

pub(crate) const SUMMARY_COLUMNS: &str =
    "id, title, created_at, updated_at, pinned, model_id, deleted_at IS NOT NULL";

pub(crate) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ConversationSummary> {
    Ok(ConversationSummary {
        id: row.get(0)?,
        title: row.get(1)?,
        created_at: row.get(2)?,
        updated_at: row.get(3)?,
        pinned: row.get(4)?,
        model_id: row.get(5)?,
        deleted: row.get(6)?,
    })
}

pub(crate) fn parse_json(what: &str, text: Option<String>) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(what, e)))
        .transpose()
}

/// A title made from the first words of a user message.
pub(crate) fn title_from_text(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut title: String = line.chars().take(AUTO_TITLE_CHARS).collect();
    if line.chars().count() > AUTO_TITLE_CHARS {
        title.push('…');
    }
    Some(title)
}

impl Store {
    /// Creates an empty conversation. Without a title it is called
    /// [`DEFAULT_TITLE`] until the first user message names it.
    pub fn create_conversation(&self, title: Option<&str>) -> Result<ConversationSummary> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let title_given = title.map(str::trim).filter(|t| !t.is_empty());
        write_tx(&self.conn, |conn| {
            conn.execute(
                "INSERT INTO conversations (id, title, auto_title, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![
                    id,
                    title_given.unwrap_or(DEFAULT_TITLE),
                    title_given.is_none(),
                    now
                ],
            )?;
            Ok(())
        })?;
        self.conversation_summary(&id)
    }

    pub fn conversation_summary(&self, id: &str) -> Result<ConversationSummary> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM conversations WHERE id = ?1"
            ))?
            .query_row([id], summary_from_row)
            .optional()?
            .ok_or_else(|| StoreError::ConversationNotFound(id.to_string()))
    }

    /// Pinned first, then most recently updated. Conversations in the trash only
    /// when `include_deleted`.
    pub fn list_conversations(&self, include_deleted: bool) -> Result<Vec<ConversationSummary>> {
        self.list_conversations_page(include_deleted, usize::MAX, 0)
    }

    /// One page of [`Store::list_conversations`].
    pub fn list_conversations_page(
        &self,
        include_deleted: bool,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ConversationSummary>> {
        let filter = if include_deleted {
            ""
        } else {
            "WHERE deleted_at IS NULL"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM conversations {filter}
             ORDER BY pinned DESC, updated_at DESC, seq DESC LIMIT ?1 OFFSET ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![limit, offset], summary_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The conversation with its active branch of messages.
    pub fn get_conversation(&self, id: &str) -> Result<Conversation> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS}, system_prompt, settings_json, current_leaf_id
                 FROM conversations WHERE id = ?1"
            ))?
            .query_row([id], |row| {
                Ok((
                    summary_from_row(row)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            })
            .optional()?;
        let (summary, system_prompt, settings, leaf) =
            row.ok_or_else(|| StoreError::ConversationNotFound(id.to_string()))?;
        let messages = match leaf {
            Some(leaf) => self.branch_to(&leaf)?,
            None => Vec::new(),
        };
        Ok(Conversation {
            settings: parse_json(&format!("settings of conversation {id}"), settings)?,
            summary,
            system_prompt,
            messages,
        })
    }

    pub fn rename_conversation(&self, id: &str, title: &str) -> Result<()> {
        self.update_conversation(
            id,
            "UPDATE conversations SET title = ?2, auto_title = 0, updated_at = ?3 WHERE id = ?1",
            title.trim(),
        )
    }

    /// Pinning does not count as an update: the list order among unpinned
    /// conversations stays by last activity.
    pub fn pin_conversation(&self, id: &str, pinned: bool) -> Result<()> {
        self.touch_conversation(
            id,
            "UPDATE conversations SET pinned = ?2 WHERE id = ?1",
            pinned,
        )
    }

    /// Moves the conversation to the trash (undo with [`Store::restore_conversation`]).
    pub fn delete_conversation(&self, id: &str) -> Result<()> {
        self.touch_conversation(
            id,
            "UPDATE conversations SET deleted_at = ?2 WHERE id = ?1",
            now_ms(),
        )
    }

    pub fn restore_conversation(&self, id: &str) -> Result<()> {
        self.touch_conversation(
            id,
            "UPDATE conversations SET deleted_at = NULL WHERE id = ?1 AND ?2 IS NULL",
            Option::<i64>::None,
        )
    }

    /// Deletes the conversation and its messages for good, then removes images
    /// nothing refers to any more.
    pub fn purge_conversation(&self, id: &str) -> Result<GcReport> {
        write_tx(&self.conn, |conn| {
            let deleted = conn.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
            if deleted == 0 {
                return Err(StoreError::ConversationNotFound(id.to_string()));
            }
            Ok(())
        })?;
        self.gc_images()
    }

    /// Per-chat system prompt and `ChatSettings` JSON (`None` = use the app defaults).
    pub fn set_chat_settings(
        &self,
        id: &str,
        system_prompt: Option<&str>,
        settings: Option<&Value>,
    ) -> Result<()> {
        let settings = settings.map(Value::to_string);
        write_tx(&self.conn, |conn| {
            let changed = conn.execute(
                "UPDATE conversations SET system_prompt = ?2, settings_json = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, system_prompt, settings, now_ms()],
            )?;
            found(changed, id)
        })
    }

    /// The model last used in this conversation (an opaque id to the store).
    pub fn set_model_id(&self, id: &str, model_id: Option<&str>) -> Result<()> {
        self.touch_conversation(
            id,
            "UPDATE conversations SET model_id = ?2 WHERE id = ?1",
            model_id,
        )
    }

    fn update_conversation(&self, id: &str, sql: &str, value: &str) -> Result<()> {
        write_tx(&self.conn, |conn| {
            let changed = conn.execute(sql, params![id, value, now_ms()])?;
            found(changed, id)
        })
    }

    fn touch_conversation(&self, id: &str, sql: &str, value: impl rusqlite::ToSql) -> Result<()> {
        write_tx(&self.conn, |conn| {
            let changed = conn.execute(sql, params![id, value])?;
            found(changed, id)
        })
    }
}

fn found(changed: usize, id: &str) -> Result<()> {
    if changed == 0 {
        Err(StoreError::ConversationNotFound(id.to_string()))
    } else {
        Ok(())
    }
}

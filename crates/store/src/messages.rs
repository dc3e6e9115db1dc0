//! The message tree: edits and regenerations are siblings under the same parent,
//! and each conversation remembers the leaf of its active branch.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::conversations::{parse_json, title_from_text};
use crate::error::{Result, StoreError};
use crate::store::{write_tx, Store};
use crate::time::now_ms;
use crate::types::{Conversation, Finish, ImageRef, Message, MessageId, MessageStatus, Role};

const MESSAGE_COLUMNS: &str =
    "m.id, m.parent_id, m.role, m.content, m.status, m.created_at, m.stats_json, m.provenance_json, m.error";

/// A message as stored, before its images and siblings are looked up.
struct MessageRow {
    message: Message,
    stats: Option<String>,
    provenance: Option<String>,
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<(MessageRow, String, String)> {
    let role: String = row.get(2)?;
    let status: String = row.get(4)?;
    let message = Message {
        id: row.get(0)?,
        parent_id: row.get(1)?,
        role: Role::User,
        content: row.get(3)?,
        status: MessageStatus::Complete,
        created_at: row.get(5)?,
        images: Vec::new(),
        stats: None,
        provenance: None,
        error: row.get(8)?,
        sibling_ids: Vec::new(),
    };
    let stored = MessageRow {
        message,
        stats: row.get(6)?,
        provenance: row.get(7)?,
    };
    Ok((stored, role, status))
}

/// What a new message is made of.
pub(crate) struct NewMessage<'a> {
    pub conversation_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub role: Role,
    pub content: &'a str,
    pub status: MessageStatus,
    pub image_sha256s: &'a [String],
    /// The writer (open store) that sets a streaming answer streaming.
    pub writer_id: Option<&'a str>,
}

impl Store {
    /// Adds a finished message (user, system, or a complete answer) under
    /// `parent_id` (`None` for the first message) and makes it the active leaf.
    /// An edit is a new message under the edited one's parent.
    pub fn add_message(
        &self,
        conversation_id: &str,
        parent_id: Option<&str>,
        role: Role,
        content: &str,
        image_sha256s: &[String],
    ) -> Result<MessageId> {
        self.insert_message(NewMessage {
            conversation_id,
            parent_id,
            role,
            content,
            status: MessageStatus::Complete,
            image_sha256s,
            writer_id: None,
        })
    }

    /// [`Store::add_message`] for the user's turn.
    pub fn add_user_message(
        &self,
        conversation_id: &str,
        parent_id: Option<&str>,
        text: &str,
        image_sha256s: &[String],
    ) -> Result<MessageId> {
        self.add_message(conversation_id, parent_id, Role::User, text, image_sha256s)
    }

    /// Creates the answer row, status `streaming`, before the first token arrives,
    /// and makes it the active leaf. A regeneration is another answer under the
    /// same parent.
    pub fn begin_assistant(&self, conversation_id: &str, parent_id: &str) -> Result<MessageId> {
        self.insert_message(NewMessage {
            conversation_id,
            parent_id: Some(parent_id),
            role: Role::Assistant,
            content: "",
            status: MessageStatus::Streaming,
            image_sha256s: &[],
            writer_id: Some(self.lease.id()),
        })
    }

    /// Appends streamed text in its own short transaction. For token-by-token
    /// streaming prefer [`Store::stream_writer`], which batches.
    pub fn append(&self, message_id: &str, delta: &str) -> Result<()> {
        write_tx(&self.conn, |conn| append_text(conn, message_id, delta))
    }

    /// Records how a streaming answer ended.
    pub fn finish(&self, message_id: &str, finish: &Finish) -> Result<()> {
        write_tx(&self.conn, |conn| finish_answer(conn, message_id, finish))
    }

    /// Reopens a finished answer for "continue": it becomes `streaming` again
    /// (its error is cleared; stats and provenance are replaced when it finishes).
    pub fn continue_answer(&self, message_id: &str) -> Result<()> {
        write_tx(&self.conn, |conn| {
            let (_, role, _) = message_state(conn, message_id)?;
            if role != Role::Assistant {
                return Err(StoreError::NotAnAnswer(message_id.to_string()));
            }
            conn.execute(
                "UPDATE messages SET status = 'streaming', error = NULL, writer_id = ?2 WHERE id = ?1",
                params![message_id, self.lease.id()],
            )?;
            Ok(())
        })
    }

    pub fn message(&self, message_id: &str) -> Result<Message> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1"
            ))?
            .query_row([message_id], message_from_row)
            .optional()?
            .ok_or_else(|| StoreError::MessageNotFound(message_id.to_string()))?;
        self.complete_message(row)
    }

    /// The leaf of the active branch (`None` for an empty conversation): the
    /// parent for the next user message.
    pub fn current_leaf(&self, conversation_id: &str) -> Result<Option<MessageId>> {
        self.conn
            .prepare_cached("SELECT current_leaf_id FROM conversations WHERE id = ?1")?
            .query_row([conversation_id], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StoreError::ConversationNotFound(conversation_id.to_string()))
    }

    /// Makes the branch through `message_id` active, following the newest
    /// version below it down to a leaf, and returns the conversation.
    pub fn switch_branch(&self, conversation_id: &str, message_id: &str) -> Result<Conversation> {
        write_tx(&self.conn, |conn| {
            ensure_in_conversation(conn, conversation_id, message_id)?;
            let mut leaf = message_id.to_string();
            let mut newest_child = conn.prepare_cached(
                "SELECT id FROM messages WHERE parent_id = ?1 ORDER BY seq DESC LIMIT 1",
            )?;
            while let Some(child) = newest_child
                .query_row([&leaf], |row| row.get(0))
                .optional()?
            {
                leaf = child;
            }
            conn.execute(
                "UPDATE conversations SET current_leaf_id = ?2 WHERE id = ?1",
                params![conversation_id, leaf],
            )?;
            Ok(())
        })?;
        self.get_conversation(conversation_id)
    }

    /// Every message of the conversation, all branches, in the order they were
    /// written (parents before children).
    pub fn message_tree(&self, conversation_id: &str) -> Result<Vec<Message>> {
        self.conversation_summary(conversation_id)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?1 ORDER BY m.seq"
        ))?;
        let rows = stmt
            .query_map([conversation_id], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|row| self.complete_message(row))
            .collect()
    }

    /// Every message from the root down to `leaf`, oldest first.
    pub(crate) fn branch_to(&self, leaf: &str) -> Result<Vec<Message>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "WITH RECURSIVE branch(id, depth) AS (
                 SELECT ?1, 0
                 UNION ALL
                 SELECT m.parent_id, branch.depth + 1 FROM messages m JOIN branch ON m.id = branch.id
                 WHERE m.parent_id IS NOT NULL
             )
             SELECT {MESSAGE_COLUMNS} FROM branch JOIN messages m ON m.id = branch.id
             ORDER BY branch.depth DESC"
        ))?;
        let rows = stmt
            .query_map([leaf], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|row| self.complete_message(row))
            .collect()
    }

    fn complete_message(
        &self,
        (row, role, status): (MessageRow, String, String),
    ) -> Result<Message> {
        let mut message = row.message;
        let what = |field: &str| format!("{field} of message {}", message.id);
        message.role = role.parse()?;
        message.status = status.parse()?;
        message.stats = parse_json(&what("stats"), row.stats)?;
        message.provenance = parse_json(&what("provenance"), row.provenance)?;
        message.images = self.message_images(&message.id)?;
        message.sibling_ids = self.sibling_ids(&message.id, message.parent_id.as_deref())?;
        Ok(message)
    }

    pub(crate) fn message_images(&self, message_id: &str) -> Result<Vec<ImageRef>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.sha256, i.mime, i.width, i.height, i.bytes
             FROM message_images mi JOIN images i ON i.sha256 = mi.sha256
             WHERE mi.message_id = ?1 ORDER BY mi.position",
        )?;
        let rows = stmt.query_map([message_id], |row| {
            Ok(ImageRef {
                sha256: row.get(0)?,
                mime: row.get(1)?,
                width: row.get(2)?,
                height: row.get(3)?,
                bytes: row.get::<_, i64>(4)?.unsigned_abs(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn sibling_ids(&self, message_id: &str, parent_id: Option<&str>) -> Result<Vec<MessageId>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM messages
             WHERE conversation_id = (SELECT conversation_id FROM messages WHERE id = ?1)
               AND parent_id IS ?2
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![message_id, parent_id], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn insert_message(&self, new: NewMessage<'_>) -> Result<MessageId> {
        let id = uuid::Uuid::new_v4().to_string();
        write_tx(&self.conn, |conn| {
            insert_message_row(conn, &id, &new, now_ms())?;
            conn.execute(
                "UPDATE conversations SET current_leaf_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![new.conversation_id, id, now_ms()],
            )?;
            if new.role == Role::User {
                if let Some(title) = title_from_text(new.content) {
                    conn.execute(
                        "UPDATE conversations SET title = ?2, auto_title = 0 WHERE id = ?1 AND auto_title = 1",
                        params![new.conversation_id, title],
                    )?;
                }
            }
            Ok(())
        })?;
        Ok(id)
    }
}

/// Inserts one message row and its image links, checking that the conversation,
/// the parent and the images exist. Runs inside the caller's transaction.
pub(crate) fn insert_message_row(
    conn: &Connection,
    id: &str,
    new: &NewMessage<'_>,
    created_at: i64,
) -> Result<()> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ?1)")?
        .query_row([new.conversation_id], |row| row.get(0))?;
    if !exists {
        return Err(StoreError::ConversationNotFound(
            new.conversation_id.to_string(),
        ));
    }
    if let Some(parent) = new.parent_id {
        ensure_in_conversation(conn, new.conversation_id, parent)?;
    }
    conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at, writer_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        new.conversation_id,
        new.parent_id,
        new.role.as_str(),
        new.content,
        new.status.as_str(),
        created_at,
        new.writer_id
    ])?;
    let mut image_known =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM images WHERE sha256 = ?1)")?;
    let mut link = conn.prepare_cached(
        "INSERT INTO message_images (message_id, position, sha256) VALUES (?1, ?2, ?3)",
    )?;
    for (position, sha) in new.image_sha256s.iter().enumerate() {
        if !image_known.query_row([sha], |row| row.get::<_, bool>(0))? {
            return Err(StoreError::ImageMissing(sha.clone()));
        }
        link.execute(params![id, position as i64, sha])?;
    }
    Ok(())
}

fn ensure_in_conversation(
    conn: &Connection,
    conversation_id: &str,
    message_id: &str,
) -> Result<()> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT conversation_id FROM messages WHERE id = ?1")?
        .query_row([message_id], |row| row.get(0))
        .optional()?;
    match owner {
        None => Err(StoreError::MessageNotFound(message_id.to_string())),
        Some(owner) if owner != conversation_id => Err(StoreError::WrongConversation {
            conversation: conversation_id.to_string(),
            message: message_id.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// Conversation, role and status of a message.
fn message_state(conn: &Connection, message_id: &str) -> Result<(String, Role, MessageStatus)> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached("SELECT conversation_id, role, status FROM messages WHERE id = ?1")?
        .query_row([message_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let (conversation, role, status) =
        row.ok_or_else(|| StoreError::MessageNotFound(message_id.to_string()))?;
    Ok((conversation, role.parse()?, status.parse()?))
}

fn not_streaming(conn: &Connection, message_id: &str) -> StoreError {
    match message_state(conn, message_id) {
        Ok((_, _, status)) => StoreError::NotStreaming {
            id: message_id.to_string(),
            status: status.to_string(),
        },
        Err(e) => e,
    }
}

pub(crate) fn append_text(conn: &Connection, message_id: &str, delta: &str) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET content = content || ?2 WHERE id = ?1 AND status = 'streaming'",
        )?
        .execute(params![message_id, delta])?;
    if changed == 0 {
        return Err(not_streaming(conn, message_id));
    }
    Ok(())
}

pub(crate) fn finish_answer(conn: &Connection, message_id: &str, finish: &Finish) -> Result<()> {
    if !finish.status.is_final() {
        return Err(StoreError::NotFinal(finish.status.to_string()));
    }
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET status = ?2, error = ?3, stats_json = ?4, provenance_json = ?5
             WHERE id = ?1 AND status = 'streaming'",
        )?
        .execute(params![
            message_id,
            finish.status.as_str(),
            finish.error,
            finish.stats.as_ref().map(|v| v.to_string()),
            finish.provenance.as_ref().map(|v| v.to_string()),
        ])?;
    if changed == 0 {
        return Err(not_streaming(conn, message_id));
    }
    conn.execute(
        "UPDATE conversations SET updated_at = ?2
         WHERE id = (SELECT conversation_id FROM messages WHERE id = ?1)",
        params![message_id, now_ms()],
    )?;
    Ok(())
}

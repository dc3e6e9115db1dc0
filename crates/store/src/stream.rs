//! Batched, crash-safe writes of a streaming answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Result, StoreError};
use crate::messages::{append_text, finish_answer, insert_message_row, NewMessage};
use crate::store::{write_tx, Store};
use crate::time::now_ms;
use crate::types::{Finish, MessageId, MessageStatus, Role};
use crate::writers::WriterLease;

/// When buffered text is written: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    pub max_delay: Duration,
    pub max_chars: usize,
}

impl Default for FlushPolicy {
    /// At most 250 ms or 64 characters of an answer can be lost to a crash.
    fn default() -> Self {
        FlushPolicy {
            max_delay: Duration::from_millis(250),
            max_chars: 64,
        }
    }
}

/// Writes one streaming answer on its own database connection, so a generation
/// thread can own it while the rest of the app keeps using the [`Store`].
///
/// Dropping it without [`StreamWriter::finish`] (a panic, an early return)
/// writes the buffered text and marks the answer `interrupted`.
///
/// If its row is taken from it while it writes (marked `interrupted` by an
/// older ImpChat, or by an open that could not tell this writer was alive), it
/// goes on in a new answer under the same question that starts with all the
/// text already committed, and makes that the active branch: the taken row
/// keeps what it had, and the rest of the answer is not lost.
/// [`StreamWriter::message_id`] then names the new row.
pub struct StreamWriter {
    conn: Connection,
    lease: Arc<WriterLease>,
    message_id: MessageId,
    policy: FlushPolicy,
    buffer: String,
    buffered_chars: usize,
    committed_chars: usize,
    last_flush: Instant,
    finished: bool,
}

impl Store {
    /// A writer for an answer created by [`Store::begin_assistant`] (or reopened
    /// by [`Store::continue_answer`]), flushing by [`FlushPolicy::default`].
    pub fn stream_writer(&self, message_id: &str) -> Result<StreamWriter> {
        self.stream_writer_with(message_id, FlushPolicy::default())
    }

    pub fn stream_writer_with(
        &self,
        message_id: &str,
        policy: FlushPolicy,
    ) -> Result<StreamWriter> {
        let message = self.message(message_id)?;
        if message.status != MessageStatus::Streaming {
            return Err(crate::StoreError::NotStreaming {
                id: message.id,
                status: message.status.to_string(),
            });
        }
        Ok(StreamWriter {
            conn: self.new_connection()?,
            lease: Arc::clone(&self.lease),
            message_id: message.id,
            policy,
            buffer: String::new(),
            buffered_chars: 0,
            committed_chars: message.content.chars().count(),
            last_flush: Instant::now(),
            finished: false,
        })
    }
}

impl StreamWriter {
    /// The row the answer is being written to (a new one after its row was taken).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Characters of the answer that are safely in the database.
    pub fn committed_chars(&self) -> usize {
        self.committed_chars
    }

    /// Buffers `delta` and writes the buffer when the policy says so. Returns
    /// `true` when this call committed text.
    pub fn append(&mut self, delta: &str) -> Result<bool> {
        self.buffer.push_str(delta);
        self.buffered_chars += delta.chars().count();
        let due = self.buffered_chars >= self.policy.max_chars
            || self.last_flush.elapsed() >= self.policy.max_delay;
        if due && !self.buffer.is_empty() {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes whatever is buffered in one short transaction. On error the text
    /// stays buffered, so a later flush can retry.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let row = write_tx(&self.conn, |conn| {
                let row = own_row(conn, &self.message_id, self.lease.id())?;
                append_text(conn, &row, &self.buffer)?;
                Ok(row)
            })?;
            self.message_id = row;
            self.committed_chars += self.buffered_chars;
            self.buffer.clear();
            self.buffered_chars = 0;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Writes the rest of the text and how the answer ended, atomically.
    /// Returns the row the answer ended in (see [`StreamWriter::message_id`]).
    pub fn finish(mut self, finish: &Finish) -> Result<MessageId> {
        self.finish_inner(finish)?;
        Ok(self.message_id.clone())
    }

    fn finish_inner(&mut self, finish: &Finish) -> Result<()> {
        let row = write_tx(&self.conn, |conn| {
            let nothing_to_add =
                self.buffer.is_empty() && finish.status == MessageStatus::Interrupted;
            if nothing_to_add && !is_ours(conn, &self.message_id, self.lease.id())? {
                // Already taken, hence already interrupted: a new row would only repeat it.
                return Ok(self.message_id.clone());
            }
            let row = own_row(conn, &self.message_id, self.lease.id())?;
            if !self.buffer.is_empty() {
                append_text(conn, &row, &self.buffer)?;
            }
            finish_answer(conn, &row, finish)?;
            Ok(row)
        })?;
        self.message_id = row;
        self.committed_chars += self.buffered_chars;
        self.buffer.clear();
        self.buffered_chars = 0;
        self.finished = true;
        Ok(())
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished {
            let interrupted = Finish {
                status: MessageStatus::Interrupted,
                error: None,
                stats: None,
                provenance: None,
            };
            // Nothing to report to from a destructor; if this fails the row
            // stays `streaming` and the first open after this process has
            // gone marks it interrupted anyway.
            let _ = self.finish_inner(&interrupted);
        }
    }
}

/// Whether `message_id` is still streaming and written by `writer`.
fn is_ours(conn: &Connection, message_id: &str, writer: &str) -> Result<bool> {
    let state: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT status, writer_id FROM messages WHERE id = ?1")?
        .query_row([message_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (status, owner) = state.ok_or_else(|| StoreError::MessageNotFound(message_id.into()))?;
    Ok(status == MessageStatus::Streaming.as_str() && owner.as_deref() == Some(writer))
}

/// The row this writer goes on writing in: `message_id` while it is still
/// ours, otherwise a new streaming answer beside it (same question) holding
/// the taken row's text, made the active leaf. Runs in the caller's transaction.
fn own_row(conn: &Connection, message_id: &str, writer: &str) -> Result<MessageId> {
    if is_ours(conn, message_id, writer)? {
        return Ok(message_id.to_string());
    }
    let (conversation_id, parent_id, content): (String, Option<String>, String) = conn
        .prepare_cached("SELECT conversation_id, parent_id, content FROM messages WHERE id = ?1")?
        .query_row([message_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let id = uuid::Uuid::new_v4().to_string();
    let new = NewMessage {
        conversation_id: &conversation_id,
        parent_id: parent_id.as_deref(),
        role: Role::Assistant,
        content: &content,
        status: MessageStatus::Streaming,
        image_sha256s: &[],
        writer_id: Some(writer),
    };
    insert_message_row(conn, &id, &new, now_ms())?;
    conn.execute(
        "UPDATE conversations SET current_leaf_id = ?2, updated_at = ?3
         WHERE id = ?1 AND (current_leaf_id = ?4 OR current_leaf_id IS NULL)",
        params![conversation_id, id, now_ms(), message_id],
    )?;
    Ok(id)
}

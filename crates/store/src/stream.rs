//! Batched, crash-safe writes of a streaming answer.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::Result;
use crate::messages::{append_text, finish_answer};
use crate::store::{write_tx, Store};
use crate::types::{Finish, MessageId, MessageStatus};

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
pub struct StreamWriter {
    conn: Connection,
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
            write_tx(&self.conn, |conn| {
                append_text(conn, &self.message_id, &self.buffer)
            })?;
            self.committed_chars += self.buffered_chars;
            self.buffer.clear();
            self.buffered_chars = 0;
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Writes the rest of the text and how the answer ended, atomically.
    pub fn finish(mut self, finish: &Finish) -> Result<()> {
        self.finish_inner(finish)
    }

    fn finish_inner(&mut self, finish: &Finish) -> Result<()> {
        write_tx(&self.conn, |conn| {
            if !self.buffer.is_empty() {
                append_text(conn, &self.message_id, &self.buffer)?;
            }
            finish_answer(conn, &self.message_id, finish)
        })?;
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
            // stays `streaming` and the next open marks it interrupted anyway.
            let _ = self.finish_inner(&interrupted);
        }
    }
}

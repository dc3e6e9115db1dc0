//! Lossless export/import as a .zip archive:
//! `manifest.json`, `conversations.json` and `images/<sha256>.<ext>`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::conversations::parse_json;
use crate::error::{Result, StoreError};
use crate::images::sha256_hex;
use crate::messages::{insert_message_row, NewMessage};
use crate::schema::SCHEMA_VERSION;
use crate::store::{write_tx, Store};
use crate::time::now_ms;
use crate::types::{ExportScope, ImportReport, MessageStatus, Role};

pub const ARCHIVE_FORMAT: &str = "impchat-archive";
/// Version of the archive layout this build writes and the newest it reads.
pub const ARCHIVE_FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const CONVERSATIONS: &str = "conversations.json";
const IMAGES_PREFIX: &str = "images/";
/// How far each kind of entry may inflate. Reads stop one byte past the cap
/// whatever the entry's header claims, so a zip bomb costs at most this much.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;
const MAX_CONVERSATIONS_BYTES: u64 = 256 << 20;
const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// More entries than any export holds (each conversation's images are few).
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: String,
    format_version: u32,
    app_version: String,
    schema_version: i64,
    exported_at: i64,
    conversations: usize,
    images: usize,
}

/// A whole conversation tree as written to `conversations.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArchivedConversation {
    pub id: String,
    /// The id this conversation had where it was first created; imports of the
    /// same conversation share it.
    pub origin_id: String,
    pub title: String,
    pub auto_title: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub pinned: bool,
    pub model_id: Option<String>,
    pub deleted_at: Option<i64>,
    pub system_prompt: Option<String>,
    pub settings: Option<Value>,
    pub current_leaf_id: Option<String>,
    /// Parents before children.
    pub messages: Vec<ArchivedMessage>,
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArchivedMessage {
    pub id: String,
    pub parent_id: Option<String>,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub created_at: i64,
    pub stats: Option<Value>,
    pub provenance: Option<Value>,
    /// SHA-256 of each attached image, in order.
    pub images: Vec<String>,
}

/// What the content hash covers: everything a user wrote or was answered, by
/// position rather than id, so an imported copy hashes like its original.
#[derive(Serialize)]
struct HashedContent<'a> {
    title: &'a str,
    system_prompt: &'a Option<String>,
    settings: &'a Option<Value>,
    messages: Vec<HashedMessage<'a>>,
}

#[derive(Serialize)]
struct HashedMessage<'a> {
    parent: Option<usize>,
    role: Role,
    content: &'a str,
    status: MessageStatus,
    error: &'a Option<String>,
    created_at: i64,
    stats: &'a Option<Value>,
    provenance: &'a Option<Value>,
    images: &'a [String],
}

/// Streaming answers are imported as interrupted, so they hash as such.
fn settled(status: MessageStatus) -> MessageStatus {
    if status == MessageStatus::Streaming {
        MessageStatus::Interrupted
    } else {
        status
    }
}

/// `None` when a parent is missing or comes after its child.
fn content_hash(conversation: &ArchivedConversation) -> Option<String> {
    let mut index = HashMap::new();
    let mut messages = Vec::with_capacity(conversation.messages.len());
    for (i, message) in conversation.messages.iter().enumerate() {
        let parent = match &message.parent_id {
            Some(parent) => Some(*index.get(parent.as_str())?),
            None => None,
        };
        index.insert(message.id.as_str(), i);
        messages.push(HashedMessage {
            parent,
            role: message.role,
            content: &message.content,
            status: settled(message.status),
            error: &message.error,
            created_at: message.created_at,
            stats: &message.stats,
            provenance: &message.provenance,
            images: &message.images,
        });
    }
    let content = HashedContent {
        title: &conversation.title,
        system_prompt: &conversation.system_prompt,
        settings: &conversation.settings,
        messages,
    };
    let json = serde_json::to_vec(&content).ok()?;
    Some(hex::encode(Sha256::digest(json)))
}

impl Store {
    /// Writes the conversation (`ExportScope::One`, trash included) or every
    /// conversation not in the trash to a .zip archive at `path`, replacing it
    /// atomically. Returns the path written.
    pub fn export_archive(&self, scope: ExportScope<'_>, path: &Path) -> Result<PathBuf> {
        let conversations = self.archived_conversations(scope)?;
        let images: BTreeSet<&str> = conversations
            .iter()
            .flat_map(|c| &c.messages)
            .flat_map(|m| m.images.iter().map(String::as_str))
            .collect();
        let manifest = Manifest {
            format: ARCHIVE_FORMAT.into(),
            format_version: ARCHIVE_FORMAT_VERSION,
            app_version: env!("CARGO_PKG_VERSION").into(),
            schema_version: SCHEMA_VERSION,
            exported_at: now_ms(),
            conversations: conversations.len(),
            images: images.len(),
        };
        write_file_atomic(path, |file| {
            let mut zip = ZipWriter::new(BufWriter::new(file));
            let deflated =
                SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
            let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
            let zip_error = |e: zip::result::ZipError| std::io::Error::other(e);
            zip.start_file(MANIFEST, deflated).map_err(zip_error)?;
            serde_json::to_writer_pretty(&mut zip, &manifest)?;
            zip.start_file(CONVERSATIONS, deflated).map_err(zip_error)?;
            serde_json::to_writer(&mut zip, &conversations)?;
            for sha in &images {
                let ext = self.image_ext(sha).map_err(std::io::Error::other)?;
                let bytes = fs::read(self.image_file(sha, &ext))?;
                zip.start_file(format!("{IMAGES_PREFIX}{sha}.{ext}"), stored)
                    .map_err(zip_error)?;
                zip.write_all(&bytes)?;
            }
            let mut out = zip.finish().map_err(zip_error)?;
            out.flush()
        })?;
        Ok(path.to_path_buf())
    }

    /// Imports an archive made by [`Store::export_archive`]: new ids, same
    /// content. Conversations already here (same origin and same content) are
    /// skipped. Everything is checked before anything is written; the
    /// conversations go in as one transaction.
    pub fn import_archive(&self, path: &Path) -> Result<ImportReport> {
        let invalid = |reason: String| StoreError::InvalidArchive {
            path: path.to_path_buf(),
            reason,
        };
        let file = open_regular_file(path)?;
        let mut zip =
            ZipArchive::new(file).map_err(|e| invalid(format!("not a readable zip file ({e})")))?;
        if zip.len() > MAX_ENTRIES {
            return Err(invalid(format!(
                "it has {} entries, more than the {MAX_ENTRIES} an import reads",
                zip.len()
            )));
        }
        let manifest: Manifest =
            read_json(&mut zip, MANIFEST, MAX_MANIFEST_BYTES).map_err(&invalid)?;
        if manifest.format != ARCHIVE_FORMAT {
            return Err(invalid(format!(
                "its manifest says format {:?}",
                manifest.format
            )));
        }
        if manifest.format_version > ARCHIVE_FORMAT_VERSION {
            return Err(StoreError::ArchiveTooNew {
                path: path.to_path_buf(),
                found: manifest.format_version,
                supported: ARCHIVE_FORMAT_VERSION,
            });
        }
        let conversations: Vec<ArchivedConversation> =
            read_json(&mut zip, CONVERSATIONS, MAX_CONVERSATIONS_BYTES).map_err(&invalid)?;
        let mut hashes = Vec::with_capacity(conversations.len());
        for conversation in &conversations {
            hashes.push(validate(conversation).map_err(&invalid)?);
        }

        let archived_images = image_entries(&mut zip);
        let needed: BTreeSet<&str> = conversations
            .iter()
            .flat_map(|c| &c.messages)
            .flat_map(|m| m.images.iter().map(String::as_str))
            .collect();
        for sha in &needed {
            match archived_images.get(*sha) {
                Some(entry) => {
                    let bytes = read_entry(&mut zip, entry, MAX_IMAGE_BYTES).map_err(&invalid)?;
                    if sha256_hex(&bytes) != *sha {
                        return Err(invalid(format!(
                            "image {entry} does not match its SHA-256 name"
                        )));
                    }
                    self.put_image(&bytes)?;
                }
                None if self.image(sha).is_ok() => {}
                None => {
                    return Err(invalid(format!(
                        "image {sha} is referenced but not included"
                    )))
                }
            }
        }

        write_tx(&self.conn, |conn| {
            let mut report = ImportReport::default();
            for (conversation, hash) in conversations.iter().zip(&hashes) {
                if self.already_imported(conn, conversation, hash)? {
                    report.skipped += 1;
                } else {
                    insert_conversation(conn, conversation)?;
                    report.imported += 1;
                }
            }
            Ok(report)
        })
    }

    fn already_imported(
        &self,
        conn: &Connection,
        conversation: &ArchivedConversation,
        hash: &str,
    ) -> Result<bool> {
        let mut stmt =
            conn.prepare_cached("SELECT id FROM conversations WHERE id = ?1 OR origin_id = ?1")?;
        let candidates = stmt
            .query_map([&conversation.origin_id], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for id in candidates {
            let existing = self.archived_conversation(&id)?;
            if content_hash(&existing).as_deref() == Some(hash) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn archived_conversations(&self, scope: ExportScope<'_>) -> Result<Vec<ArchivedConversation>> {
        let ids: Vec<String> = match scope {
            ExportScope::One(id) => vec![id.to_string()],
            ExportScope::All => {
                let mut stmt = self.conn.prepare(
                    "SELECT id FROM conversations WHERE deleted_at IS NULL ORDER BY seq",
                )?;
                let ids = stmt.query_map([], |row| row.get(0))?;
                ids.collect::<rusqlite::Result<_>>()?
            }
        };
        ids.iter()
            .map(|id| self.archived_conversation(id))
            .collect()
    }

    pub(crate) fn archived_conversation(&self, id: &str) -> Result<ArchivedConversation> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, COALESCE(origin_id, id), title, auto_title, created_at, updated_at, pinned, model_id,
                        deleted_at, system_prompt, settings_json, current_leaf_id
                 FROM conversations WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok((
                    ArchivedConversation {
                        id: row.get(0)?,
                        origin_id: row.get(1)?,
                        title: row.get(2)?,
                        auto_title: row.get(3)?,
                        created_at: row.get(4)?,
                        updated_at: row.get(5)?,
                        pinned: row.get(6)?,
                        model_id: row.get(7)?,
                        deleted_at: row.get(8)?,
                        system_prompt: row.get(9)?,
                        settings: None,
                        current_leaf_id: row.get(11)?,
                        messages: Vec::new(),
                        content_hash: String::new(),
                    },
                    row.get::<_, Option<String>>(10)?,
                ))
            })
            .optional()?;
        let (mut conversation, settings) =
            row.ok_or_else(|| StoreError::ConversationNotFound(id.to_string()))?;
        conversation.settings = parse_json(&format!("settings of conversation {id}"), settings)?;
        conversation.messages = self.archived_messages(id)?;
        conversation.content_hash = content_hash(&conversation).ok_or_else(|| {
            StoreError::corrupt(
                format!("conversation {id}"),
                "a message's parent is missing",
            )
        })?;
        Ok(conversation)
    }

    fn archived_messages(&self, conversation_id: &str) -> Result<Vec<ArchivedMessage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, parent_id, role, content, status, error, created_at, stats_json, provenance_json
             FROM messages WHERE conversation_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([conversation_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(
                |(id, parent_id, role, content, status, error, created_at, stats, provenance)| {
                    let what = |field: &str| format!("{field} of message {id}");
                    Ok(ArchivedMessage {
                        stats: parse_json(&what("stats"), stats)?,
                        provenance: parse_json(&what("provenance"), provenance)?,
                        images: self
                            .message_images(&id)?
                            .into_iter()
                            .map(|i| i.sha256)
                            .collect(),
                        role: role.parse()?,
                        status: status.parse()?,
                        id,
                        parent_id,
                        content,
                        error,
                        created_at,
                    })
                },
            )
            .collect()
    }
}

/// Checks ids, parent order and the current leaf; returns the content hash.
fn validate(conversation: &ArchivedConversation) -> Result<String, String> {
    let name = format!("conversation {:?}", conversation.title);
    let mut ids = HashSet::new();
    for message in &conversation.messages {
        if !ids.insert(message.id.as_str()) {
            return Err(format!("{name} has message id {} twice", message.id));
        }
    }
    if let Some(leaf) = &conversation.current_leaf_id {
        if !ids.contains(leaf.as_str()) {
            return Err(format!(
                "{name} points at a current message {leaf} it does not contain"
            ));
        }
    }
    content_hash(conversation)
        .ok_or_else(|| format!("{name} has a message whose parent is missing or listed after it"))
}

/// Inserts one archived conversation under fresh ids.
fn insert_conversation(conn: &Connection, conversation: &ArchivedConversation) -> Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.prepare_cached(
        "INSERT INTO conversations (id, origin_id, title, auto_title, created_at, updated_at, pinned, model_id,
                                    deleted_at, system_prompt, settings_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        id,
        conversation.origin_id,
        conversation.title,
        conversation.auto_title,
        conversation.created_at,
        conversation.updated_at,
        conversation.pinned,
        conversation.model_id,
        conversation.deleted_at,
        conversation.system_prompt,
        conversation.settings.as_ref().map(Value::to_string),
    ])?;
    let mut new_ids: HashMap<&str, String> = HashMap::new();
    let mut details = conn.prepare_cached(
        "UPDATE messages SET error = ?2, stats_json = ?3, provenance_json = ?4 WHERE id = ?1",
    )?;
    for message in &conversation.messages {
        let message_id = uuid::Uuid::new_v4().to_string();
        let parent_id = message
            .parent_id
            .as_deref()
            .and_then(|p| new_ids.get(p))
            .map(String::as_str);
        let new = NewMessage {
            conversation_id: &id,
            parent_id,
            role: message.role,
            content: &message.content,
            status: settled(message.status),
            image_sha256s: &message.images,
            writer_id: None,
        };
        insert_message_row(conn, &message_id, &new, message.created_at)?;
        details.execute(params![
            message_id,
            message.error,
            message.stats.as_ref().map(Value::to_string),
            message.provenance.as_ref().map(Value::to_string),
        ])?;
        new_ids.insert(message.id.as_str(), message_id);
    }
    let leaf = conversation
        .current_leaf_id
        .as_deref()
        .and_then(|l| new_ids.get(l));
    conn.execute(
        "UPDATE conversations SET current_leaf_id = ?2 WHERE id = ?1",
        params![id, leaf],
    )?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned, R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    cap: u64,
) -> Result<T, String> {
    let bytes = read_entry(zip, name, cap)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{name} is not valid ({e})"))
}

/// Reads one entry whole, refusing it once it inflates past `cap` bytes (and
/// before reading anything when its header already says it would).
fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    cap: u64,
) -> Result<Vec<u8>, String> {
    let too_big =
        || format!("{name} inflates to more than {cap} bytes, the most an import reads for it");
    let entry = zip
        .by_name(name)
        .map_err(|e| format!("{name} is missing ({e})"))?;
    if entry.size() > cap {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    entry
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name} cannot be read ({e})"))?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Opens `path` only when it is a plain file: a FIFO would block the open (or
/// the reads) forever and a device such as /dev/zero never ends.
fn open_regular_file(path: &Path) -> Result<File> {
    let io = |e| StoreError::io("open the archive", path, e);
    let refuse = |kind: &fs::FileType| StoreError::InvalidArchive {
        path: path.to_path_buf(),
        reason: format!(
            "it is {}, not a file; an archive is read only from a regular .zip file",
            file_kind(kind)
        ),
    };
    let metadata = fs::metadata(path).map_err(io)?;
    if !metadata.is_file() {
        return Err(refuse(&metadata.file_type()));
    }
    let file = File::open(path).map_err(io)?;
    // The path may have been swapped between the check and the open.
    let opened = file.metadata().map_err(io)?;
    if !opened.is_file() {
        return Err(refuse(&opened.file_type()));
    }
    Ok(file)
}

fn file_kind(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// `sha256 -> entry name` for every `images/<sha256>.<ext>` entry.
fn image_entries<R: Read + Seek>(zip: &mut ZipArchive<R>) -> HashMap<String, String> {
    zip.file_names()
        .filter_map(|name| {
            let name = name.ok()?;
            let file = name.strip_prefix(IMAGES_PREFIX)?;
            let (sha, _ext) = file.split_once('.')?;
            Some((sha.to_string(), name.to_string()))
        })
        .collect()
}

/// Writes through a temp file next to `path`, then renames it into place.
pub(crate) fn write_file_atomic(
    path: &Path,
    write: impl FnOnce(File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    let written = File::create(&temp)
        .and_then(|file| {
            let sync = file.try_clone()?;
            write(file)?;
            sync.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(StoreError::io("write", path, e));
    }
    Ok(())
}

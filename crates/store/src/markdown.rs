//! Human-readable Markdown export of the active branch, with the images copied
//! into a folder next to the file and linked by relative path.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::archive::write_file_atomic;
use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::time::format_utc;
use crate::types::{Conversation, ExportScope, MessageStatus, Role};

impl Store {
    /// Writes the conversation (`ExportScope::One`) or every conversation not in
    /// the trash to the Markdown file `path`; images go to `<file stem>-images/`
    /// beside it. Returns the path written.
    pub fn export_markdown(&self, scope: ExportScope<'_>, path: &Path) -> Result<PathBuf> {
        let conversations = match scope {
            ExportScope::One(id) => vec![self.get_conversation(id)?],
            ExportScope::All => self
                .list_conversations(false)?
                .iter()
                .map(|summary| self.get_conversation(&summary.id))
                .collect::<Result<_>>()?,
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "conversation".into());
        let images_dir_name = format!("{stem}-images");
        let images_dir = path.with_file_name(&images_dir_name);

        let mut text = String::new();
        for (i, conversation) in conversations.iter().enumerate() {
            if i > 0 {
                text.push_str("\n---\n\n");
            }
            self.render(conversation, &images_dir, &images_dir_name, &mut text)?;
        }
        write_file_atomic(path, |mut file| file.write_all(text.as_bytes()))?;
        Ok(path.to_path_buf())
    }

    fn render(
        &self,
        conversation: &Conversation,
        images_dir: &Path,
        images_link: &str,
        out: &mut String,
    ) -> Result<()> {
        let summary = &conversation.summary;
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# {}\n", summary.title);
        let _ = write!(out, "*Created {}", format_utc(summary.created_at));
        if let Some(model) = &summary.model_id {
            let _ = write!(out, " · model {model}");
        }
        out.push_str("*\n\n");
        if let Some(prompt) = &conversation.system_prompt {
            let _ = writeln!(
                out,
                "> **System prompt:** {}\n",
                prompt.replace('\n', "\n> ")
            );
        }
        for message in &conversation.messages {
            let speaker = match message.role {
                Role::System => "System",
                Role::User => "You",
                Role::Assistant => "Assistant",
            };
            let _ = writeln!(out, "## {speaker}\n");
            for image in &message.images {
                let ext = self.image_ext(&image.sha256)?;
                let name = format!("{}.{ext}", image.sha256);
                let target = images_dir.join(&name);
                if !target.exists() {
                    fs::create_dir_all(images_dir)
                        .map_err(|e| StoreError::io("create the folder", images_dir, e))?;
                    let source = self.image_file(&image.sha256, &ext);
                    fs::copy(&source, &target)
                        .map_err(|e| StoreError::io("copy the image", source, e))?;
                }
                let _ = writeln!(
                    out,
                    "![image {}×{}](<{images_link}/{name}>)\n",
                    image.width, image.height
                );
            }
            out.push_str(message.content.trim_end());
            out.push('\n');
            match message.status {
                MessageStatus::Complete => {}
                MessageStatus::Error => {
                    let error = message.error.as_deref().unwrap_or("unknown error");
                    let _ = writeln!(out, "\n*(failed: {error})*");
                }
                other => {
                    let _ = writeln!(out, "\n*({other})*");
                }
            }
            out.push('\n');
        }
        Ok(())
    }
}

//! Store benchmark: 10,000 conversations and 1,000,000 messages.
//!
//!     cargo run -p impchat-store --release --example bench [-- DATA_DIR]
//!
//! The bulk data goes in through SQL in one transaction (the public API commits
//! every message on its own, which would only measure fsync); the FTS triggers
//! index it exactly as they index live writes. Everything measured afterwards
//! goes through the public API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use impchat_store::{Finish, Role, Store};
use rusqlite::{params, Connection};

const CONVERSATIONS: usize = 10_000;
const MESSAGES_PER_CONVERSATION: usize = 100;
const LONG_CONVERSATION: usize = 200;
const REPEATS: usize = 20;

/// xorshift64*: deterministic, good enough to vary text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 20,000 made-up words; word `i` appears with probability about 1/(i+1), like
/// natural language.
struct Vocabulary(Vec<String>);

impl Vocabulary {
    fn new() -> Self {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "zu", "ri",
        ];
        let words = (0..20_000usize)
            .map(|mut i| {
                let mut word = String::new();
                loop {
                    word.push_str(SYLLABLES[i % SYLLABLES.len()]);
                    i /= SYLLABLES.len();
                    if i == 0 {
                        break word;
                    }
                }
            })
            .collect();
        Vocabulary(words)
    }

    fn word(&self, rng: &mut Rng) -> &str {
        // Inverse of a harmonic CDF, approximately Zipf-distributed.
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = ((self.0.len() as f64).powf(u) - 1.0) as usize;
        &self.0[rank.min(self.0.len() - 1)]
    }

    fn sentence(&self, rng: &mut Rng, words: usize) -> String {
        (0..words)
            .map(|_| self.word(rng))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// Median of up to `REPEATS` runs (fewer when one run takes over a second).
fn time<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut samples = Vec::with_capacity(REPEATS);
    let mut last = None;
    let budget = Instant::now();
    for _ in 0..REPEATS {
        if samples.len() >= 3 && budget.elapsed() > Duration::from_secs(3) {
            break;
        }
        let start = Instant::now();
        last = Some(f());
        samples.push(start.elapsed());
    }
    (median(samples), last.expect("at least one run"))
}

fn populate(db: &Path, vocabulary: &Vocabulary) -> rusqlite::Result<String> {
    let mut conn = Connection::open(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    let tx = conn.transaction()?;
    let mut rng = Rng(0x5EED);
    let mut long_id = String::new();
    {
        let mut conversation = tx.prepare(
            "INSERT INTO conversations (id, title, created_at, updated_at, current_leaf_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut message = tx.prepare(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at, stats_json, provenance_json)
             VALUES (?1, ?2, ?3, ?4, ?5, 'complete', ?6, ?7, ?8)",
        )?;
        let base = 1_700_000_000_000i64;
        for c in 0..CONVERSATIONS {
            let id = format!("conv-{c:05}");
            let count = if c == 0 {
                LONG_CONVERSATION
            } else {
                MESSAGES_PER_CONVERSATION
            };
            let created = base + c as i64 * 60_000;
            let leaf = format!("{id}-m{:03}", count - 1);
            let title = vocabulary.sentence(&mut rng, 4);
            conversation.execute(params![
                id,
                title,
                created,
                created + count as i64 * 1000,
                leaf
            ])?;
            let mut parent: Option<String> = None;
            for m in 0..count {
                let message_id = format!("{id}-m{m:03}");
                let assistant = m % 2 == 1;
                let (role, words) = if assistant {
                    ("assistant", 40 + rng.below(60))
                } else {
                    ("user", 8 + rng.below(20))
                };
                let content = vocabulary.sentence(&mut rng, words);
                let stats = assistant.then(|| {
                    format!(
                        r#"{{"generatedTokens":{words},"decodeMs":{},"stopReason":"end_of_turn"}}"#,
                        words * 40
                    )
                });
                let provenance = assistant
                    .then_some(r#"{"modelId":"imp-v1.5-3b","seed":42,"quantization":"q4"}"#);
                message.execute(params![
                    message_id,
                    id,
                    parent,
                    role,
                    content,
                    created + m as i64 * 1000,
                    stats,
                    provenance
                ])?;
                parent = Some(message_id);
            }
            if c == 0 {
                long_id = id;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    Ok(long_id)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("impchat-store-bench-{}", std::process::id())),
    };
    let vocabulary = Vocabulary::new();
    let total_messages = (CONVERSATIONS - 1) * MESSAGES_PER_CONVERSATION + LONG_CONVERSATION;
    let long_id = if dir.join("impchat.db").exists() {
        println!(
            "reusing the store already in {} (delete it to rebuild)",
            dir.display()
        );
        "conv-00000".to_string()
    } else {
        let (store, _) = Store::open(&dir)?;
        drop(store);
        let start = Instant::now();
        let long_id = populate(&dir.join("impchat.db"), &vocabulary)?;
        println!(
            "populate: {CONVERSATIONS} conversations, {total_messages} messages in {:.1} s (one transaction, FTS triggers on)",
            start.elapsed().as_secs_f64()
        );
        long_id
    };
    let db_bytes = file_size(&dir.join("impchat.db"));
    println!(
        "db size: {:.1} MiB total, {:.1} KiB per 1,000 messages (text, stats, provenance, indexes, FTS)",
        db_bytes as f64 / 1048576.0,
        db_bytes as f64 / 1024.0 / (total_messages as f64 / 1000.0)
    );

    let start = Instant::now();
    let (store, notice) = Store::open(&dir)?;
    println!(
        "open after a clean shutdown: {:.0} ms, notice: {notice:?}",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let start = Instant::now();
    let integrity = store.integrity_check();
    println!(
        "full integrity_check (what an open after a crash costs, roughly): {:.0} ms, ok: {}",
        start.elapsed().as_secs_f64() * 1000.0,
        integrity.is_ok()
    );

    let (ms, page) = time(|| store.list_conversations_page(false, 50, 0));
    println!("list 50 newest: {ms:.2} ms ({} rows)", page?.len());

    let (ms, conversation) = time(|| store.get_conversation(&long_id));
    let conversation = conversation?;
    println!(
        "open a conversation with {} messages (branch, siblings, images): {ms:.2} ms",
        conversation.messages.len()
    );

    let frequencies = {
        let conn = Connection::open(dir.join("impchat.db"))?;
        conn.execute_batch(
            "CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, 'messages_fts', 'row');",
        )?;
        let mut stmt = conn.prepare("SELECT term, doc FROM temp.vocab WHERE term = ?1")?;
        let mut lookup = |word: &str| -> rusqlite::Result<i64> {
            stmt.query_row([word], |row| row.get(1)).or(Ok(0))
        };
        let words = [
            &vocabulary.0[3000],
            &vocabulary.0[300],
            &vocabulary.0[30],
            &vocabulary.0[0],
        ];
        words
            .iter()
            .map(|w| Ok(((*w).clone(), lookup(w)?)))
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    for (word, documents) in &frequencies {
        // The trailing space marks the word as finished (no prefix matching).
        let (ms, hits) = time(|| store.search(&format!("{word} "), 50));
        println!(
            "search the word {word:?} (in {documents} messages): {ms:.2} ms, {} hits",
            hits?.len()
        );
    }
    let prefix = &frequencies[1].0[..frequencies[1].0.len() - 1];
    let (ms, hits) = time(|| store.search(&format!("{} {prefix}", frequencies[2].0), 50));
    println!(
        "search while typing {:?}: {ms:.2} ms, {} hits",
        format!("{} {prefix}", frequencies[2].0),
        hits?.len()
    );

    // Live writes through the API on the full database.
    let chat = store.create_conversation(None)?;
    let start = Instant::now();
    let mut parent = None;
    for i in 0..200 {
        parent = Some(store.add_user_message(
            &chat.id,
            parent.as_deref(),
            &vocabulary.sentence(&mut Rng(i), 20),
            &[],
        )?);
    }
    println!(
        "add_message: {:.2} ms each (own transaction, FTS)",
        start.elapsed().as_secs_f64() * 1000.0 / 200.0
    );
    let answer = store.begin_assistant(&chat.id, parent.as_deref().unwrap_or_default())?;
    let mut writer = store.stream_writer(&answer)?;
    let text = vocabulary.sentence(&mut Rng(7), 2000);
    let start = Instant::now();
    let mut flushes = 0;
    for chunk in text.as_bytes().chunks(4) {
        if writer.append(std::str::from_utf8(chunk)?)? {
            flushes += 1;
        }
    }
    writer.finish(&Finish::complete(None, None))?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    println!(
        "stream {} chars in 4-byte deltas: {elapsed:.1} ms total, {flushes} flushes",
        text.len()
    );

    let image = {
        let pixels = image::RgbImage::from_fn(1024, 768, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        pixels.write_to(&mut bytes, image::ImageFormat::Png)?;
        bytes.into_inner()
    };
    let start = Instant::now();
    let first = store.put_image(&image)?;
    let first_ms = start.elapsed().as_secs_f64() * 1000.0;
    let start = Instant::now();
    let second = store.put_image(&image)?;
    let second_ms = start.elapsed().as_secs_f64() * 1000.0;
    let folder = store
        .image_path(&first.sha256, false)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let files = std::fs::read_dir(&folder)?.count();
    store.add_message(
        &chat.id,
        None,
        Role::User,
        "picture",
        std::slice::from_ref(&second.sha256),
    )?;
    println!(
        "image {} bytes added twice: {first_ms:.1} ms then {second_ms:.2} ms, same ref: {}, files on disk: {files} (original + thumbnail)",
        image.len(),
        first == second
    );
    drop(store);
    if std::env::args().nth(1).is_none() {
        std::fs::remove_dir_all(&dir)?;
    } else {
        // Leave the bulk data reusable for the next run.
        let (store, _) = Store::open(&dir)?;
        store.purge_conversation(&chat.id)?;
        store.gc_images_older_than(Duration::ZERO)?;
    }
    Ok(())
}

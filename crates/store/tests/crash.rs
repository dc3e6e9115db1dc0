//! Crash test: a child process streams long answers into the store and is
//! SIGKILLed at random moments. After every kill the store must open without
//! repair, pass `integrity_check`, hold every text the child reported as
//! committed, and show the answer that was in flight as `interrupted`.
//!
//! The test binary is both parent and child: the parent re-runs this one test
//! in its own executable with `CHILD_ENV` set.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use impchat_store::{Finish, FlushPolicy, MessageStatus, Store};

use common::chunks;

const CHILD_ENV: &str = "IMPCHAT_STORE_CRASH_CHILD";
const ROUNDS: usize = 30;
/// Kills land this long after the child starts.
const KILL_AFTER_MS: std::ops::Range<u64> = 20..350;

const TEST_NAME: &str = "sigkilled_writer_loses_nothing_committed";

#[test]
fn sigkilled_writer_loses_nothing_committed() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

/// The n-th answer: long, multi-byte, different for every n.
fn answer_text(n: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "naïve",
        "cat",
        "日本語",
        "sat",
        "🦀",
        "on",
        "Ωmega",
        "mat",
        "über",
    ];
    (0..400)
        .map(|i| WORDS[(i * 7 + n * 3 + i / 5) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Streams answers forever, reporting on stdout only what has been committed.
fn child(dir: &Path) {
    // The harness has printed "test <name> ... " without a newline; start the reports on a line of their own.
    println!();
    let result = (|| -> Result<(), impchat_store::StoreError> {
        let (store, _) = Store::open(dir)?;
        let chat = match store.list_conversations(false)?.into_iter().next() {
            Some(chat) => chat,
            None => store.create_conversation(Some("crash test"))?,
        };
        let mut leaf = store.current_leaf(&chat.id)?;
        let first = store.message_tree(&chat.id)?.len();
        let policy = FlushPolicy {
            max_delay: Duration::from_millis(5),
            max_chars: 64,
        };
        for n in first.. {
            let question =
                store.add_user_message(&chat.id, leaf.as_deref(), &format!("question {n}"), &[])?;
            let answer = store.begin_assistant(&chat.id, &question)?;
            println!("BEGIN {answer} {n}");
            let mut writer = store.stream_writer_with(&answer, policy)?;
            for chunk in chunks(&answer_text(n)) {
                if writer.append(&chunk)? {
                    println!("FLUSH {answer} {}", writer.committed_chars());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            writer.finish(&Finish::complete(Some(serde_json::json!({"n": n})), None))?;
            println!("DONE {answer}");
            leaf = Some(answer);
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("child failed: {e}");
        std::process::exit(2);
    }
}

/// What the child said about one answer before it died.
#[derive(Default)]
struct Reported {
    n: usize,
    committed_chars: usize,
    done: bool,
}

fn parent() {
    let started = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = seed;
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("own executable");
    let mut answers: HashMap<String, Reported> = HashMap::new();
    let mut interrupted_with_text = 0;

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = KILL_AFTER_MS.start + rng % (KILL_AFTER_MS.end - KILL_AFTER_MS.start);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap child");
        assert!(
            status.code().is_none(),
            "round {round}: the child exited by itself ({status}); seed {seed}"
        );
        let lines = reader.join().expect("reader thread");

        let mut in_flight = None;
        // The test harness prints its own lines too; only the child's reports count.
        let reports = lines.iter().filter(|line| {
            ["BEGIN ", "FLUSH ", "DONE "]
                .iter()
                .any(|prefix| line.starts_with(prefix))
        });
        for line in reports {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["BEGIN", id, n] => {
                    let n = n.parse().expect("answer number");
                    answers.insert(
                        id.to_string(),
                        Reported {
                            n,
                            ..Reported::default()
                        },
                    );
                    in_flight = Some(id.to_string());
                }
                ["FLUSH", id, chars] => {
                    let reported = answers.get_mut(*id).expect("flush after begin");
                    reported.committed_chars = chars.parse().expect("char count");
                }
                ["DONE", id] => {
                    answers.get_mut(*id).expect("done after begin").done = true;
                    in_flight = None;
                }
                _ => panic!("round {round}: unexpected child output {line:?}"),
            }
        }

        let (store, notice) = Store::open(dir.path()).expect("store opens after SIGKILL");
        assert_eq!(
            notice, None,
            "round {round}: the store needed repair after a kill; seed {seed}"
        );
        if let Err(problems) = store.integrity_check() {
            panic!("round {round}: integrity_check failed: {problems:?}; seed {seed}");
        }
        for (id, reported) in &answers {
            let message = store
                .message(id)
                .unwrap_or_else(|e| panic!("round {round}: answer {id} lost: {e}"));
            let full = answer_text(reported.n);
            assert!(
                full.starts_with(&message.content),
                "round {round}: answer {id} holds text that was never written; seed {seed}"
            );
            let stored_chars = message.content.chars().count();
            if reported.done {
                assert_eq!(
                    message.content, full,
                    "round {round}: finished answer {id} incomplete"
                );
                assert_eq!(message.status, MessageStatus::Complete);
                assert_eq!(message.stats, Some(serde_json::json!({"n": reported.n})));
            } else {
                assert!(
                    stored_chars >= reported.committed_chars,
                    "round {round}: answer {id} has {stored_chars} chars, child reported {} committed; seed {seed}",
                    reported.committed_chars
                );
                // The kill can land between the commit of `finish` and the
                // child's "DONE" line; then the answer is whole and complete.
                let finished_unreported =
                    message.status == MessageStatus::Complete && message.content == full;
                assert!(
                    message.status == MessageStatus::Interrupted || finished_unreported,
                    "round {round}: unfinished answer {id} is {:?} with {stored_chars} of {} chars, not interrupted; seed {seed}",
                    message.status,
                    full.chars().count()
                );
            }
        }
        if let Some(id) = in_flight {
            if answers[&id].committed_chars > 0 {
                interrupted_with_text += 1;
            }
        }
        drop(store);
    }
    assert!(
        interrupted_with_text >= ROUNDS / 3,
        "only {interrupted_with_text} of {ROUNDS} kills landed mid-answer; the test is not exercising streaming"
    );
    println!(
        "crash test: {ROUNDS} kills, {} answers checked, {interrupted_with_text} killed mid-answer, {:.1} s (seed {seed})",
        answers.len(),
        started.elapsed().as_secs_f64()
    );
}

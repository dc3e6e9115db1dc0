//! Ctrl+C stops the answer being generated; at any other time it quits with exit code 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use impchat_engine::CancelToken;

use crate::exit::{ExitKind, Failure, OrExit};

#[derive(Default)]
struct State {
    answering: AtomicBool,
    interrupted: AtomicBool,
    cancel: CancelToken,
}

/// The process-wide Ctrl+C handler; install it once, before loading the model.
pub struct Interrupt {
    state: Arc<State>,
}

impl Interrupt {
    pub fn install() -> Result<Self, Failure> {
        let state = Arc::new(State::default());
        let handler_state = Arc::clone(&state);
        ctrlc::set_handler(move || {
            if handler_state.answering.load(Ordering::SeqCst) {
                handler_state.interrupted.store(true, Ordering::SeqCst);
                handler_state.cancel.cancel();
            } else {
                eprintln!();
                std::process::exit(ExitKind::Interrupted as i32);
            }
        })
        .or_exit(ExitKind::Failure)?;
        Ok(Self { state })
    }

    /// Starts an answer: until [`Interrupt::end_answer`], Ctrl+C cancels the returned token
    /// instead of quitting.
    pub fn begin_answer(&self) -> CancelToken {
        self.state.cancel.reset();
        self.state.interrupted.store(false, Ordering::SeqCst);
        self.state.answering.store(true, Ordering::SeqCst);
        self.state.cancel.clone()
    }

    /// Ends the answer and says whether Ctrl+C stopped it.
    pub fn end_answer(&self) -> bool {
        self.state.answering.store(false, Ordering::SeqCst);
        self.state.interrupted.swap(false, Ordering::SeqCst)
    }
}

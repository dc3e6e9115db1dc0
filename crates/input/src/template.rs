//! Imp's chat prompt formats, as `imp_llava/conversation.py` renders them.

use serde::{Deserialize, Serialize};

/// The `<image>` marker the prompt carries where an image's features go.
pub const IMAGE_MARKER: &str = "<image>";

/// Imp's system prompt, shared by all its conversation modes.
const IMP_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// The prompt format of a model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplate {
    /// `conv_mode phi2`: imp-v1-3b, Imp-v1.5-3B-Phi2, Imp-v1.5-3B-196.
    Phi2,
    /// `conv_mode qwen2`: Imp-v1.5-2B-Qwen1.5.
    ChatMl,
    /// `conv_mode phi3`: Imp-v1.5-4B-Phi3.
    Phi3,
}

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of the conversation, its text already carrying any `<image>` markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

impl Turn {
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            text: text.into(),
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            text: text.into(),
        }
    }
}

impl ChatTemplate {
    /// The template for an Imp checkpoint's `config.json` `model_type`
    /// (`imp`, `imp_qwen2`, `imp_phi3`), or `None` for anything else.
    pub fn for_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "imp" => Some(Self::Phi2),
            "imp_qwen2" => Some(Self::ChatMl),
            "imp_phi3" => Some(Self::Phi3),
            _ => None,
        }
    }

    /// The system prompt Imp was trained with.
    pub fn default_system(&self) -> &'static str {
        IMP_SYSTEM
    }

    /// Renders the conversation up to and including the assistant's prefix, ready for
    /// generation. `turns` should alternate and end with the user's turn; each turn is
    /// rendered by its role, earlier assistant turns trimmed (as Imp's `outputs.strip()`)
    /// and closed with the family's end token.
    pub fn render(&self, system: &str, turns: &[Turn]) -> String {
        let mut out = self.render_turns(system, turns);
        out.push_str(self.style().assistant_prefix);
        out
    }

    /// Renders the conversation with the assistant's answer left open after `partial`, so
    /// the model carries on writing it (Hugging Face's `continue_final_message`): no
    /// end-of-turn marker follows `partial`. `turns` end with the user's turn, as for
    /// [`ChatTemplate::render`]; an empty `partial` renders exactly what `render` does.
    ///
    /// `partial` is joined the way a generated answer follows the assistant prefix, so the
    /// prompt's text is the original prompt followed by the answer so far.
    pub fn render_continuing(&self, system: &str, turns: &[Turn], partial: &str) -> String {
        let style = self.style();
        let mut out = self.render_turns(system, turns);
        out.push_str(style.assistant_prefix);
        // Phi-2's prefix ends at the colon and its answers start with a space token; a stored
        // answer that lost that space gets it back, one that kept it is not given a second.
        if !partial.is_empty()
            && !style.assistant_prefix.ends_with(char::is_whitespace)
            && !partial.starts_with(char::is_whitespace)
        {
            out.push(' ');
        }
        out.push_str(partial);
        out
    }

    fn render_turns(&self, system: &str, turns: &[Turn]) -> String {
        let style = self.style();
        let mut out = String::new();
        out.push_str(style.system_open);
        out.push_str(system);
        out.push_str(style.system_close);
        for turn in turns {
            match turn.role {
                Role::User => {
                    out.push_str(style.user_open);
                    out.push_str(&turn.text);
                    out.push_str(style.user_close);
                }
                Role::Assistant => {
                    out.push_str(style.assistant_open);
                    // Imp's serving code strips answers before they go back into the
                    // conversation; a stored answer keeps the space the model wrote first.
                    out.push_str(turn.text.trim());
                    out.push_str(style.assistant_close);
                }
            }
        }
        out
    }

    /// Strings that end the assistant's turn; generation stops at the first of them.
    pub fn stop_strings(&self) -> &'static [&'static str] {
        match self {
            Self::Phi2 => &["</s>"],
            Self::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            Self::Phi3 => &["<|end|>", "<|endoftext|>"],
        }
    }

    fn style(&self) -> Style {
        match self {
            // SeparatorStyle.TWO, sep " ", sep2 "</s>", roles "USER"/"ASSISTANT".
            Self::Phi2 => Style {
                system_open: "",
                system_close: " ",
                user_open: "USER: ",
                user_close: " ",
                assistant_open: "ASSISTANT: ",
                assistant_close: "</s>",
                assistant_prefix: "ASSISTANT:",
            },
            // SeparatorStyle.MPT, sep "<|im_end|>\n".
            Self::ChatMl => Style {
                system_open: "<|im_start|>system\n",
                system_close: "<|im_end|>\n",
                user_open: "<|im_start|>user\n",
                user_close: "<|im_end|>\n",
                assistant_open: "<|im_start|>assistant\n",
                assistant_close: "<|im_end|>\n",
                assistant_prefix: "<|im_start|>assistant\n",
            },
            // SeparatorStyle.MPT, sep "<|end|>\n".
            Self::Phi3 => Style {
                system_open: "<|system|>\n",
                system_close: "<|end|>\n",
                user_open: "<|user|>\n",
                user_close: "<|end|>\n",
                assistant_open: "<|assistant|>\n",
                assistant_close: "<|end|>\n",
                assistant_prefix: "<|assistant|>\n",
            },
        }
    }
}

struct Style {
    system_open: &'static str,
    system_close: &'static str,
    user_open: &'static str,
    user_close: &'static str,
    assistant_open: &'static str,
    assistant_close: &'static str,
    assistant_prefix: &'static str,
}

/// A marker for image slots that occurs in none of `texts`: the prompt is rendered with it
/// in place of `<image>`, so text the user typed (a question about HTML's `<image>`
/// tag) is only ever text, and image slots come from attached images alone.
pub fn unique_image_marker<'a>(texts: impl IntoIterator<Item = &'a str> + Clone) -> String {
    // U+FFFC (OBJECT REPLACEMENT CHARACTER) stands for an embedded object; lengthened
    // until no text contains it.
    let mut marker = String::from("\u{FFFC}image\u{FFFC}");
    while texts.clone().into_iter().any(|t| t.contains(&marker)) {
        marker.push('\u{FFFC}');
    }
    marker
}

/// `n_images` slot markers, each on its own line, before `text`, as Imp was trained
/// (`"<image>\n" + question`); markers already in `text` are not counted.
pub fn with_image_slots(text: &str, n_images: usize, marker: &str) -> String {
    let mut out = String::with_capacity(text.len() + n_images * (marker.len() + 1));
    for _ in 0..n_images {
        out.push_str(marker);
        out.push('\n');
    }
    out.push_str(text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

    #[test]
    fn default_system_is_imps() {
        for t in [ChatTemplate::Phi2, ChatTemplate::ChatMl, ChatTemplate::Phi3] {
            assert_eq!(t.default_system(), SYS);
        }
    }

    #[test]
    fn phi2_single_turn() {
        let p = ChatTemplate::Phi2.render(SYS, &[Turn::user("<image>\nWhat is this?")]);
        assert_eq!(
            p,
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nWhat is this? ASSISTANT:"
        );
    }

    #[test]
    fn phi2_multi_turn() {
        let turns = [
            Turn::user("<image>\nQ1"),
            Turn::assistant("A1"),
            Turn::user("Q2"),
        ];
        assert_eq!(
            ChatTemplate::Phi2.render("SYS", &turns),
            "SYS USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"
        );
    }

    #[test]
    fn earlier_answers_are_trimmed_as_imp_stores_them() {
        let turns = [
            Turn::user("Q1"),
            Turn::assistant(" A1 \n"),
            Turn::user("Q2"),
        ];
        assert_eq!(
            ChatTemplate::Phi2.render("SYS", &turns),
            "SYS USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"
        );
        assert_eq!(
            ChatTemplate::ChatMl.render("SYS", &turns),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_single_and_multi_turn() {
        assert_eq!(
            ChatTemplate::ChatMl.render("SYS", &[Turn::user("<image>\nQ")]),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n<image>\nQ<|im_end|>\n<|im_start|>assistant\n"
        );
        let turns = [
            Turn::user("<image>\nQ1"),
            Turn::assistant("A1"),
            Turn::user("Q2"),
        ];
        assert_eq!(
            ChatTemplate::ChatMl.render("SYS", &turns),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n<image>\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn phi3_single_and_multi_turn() {
        assert_eq!(
            ChatTemplate::Phi3.render("SYS", &[Turn::user("<image>\nQ")]),
            "<|system|>\nSYS<|end|>\n<|user|>\n<image>\nQ<|end|>\n<|assistant|>\n"
        );
        let turns = [
            Turn::user("<image>\nQ1"),
            Turn::assistant("A1"),
            Turn::user("Q2"),
        ];
        assert_eq!(
            ChatTemplate::Phi3.render("SYS", &turns),
            "<|system|>\nSYS<|end|>\n<|user|>\n<image>\nQ1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2<|end|>\n<|assistant|>\n"
        );
    }

    #[test]
    fn phi2_continuing_leaves_the_answer_open() {
        let turns = [Turn::user("Q1"), Turn::assistant("A1"), Turn::user("Q2")];
        assert_eq!(
            ChatTemplate::Phi2.render_continuing("SYS", &turns, "The cat"),
            "SYS USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: The cat"
        );
        // An answer stored with the space the model wrote first is not given a second one.
        assert_eq!(
            ChatTemplate::Phi2.render_continuing("SYS", &turns, " The cat"),
            "SYS USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: The cat"
        );
    }

    #[test]
    fn chatml_continuing_leaves_the_answer_open() {
        assert_eq!(
            ChatTemplate::ChatMl.render_continuing("SYS", &[Turn::user("<image>\nQ")], "It is"),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n<image>\nQ<|im_end|>\n<|im_start|>assistant\nIt is"
        );
    }

    #[test]
    fn phi3_continuing_leaves_the_answer_open() {
        let turns = [Turn::user("Q1"), Turn::assistant("A1"), Turn::user("Q2")];
        assert_eq!(
            ChatTemplate::Phi3.render_continuing("SYS", &turns, "Two\nlines"),
            "<|system|>\nSYS<|end|>\n<|user|>\nQ1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2<|end|>\n<|assistant|>\nTwo\nlines"
        );
    }

    #[test]
    fn continuing_an_empty_answer_is_a_fresh_prompt() {
        let turns = [Turn::user("<image>\nQ")];
        for t in [ChatTemplate::Phi2, ChatTemplate::ChatMl, ChatTemplate::Phi3] {
            assert_eq!(
                t.render_continuing("SYS", &turns, ""),
                t.render("SYS", &turns)
            );
        }
    }

    #[test]
    fn stop_strings_per_family() {
        assert_eq!(ChatTemplate::Phi2.stop_strings(), &["</s>"]);
        assert_eq!(
            ChatTemplate::ChatMl.stop_strings(),
            &["<|im_end|>", "<|endoftext|>"]
        );
        assert_eq!(
            ChatTemplate::Phi3.stop_strings(),
            &["<|end|>", "<|endoftext|>"]
        );
    }

    #[test]
    fn model_types_map_to_templates() {
        assert_eq!(
            ChatTemplate::for_model_type("imp"),
            Some(ChatTemplate::Phi2)
        );
        assert_eq!(
            ChatTemplate::for_model_type("imp_qwen2"),
            Some(ChatTemplate::ChatMl)
        );
        assert_eq!(
            ChatTemplate::for_model_type("imp_phi3"),
            Some(ChatTemplate::Phi3)
        );
        assert_eq!(ChatTemplate::for_model_type("llava"), None);
    }

    #[test]
    fn serde_names_are_lowercase() {
        assert_eq!(
            serde_json::to_string(&ChatTemplate::ChatMl).unwrap(),
            "\"chatml\""
        );
        assert_eq!(
            serde_json::from_str::<ChatTemplate>("\"phi2\"").unwrap(),
            ChatTemplate::Phi2
        );
        assert_eq!(
            serde_json::to_string(&Role::Assistant).unwrap(),
            "\"assistant\""
        );
    }

    #[test]
    fn slot_markers_never_occur_in_the_text() {
        let texts = ["What does <image> do in HTML?", "\u{FFFC}image\u{FFFC}"];
        let marker = unique_image_marker(texts);
        assert!(texts.iter().all(|t| !t.contains(&marker)), "{marker:?}");
        assert_eq!(
            with_image_slots(texts[0], 2, &marker),
            format!("{marker}\n{marker}\nWhat does <image> do in HTML?")
        );
    }
}

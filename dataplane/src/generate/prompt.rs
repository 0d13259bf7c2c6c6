//! The retrieval prompt: numbered sources and an instruction to cite them as `[n]`.

use super::ChatMessage;

const SYSTEM: &str = "You answer questions using only the numbered sources provided. \
Cite every claim with the number of its source in square brackets, like [1] or [2][3]. \
If the sources do not contain the answer, say that you do not know.";

/// Builds the chat messages for `question` over `sources` (numbered from 1 in order).
pub fn build(question: &str, sources: &[&str]) -> Vec<ChatMessage> {
    let mut context = String::new();
    for (i, s) in sources.iter().enumerate() {
        context.push_str(&format!("[{}] {}\n\n", i + 1, s.trim()));
    }
    vec![
        ChatMessage::new("system", SYSTEM),
        ChatMessage::new("user", format!("Sources:\n\n{context}Question: {question}")),
    ]
}

/// Builds the chat messages for the last question of a conversation: the instructions (with
/// any system messages of `history` appended), the earlier turns of `history`, then the
/// question over `sources`. System messages are merged into the first because many chat
/// templates accept only one, at the start.
pub fn build_chat(history: &[ChatMessage], question: &str, sources: &[&str]) -> Vec<ChatMessage> {
    let mut out = build(question, sources);
    let extra: Vec<&str> = history
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    if !extra.is_empty() {
        out[0].content = format!("{}\n\n{}", out[0].content, extra.join("\n\n"));
    }
    let turns = history.iter().filter(|m| m.role != "system").cloned();
    let last = out.pop();
    out.extend(turns);
    out.extend(last);
    out
}

/// Source numbers (1-based) cited as `[n]` in `answer`, in first-cited order, limited to
/// `1..=count`.
pub fn cited(answer: &str, count: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        for part in rest[..close].split(',') {
            if let Ok(n) = part.trim().parse::<usize>() {
                if (1..=count).contains(&n) && !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        rest = &rest[close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_numbered_from_one() {
        let m = build("why?", &["alpha", " beta "]);
        assert_eq!(m[0].role, "system");
        assert!(
            m[1].content
                .contains("[1] alpha\n\n[2] beta\n\nQuestion: why?"),
            "{}",
            m[1].content
        );
    }

    #[test]
    fn conversations_keep_their_turns_and_one_system_message() {
        let history = vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "hi"),
            ChatMessage::new("assistant", "hello"),
        ];
        let m = build_chat(&history, "why?", &["alpha"]);
        let roles: Vec<_> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(m[0].content.ends_with("\n\nBe brief."));
        assert!(m[3].content.ends_with("[1] alpha\n\nQuestion: why?"));
        assert_eq!(build_chat(&[], "q", &["a"]), build("q", &["a"]));
    }

    #[test]
    fn citations_are_parsed_deduplicated_and_bounded() {
        assert_eq!(
            cited("A [2]. B [1][2]. C [3, 1]. D [9] [x]", 3),
            vec![2, 1, 3]
        );
        assert!(cited("no citations", 3).is_empty());
        assert!(cited("unclosed [1", 3).is_empty());
    }
}

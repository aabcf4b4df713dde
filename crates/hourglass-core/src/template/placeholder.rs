//! Finding `{{…}}` placeholders in a component's text.
//!
//! Meta ("Template fundamentals", "Parameter formats") writes every parameter in double
//! curly brackets: positional ones as "ordered array index numbers, starting from 1" and
//! named ones as "single strings, composed of lowercase characters and underscores".
//! "Template review" lists "missing or … mismatched curly braces" and "special characters
//! such as a #, $, or %" among the common rejection reasons, so the scanner keeps the
//! malformed ones too, for the linter to report.

/// What a placeholder's content is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PlaceholderKind {
    /// Only ASCII digits: `{{3}}`.
    Positional(u32),
    /// Only lowercase ASCII letters and underscores: `{{first_name}}`.
    Named(String),
    /// Anything else: `{{First}}`, `{{1a}}`, `{{ 1 }}`, `{{}}`, `{{price#1}}`.
    Invalid,
}

/// One `{{…}}` in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    /// Index of the first `{`, in characters from 0.
    pub start: usize,
    /// Index just after the last `}`, in characters.
    pub end: usize,
    /// What is between the brackets.
    pub content: String,
    pub kind: PlaceholderKind,
}

/// Curly brackets that do not make a placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BraceProblem {
    /// Index of the offending bracket, in characters from 0.
    pub start: usize,
    /// What is wrong, in words.
    pub what: &'static str,
}

/// The placeholders and bracket problems of one text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    pub placeholders: Vec<Token>,
    pub brace_problems: Vec<BraceProblem>,
}

/// Scans `text` from left to right.
pub(super) fn scan(text: &str) -> Scan {
    let chars: Vec<char> = text.chars().collect();
    let at = |index: usize| chars.get(index).copied();
    let mut result = Scan::default();
    let mut index = 0;
    while index < chars.len() {
        let here = chars[index];
        if here == '{' && at(index + 1) == Some('{') {
            match closing(&chars, index + 2) {
                Closing::At(close) => {
                    let content: String = chars[index + 2..close].iter().collect();
                    let kind = classify(&content);
                    result.placeholders.push(Token {
                        start: index,
                        end: close + 2,
                        content,
                        kind,
                    });
                    index = close + 2;
                }
                Closing::ReopenedAt(reopen) => {
                    result.brace_problems.push(BraceProblem {
                        start: index,
                        what: "`{{` is opened again before it is closed with `}}`",
                    });
                    index = reopen;
                }
                Closing::Never => {
                    result.brace_problems.push(BraceProblem {
                        start: index,
                        what: "`{{` is never closed with `}}`",
                    });
                    index += 2;
                }
            }
        } else if here == '}' && at(index + 1) == Some('}') {
            result.brace_problems.push(BraceProblem {
                start: index,
                what: "`}}` closes nothing: there is no `{{` before it",
            });
            index += 2;
        } else if here == '{' {
            let word_end = (index + 1..chars.len())
                .find(|&i| !(chars[i].is_alphanumeric() || chars[i] == '_'))
                .unwrap_or(chars.len());
            if word_end > index + 1 && at(word_end) == Some('}') {
                result.brace_problems.push(BraceProblem {
                    start: index,
                    what: "a parameter needs double curly brackets, like `{{1}}`, not single ones",
                });
                index = word_end + 1;
            } else {
                index += 1;
            }
        } else {
            index += 1;
        }
    }
    result
}

enum Closing {
    /// `}}` starts at this index.
    At(usize),
    /// Another `{{` starts here first.
    ReopenedAt(usize),
    Never,
}

fn closing(chars: &[char], from: usize) -> Closing {
    let mut index = from;
    while index + 1 < chars.len() {
        match (chars[index], chars[index + 1]) {
            ('}', '}') => return Closing::At(index),
            ('{', '{') => return Closing::ReopenedAt(index),
            _ => index += 1,
        }
    }
    Closing::Never
}

fn classify(content: &str) -> PlaceholderKind {
    if content.is_empty() {
        PlaceholderKind::Invalid
    } else if content.bytes().all(|b| b.is_ascii_digit()) {
        content
            .parse()
            .map(PlaceholderKind::Positional)
            .unwrap_or(PlaceholderKind::Invalid)
    } else if content.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        PlaceholderKind::Named(content.to_owned())
    } else {
        PlaceholderKind::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<PlaceholderKind> {
        scan(text)
            .placeholders
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn positional_and_named_placeholders_are_told_apart() {
        assert_eq!(
            kinds("Hi {{1}}, {{first_name}} {{First}} {{1a}} {{ 1 }} {{}}"),
            vec![
                PlaceholderKind::Positional(1),
                PlaceholderKind::Named("first_name".into()),
                PlaceholderKind::Invalid,
                PlaceholderKind::Invalid,
                PlaceholderKind::Invalid,
                PlaceholderKind::Invalid,
            ]
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let token = &scan("Olá {{1}}").placeholders[0];
        assert_eq!((token.start, token.end), (4, 9));
    }

    #[test]
    fn unclosed_unopened_and_single_brackets_are_problems() {
        let problems: Vec<usize> = scan("a {{1 b }} c {2} d {{x}}")
            .brace_problems
            .iter()
            .map(|p| p.start)
            .collect();
        // `{{1 b }}` closes fine (an invalid placeholder), `{2}` is a single-bracket one.
        assert_eq!(problems, vec![13]);
        let scan = scan("a {{1 and {{2}} b }}");
        assert_eq!(scan.brace_problems.len(), 2);
        assert_eq!(scan.placeholders.len(), 1);
    }

    #[test]
    fn ordinary_braces_in_text_are_left_alone() {
        assert_eq!(scan("a { b } c {").brace_problems, vec![]);
    }
}

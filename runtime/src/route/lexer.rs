//! Tokens of the route language, each with the character column it starts at.

use super::RouteError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A keyword or bare name (`FROM`, `AND`, `temperature`, `is_defined`).
    Word(String),
    /// `$name` or `{$name}`: a system property (or `$body`, `$topic`).
    System(String),
    Number(f64),
    Str(String),
    /// Operators and punctuation: `= != <> < <= > >= + - * / % || ?? ( ) [ ] , .`
    Symbol(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    /// Character offset in the route text.
    pub at: usize,
}

const SYMBOLS: [&str; 19] = ["!=", "<>", "<=", ">=", "||", "??", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]", ","];

/// Split `text` (a WHERE condition or a template expression) into tokens. `base` is the
/// character offset of `text` in the whole route, so errors point at the right column.
pub fn tokenize(text: &str, base: usize) -> Result<Vec<Spanned>, RouteError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = base + i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err(RouteError::new(at, format!("unterminated string: add the closing {c}"))),
                    // A doubled quote inside a string stands for one quote, as in SQL.
                    Some(&q) if q == c && chars.get(j + 1) == Some(&c) => {
                        value.push(c);
                        j += 2;
                    }
                    Some(&q) if q == c => break,
                    Some(&other) => {
                        value.push(other);
                        j += 1;
                    }
                }
            }
            tokens.push(Spanned { token: Token::Str(value), at });
            i = j + 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let number = text.parse().map_err(|_| RouteError::new(at, format!("`{text}` is not a number")))?;
            tokens.push(Spanned { token: Token::Number(number), at });
        } else if c == '$' || (c == '{' && chars.get(i + 1) == Some(&'$')) {
            let braced = c == '{';
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j == start {
                return Err(RouteError::new(at, "expected a property name after `$`"));
            }
            let name: String = chars[start..j].iter().collect();
            if braced {
                if chars.get(j) != Some(&'}') {
                    return Err(RouteError::new(base + j, "expected `}` to close `{$…`"));
                }
                j += 1;
            }
            tokens.push(Spanned { token: Token::System(name), at });
            i = j;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
                i += 1;
            }
            tokens.push(Spanned { token: Token::Word(chars[start..i].iter().collect()), at });
        } else if c == '.' {
            tokens.push(Spanned { token: Token::Symbol("."), at });
            i += 1;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS.iter().find(|s| rest.starts_with(**s)).ok_or_else(|| RouteError::new(at, format!("unexpected character `{c}`")))?;
            tokens.push(Spanned { token: Token::Symbol(symbol), at });
            i += symbol.len();
        }
    }
    Ok(tokens)
}

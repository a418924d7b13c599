//! Conditions and template expressions: parsing (precedence climbing) and evaluation.
//!
//! Semantics follow Azure IoT Hub routing queries: a comparison or function that touches
//! an undefined value is undefined, and a route whose condition is undefined does not match.
//! `docs/routes.md` has the whole table.

use std::borrow::Cow;

use weir_core::Message;

use super::RouteError;
use super::lexer::{Spanned, Token};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// `$name`: a system property.
    System(String),
    /// `$topic[n]`: topic level n (0-based).
    TopicLevel(usize),
    /// A bare name: an application property.
    Property(String),
    /// `$body.a.b[0]`.
    Body(Vec<PathStep>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Coalesce,
    Concat,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

macro_rules! functions {
    ($($variant:ident = $name:literal / $arity:literal),* $(,)?) => {
        /// The built-in functions of IoT Hub routing queries (plus is_array/is_object/is_primitive).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Function { $($variant),* }
        impl Function {
            fn lookup(name: &str) -> Option<(Function, usize)> {
                match name.to_ascii_lowercase().as_str() {
                    $($name => Some((Function::$variant, $arity)),)*
                    _ => None,
                }
            }
            const NAMES: &'static [&'static str] = &[$($name),*];
        }
    };
}

functions! {
    Abs = "abs" / 1, Exp = "exp" / 1, Power = "power" / 2, Square = "square" / 1, Ceiling = "ceiling" / 1,
    Floor = "floor" / 1, Sign = "sign" / 1, Sqrt = "sqrt" / 1, AsNumber = "as_number" / 1,
    IsArray = "is_array" / 1, IsBool = "is_bool" / 1, IsDefined = "is_defined" / 1, IsNull = "is_null" / 1,
    IsNumber = "is_number" / 1, IsObject = "is_object" / 1, IsPrimitive = "is_primitive" / 1,
    IsString = "is_string" / 1, Concat = "concat" / 0, Length = "length" / 1, Lower = "lower" / 1,
    Upper = "upper" / 1, Substring = "substring" / 3, IndexOf = "index_of" / 2, StartsWith = "starts_with" / 2,
    EndsWith = "ends_with" / 2, Contains = "contains" / 2,
}

/// Parses tokens into an [`Expr`].
pub struct Parser<'t> {
    tokens: &'t [Spanned],
    pos: usize,
    /// Column just past the end, for "expected … at end" errors.
    end: usize,
}

impl<'t> Parser<'t> {
    pub fn new(tokens: &'t [Spanned], end: usize) -> Self {
        Parser { tokens, pos: 0, end }
    }

    /// Parse one whole expression; anything left over is an error.
    pub fn parse_all(mut self) -> Result<Expr, RouteError> {
        let expr = self.expression(0)?;
        if let Some(extra) = self.tokens.get(self.pos) {
            return Err(RouteError::new(extra.at, format!("expected an operator or the end of the condition, found {}", describe(&extra.token))));
        }
        Ok(expr)
    }

    fn peek(&self) -> Option<&'t Spanned> {
        self.tokens.get(self.pos)
    }

    fn at(&self) -> usize {
        self.peek().map(|t| t.at).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<&'t Spanned> {
        let token = self.tokens.get(self.pos);
        self.pos += 1;
        token
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), RouteError> {
        match self.peek() {
            Some(Spanned { token: Token::Symbol(s), .. }) if *s == symbol => {
                self.pos += 1;
                Ok(())
            }
            Some(other) => Err(RouteError::new(other.at, format!("expected `{symbol}`, found {}", describe(&other.token)))),
            None => Err(RouteError::new(self.end, format!("expected `{symbol}` before the end"))),
        }
    }

    fn binary_op(&self) -> Option<(BinaryOp, u8)> {
        let token = &self.peek()?.token;
        Some(match token {
            Token::Word(w) if w.eq_ignore_ascii_case("or") => (BinaryOp::Or, 1),
            Token::Word(w) if w.eq_ignore_ascii_case("and") => (BinaryOp::And, 2),
            Token::Symbol("=") => (BinaryOp::Eq, 4),
            Token::Symbol("!=") | Token::Symbol("<>") => (BinaryOp::Ne, 4),
            Token::Symbol("<") => (BinaryOp::Lt, 4),
            Token::Symbol("<=") => (BinaryOp::Le, 4),
            Token::Symbol(">") => (BinaryOp::Gt, 4),
            Token::Symbol(">=") => (BinaryOp::Ge, 4),
            Token::Symbol("??") => (BinaryOp::Coalesce, 5),
            Token::Symbol("||") => (BinaryOp::Concat, 6),
            Token::Symbol("+") => (BinaryOp::Add, 7),
            Token::Symbol("-") => (BinaryOp::Sub, 7),
            Token::Symbol("*") => (BinaryOp::Mul, 8),
            Token::Symbol("/") => (BinaryOp::Div, 8),
            Token::Symbol("%") => (BinaryOp::Rem, 8),
            _ => return None,
        })
    }

    /// Precedence climbing: parse operators that bind tighter than `min`.
    fn expression(&mut self, min: u8) -> Result<Expr, RouteError> {
        let mut left = self.unary()?;
        while let Some((op, precedence)) = self.binary_op() {
            if precedence <= min {
                break;
            }
            self.pos += 1;
            let right = self.expression(precedence)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, RouteError> {
        match self.peek().map(|t| &t.token) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.expression(3)?)))
            }
            Some(Token::Symbol("-")) => {
                self.pos += 1;
                Ok(Expr::Negate(Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, RouteError> {
        let at = self.at();
        let Some(token) = self.next() else {
            return Err(RouteError::new(at, "expected a value, a property or `(`, found the end"));
        };
        match &token.token {
            Token::Number(n) => Ok(Expr::Literal(Literal::Number(*n))),
            Token::Str(s) => Ok(Expr::Literal(Literal::Str(s.clone()))),
            Token::Symbol("(") => {
                let inner = self.expression(0)?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Token::System(name) if name == "body" => self.body_path(),
            Token::System(name) if name == "topic" => {
                if matches!(self.peek().map(|t| &t.token), Some(Token::Symbol("["))) {
                    self.pos += 1;
                    let index = self.index()?;
                    Ok(Expr::TopicLevel(index))
                } else {
                    Ok(Expr::System(name.clone()))
                }
            }
            Token::System(name) => Ok(Expr::System(name.clone())),
            Token::Word(word) => match word.to_ascii_lowercase().as_str() {
                "true" => Ok(Expr::Literal(Literal::Bool(true))),
                "false" => Ok(Expr::Literal(Literal::Bool(false))),
                "null" => Ok(Expr::Literal(Literal::Null)),
                "undefined" => Ok(Expr::Literal(Literal::Undefined)),
                _ if matches!(self.peek().map(|t| &t.token), Some(Token::Symbol("("))) => self.call(word, token.at),
                _ => Ok(Expr::Property(word.clone())),
            },
            other => Err(RouteError::new(token.at, format!("expected a value, a property or `(`, found {}", describe(other)))),
        }
    }

    fn index(&mut self) -> Result<usize, RouteError> {
        let at = self.at();
        match self.next().map(|t| &t.token) {
            Some(Token::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => {
                self.expect_symbol("]")?;
                Ok(*n as usize)
            }
            _ => Err(RouteError::new(at, "expected an index (0, 1, 2 …) inside `[ ]`")),
        }
    }

    fn body_path(&mut self) -> Result<Expr, RouteError> {
        let mut steps = Vec::new();
        loop {
            match self.peek().map(|t| &t.token) {
                Some(Token::Symbol(".")) => {
                    self.pos += 1;
                    let at = self.at();
                    match self.next().map(|t| &t.token) {
                        Some(Token::Word(field)) => steps.push(PathStep::Field(field.clone())),
                        _ => return Err(RouteError::new(at, "expected a field name after `.`")),
                    }
                }
                Some(Token::Symbol("[")) => {
                    self.pos += 1;
                    if let Some(Spanned { token: Token::Str(field), .. }) = self.peek() {
                        self.pos += 1;
                        self.expect_symbol("]")?;
                        steps.push(PathStep::Field(field.clone()));
                    } else {
                        steps.push(PathStep::Index(self.index()?));
                    }
                }
                _ => return Ok(Expr::Body(steps)),
            }
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, RouteError> {
        let (function, arity) = Function::lookup(name)
            .ok_or_else(|| RouteError::new(at, format!("unknown function `{name}`; the functions are {}", Function::NAMES.join(", "))))?;
        self.expect_symbol("(")?;
        let mut args = Vec::new();
        if !matches!(self.peek().map(|t| &t.token), Some(Token::Symbol(")"))) {
            loop {
                args.push(self.expression(0)?);
                if matches!(self.peek().map(|t| &t.token), Some(Token::Symbol(","))) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect_symbol(")")?;
        let fits = if function == Function::Concat { args.len() >= 2 } else { args.len() == arity };
        if !fits {
            let wanted = if function == Function::Concat { "two or more".to_owned() } else { arity.to_string() };
            return Err(RouteError::new(at, format!("`{name}` takes {wanted} argument(s), not {}", args.len())));
        }
        Ok(Expr::Call(function, args))
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => format!("`{w}`"),
        Token::System(s) => format!("`${s}`"),
        Token::Number(n) => format!("the number {n}"),
        Token::Str(s) => format!("the string '{s}'"),
        Token::Symbol(s) => format!("`{s}`"),
    }
}

/// A value during evaluation, borrowing from the message where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(Cow<'a, str>),
    /// An array or object from the body.
    Json(&'a serde_json::Value),
}

impl<'a> Value<'a> {
    fn from_json(json: &'a serde_json::Value) -> Value<'a> {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map(Value::Number).unwrap_or(Value::Undefined),
            serde_json::Value::String(s) => Value::Str(Cow::Borrowed(s)),
            other => Value::Json(other),
        }
    }

    /// For templates: the text a value stands for; `None` when undefined.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Undefined => return None,
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Value::Number(n) => n.to_string(),
            Value::Str(s) => s.to_string(),
            Value::Json(json) => json.to_string(),
        })
    }
}

/// Evaluate `expr` against a message.
pub fn eval<'a>(expr: &'a Expr, message: &'a Message) -> Value<'a> {
    match expr {
        Expr::Literal(literal) => match literal {
            Literal::Undefined => Value::Undefined,
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Number(n) => Value::Number(*n),
            Literal::Str(s) => Value::Str(Cow::Borrowed(s)),
        },
        Expr::System(name) => system_property(name, message),
        Expr::TopicLevel(index) => message.meta().topic.split('/').nth(*index).map(|s| Value::Str(Cow::Borrowed(s))).unwrap_or(Value::Undefined),
        Expr::Property(name) => message.meta().property(name).map(|s| Value::Str(Cow::Borrowed(s))).unwrap_or(Value::Undefined),
        Expr::Body(steps) => {
            let Some(mut node) = message.json_body() else { return Value::Undefined };
            for step in steps {
                let next = match step {
                    PathStep::Field(field) => node.get(field.as_str()),
                    PathStep::Index(index) => node.get(*index),
                };
                match next {
                    Some(next) => node = next,
                    None => return Value::Undefined,
                }
            }
            Value::from_json(node)
        }
        Expr::Not(inner) => match eval(inner, message) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Undefined,
        },
        Expr::Negate(inner) => match eval(inner, message) {
            Value::Number(n) => Value::Number(-n),
            _ => Value::Undefined,
        },
        Expr::Binary(op, left, right) => binary(*op, left, right, message),
        Expr::Call(function, args) => call(*function, args, message),
    }
}

fn system_property<'a>(name: &str, message: &'a Message) -> Value<'a> {
    let meta = message.meta();
    let text = |s: &'a str| Value::Str(Cow::Borrowed(s));
    match name {
        "topic" => text(&meta.topic),
        "qos" => Value::Number(u8::from(meta.qos).into()),
        "retain" => Value::Bool(meta.retain),
        "source" => text(&meta.source),
        "contentType" => meta.content_type.as_deref().map(text).unwrap_or(Value::Undefined),
        "responseTopic" => meta.response_topic.as_deref().map(text).unwrap_or(Value::Undefined),
        "correlationId" => meta.correlation_data.as_ref().map(|c| Value::Str(String::from_utf8_lossy(c))).unwrap_or(Value::Undefined),
        "connectionModuleId" | "module" => meta.origin.as_ref().map(|o| text(&o.module)).unwrap_or(Value::Undefined),
        "output" | "outputName" => meta.origin.as_ref().map(|o| text(&o.output)).unwrap_or(Value::Undefined),
        "enqueuedTime" | "ingestTime" => Value::Number(meta.ingest_time_ms as f64),
        // IoT Hub system properties that MQTT carries as user properties, when a sender sets them.
        other => meta.property(other).or_else(|| meta.property(&format!("${other}"))).map(text).unwrap_or(Value::Undefined),
    }
}

fn truth(value: &Value<'_>) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn binary<'a>(op: BinaryOp, left: &'a Expr, right: &'a Expr, message: &'a Message) -> Value<'a> {
    match op {
        BinaryOp::And => {
            let l = truth(&eval(left, message));
            if l == Some(false) {
                return Value::Bool(false);
            }
            match (l, truth(&eval(right, message))) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Undefined,
            }
        }
        BinaryOp::Or => {
            let l = truth(&eval(left, message));
            if l == Some(true) {
                return Value::Bool(true);
            }
            match (l, truth(&eval(right, message))) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Undefined,
            }
        }
        BinaryOp::Coalesce => match eval(left, message) {
            Value::Undefined => eval(right, message),
            value => value,
        },
        _ => {
            let (l, r) = (eval(left, message), eval(right, message));
            if matches!(l, Value::Undefined) || matches!(r, Value::Undefined) {
                return Value::Undefined;
            }
            match op {
                BinaryOp::Eq => equal(&l, &r).map(Value::Bool).unwrap_or(Value::Undefined),
                BinaryOp::Ne => equal(&l, &r).map(|b| Value::Bool(!b)).unwrap_or(Value::Undefined),
                BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                    let ordering = match (&l, &r) {
                        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
                        _ => None,
                    };
                    match ordering {
                        Some(o) => Value::Bool(match op {
                            BinaryOp::Lt => o.is_lt(),
                            BinaryOp::Le => o.is_le(),
                            BinaryOp::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        }),
                        None => Value::Undefined,
                    }
                }
                BinaryOp::Concat => match (&l, &r) {
                    (Value::Str(a), Value::Str(b)) => Value::Str(Cow::Owned(format!("{a}{b}"))),
                    _ => Value::Undefined,
                },
                _ => match (l, r) {
                    (Value::Number(a), Value::Number(b)) => Value::Number(match op {
                        BinaryOp::Add => a + b,
                        BinaryOp::Sub => a - b,
                        BinaryOp::Mul => a * b,
                        BinaryOp::Div => a / b,
                        _ => a % b,
                    }),
                    _ => Value::Undefined,
                },
            }
        }
    }
}

fn equal(l: &Value<'_>, r: &Value<'_>) -> Option<bool> {
    Some(match (l, r) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a == b,
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Json(a), Value::Json(b)) => a == b,
        // Different types are not equal (IoT Hub does not convert).
        _ => false,
    })
}

fn call<'a>(function: Function, args: &'a [Expr], message: &'a Message) -> Value<'a> {
    let values: Vec<Value<'a>> = args.iter().map(|a| eval(a, message)).collect();
    let number = |i: usize| match values.get(i) {
        Some(Value::Number(n)) => Some(*n),
        _ => None,
    };
    let string = |i: usize| match values.get(i) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let math = |f: fn(f64) -> f64| number(0).map(|n| Value::Number(f(n))).unwrap_or(Value::Undefined);
    let first = values.first().cloned().unwrap_or(Value::Undefined);
    match function {
        Function::Abs => math(f64::abs),
        Function::Exp => math(f64::exp),
        Function::Square => math(|n| n * n),
        Function::Ceiling => math(f64::ceil),
        Function::Floor => math(f64::floor),
        Function::Sign => math(|n| if n == 0.0 { 0.0 } else { n.signum() }),
        Function::Sqrt => math(f64::sqrt),
        Function::Power => match (number(0), number(1)) {
            (Some(a), Some(b)) => Value::Number(a.powf(b)),
            _ => Value::Undefined,
        },
        Function::AsNumber => match first {
            Value::Number(n) => Value::Number(n),
            Value::Str(s) => s.trim().parse().map(Value::Number).unwrap_or(Value::Undefined),
            _ => Value::Undefined,
        },
        Function::IsArray => Value::Bool(matches!(first, Value::Json(j) if j.is_array())),
        Function::IsObject => Value::Bool(matches!(first, Value::Json(j) if j.is_object())),
        Function::IsBool => Value::Bool(matches!(first, Value::Bool(_))),
        Function::IsDefined => Value::Bool(!matches!(first, Value::Undefined)),
        Function::IsNull => Value::Bool(matches!(first, Value::Null)),
        Function::IsNumber => Value::Bool(matches!(first, Value::Number(_))),
        Function::IsString => Value::Bool(matches!(first, Value::Str(_))),
        Function::IsPrimitive => Value::Bool(matches!(first, Value::Null | Value::Bool(_) | Value::Number(_) | Value::Str(_))),
        Function::Concat => {
            let mut out = String::new();
            for value in &values {
                match value {
                    Value::Str(s) => out.push_str(s),
                    _ => return Value::Undefined,
                }
            }
            Value::Str(Cow::Owned(out))
        }
        Function::Length => match first {
            Value::Str(s) => Value::Number(s.chars().count() as f64),
            Value::Json(serde_json::Value::Array(a)) => Value::Number(a.len() as f64),
            _ => Value::Undefined,
        },
        Function::Lower => string(0).map(|s| Value::Str(Cow::Owned(s.to_lowercase()))).unwrap_or(Value::Undefined),
        Function::Upper => string(0).map(|s| Value::Str(Cow::Owned(s.to_uppercase()))).unwrap_or(Value::Undefined),
        Function::Substring => match (string(0), number(1), number(2)) {
            (Some(s), Some(start), Some(len)) if start >= 0.0 && len >= 0.0 => {
                Value::Str(Cow::Owned(s.chars().skip(start as usize).take(len as usize).collect()))
            }
            _ => Value::Undefined,
        },
        Function::IndexOf => match (string(0), string(1)) {
            (Some(s), Some(needle)) => Value::Number(s.find(needle.as_ref()).map(|byte| s[..byte].chars().count() as f64).unwrap_or(-1.0)),
            _ => Value::Undefined,
        },
        Function::StartsWith | Function::EndsWith | Function::Contains => match (string(0), string(1)) {
            (Some(s), Some(needle)) => Value::Bool(match function {
                Function::StartsWith => s.starts_with(needle.as_ref()),
                Function::EndsWith => s.ends_with(needle.as_ref()),
                _ => s.contains(needle.as_ref()),
            }),
            _ => Value::Undefined,
        },
    }
}

//! Conditions and template expressions: the syntax tree and its parser (precedence
//! climbing). Evaluation is in [`super::eval`].

use super::RouteError;
use super::lexer::{Spanned, Token};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// `$name`: a system property.
    System(SystemProperty),
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

impl Expr {
    /// Whether `$body…` appears anywhere in it.
    pub fn mentions_body(&self) -> bool {
        match self {
            Expr::Body(_) => true,
            Expr::Literal(_) | Expr::System(_) | Expr::TopicLevel(_) | Expr::Property(_) => false,
            Expr::Not(inner) | Expr::Negate(inner) => inner.mentions_body(),
            Expr::Binary(_, left, right) => left.mentions_body() || right.mentions_body(),
            Expr::Call(_, args) => args.iter().any(Expr::mentions_body),
        }
    }
}

/// A system property, resolved from its name when the route is parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemProperty {
    Topic,
    Qos,
    Retain,
    Source,
    ContentType,
    ResponseTopic,
    CorrelationId,
    /// `connectionModuleId` or `module`: the module a message came out of.
    Module,
    /// `output` or `outputName`.
    Output,
    /// `enqueuedTime` or `ingestTime`.
    IngestTime,
    /// Any other name: a user property of that name (or `$name`), as IoT Hub's system
    /// properties travel over MQTT (`connectionDeviceId`, `messageId` …).
    Other(String),
}

impl SystemProperty {
    pub fn from_name(name: &str) -> Self {
        match name {
            "topic" => SystemProperty::Topic,
            "qos" => SystemProperty::Qos,
            "retain" => SystemProperty::Retain,
            "source" => SystemProperty::Source,
            "contentType" => SystemProperty::ContentType,
            "responseTopic" => SystemProperty::ResponseTopic,
            "correlationId" => SystemProperty::CorrelationId,
            "connectionModuleId" | "module" => SystemProperty::Module,
            "output" | "outputName" => SystemProperty::Output,
            "enqueuedTime" | "ingestTime" => SystemProperty::IngestTime,
            other => SystemProperty::Other(other.to_owned()),
        }
    }

    /// The name as written after `$` (canonical spelling).
    pub fn name(&self) -> &str {
        match self {
            SystemProperty::Topic => "topic",
            SystemProperty::Qos => "qos",
            SystemProperty::Retain => "retain",
            SystemProperty::Source => "source",
            SystemProperty::ContentType => "contentType",
            SystemProperty::ResponseTopic => "responseTopic",
            SystemProperty::CorrelationId => "correlationId",
            SystemProperty::Module => "connectionModuleId",
            SystemProperty::Output => "output",
            SystemProperty::IngestTime => "enqueuedTime",
            SystemProperty::Other(name) => name,
        }
    }
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
                    Ok(Expr::System(SystemProperty::Topic))
                }
            }
            Token::System(name) => Ok(Expr::System(SystemProperty::from_name(name))),
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

pub use super::eval::{Value, eval};

//! Evaluating conditions and template expressions against a message.
//!
//! Semantics follow Azure IoT Hub routing queries: a comparison or function that touches
//! an undefined value is undefined, and a route whose condition is undefined does not match.
//! `docs/routes.md` has the whole table.

use std::borrow::Cow;

use weir_core::Message;

use super::expr::{BinaryOp, Expr, Function, Literal, PathStep, SystemProperty};

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

    /// For templates: the text a value stands for, borrowed when it is a string; `None`
    /// when undefined.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            other => other.to_text().map(Cow::Owned),
        }
    }

    /// The text a value stands for, as an owned string; `None` when undefined.
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
        Expr::TopicLevel(index) => super::topic_levels(&message.meta().topic).nth(*index).map(|s| Value::Str(Cow::Borrowed(s))).unwrap_or(Value::Undefined),
        Expr::Property(name) => message.meta().property(name).map(|s| Value::Str(Cow::Borrowed(s))).unwrap_or(Value::Undefined),
        Expr::Body(steps) => {
            // `$body.name…` needs one top-level field: found without decoding the rest.
            let (first, rest) = match steps.split_first() {
                Some((PathStep::Field(field), rest)) => (message.body_field(field), rest),
                _ => (message.json_body(), &steps[..]),
            };
            let Some(mut node) = first else { return Value::Undefined };
            for step in rest {
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

fn system_property<'a>(property: &'a SystemProperty, message: &'a Message) -> Value<'a> {
    let meta = message.meta();
    let text = |s: &'a str| Value::Str(Cow::Borrowed(s));
    match property {
        SystemProperty::Topic => text(&meta.topic),
        SystemProperty::Qos => Value::Number(u8::from(meta.qos).into()),
        SystemProperty::Retain => Value::Bool(meta.retain),
        SystemProperty::Source => text(&meta.source),
        SystemProperty::ContentType => meta.content_type.as_deref().map(text).unwrap_or(Value::Undefined),
        SystemProperty::ResponseTopic => meta.response_topic.as_deref().map(text).unwrap_or(Value::Undefined),
        SystemProperty::CorrelationId => meta.correlation_data.as_ref().map(|c| Value::Str(String::from_utf8_lossy(c))).unwrap_or(Value::Undefined),
        SystemProperty::Module => meta.origin.as_ref().map(|o| text(&o.module)).unwrap_or(Value::Undefined),
        SystemProperty::Output => meta.origin.as_ref().map(|o| text(&o.output)).unwrap_or(Value::Undefined),
        SystemProperty::IngestTime => Value::Number(meta.ingest_time_ms as f64),
        SystemProperty::Other(name) => meta
            .properties
            .iter()
            .find(|p| p.name == *name || (p.name.starts_with('$') && p.name[1..] == **name))
            .map(|p| text(&p.value))
            .unwrap_or(Value::Undefined),
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

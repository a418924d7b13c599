//! `weir route explain`: the parse of a route, the value of every sub-expression for one
//! message, and why the route does or does not take it.

use std::fmt::Write;

use weir_core::Message;

use super::expr::{self, BinaryOp, Expr, Function, Literal, PathStep, Value};
use super::{Route, RouteSink, RouteSource};

/// Write an expression back in route syntax.
pub fn unparse(expr: &Expr) -> String {
    match expr {
        Expr::Literal(Literal::Undefined) => "undefined".into(),
        Expr::Literal(Literal::Null) => "null".into(),
        Expr::Literal(Literal::Bool(b)) => b.to_string(),
        Expr::Literal(Literal::Number(n)) => n.to_string(),
        Expr::Literal(Literal::Str(s)) => format!("'{}'", s.replace('\'', "''")),
        Expr::System(property) => format!("${}", property.name()),
        Expr::TopicLevel(i) => format!("$topic[{i}]"),
        Expr::Property(name) => name.clone(),
        Expr::Body(steps) => {
            let mut out = "$body".to_owned();
            for step in steps {
                match step {
                    PathStep::Field(f) => {
                        let _ = write!(out, ".{f}");
                    }
                    PathStep::Index(i) => {
                        let _ = write!(out, "[{i}]");
                    }
                }
            }
            out
        }
        Expr::Not(inner) => format!("NOT {}", unparse(inner)),
        Expr::Negate(inner) => format!("-{}", unparse(inner)),
        Expr::Binary(op, l, r) => format!("{} {} {}", unparse(l), op_text(*op), unparse(r)),
        Expr::Call(function, args) => format!("{}({})", function_name(*function), args.iter().map(unparse).collect::<Vec<_>>().join(", ")),
    }
}

fn op_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Or => "OR",
        BinaryOp::And => "AND",
        BinaryOp::Eq => "=",
        BinaryOp::Ne => "!=",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Coalesce => "??",
        BinaryOp::Concat => "||",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
    }
}

fn function_name(function: Function) -> String {
    format!("{function:?}").chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        out
    })
}

fn show(value: &Value<'_>) -> String {
    match value {
        Value::Undefined => "undefined".into(),
        Value::Str(s) => format!("'{s}'"),
        other => other.to_text().unwrap_or_default(),
    }
}

/// Every sub-expression with its value, indented by depth.
fn walk(expr: &Expr, message: &Message, depth: usize, out: &mut String, first_undefined: &mut Option<String>) {
    let value = expr::eval(expr, message);
    let text = unparse(expr);
    let _ = writeln!(out, "  {}{text:<40} → {}", "  ".repeat(depth), show(&value));
    let children: Vec<&Expr> = match expr {
        Expr::Not(inner) | Expr::Negate(inner) => vec![inner],
        Expr::Binary(_, l, r) => vec![l, r],
        Expr::Call(_, args) => args.iter().collect(),
        _ => {
            if matches!(value, Value::Undefined) && first_undefined.is_none() && !matches!(expr, Expr::Literal(_)) {
                *first_undefined = Some(leaf_reason(expr, message));
            }
            Vec::new()
        }
    };
    for child in children {
        walk(child, message, depth + 1, out, first_undefined);
    }
}

fn leaf_reason(expr: &Expr, message: &Message) -> String {
    match expr {
        Expr::Body(_) if message.json_body().is_none() => format!("{} is undefined: the payload is not JSON", unparse(expr)),
        Expr::Body(_) => format!("{} is undefined: the body has no such field", unparse(expr)),
        Expr::Property(name) => format!("{name} is undefined: the message has no application property `{name}`"),
        Expr::System(property) => {
            let name = property.name();
            format!("${name} is undefined: the message has no such system property (nor a user property `{name}`)")
        }
        Expr::TopicLevel(i) => format!("$topic[{i}] is undefined: the topic `{}` has fewer levels", message.meta().topic),
        other => format!("{} is undefined", unparse(other)),
    }
}

fn describe_source(source: &RouteSource) -> String {
    match source {
        RouteSource::All => "every message".into(),
        RouteSource::AllModules => "every module output".into(),
        RouteSource::Module { id, output: None } => format!("every output of module `{id}`"),
        RouteSource::Module { id, output: Some(output) } => format!("output `{output}` of module `{id}`"),
        RouteSource::Topic(filter) => format!("broker messages on topics matching `{filter}`"),
    }
}

fn describe_sink(sink: &RouteSink) -> String {
    match sink {
        RouteSink::Upstream => "$upstream (the sink named by `upstream`)".into(),
        RouteSink::DeadLetter => "$deadletter".into(),
        RouteSink::Module { id, input } => format!("module `{id}`, input `{input}`"),
        RouteSink::Named(name) => format!("the sink `{name}`"),
        RouteSink::Topic(_) => "a local topic (template)".into(),
    }
}

/// The explanation, and whether the route takes the message.
pub fn explain(text: &str, route: &Route, message: &Message) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "route:     {}", text.trim());
    let source_ok = route.source.matches(message.meta());
    let origin = match &message.meta().origin {
        Some(origin) => format!("output `{}` of module `{}`", origin.output, origin.module),
        None => format!("topic `{}` from source `{}`", message.meta().topic, message.meta().source),
    };
    let _ = writeln!(out, "source:    {} — the message ({origin}) {}", describe_source(&route.source), if source_ok { "matches" } else { "does not match" });
    let mut first_undefined = None;
    let condition = match &route.condition {
        None => {
            let _ = writeln!(out, "condition: none");
            Value::Bool(true)
        }
        Some(condition) => {
            let _ = writeln!(out, "condition:");
            walk(condition, message, 0, &mut out, &mut first_undefined);
            expr::eval(condition, message)
        }
    };
    let _ = writeln!(out, "sink:      {}", describe_sink(&route.sink));
    let matched = source_ok && matches!(condition, Value::Bool(true));
    let verdict = if !source_ok {
        "NOT MATCHED: the source does not take this message".to_owned()
    } else {
        match (&condition, first_undefined) {
            (Value::Bool(true), _) => "MATCHED".to_owned(),
            (Value::Bool(false), _) => "NOT MATCHED: the condition is false".to_owned(),
            (Value::Undefined, Some(reason)) => format!("NOT MATCHED: the condition is undefined because {reason}"),
            (other, _) => format!("NOT MATCHED: the condition is {}, not true", show(other)),
        }
    };
    if let (true, RouteSink::Topic(template)) = (matched, &route.sink) {
        let _ = writeln!(out, "topic:     {}", template.render(message).unwrap_or_else(|reason| format!("(dead letter: {reason})")));
    }
    let _ = writeln!(out, "verdict:   {verdict}");
    (out, matched)
}

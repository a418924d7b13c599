//! Route evaluation and delivery to the next stage.
//!
//! There is no central router task: whoever produces a message (a source task, a module
//! worker) evaluates the routes and sends to the destinations itself. That saves a hop and
//! a thread, and a chain of modules cannot deadlock on a router in the middle.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;
use weir_core::Message;

use super::deadletter::DeadLetter;
use crate::route::{Route, RouteSink};
use crate::telemetry;

/// Work for a module worker or sink worker.
#[derive(Debug)]
pub enum Work {
    /// A message, and the module input it arrived on (empty for sinks).
    Message(Arc<str>, Message),
    /// Finish what came before, then stop.
    Stop,
}

/// A route ready to evaluate.
#[derive(Debug)]
pub struct CompiledRoute {
    pub name: Arc<str>,
    pub route: Route,
    /// Where it sends: a module's or sink's queue.
    pub target: Target,
    pub time_to_live_ms: Option<u64>,
    /// Registered once, not looked up per message.
    pub matched: metrics::Counter,
}

/// A destination queue.
#[derive(Debug, Clone)]
pub enum Target {
    Module { name: Arc<str>, input: Arc<str>, queue: mpsc::Sender<Work> },
    Sink { name: Arc<str>, queue: mpsc::Sender<Work> },
    DeadLetter,
}

/// Routes plus the dead-letter queue: everything needed to send a message on.
#[derive(Debug)]
pub struct Dispatcher {
    pub routes: Vec<CompiledRoute>,
    pub deadletter: mpsc::Sender<Work>,
}

/// Where one message goes: (target, message, route name).
type Deliveries = Vec<(Target, Message, Arc<str>)>;

impl Dispatcher {
    /// Decide where `message` goes. Messages no route takes are dropped (and counted).
    fn plan(&self, message: Message) -> (Deliveries, Vec<DeadLetter>) {
        let mut deliveries = Vec::new();
        let mut dead = Vec::new();
        for compiled in &self.routes {
            if !compiled.route.accepts(&message) {
                continue;
            }
            // Never feed a module its own output: `FROM /messages/* INTO BrokeredEndpoint(m)`
            // would otherwise loop forever.
            if let (Target::Module { name, .. }, Some(origin)) = (&compiled.target, &message.meta().origin)
                && origin.module == *name
            {
                continue;
            }
            if let Some(ttl) = compiled.time_to_live_ms {
                let age = weir_core::message::now_ms().saturating_sub(message.meta().ingest_time_ms);
                if age > ttl {
                    metrics::counter!(telemetry::ROUTE_EXPIRED, "route" => compiled.name.to_string()).increment(1);
                    tracing::warn!(route = %compiled.name, age_ms = age, "message older than the route's time_to_live: dropped");
                    continue;
                }
            }
            compiled.matched.increment(1);
            let mut copy = message.clone();
            if let RouteSink::Topic(template) = &compiled.route.sink {
                match template.render(&copy) {
                    Ok(topic) => copy.meta_mut().topic = topic,
                    Err(reason) => {
                        dead.push(DeadLetter::new(copy, "template", reason).route(&compiled.name));
                        continue;
                    }
                }
            }
            deliveries.push((compiled.target.clone(), copy, compiled.name.clone()));
        }
        if deliveries.is_empty() && dead.is_empty() {
            debug!(topic = %message.meta().topic, "no route takes this message");
            metrics::counter!(telemetry::UNROUTED).increment(1);
        }
        (deliveries, dead)
    }

    /// Send on from an async task (sources).
    pub async fn dispatch(&self, message: Message) {
        let (deliveries, dead) = self.plan(message);
        for (target, message, route) in deliveries {
            let queue = match &target {
                Target::Module { queue, .. } | Target::Sink { queue, .. } => queue,
                Target::DeadLetter => &self.deadletter,
            };
            let input = input_of(&target);
            if let Err(mpsc::error::SendError(work)) = queue.send(Work::Message(input, message)).await {
                fail(work, &route);
            }
        }
        for letter in dead {
            self.dead_letter(letter).await;
        }
    }

    /// Send on from a module worker thread (blocking).
    pub fn dispatch_blocking(&self, message: Message) {
        let (deliveries, dead) = self.plan(message);
        for (target, message, route) in deliveries {
            let queue = match &target {
                Target::Module { queue, .. } | Target::Sink { queue, .. } => queue,
                Target::DeadLetter => &self.deadletter,
            };
            if let Err(mpsc::error::SendError(work)) = queue.blocking_send(Work::Message(input_of(&target), message)) {
                fail(work, &route);
            }
        }
        for letter in dead {
            self.dead_letter_blocking(letter);
        }
    }

    pub async fn dead_letter(&self, letter: DeadLetter) {
        count_dead_letter(&letter);
        if let Err(mpsc::error::SendError(work)) = self.deadletter.send(Work::Message("".into(), letter.into_message())).await {
            fail(work, "$deadletter");
        }
    }

    pub fn dead_letter_blocking(&self, letter: DeadLetter) {
        count_dead_letter(&letter);
        if let Err(mpsc::error::SendError(work)) = self.deadletter.blocking_send(Work::Message("".into(), letter.into_message())) {
            fail(work, "$deadletter");
        }
    }

    /// Module names this dispatcher can send to (for shutdown ordering).
    pub fn module_targets(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|r| match &r.target {
            Target::Module { name, .. } => Some(&**name),
            _ => None,
        })
    }
}

fn input_of(target: &Target) -> Arc<str> {
    match target {
        Target::Module { input, .. } => input.clone(),
        _ => Arc::from(""),
    }
}

fn count_dead_letter(letter: &DeadLetter) {
    tracing::warn!(reason = letter.reason, detail = %letter.detail, module = ?letter.module, route = ?letter.route, "dead letter");
    metrics::counter!(telemetry::DEAD_LETTERS, "reason" => letter.reason).increment(1);
}

/// A queue closed under us (shutdown): the message was not handed on, so its source must
/// not acknowledge it.
fn fail(work: Work, route: &str) {
    if let Work::Message(_, message) = work {
        message.ack.fail();
        tracing::debug!(route, "queue closed during shutdown; message left unacknowledged for redelivery");
    }
}

/// Module names in an order where a module comes before the modules it sends to (as far
/// as cycles allow), so shutdown can drain a chain front to back.
pub fn shutdown_order(modules: &[Arc<str>], edges: &HashMap<Arc<str>, Vec<Arc<str>>>) -> Vec<Arc<str>> {
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut visiting = Vec::new();
    fn visit(node: &Arc<str>, edges: &HashMap<Arc<str>, Vec<Arc<str>>>, order: &mut Vec<Arc<str>>, visiting: &mut Vec<Arc<str>>) {
        if order.contains(node) || visiting.contains(node) {
            return;
        }
        visiting.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, order, visiting);
        }
        order.push(node.clone());
    }
    for module in modules {
        visit(module, edges, &mut order, &mut visiting);
    }
    order.reverse();
    order
}

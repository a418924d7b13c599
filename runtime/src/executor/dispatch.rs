//! Route evaluation and delivery to the next stage.
//!
//! There is no central router task: whoever produces a message (a source task, a module
//! worker) evaluates the routes and sends to the destinations itself. That saves a hop and
//! a thread, and a chain of modules cannot deadlock on a router in the middle.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;
use tokio::sync::mpsc;
use tracing::debug;
use weir_core::Message;

use super::deadletter::DeadLetter;
use super::module_slot::{Inline, ModuleSlot};
use crate::route::{Route, RouteIndex, RouteSink};
use crate::telemetry;

/// Work for a module worker or sink worker.
#[derive(Debug)]
pub enum Work {
    /// A message; the module input it arrived on (empty for sinks); and how its route wants
    /// it queued: priority 0 (highest) to 9, and when it expires (ms since the epoch; 0: the
    /// queue's default time to live).
    Message { input: Arc<str>, message: Message, priority: u8, expires_ms: u64 },
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
    pub priority: u8,
    /// Registered once, not looked up per message.
    pub matched: metrics::Counter,
}

/// A destination queue.
#[derive(Debug, Clone)]
pub enum Target {
    /// `slot`: the module's instance, for modules that may be called inline (not aggregates).
    Module {
        name: Arc<str>,
        input: Arc<str>,
        queue: mpsc::Sender<Work>,
        slot: Option<Arc<ModuleSlot>>,
    },
    Sink {
        name: Arc<str>,
        queue: mpsc::Sender<Work>,
    },
    DeadLetter,
}

/// Messages held back for one inline module call.
struct Held {
    slot: Arc<ModuleSlot>,
    input: Arc<str>,
    target: Target,
    route: Arc<str>,
    messages: Vec<Message>,
}

/// Routes plus the dead-letter queue: everything needed to send a message on.
#[derive(Debug)]
pub struct Dispatcher {
    routes: Vec<CompiledRoute>,
    index: RouteIndex,
    pub deadletter: mpsc::Sender<Work>,
    /// The input of work for a sink (sinks have no inputs), shared instead of allocated
    /// per message.
    no_input: Arc<str>,
    /// `runtime.max_message_size`: a bigger message goes to `$deadletter` as it arrives.
    max_message_bytes: usize,
}

/// Where one message goes: the target, the work for it, and the route's name (most messages
/// go one or two places: no allocation for those).
type Deliveries = SmallVec<[(Target, Work, Arc<str>); 2]>;

impl Dispatcher {
    pub fn new(routes: Vec<CompiledRoute>, deadletter: mpsc::Sender<Work>, max_message_bytes: usize) -> Self {
        let index = RouteIndex::new(routes.iter().map(|compiled| &compiled.route));
        Dispatcher { routes, index, deadletter, no_input: Arc::from(""), max_message_bytes }
    }

    /// Decide where `message` goes. Messages no route takes are dropped (and counted).
    /// Every route that takes it gets a copy but the last, which gets the message itself:
    /// a copy shares the metadata, so a route that then sets the topic would clone all of it.
    fn plan(&self, message: Message) -> (Deliveries, Vec<DeadLetter>) {
        let mut deliveries = Deliveries::new();
        let mut dead = Vec::new();
        let mut taken_by: Option<&CompiledRoute> = None;
        for position in self.index.candidates(&message) {
            let compiled = &self.routes[position];
            if !compiled.route.condition_holds(&message) {
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
            if let Some(earlier) = taken_by.replace(compiled) {
                self.deliver(earlier, message.clone(), &mut deliveries, &mut dead);
            }
        }
        match taken_by {
            Some(last) => self.deliver(last, message, &mut deliveries, &mut dead),
            None => {
                debug!(topic = %message.meta().topic, "no route takes this message");
                metrics::counter!(telemetry::UNROUTED).increment(1);
            }
        }
        (deliveries, dead)
    }

    /// `message` as `compiled` sends it: its topic rendered, its priority and expiry set.
    fn deliver(&self, compiled: &CompiledRoute, mut message: Message, deliveries: &mut Deliveries, dead: &mut Vec<DeadLetter>) {
        compiled.matched.increment(1);
        if let RouteSink::Topic(template) = &compiled.route.sink {
            match template.render(&message) {
                Ok(topic) => message.meta_mut().topic = topic,
                Err(reason) => {
                    dead.push(DeadLetter::new(message, "template", reason).route(&compiled.name));
                    return;
                }
            }
        }
        let expires_ms = compiled.time_to_live_ms.map(|ttl| message.meta().ingest_time_ms + ttl).unwrap_or(0);
        let input = match &compiled.target {
            Target::Module { input, .. } => input.clone(),
            _ => self.no_input.clone(),
        };
        let work = Work::Message { input, message, priority: compiled.priority, expires_ms };
        deliveries.push((compiled.target.clone(), work, compiled.name.clone()));
    }

    /// Send on a batch from an async task (what sources received), leaving `messages` empty.
    /// A module that runs inline is called here once for its share of the batch (see
    /// [`ModuleSlot`]), and what it outputs is sent on the same way.
    pub async fn dispatch_batch(self: &Arc<Self>, messages: &mut Vec<Message>) {
        let mut round = std::mem::take(messages);
        while !round.is_empty() {
            let mut held: SmallVec<[Held; 1]> = SmallVec::new();
            for message in round.drain(..) {
                if let Some(detail) = self.too_large(&message) {
                    self.dead_letter(DeadLetter::new(message, "too-large", detail)).await;
                    continue;
                }
                let (deliveries, dead) = self.plan(message);
                for (target, work, route) in deliveries {
                    match (&target, work) {
                        (Target::Module { slot: Some(slot), input, .. }, Work::Message { message, .. }) if slot.runs_inline() => {
                            match held.iter_mut().find(|h| Arc::ptr_eq(&h.slot, slot) && h.input == *input) {
                                Some(group) => group.messages.push(message),
                                None => held.push(Held { slot: slot.clone(), input: input.clone(), target: target.clone(), route, messages: vec![message] }),
                            }
                        }
                        (_, work) => self.send(&target, work, &route).await,
                    }
                }
                for letter in dead {
                    self.dead_letter(letter).await;
                }
            }
            let mut next = Vec::new();
            for group in held {
                self.call_inline(group, &mut next).await;
            }
            *messages = round;
            round = next;
        }
    }

    /// Why `message` is too large for the pipeline, if it is: over `runtime.max_message_size`,
    /// or with a payload its source dropped as it arrived (a property says how large).
    fn too_large(&self, message: &Message) -> Option<String> {
        let size = message.payload.len();
        if size > self.max_message_bytes {
            return Some(format!("{size} bytes is more than runtime.max_message_size ({} bytes)", self.max_message_bytes));
        }
        if size > 0 {
            return None;
        }
        let dropped = message.meta().properties.iter().find(|p| p.name == weir_core::message::DROPPED_PAYLOAD)?;
        Some(format!(
            "{} bytes is more than runtime.max_message_size ({} bytes); the payload was dropped as it arrived and is not in this dead letter",
            dropped.value, self.max_message_bytes
        ))
    }

    /// Call a module inline on what was held for it, a batch at a time, or queue the messages
    /// for its thread if it cannot be called here now. Outputs go to `next`.
    async fn call_inline(self: &Arc<Self>, group: Held, next: &mut Vec<Message>) {
        let Held { slot, input, target, route, mut messages } = group;
        let first = next.len();
        while !messages.is_empty() {
            let rest = if messages.len() > slot.batch_size { messages.split_off(slot.batch_size) } else { Vec::new() };
            match slot.call_inline(&input, messages).await {
                Inline::Done(processed) => {
                    next.extend(processed.outputs);
                    for letter in processed.dead {
                        self.dead_letter(letter).await;
                    }
                    messages = rest;
                }
                Inline::SetAside(aside) => {
                    // The call is finished on a blocking thread, which sends on what this
                    // group's earlier batches made before what the call makes, in order.
                    let earlier = next.split_off(first);
                    let (dispatcher, finishing) = (self.clone(), slot.clone());
                    let _detached = tokio::task::spawn_blocking(move || {
                        finishing.finish_set_aside(aside, |processed| dispatcher.send_on_blocking(earlier.into_iter().chain(processed.outputs), processed.dead))
                    });
                    self.queue_for_thread(&target, &input, &route, rest).await;
                    return;
                }
                Inline::Refused(mut refused) => {
                    refused.extend(rest);
                    self.queue_for_thread(&target, &input, &route, refused).await;
                    return;
                }
            }
        }
    }

    /// Queue `messages` for a module's own thread.
    async fn queue_for_thread(&self, target: &Target, input: &Arc<str>, route: &str, messages: Vec<Message>) {
        for message in messages {
            let work = Work::Message { input: input.clone(), message, priority: 0, expires_ms: 0 };
            self.send(target, work, route).await;
        }
    }

    /// Send `work` to `target`'s queue from an async task.
    async fn send(&self, target: &Target, work: Work, route: &str) {
        let queue = self.queue_for(target);
        // Room in the queue, the usual case: no future to build and poll for the permit.
        // (A permit freed while others wait goes to them first, so this never overtakes.)
        let work = match queue.try_send(work) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(work)) => work,
            Err(mpsc::error::TrySendError::Closed(work)) => {
                self.unqueue(target);
                fail(work, route);
                return;
            }
        };
        if let Err(mpsc::error::SendError(work)) = queue.send(work).await {
            self.unqueue(target);
            fail(work, route);
        }
    }

    /// `target`'s queue; a module's counts the message as on its way to the module's thread.
    fn queue_for<'a>(&'a self, target: &'a Target) -> &'a mpsc::Sender<Work> {
        match target {
            Target::Module { queue, slot, .. } => {
                if let Some(slot) = slot {
                    slot.queued(1);
                }
                queue
            }
            Target::Sink { queue, .. } => queue,
            Target::DeadLetter => &self.deadletter,
        }
    }

    /// A message counted by `queue_for` never reached the queue.
    fn unqueue(&self, target: &Target) {
        if let Target::Module { slot: Some(slot), .. } = target {
            slot.handled(1);
        }
    }

    /// Send on what a module call made, from a thread that is not async (a module's own, or
    /// the one that finishes a call set aside).
    pub fn send_on_blocking(&self, outputs: impl IntoIterator<Item = Message>, dead: Vec<DeadLetter>) {
        for message in outputs {
            self.dispatch_blocking(message);
        }
        for letter in dead {
            self.dead_letter_blocking(letter);
        }
    }

    /// Send one message on from a thread that is not async (blocking).
    pub fn dispatch_blocking(&self, message: Message) {
        let (deliveries, dead) = self.plan(message);
        for (target, work, route) in deliveries {
            if let Err(mpsc::error::SendError(work)) = self.queue_for(&target).blocking_send(work) {
                self.unqueue(&target);
                fail(work, &route);
            }
        }
        for letter in dead {
            self.dead_letter_blocking(letter);
        }
    }

    /// Hand a dead letter to `$deadletter`. False if it could not (shutdown closed the
    /// queue): the message is then marked as not handed on.
    pub async fn dead_letter(&self, letter: DeadLetter) -> bool {
        count_dead_letter(&letter);
        match self.deadletter.send(dead_letter_work(letter)).await {
            Ok(()) => true,
            Err(mpsc::error::SendError(work)) => {
                fail(work, "$deadletter");
                false
            }
        }
    }

    pub fn dead_letter_blocking(&self, letter: DeadLetter) -> bool {
        count_dead_letter(&letter);
        match self.deadletter.blocking_send(dead_letter_work(letter)) {
            Ok(()) => true,
            Err(mpsc::error::SendError(work)) => {
                fail(work, "$deadletter");
                false
            }
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

fn dead_letter_work(letter: DeadLetter) -> Work {
    Work::Message { input: Arc::from(""), message: letter.into_message(), priority: 0, expires_ms: 0 }
}

fn count_dead_letter(letter: &DeadLetter) {
    tracing::warn!(reason = letter.reason, detail = %letter.detail, module = ?letter.module, route = ?letter.route, "dead letter");
    metrics::counter!(telemetry::DEAD_LETTERS, "reason" => letter.reason).increment(1);
}

/// A queue closed under us (shutdown): the message was not handed on, so its source must
/// not acknowledge it.
fn fail(work: Work, route: &str) {
    if let Work::Message { message, .. } = work {
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

//! Routes grouped by source, so that a message is checked only against the routes that
//! could take it. Routes with the same `FROM` form one group whose source is matched once
//! per message; topic groups are looked up by their filter's first level and module-output
//! groups by module, so routes on other sources cost nothing.

use foldhash::HashMap;
use smallvec::SmallVec;
use weir_core::{Message, Metadata};

use super::{Route, RouteSource, TopicFilter};

#[derive(Debug, Default)]
pub struct RouteIndex {
    /// Distinct sources, each with the routes (by index, in order) that share it.
    groups: Vec<(RouteSource, Vec<usize>)>,
    /// Topic groups by the first level of their filter. (foldhash: looked up for every
    /// message, and the keys come from the pipeline, not from the messages.)
    by_first_level: HashMap<String, Vec<usize>>,
    /// Module-output groups by module.
    by_module: HashMap<String, Vec<usize>>,
    /// Groups to check for a message from a source (`/*`, topic filters starting with a wildcard).
    other_for_topics: Vec<usize>,
    /// Groups to check for a module output (`/*`, `/messages/modules/*`).
    other_for_modules: Vec<usize>,
}

impl RouteIndex {
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Self {
        let mut index = RouteIndex::default();
        for (position, route) in routes.into_iter().enumerate() {
            if let Some((_, members)) = index.groups.iter_mut().find(|(source, _)| *source == route.source) {
                members.push(position);
                continue;
            }
            let group = index.groups.len();
            match &route.source {
                RouteSource::Topic(filter) => match filter.first_exact_level() {
                    Some(level) => index.by_first_level.entry(level.to_owned()).or_default().push(group),
                    None => index.other_for_topics.push(group),
                },
                RouteSource::Module { id, .. } => index.by_module.entry(id.clone()).or_default().push(group),
                RouteSource::AllModules => index.other_for_modules.push(group),
                RouteSource::All => {
                    index.other_for_topics.push(group);
                    index.other_for_modules.push(group);
                }
            }
            index.groups.push((route.source.clone(), vec![position]));
        }
        index
    }

    /// The routes whose source matches `message`, in route order (conditions not checked).
    /// Up to eight without allocating: this runs for every message a source or module sends.
    pub fn candidates(&self, message: &Message) -> SmallVec<[usize; 8]> {
        let meta: &Metadata = message.meta();
        let (keyed, others) = match &meta.origin {
            Some(origin) => (self.by_module.get(&*origin.module), &self.other_for_modules),
            None => (self.by_first_level.get(super::topic_levels(&meta.topic).next().unwrap_or("")), &self.other_for_topics),
        };
        let mut routes = SmallVec::new();
        for &group in keyed.map(Vec::as_slice).unwrap_or_default().iter().chain(others) {
            let (source, members) = &self.groups[group];
            if source.matches(meta) {
                routes.extend_from_slice(members);
            }
        }
        routes.sort_unstable();
        routes
    }
}

impl TopicFilter {
    /// The first level when it is not a wildcard (`factory` of `factory/+/telemetry`).
    fn first_exact_level(&self) -> Option<&str> {
        match self.levels.first() {
            Some(super::Level::Exact(level)) => Some(level),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::parse;
    use weir_core::{Ack, ModuleOutput};

    #[test]
    fn candidates_are_the_routes_whose_source_matches() {
        let texts = [
            "FROM /topics/factory/+/telemetry INTO $upstream",
            "FROM /topics/hall/# INTO $upstream",
            "FROM /* INTO $upstream",
            "FROM /topics/factory/+/telemetry WHERE $body.t > 1 INTO $upstream",
            "FROM /topics/+/m1/telemetry INTO $upstream",
            "FROM /messages/modules/hot/outputs/* INTO $upstream",
            "FROM /messages/modules/* INTO $upstream",
            "FROM /topics/# INTO $upstream",
        ];
        let routes: Vec<Route> = texts.iter().map(|t| parse(t).expect("parses")).collect();
        let index = RouteIndex::new(&routes);
        let cases = [
            Message::new(&b"{}"[..], Metadata::new("local".into(), "factory/m1/telemetry"), Ack::none()),
            Message::new(&b"{}"[..], Metadata::new("local".into(), "hall/m2"), Ack::none()),
            Message::new(&b"{}"[..], Metadata::new("local".into(), "elsewhere"), Ack::none()),
            {
                let mut meta = Metadata::new("local".into(), "factory/m1/telemetry");
                meta.origin = Some(ModuleOutput { module: "hot".into(), output: "out".into() });
                Message::new(&b"{}"[..], meta, Ack::none())
            },
        ];
        for message in &cases {
            let expected: Vec<usize> = routes.iter().enumerate().filter(|(_, r)| r.source.matches(message.meta())).map(|(i, _)| i).collect();
            assert_eq!(index.candidates(message).to_vec(), expected, "{:?}", message.meta().topic);
        }
    }
}

//! The batching policy, pure: which batch each event of a `{max_events, max_wait_ms}`
//! subscription joins, when a batch is sealed, and the batch webhook's id and body.
//!
//! Batches are formed in chain order by the outbox write that also advances the cursor, so a
//! restart neither loses nor re-forms one: the open batch is stored with the events appended so
//! far, and whatever comes after the cursor is matched again and appended. A batch holds events
//! of one type: a `log.removed` after `log`s seals the open batch and starts its own.

use sha2::{Digest, Sha256};

use crate::event::{EventType, LogText};

/// The open (filling) batch of a subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub id: String,
    /// Events already in it.
    pub size: u32,
    /// When its first event was appended (Unix ms).
    pub opened_at: i64,
    pub event_type: String,
}

/// One incoming event, as the plan needs it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The event's own (single-event) delivery id: a new batch's id is derived from it.
    pub event_id: &'a str,
    pub event_type: &'a str,
}

/// What to do with one batch: create it (or append to the stored open one), put `events` (indexes
/// into the incoming slice) at positions from `first_position`, and seal it or leave it open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub id: String,
    pub is_new: bool,
    pub opened_at: i64,
    pub first_position: u32,
    pub events: Vec<usize>,
    pub sealed: bool,
}

/// Whether a batch opened at `opened_at` has waited its `max_wait_ms` at `now`.
pub fn wait_is_over(opened_at: i64, max_wait_ms: u32, now: i64) -> bool {
    now >= opened_at.saturating_add(i64::from(max_wait_ms))
}

/// When the sealer must seal a batch opened at `opened_at`.
pub fn seal_deadline(opened_at: i64, max_wait_ms: u32) -> i64 {
    opened_at.saturating_add(i64::from(max_wait_ms))
}

/// Distributes `events` (one subscription's, in chain order) over its open batch and new ones.
/// A batch is sealed when it reaches `max_events`, when an event of the other type follows, or
/// when its wait is over at `now`; at most the last batch stays open.
pub fn plan(
    open: Option<OpenBatch>,
    events: &[Incoming<'_>],
    max_events: u32,
    max_wait_ms: u32,
    now: i64,
) -> Vec<Fill> {
    let max_events = max_events.max(1);
    let mut fills: Vec<Fill> = Vec::new();
    let mut current: Option<(Fill, String)> = open.map(|o| {
        let fill = Fill {
            id: o.id,
            is_new: false,
            opened_at: o.opened_at,
            first_position: o.size,
            events: Vec::new(),
            sealed: o.size >= max_events,
        };
        (fill, o.event_type)
    });
    for (index, event) in events.iter().enumerate() {
        if let Some((fill, kind)) = &mut current
            && (fill.sealed || kind != event.event_type)
        {
            fill.sealed = true;
            fills.extend(current.take().map(|(fill, _)| fill));
        }
        let (fill, _) = current.get_or_insert_with(|| {
            let fill = Fill {
                id: batch_id_from_first(event.event_id),
                is_new: true,
                opened_at: now,
                first_position: 0,
                events: Vec::new(),
                sealed: false,
            };
            (fill, event.event_type.to_string())
        });
        fill.events.push(index);
        if fill.first_position as usize + fill.events.len() >= max_events as usize {
            fill.sealed = true;
            fills.extend(current.take().map(|(fill, _)| fill));
        }
    }
    if let Some((mut fill, _)) = current {
        fill.sealed = fill.sealed || wait_is_over(fill.opened_at, max_wait_ms, now);
        fills.push(fill);
    }
    fills
}

/// A `{max_events, max_wait_ms}` batch's webhook id: derived from its subscription and its first
/// event (whose own id already names both), so it is known when the batch opens and the same on
/// every retry, replay and restart.
pub fn batch_id_from_first(first_event_id: &str) -> String {
    hashed(&[b"log.batch", first_event_id.as_bytes()])
}

/// A `"block"` batch's webhook id: one per (subscription, chain, block, event type).
pub fn block_batch_id(
    subscription_id: &str,
    chain_id: u64,
    block_hash: &[u8],
    kind: &str,
) -> String {
    hashed(&[
        b"log.batch/block",
        subscription_id.as_bytes(),
        &chain_id.to_be_bytes(),
        block_hash,
        kind.as_bytes(),
    ])
}

fn hashed(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// One element of a batch body, `{"type":…,"log":…,"data":…}`: what the single-event body
/// carries for that event. It is kept as its parts until a body or a stored row needs its text:
/// the log's text is the one ingest parsed (shared, not copied) and `data` is the plugin's output,
/// so an event waiting for its batch's write holds no second copy of its log. (At 100K events/s
/// with every event batched, those copies were ~13 MB of the host's peak heap.)
#[derive(Debug, Clone)]
pub struct Element {
    event_type: EventType,
    log: LogText,
    data: Option<Box<str>>,
}

impl Element {
    pub fn new(event_type: EventType, log: LogText, data: Option<&str>) -> Element {
        Element {
            event_type,
            log,
            data: data.map(Box::from),
        }
    }

    /// The element's text.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(self.text_len());
        self.write_to(&mut text);
        text
    }
}

/// What a batch body is assembled from: an element as its parts, or as stored text.
pub trait BodyPart {
    /// Its length as text, in bytes.
    fn text_len(&self) -> usize;
    fn write_to(&self, out: &mut String);
}

impl BodyPart for str {
    fn text_len(&self) -> usize {
        self.len()
    }

    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl BodyPart for Element {
    fn text_len(&self) -> usize {
        const FIXED: usize = r#"{"type":"","log":,"data":}"#.len();
        let data = self.data.as_deref().unwrap_or("null");
        FIXED + self.event_type.as_str().len() + self.log.len() + data.len()
    }

    fn write_to(&self, out: &mut String) {
        // The type is one of a few fixed ASCII names: quoted as it is.
        out.push_str(r#"{"type":""#);
        out.push_str(self.event_type.as_str());
        out.push_str(r#"","log":"#);
        out.push_str(&self.log);
        out.push_str(r#","data":"#);
        out.push_str(self.data.as_deref().unwrap_or("null"));
        out.push('}');
    }
}

/// A batch body up to and including the `[` of its events; [`BATCH_BODY_END`] closes it.
pub fn body_prefix(id: &str, subscription_id: &str, chain_id: u64, confirmations: u64) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"id\":{},\"type\":\"log.batch\",\"subscription_id\":{},\"chain_id\":{},\"confirmations\":{},\"events\":[",
        quote(id),
        quote(subscription_id),
        chain_id,
        confirmations
    )
}

pub const BATCH_BODY_END: &str = "]}";

/// The whole batch body.
pub fn body<P: BodyPart + ?Sized>(prefix: &str, elements: &[&P]) -> String {
    let mut body = String::with_capacity(
        prefix.len() + elements.iter().map(|e| e.text_len() + 1).sum::<usize>() + 2,
    );
    body.push_str(prefix);
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        e.write_to(&mut body);
    }
    body.push_str(BATCH_BODY_END);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(ids: &[&'static str]) -> Vec<Incoming<'static>> {
        ids.iter()
            .map(|id| Incoming {
                event_id: id,
                event_type: "log",
            })
            .collect()
    }

    #[test]
    fn events_fill_batches_of_max_events_and_the_rest_stays_open() {
        let fills = plan(None, &logs(&["a", "b", "c", "d", "e"]), 2, 1000, 10);
        assert_eq!(fills.len(), 3);
        assert_eq!(fills[0].events, vec![0, 1]);
        assert!(fills[0].sealed && fills[1].sealed && !fills[2].sealed);
        assert_eq!(fills[2].events, vec![4]);
        assert_eq!(fills[0].id, batch_id_from_first("a"));
        assert_eq!(fills[1].id, batch_id_from_first("c"));
        assert!(fills.iter().all(|f| f.is_new && f.opened_at == 10));
    }

    #[test]
    fn an_open_batch_is_topped_up_before_a_new_one_opens() {
        let open = OpenBatch {
            id: "msg_open".into(),
            size: 3,
            opened_at: 5,
            event_type: "log".into(),
        };
        let fills = plan(Some(open), &logs(&["x", "y"]), 4, 1000, 10);
        assert_eq!(fills[0].id, "msg_open");
        assert!(!fills[0].is_new && fills[0].sealed);
        assert_eq!(
            (fills[0].first_position, fills[0].events.clone()),
            (3, vec![0])
        );
        assert_eq!(fills[0].opened_at, 5);
        assert_eq!(fills[1].events, vec![1]);
        assert!(!fills[1].sealed);
    }

    #[test]
    fn the_wait_seals_an_open_batch_once_over() {
        let open = |opened_at| OpenBatch {
            id: "msg_open".into(),
            size: 1,
            opened_at,
            event_type: "log".into(),
        };
        assert!(!plan(Some(open(100)), &logs(&["x"]), 10, 50, 149)[0].sealed);
        assert!(plan(Some(open(100)), &logs(&["x"]), 10, 50, 150)[0].sealed);
        assert!(!wait_is_over(100, 50, 149));
        assert!(wait_is_over(100, 50, 150));
        assert_eq!(seal_deadline(100, 50), 150);
        // With nothing new, an open batch past its wait is sealed too.
        assert!(plan(Some(open(0)), &[], 10, 50, 60)[0].sealed);
    }

    #[test]
    fn removals_never_join_a_batch_of_logs() {
        let events = [
            Incoming {
                event_id: "a",
                event_type: "log",
            },
            Incoming {
                event_id: "a-removed",
                event_type: "log.removed",
            },
            Incoming {
                event_id: "b",
                event_type: "log",
            },
        ];
        let fills = plan(None, &events, 10, 1000, 0);
        let parts: Vec<_> = fills.iter().map(|f| (f.events.clone(), f.sealed)).collect();
        assert_eq!(
            parts,
            vec![(vec![0], true), (vec![1], true), (vec![2], false)]
        );
    }

    #[test]
    fn bodies_are_the_prefix_the_elements_and_the_end() {
        let prefix = body_prefix("msg_1", "sub_1", 31337, 2);
        let e = Element::new(
            EventType::Log,
            LogText::from("{\"logIndex\":\"0x0\"}"),
            Some("{\"v\":1}"),
        );
        assert_eq!(e.text_len(), e.text().len());
        let text = body(&prefix, &[&e, &e]);
        let stored = e.text();
        assert_eq!(body(&prefix, &[stored.as_str(), stored.as_str()]), text);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "log.batch");
        assert_eq!(value["confirmations"], 2);
        assert_eq!(value["events"].as_array().unwrap().len(), 2);
        assert_eq!(value["events"][0]["data"]["v"], 1);
        assert_eq!(value["events"][0]["type"], "log");
        let removed = Element::new(EventType::LogRemoved, LogText::from("{}"), None);
        assert_eq!(
            removed.text(),
            r#"{"type":"log.removed","log":{},"data":null}"#
        );
        assert_eq!(removed.text_len(), removed.text().len());
        assert_ne!(
            block_batch_id("s", 1, &[1], "log"),
            block_batch_id("s", 1, &[1], "log.removed")
        );
    }
}

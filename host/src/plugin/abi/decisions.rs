//! The decisions of one plugin call, each payload a range of one text owned by them all: one
//! allocation per call for the payloads, and nothing counted per payload. (With an `Arc` of the
//! text in every payload, the reference count taken and dropped per kept event cost ~7 % of a
//! metered `erc20-transfers` call by wall clock, invisible to an instruction count:
//! BENCHMARKS.md, "Session of 2026-12-05 (third)".)

use std::fmt;

use super::Decision;
use crate::plugin::payload::Payload;

/// One decision as stored: a payload is a range of [`Decisions::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Drop,
    Keep,
    Text { start: usize, end: usize },
}

/// What a plugin decided for one event, its payload borrowed from the call's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRef<'a> {
    Drop,
    /// Deliver with `data: null`.
    Keep,
    /// Deliver with this JSON value (checked, without whitespace around it) as `data`.
    KeepWith(&'a str),
}

impl DecisionRef<'_> {
    pub fn is_kept(self) -> bool {
        !matches!(self, DecisionRef::Drop)
    }

    /// The same decision owning its payload.
    pub fn to_owned(self) -> Decision {
        match self {
            DecisionRef::Drop => Decision::Drop,
            DecisionRef::Keep => Decision::Keep,
            DecisionRef::KeepWith(json) => Decision::KeepWith(Payload::checked_text(json)),
        }
    }
}

/// A call's decisions, one per event of its batch, in order.
#[derive(Clone, Default)]
pub struct Decisions {
    /// The payloads' JSON, one after the other.
    text: String,
    slots: Vec<Slot>,
}

impl Decisions {
    /// From the decoder: `slots`' ranges are within `text` and each is a checked JSON value.
    pub(super) fn from_parts(text: String, slots: Vec<Slot>) -> Decisions {
        Decisions { text, slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The decisions in batch order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = DecisionRef<'_>> + '_ {
        self.slots.iter().map(|slot| match *slot {
            Slot::Drop => DecisionRef::Drop,
            Slot::Keep => DecisionRef::Keep,
            // A range the decoder took from this text; an empty text if it were not.
            Slot::Text { start, end } => {
                DecisionRef::KeepWith(self.text.get(start..end).unwrap_or_default())
            }
        })
    }

    /// Each decision owning its payload (for the canary, dry runs and reports: off the hot path).
    pub fn to_vec(&self) -> Vec<Decision> {
        self.iter().map(DecisionRef::to_owned).collect()
    }

    fn push(&mut self, decision: &Decision) {
        let slot = match decision {
            Decision::Drop => Slot::Drop,
            Decision::Keep => Slot::Keep,
            Decision::KeepWith(payload) => {
                let start = self.text.len();
                self.text.push_str(payload.get());
                Slot::Text {
                    start,
                    end: self.text.len(),
                }
            }
        };
        self.slots.push(slot);
    }
}

impl From<Vec<Decision>> for Decisions {
    fn from(decisions: Vec<Decision>) -> Decisions {
        let mut all = Decisions::default();
        for decision in &decisions {
            all.push(decision);
        }
        all
    }
}

/// Equal when every decision is, payload text included (not where the text sits).
impl PartialEq for Decisions {
    fn eq(&self, other: &Decisions) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Decisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(json: &str) -> Decision {
        Decision::KeepWith(Payload::parse(json.as_bytes()).expect("valid JSON"))
    }

    #[test]
    fn payloads_are_ranges_of_one_text_in_batch_order() {
        let list = vec![
            owned("{\"a\":1}"),
            Decision::Drop,
            Decision::Keep,
            owned("\"é\""),
        ];
        let decisions = Decisions::from(list.clone());
        assert_eq!(decisions.len(), 4);
        assert_eq!(
            decisions.iter().collect::<Vec<_>>(),
            [
                DecisionRef::KeepWith("{\"a\":1}"),
                DecisionRef::Drop,
                DecisionRef::Keep,
                DecisionRef::KeepWith("\"é\""),
            ]
        );
        assert_eq!(decisions.text, "{\"a\":1}\"é\"");
        assert_eq!(decisions.to_vec(), list);
    }

    #[test]
    fn equal_by_decisions_not_by_where_the_text_sits() {
        let laid_out = Decisions::from_parts(
            "xx{}".into(),
            vec![Slot::Text { start: 2, end: 4 }, Slot::Drop],
        );
        assert_eq!(laid_out, Decisions::from(vec![owned("{}"), Decision::Drop]));
        assert_ne!(laid_out, Decisions::from(vec![owned("{}"), Decision::Keep]));
        assert_ne!(laid_out, Decisions::from(vec![owned("[]"), Decision::Drop]));
    }
}

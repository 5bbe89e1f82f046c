//! Webhook payloads written straight as JSON bytes: [`JsonObject`] / [`JsonArray`] build a
//! [`JsonPayload`] for [`Decision::KeepJson`](crate::Decision::KeepJson) without a
//! `serde_json::Value` (no map, no `String` per field), in a buffer reused from event to event.
//!
//! ```
//! use pipeline_sdk::alloy_primitives::address;
//! use pipeline_sdk::{Decision, JsonArray, JsonObject, U256};
//!
//! let payload = JsonObject::new()
//!     .hex("token", address!("0x00000000000000000000000000000000000000aa")) // "0x…", lowercase
//!     .decimal("value", U256::from(10).pow(U256::from(30))) // a string: exact for any uint256
//!     .number("block", 17_000_000u64)
//!     .str("note", "say \"hi\"\n")
//!     .array("tags", JsonArray::new().str("a").bool(true).null())
//!     .finish();
//! assert_eq!(
//!     std::str::from_utf8(payload.as_bytes()).unwrap(),
//!     r#"{"token":"0x00000000000000000000000000000000000000aa","value":"1000000000000000000000000000000","block":17000000,"note":"say \"hi\"\n","tags":["a",true,null]}"#
//! );
//! let keep = Decision::KeepJson(payload);
//! ```
//!
//! Fields are written in call order and keys are not deduplicated (a `serde_json::Value` map
//! sorts its keys and keeps the last duplicate). Every builder is complete JSON by construction:
//! strings are escaped, nested values come from other builders or from `serde`.

mod write;

pub use write::{Decimal, Number};

use crate::decision::Error;
use core::fmt;

/// One complete JSON value (UTF-8), as built by [`JsonObject::finish`] or [`JsonArray::finish`].
/// Its buffer is kept for the next builder when it is dropped, so building one payload per event
/// allocates nothing once warm.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonPayload {
    bytes: Vec<u8>,
}

impl JsonPayload {
    /// The JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Parses the payload into a `serde_json::Value` (for tests and comparisons).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.bytes)
    }
}

impl fmt::Debug for JsonPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPayload({})", String::from_utf8_lossy(&self.bytes))
    }
}

impl Drop for JsonPayload {
    #[inline]
    fn drop(&mut self) {
        pool::give(core::mem::take(&mut self.bytes));
    }
}

/// Builds a JSON object field by field: `JsonObject::new().str("k", "v").finish()`.
pub struct JsonObject {
    /// `{` and the fields so far: no field yet while it ends with the `{` (a complete JSON value
    /// never ends with one).
    buf: Vec<u8>,
}

impl JsonObject {
    /// An empty object (`{}` if finished now).
    #[inline]
    pub fn new() -> Self {
        let mut buf = pool::take();
        buf.push(b'{');
        JsonObject { buf }
    }

    /// The finished object.
    #[inline]
    pub fn finish(self) -> JsonPayload {
        let mut bytes = self.buf;
        bytes.push(b'}');
        JsonPayload { bytes }
    }

    /// Starts a field: separator, escaped key, colon. Always inlined: with a literal key the
    /// escaping check and the copy reduce to a few constant stores.
    #[inline(always)]
    fn begin(&mut self, key: &str) {
        const SHORT: usize = 28;
        let first = self.buf.last() == Some(&b'{');
        if key.len() <= SHORT && !write::any_needs_escape(key.as_bytes()) {
            // `,"key":` (or `{"key":` in place of the `{`) in one copy whose length is a
            // constant for a literal key: one capacity check instead of five (in wasm each is
            // a load and a store of the vector's length in memory, and a branch).
            let mut head = [0u8; SHORT + 4];
            head[0] = if first { b'{' } else { b',' };
            head[1] = b'"';
            head[2..2 + key.len()].copy_from_slice(key.as_bytes());
            head[2 + key.len()..4 + key.len()].copy_from_slice(b"\":");
            if first {
                self.buf.pop();
            }
            self.buf.extend_from_slice(&head[..4 + key.len()]);
            return;
        }
        if !first {
            self.buf.push(b',');
        }
        write::string(&mut self.buf, key);
        self.buf.push(b':');
    }
}

/// Builds a JSON array element by element: `JsonArray::new().str("a").number(1).finish()`.
pub struct JsonArray {
    /// `[` and the elements so far: no element yet while it ends with the `[`.
    buf: Vec<u8>,
}

impl JsonArray {
    /// An empty array (`[]` if finished now).
    #[inline]
    pub fn new() -> Self {
        let mut buf = pool::take();
        buf.push(b'[');
        JsonArray { buf }
    }

    /// The finished array.
    #[inline]
    pub fn finish(self) -> JsonPayload {
        let mut bytes = self.buf;
        bytes.push(b']');
        JsonPayload { bytes }
    }

    /// Starts an element: the separator.
    #[inline]
    fn begin(&mut self) {
        if self.buf.last() != Some(&b'[') {
            self.buf.push(b',');
        }
    }
}

/// The value methods, shared by `JsonObject` (each takes a key first) and `JsonArray`.
macro_rules! value_methods {
    ($builder:ident $(, $key:ident)?) => {
        impl $builder {
            /// A string, escaped as `serde_json` does.
            #[inline(always)]
            pub fn str(mut self, $($key: &str,)? value: &str) -> Self {
                self.begin($($key)?);
                write::string(&mut self.buf, value);
                self
            }

            /// Bytes as a `"0x…"` string of lowercase hex: an `Address`, `B256`, `&[u8]`, ….
            #[inline(always)]
            pub fn hex(mut self, $($key: &str,)? value: impl AsRef<[u8]>) -> Self {
                self.begin($($key)?);
                write::hex(&mut self.buf, value.as_ref());
                self
            }

            /// An integer as a string of decimal digits, equal to its `to_string()`: `U256`,
            /// `I256`, any alloy `Uint`/`Signed`, or a primitive integer. Exact for any size,
            /// unlike a JSON number read by JavaScript.
            #[inline(always)]
            pub fn decimal(mut self, $($key: &str,)? value: impl Decimal) -> Self {
                self.begin($($key)?);
                self.buf.push(b'"');
                value.write_digits(&mut self.buf);
                self.buf.push(b'"');
                self
            }

            /// A JSON number: a primitive integer, or an `f64` (`null` when not finite).
            #[inline(always)]
            pub fn number(mut self, $($key: &str,)? value: impl Number) -> Self {
                self.begin($($key)?);
                value.write_number(&mut self.buf);
                self
            }

            /// `true` or `false`.
            #[inline(always)]
            pub fn bool(mut self, $($key: &str,)? value: bool) -> Self {
                self.begin($($key)?);
                self.buf.extend_from_slice(if value { b"true" } else { b"false" });
                self
            }

            /// `null`.
            #[inline(always)]
            pub fn null(mut self $(, $key: &str)?) -> Self {
                self.begin($($key)?);
                self.buf.extend_from_slice(b"null");
                self
            }

            /// A nested object.
            #[inline]
            pub fn object(self, $($key: &str,)? value: JsonObject) -> Self {
                self.raw($($key,)? &value.finish())
            }

            /// A nested array.
            #[inline]
            pub fn array(self, $($key: &str,)? value: JsonArray) -> Self {
                self.raw($($key,)? &value.finish())
            }

            /// An already built payload, copied in as is.
            #[inline]
            pub fn raw(mut self, $($key: &str,)? value: &JsonPayload) -> Self {
                self.begin($($key)?);
                self.buf.extend_from_slice(value.as_bytes());
                self
            }

            /// Any `Serialize` value, through `serde_json`: the fallback for what the other
            /// methods do not cover. Fails (dropping the builder) where `serde_json::to_writer`
            /// would, e.g. on a map whose keys are not strings.
            pub fn serialize<T: serde::Serialize + ?Sized>(
                mut self,
                $($key: &str,)?
                value: &T,
            ) -> Result<Self, Error> {
                self.begin($($key)?);
                serde_json::to_writer(&mut self.buf, value)?;
                Ok(self)
            }
        }

        impl Default for $builder {
            fn default() -> Self {
                $builder::new()
            }
        }

        impl fmt::Debug for $builder {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($builder), String::from_utf8_lossy(&self.buf))
            }
        }
    };
}

value_methods!(JsonObject, key);
value_methods!(JsonArray);

/// The spare payload buffer of this thread (the plugin's only thread in wasm). A builder takes it
/// when it starts and the payload gives it back when it is dropped, after `process_batch` copied
/// it into the output, so a plugin that builds one flat object per event allocates once, not per
/// event. A nested builder allocates its own buffer, and a builder dropped unfinished frees its
/// one (builders have no `Drop`, which keeps `finish` a plain move).
mod pool {
    use core::cell::Cell;

    /// Larger buffers are freed rather than kept.
    const MAX_KEPT_CAPACITY: usize = 64 * 1024;
    /// A typical payload fits without growing.
    const INITIAL_CAPACITY: usize = 256;

    thread_local! {
        /// One spare buffer (empty: none); nested builders allocate their own.
        static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    #[inline]
    pub(super) fn take() -> Vec<u8> {
        match SPARE.try_with(Cell::take) {
            Ok(buf) if buf.capacity() > 0 => buf,
            _ => Vec::with_capacity(INITIAL_CAPACITY),
        }
    }

    #[inline]
    pub(super) fn give(mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        // During thread teardown the buffer is just freed; a buffer already spare is kept.
        let _ = SPARE.try_with(|spare| {
            let old = spare.replace(buf);
            if old.capacity() > 0 {
                spare.set(old);
            }
        });
    }
}

#[cfg(test)]
mod tests;

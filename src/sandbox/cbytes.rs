//! C strings on the slot's wire (`#[serde(with = ...)]`): a JSON string where the bytes are
//! UTF-8, as paths, arguments and environments nearly always are, else an array of bytes.
//! Serde's own form for `CString` is always the array of numbers, three to four times the
//! bytes to write and to parse again on every warm job's path.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::CString;
use std::fmt;

pub fn serialize<S: Serializer>(value: &CString, serializer: S) -> Result<S::Ok, S::Error> {
    Wire(value).serialize(serializer)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CString, D::Error> {
    deserializer.deserialize_any(CStringVisitor)
}

/// The same for a list.
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(values: &[CString], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(Wire))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<CString>, D::Error> {
        let owned = Vec::<Owned>::deserialize(deserializer)?;
        Ok(owned.into_iter().map(|o| o.0).collect())
    }
}

struct Wire<'a>(&'a CString);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.to_str() {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => serializer.collect_seq(self.0.as_bytes()),
        }
    }
}

struct Owned(CString);

impl<'de> Deserialize<'de> for Owned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Owned, D::Error> {
        deserializer.deserialize_any(CStringVisitor).map(Owned)
    }
}

struct CStringVisitor;

impl<'de> Visitor<'de> for CStringVisitor {
    type Value = CString;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of bytes without NUL")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<CString, E> {
        CString::new(text).map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<CString, E> {
        CString::new(bytes).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CString, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        CString::new(bytes).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Both {
        #[serde(with = "super")]
        one: CString,
        #[serde(with = "super::list")]
        many: Vec<CString>,
    }

    #[test]
    fn text_travels_as_a_string_and_other_bytes_as_an_array_both_ways() {
        let value = Both {
            one: CString::new("/tmp/ä dir").unwrap(),
            many: vec![
                CString::new("PATH=/usr/bin").unwrap(),
                CString::new(vec![b'X', b'=', 0xff, 0xfe]).unwrap(),
            ],
        };
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(
            text,
            r#"{"one":"/tmp/ä dir","many":["PATH=/usr/bin",[88,61,255,254]]}"#
        );
        assert_eq!(serde_json::from_str::<Both>(&text).unwrap(), value);
        assert!(serde_json::from_str::<Both>(r#"{"one":"a\u0000b","many":[]}"#).is_err());
    }
}

//! DynamoDB attribute values (`{"S":"x"}`, `{"N":"1"}`, `{"M":{...}}`, ...) borrowed from the
//! record's bytes: strings that need no unescaping are not copied.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A string borrowed from the input when possible.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The string, whether borrowed or owned.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One DynamoDB attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue<'a> {
    /// A string (`S`), with its JSON escapes resolved.
    S(Cow<'a, str>),
    /// A number as its exact decimal text.
    N(Cow<'a, str>),
    /// Binary as it appears in the record (base64 text, possibly encoded more than once).
    B(Cow<'a, str>),
    /// A boolean (`BOOL`).
    Bool(bool),
    /// An explicit null (`{"NULL":true}`).
    Null,
    /// A map (`M`) of attribute names to nested values, in input order.
    M(Item<'a>),
    /// A list (`L`) of values of any types, in input order.
    L(Vec<AttrValue<'a>>),
    /// A string set (`SS`), members in input order.
    Ss(Vec<Cow<'a, str>>),
    /// A number set (`NS`), each member as its exact decimal text.
    Ns(Vec<Cow<'a, str>>),
    /// A binary set (`BS`), each member as it appears in the record (base64 text).
    Bs(Vec<Cow<'a, str>>),
}

impl AttrValue<'_> {
    /// The DynamoDB type tag of this value.
    pub fn tag(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "S",
            AttrValue::N(_) => "N",
            AttrValue::B(_) => "B",
            AttrValue::Bool(_) => "BOOL",
            AttrValue::Null => "NULL",
            AttrValue::M(_) => "M",
            AttrValue::L(_) => "L",
            AttrValue::Ss(_) => "SS",
            AttrValue::Ns(_) => "NS",
            AttrValue::Bs(_) => "BS",
        }
    }
}

/// An item or map: attribute name and value pairs in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item<'a>(pub Vec<(Cow<'a, str>, AttrValue<'a>)>);

impl<'a> Item<'a> {
    /// The value of the first top-level attribute named `name`, or None if there is none.
    pub fn get(&self, name: &str) -> Option<&AttrValue<'a>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Follows a path of map keys.
    pub fn get_path(&self, path: &[String]) -> Option<&AttrValue<'a>> {
        let (first, rest) = path.split_first()?;
        let mut value = self.get(first)?;
        for name in rest {
            match value {
                AttrValue::M(m) => value = m.get(name)?,
                _ => return None,
            }
        }
        Some(value)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of attribute names to DynamoDB values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let value = map.next_value::<AttrValue<'de>>()?;
                    out.push((key.0, value));
                }
                Ok(Item(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list of strings (for SS, NS and BS).
struct StrList<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(s) = seq.next_element::<Str<'de>>()? {
                    out.push(s.0);
                }
                Ok(StrList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The message prefix of an unknown type tag, so callers can classify the error.
pub const UNKNOWN_TAG: &str = "unknown DynamoDB type tag";

impl<'de: 'a, 'a> Deserialize<'de> for AttrValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttrValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a DynamoDB attribute value such as {\"S\":\"text\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some(tag) = map.next_key::<Str<'de>>()? else {
                    return Err(de::Error::custom("empty attribute value {}"));
                };
                let value = match tag.as_str() {
                    "S" => AttrValue::S(map.next_value::<Str>()?.0),
                    "N" => AttrValue::N(map.next_value::<Str>()?.0),
                    "B" => AttrValue::B(map.next_value::<Str>()?.0),
                    "BOOL" => AttrValue::Bool(map.next_value()?),
                    "NULL" => {
                        if !map.next_value::<bool>()? {
                            return Err(de::Error::custom("NULL must be true"));
                        }
                        AttrValue::Null
                    }
                    "M" => AttrValue::M(map.next_value()?),
                    "L" => AttrValue::L(map.next_value()?),
                    "SS" => AttrValue::Ss(map.next_value::<StrList>()?.0),
                    "NS" => AttrValue::Ns(map.next_value::<StrList>()?.0),
                    "BS" => AttrValue::Bs(map.next_value::<StrList>()?.0),
                    other => {
                        return Err(de::Error::custom(format_args!("{UNKNOWN_TAG} `{other}`")));
                    }
                };
                if let Some(extra) = map.next_key::<Str>()? {
                    return Err(de::Error::custom(format_args!(
                        "attribute value has a second type tag `{}`",
                        extra.as_str()
                    )));
                }
                Ok(value)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Item<'_>, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn parses_every_type() {
        let item = parse(
            r#"{"s":{"S":"x"},"n":{"N":"1.50"},"b":{"B":"AAE="},"t":{"BOOL":true},"z":{"NULL":true},
            "m":{"M":{"a":{"S":"y"}}},"l":{"L":[{"N":"1"},{"S":"q"}]},"ss":{"SS":["b","a"]},
            "ns":{"NS":["2","10"]},"bs":{"BS":["AQ=="]}}"#,
        )
        .unwrap();
        let tags: Vec<_> = item.0.iter().map(|(_, v)| v.tag()).collect();
        assert_eq!(
            tags,
            ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"]
        );
        assert_eq!(item.get("n"), Some(&AttrValue::N("1.50".into())));
        assert_eq!(
            item.get_path(&["m".into(), "a".into()]),
            Some(&AttrValue::S("y".into()))
        );
    }

    #[test]
    fn borrows_plain_strings_and_unescapes_others() {
        let item = parse(r#"{"a":{"S":"plain"},"b":{"S":"tab\tx"}}"#).unwrap();
        assert!(matches!(
            item.get("a"),
            Some(AttrValue::S(Cow::Borrowed(_)))
        ));
        assert_eq!(item.get("b"), Some(&AttrValue::S("tab\tx".into())));
    }

    #[test]
    fn rejects_unknown_tags_and_bad_values() {
        let e = parse(r#"{"a":{"X":"1"}}"#).unwrap_err().to_string();
        assert!(e.contains(UNKNOWN_TAG), "{e}");
        assert!(parse(r#"{"a":{"NULL":false}}"#).is_err());
        assert!(parse(r#"{"a":{"S":"1","N":"2"}}"#).is_err());
        assert!(parse(r#"{"a":{}}"#).is_err());
        assert!(parse(r#"{"a":{"N":1}}"#).is_err());
    }
}

//! Reads an experiment's result back from its JSON into its own typed struct.
//!
//! `results.json` is the record: tables (`data/*.csv`) and reports are derived from it, so
//! `verify` can re-derive them from a bundle and require the same bytes. serde_json writes
//! every non-finite f64 as `null`, which plain deserialization refuses for an `f64` field;
//! [`from_value`] reads such a `null` as NaN wherever an `f64` (or `f32`) is expected, and as
//! `None` wherever an `Option` is, so result types need no per-field annotations.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_json::Value;

type Error = serde_json::Error;

/// The typed value `v` holds, with `null` read as NaN for floats (see the module doc).
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, Error> {
    T::deserialize(NanNull(v))
}

struct NanNull<'a>(&'a Value);

impl<'de> Deserializer<'de> for NanNull<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Object(map) => visitor.visit_map(Map {
                entries: map.iter(),
                value: None,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_f64(f64::NAN),
            other => other.deserialize_f64(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_f32(f32::NAN),
            other => other.deserialize_f32(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(map) if map.len() == 1 => {
                let (variant, content) = map.iter().next().ok_or_else(|| {
                    de::Error::custom("an enum is a string or an object of one entry")
                })?;
                visitor.visit_enum(Enum { variant, content })
            }
            _ => Err(de::Error::custom(
                "an enum is a string or an object of one entry",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(NanNull(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(Key(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value without its key"))?;
        seed.deserialize(NanNull(value))
    }
}

struct Enum<'a> {
    variant: &'a String,
    content: &'a Value,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = Error;
    type Variant = NanNull<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let variant = seed.deserialize(self.variant.as_str().into_deserializer())?;
        Ok((variant, NanNull(self.content)))
    }
}

impl<'de> VariantAccess<'de> for NanNull<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            Value::Null => Ok(()),
            _ => Err(de::Error::custom("a unit variant carries no value")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }
}

/// A map key: JSON keys are strings, and numeric keys (`BTreeMap<u32, _>`) are read from
/// their digits, as serde_json does.
struct Key<'a>(&'a str);

macro_rules! parse_key {
    ($($method:ident => $visit:ident: $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n: $t = self.0.parse().map_err(|_| {
                de::Error::custom(format!("map key {:?} is not a number", self.0))
            })?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.0)
    }

    parse_key! {
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit unit_struct seq
        tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Scaled(f64),
        Both { a: f64, b: Option<f64> },
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Record {
        x: f64,
        y: Option<f64>,
        xs: Vec<f64>,
        pair: [f32; 2],
        by_layer: BTreeMap<u32, f64>,
        kinds: Vec<Kind>,
        name: String,
    }

    /// Serialised (NaN and infinities become null) and read back: nulls are NaN where a
    /// float is expected, None where an Option is; everything else round-trips exactly.
    #[test]
    fn nulls_read_back_as_nan_for_floats_and_none_for_options() {
        let r = Record {
            x: f64::NAN,
            y: None,
            xs: vec![1.5, f64::INFINITY, 0.1 + 0.2],
            pair: [f32::NAN, 2.0],
            by_layer: [(3, f64::NAN), (10, 1e-300)].into(),
            kinds: vec![
                Kind::Plain,
                Kind::Scaled(f64::NAN),
                Kind::Both { a: 2.0, b: None },
            ],
            name: "n".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert!(serde_json::from_value::<Record>(v.clone()).is_err());
        let back: Record = super::from_value(&v).unwrap();
        assert!(back.x.is_nan() && back.y.is_none());
        assert_eq!(back.xs[0], 1.5);
        assert!(back.xs[1].is_nan());
        assert_eq!(back.xs[2].to_bits(), (0.1f64 + 0.2).to_bits());
        assert!(back.pair[0].is_nan() && back.pair[1] == 2.0);
        assert!(back.by_layer[&3].is_nan() && back.by_layer[&10] == 1e-300);
        assert_eq!(back.kinds[0], Kind::Plain);
        assert!(matches!(back.kinds[1], Kind::Scaled(x) if x.is_nan()));
        assert_eq!(back.kinds[2], Kind::Both { a: 2.0, b: None });
        assert_eq!(back.name, "n");
        // Wrong types are still errors.
        let bad = serde_json::json!({"x": "one"});
        assert!(super::from_value::<Record>(&bad).is_err());
    }
}

//! Request data parsed straight into flat, row-major `f64` values, with no JSON tree in between:
//! V1 `instances` (a list of rows, each a list of numbers) and V2 tensor `data` (numbers or
//! booleans, flat or nested to any depth; the tensor's `shape` says how they make rows).
//!
//! Type errors name where they are (`instances[0][2]`), as serde reports them through the
//! visitors' `expecting`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// V1 `instances`: `rows` rows of `width` numbers each, row-major in `values`.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) values: Vec<f64>,
    pub(crate) rows: usize,
    pub(crate) width: usize,
}

impl<'de> de::Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        d.deserialize_seq(RowsVisitor)
    }
}

struct RowsVisitor;

impl<'de> Visitor<'de> for RowsVisitor {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows, each a list of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let mut out = Rows {
            values: Vec::with_capacity(seq.size_hint().unwrap_or(1) * 8),
            ..Rows::default()
        };
        loop {
            let start = out.values.len();
            let seed = RowSeed {
                values: &mut out.values,
                row: out.rows,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            let len = out.values.len() - start;
            if out.rows == 0 {
                out.width = len;
            } else if len != out.width {
                return Err(de::Error::custom(format!(
                    "instances are ragged: instances[{}] has {len} values, instances[0] has {}",
                    out.rows, out.width
                )));
            }
            out.rows += 1;
        }
        Ok(out)
    }
}

/// One row of `instances`, appended to the flat values.
struct RowSeed<'a> {
    values: &'a mut Vec<f64>,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl RowSeed<'_> {
    fn one_dimensional<E: de::Error>(&self) -> E {
        E::custom(format!(
            "instances[{}] is a number, but each instance must be a row (a list of numbers): \
             send {{\"instances\": [[...]]}}, not {{\"instances\": [...]}}",
            self.row
        ))
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "instances[{}] to be a row (a list of numbers)", self.row)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.one_dimensional())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.one_dimensional())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.one_dimensional())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut column = 0;
        while let Some(v) = seq.next_element_seed(Number {
            row: self.row,
            column,
        })? {
            self.values.push(v);
            column += 1;
        }
        Ok(())
    }
}

/// One number of a row.
struct Number {
    row: usize,
    column: usize,
}

impl<'de> DeserializeSeed<'de> for Number {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Number {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number at instances[{}][{}]", self.row, self.column)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

/// V2 tensor `data`: every number (or boolean, as 0/1) in order, however deeply nested.
#[derive(Debug, Default)]
pub(crate) struct TensorData(pub Vec<f64>);

impl<'de> de::Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TensorData, D::Error> {
        let mut values = Vec::new();
        d.deserialize_any(Flatten {
            values: &mut values,
        })?;
        Ok(TensorData(values))
    }
}

/// Appends the numbers of a (nested) list to `values`.
struct Flatten<'a> {
    values: &'a mut Vec<f64>,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "numbers or booleans (flat or nested lists) in tensor data, at value {}",
            self.values.len()
        )
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.values.push(v);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.values.push(v as f64);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.values.push(v as f64);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.values.push(if v { 1.0 } else { 0.0 });
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flatten {
                values: &mut *self.values,
            })?
            .is_some()
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Result<Rows, String> {
        serde_json::from_str::<Rows>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn instances_become_flat_rows() {
        let r = rows("[[1, 2.5, -3], [4, 5, 6e0]]").expect("parses");
        assert_eq!((r.rows, r.width), (2, 3));
        assert_eq!(r.values, [1.0, 2.5, -3.0, 4.0, 5.0, 6.0]);
        assert_eq!(rows("[]").expect("parses").rows, 0);
    }

    #[test]
    fn ragged_one_dimensional_and_non_numeric_instances_name_the_place() {
        let e = rows("[[1, 2], [3]]").expect_err("ragged");
        assert!(
            e.contains("instances[1] has 1 values, instances[0] has 2"),
            "{e}"
        );
        let e = rows("[0.5, 0.6]").expect_err("1-D");
        assert!(e.contains("instances[0] is a number"), "{e}");
        let e = rows(r#"[[1, "a"]]"#).expect_err("string");
        assert!(e.contains("a number at instances[0][1]"), "{e}");
        let e = rows("[[[1]]]").expect_err("3-D");
        assert!(e.contains("a number at instances[0][0]"), "{e}");
        let e = rows(r#"{"a": 1}"#).expect_err("object");
        assert!(e.contains("a list of rows"), "{e}");
    }

    #[test]
    fn tensor_data_flattens_any_nesting_and_booleans() {
        let d: TensorData = serde_json::from_str("[[1, [2, 3]], [true, false]]").expect("parses");
        assert_eq!(d.0, [1.0, 2.0, 3.0, 1.0, 0.0]);
        let e = serde_json::from_str::<TensorData>(r#"[1, "x"]"#).expect_err("string");
        assert!(e.to_string().contains("at value 1"), "{e}");
    }
}

//! The forests' matrix type: `ndarray`'s 2-D arrays of `f64`, one row per sample, taken as
//! [`ArrayView2`] and given back as `Array1`/`Array2`. Inside, the forests work on flat
//! row-major slices: a view in standard layout is read in place, and only a view in another
//! layout (a transposed or strided one) is copied, once, into row-major order.

use std::borrow::Cow;

use ndarray::ArrayView2;
use thiserror::Error;

/// Values that do not make whole rows: why [`row_major`] refused them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} values do not make whole rows of {width}")]
pub struct RaggedRows {
    pub len: usize,
    pub width: usize,
}

/// Row-major `data`, `width` values to a row, as a matrix without copying: the view of the flat
/// buffers rows are kept in. An error when `data` is not a whole number of rows (with a `width`
/// of 0 only an empty `data` is).
pub fn row_major(data: &[f64], width: usize) -> Result<ArrayView2<'_, f64>, RaggedRows> {
    let ragged = RaggedRows {
        len: data.len(),
        width,
    };
    let rows = data.len().checked_div(width).unwrap_or(0);
    if rows * width != data.len() {
        return Err(ragged);
    }
    ArrayView2::from_shape((rows, width), data).map_err(|_| ragged)
}

/// The values of `m` in row-major order: borrowed when `m` is in standard layout, else copied.
pub(crate) fn flat<'a>(m: &'a ArrayView2<'_, f64>) -> Cow<'a, [f64]> {
    match m.as_slice() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(m.iter().copied().collect()),
    }
}

//! The split scan compiled for AVX2: the crate's only `unsafe`.
//!
//! The scan's loops are plain Rust, written so that the compiler keeps the running sums in vector
//! registers; compiled with `#[target_feature(enable = "avx2")]` those registers are 256 bits wide
//! instead of 128, which halves the instructions of the inner loop. Calling a function compiled
//! for a feature the CPU lacks is undefined behaviour, so that call is `unsafe`, and the one thing
//! that makes it sound travels as a value: an [`Avx2`] token, which only [`Avx2::detect`] creates
//! and only after the CPU said it has AVX2. The variants do the same operations in the same order
//! (no fused multiply-add is enabled), so a model's bits do not depend on which one ran.

use super::{Lane, Scan};

/// Proof that the CPU running this process supports AVX2. Its field is private to this module,
/// so no code can make one but [`Avx2::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// A token if this CPU supports AVX2 (never on other architectures than x86-64).
    pub(crate) fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Avx2 { _detected: () });
        }
        None
    }
}

impl Scan<'_> {
    /// [`Scan::run`] on 256-bit registers; the token proves the CPU can run it.
    pub(super) fn run_avx2(
        &self,
        left: &mut [Lane],
        best_proxy: f64,
        avx2: Avx2,
    ) -> Option<(f64, usize)> {
        let Avx2 { _detected: () } = avx2;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Avx2` exists only once `Avx2::detect` found AVX2 on this CPU, so the
        // functions compiled with `target_feature(enable = "avx2")` run where AVX2 is available.
        let best = unsafe {
            match self.lanes {
                1 => self.fixed_avx2::<1>(best_proxy),
                2 => self.fixed_avx2::<2>(best_proxy),
                3 => self.fixed_avx2::<3>(best_proxy),
                4 => self.fixed_avx2::<4>(best_proxy),
                _ => self.any_avx2(left, best_proxy),
            }
        };
        // no token is ever made here: this only keeps the code compiling
        #[cfg(not(target_arch = "x86_64"))]
        let best = self.run_portable(left, best_proxy);
        best
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fixed_avx2<const C: usize>(&self, best_proxy: f64) -> Option<(f64, usize)> {
        self.fixed::<C>(best_proxy)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn any_avx2(&self, left: &mut [Lane], best_proxy: f64) -> Option<(f64, usize)> {
        self.any(left, best_proxy)
    }
}

//! An exact, non-negative decimal number: an integer count of units scaled by a number of decimal
//! places, as PPIO sends prices (`12600` at precision 3 is 12.600). Money is never a float here:
//! prices, rates, sums and budgets are all [`Decimal`]s, and arithmetic on them is checked, so a
//! result is either exact or absent, never rounded or wrapped.

use std::cmp::Ordering;
use std::fmt;

/// Most decimal places a [`Decimal`] carries: room for a price's own precision (at most
/// [`crate::MAX_PRICE_PRECISION`]) and the extra places an hourly equivalent of a monthly price needs.
pub const MAX_DECIMAL_SCALE: u8 = 18;

/// `10^exponent`, for exponents up to [`MAX_DECIMAL_SCALE`] (and a few more) that fit a `u128`.
fn power_of_ten(exponent: u8) -> Option<u128> {
    10u128.checked_pow(u32::from(exponent))
}

/// An exact non-negative decimal: `units / 10^scale`.
///
/// Equality and order are by value (`12.6 == 12.600`); [`fmt::Display`] writes the units exactly
/// at their own scale (`12.600` for 12600 at scale 3), never rounded.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    units: u128,
    scale: u8,
}

impl Decimal {
    /// Zero, with no decimal places.
    pub const ZERO: Decimal = Decimal { units: 0, scale: 0 };

    /// `units / 10^scale`; `None` when `scale` is above [`MAX_DECIMAL_SCALE`].
    pub fn new(units: u128, scale: u8) -> Option<Decimal> {
        (scale <= MAX_DECIMAL_SCALE).then_some(Decimal { units, scale })
    }

    /// The integer count of units.
    pub fn units(self) -> u128 {
        self.units
    }

    /// How many decimal places the units carry.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.units == 0
    }

    /// The same value with `scale` decimal places; `None` when `scale` is below the current one
    /// (that could lose digits), above [`MAX_DECIMAL_SCALE`], or the units would not fit.
    pub fn rescaled(self, scale: u8) -> Option<Decimal> {
        let extra = scale.checked_sub(self.scale)?;
        let units = self.units.checked_mul(power_of_ten(extra)?)?;
        Decimal::new(units, scale)
    }

    /// The exact sum, at the larger of the two scales; `None` when it does not fit.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescaled(scale)?, other.rescaled(scale)?);
        Decimal::new(a.units.checked_add(b.units)?, scale)
    }

    /// The exact product with a whole number, at the same scale; `None` when it does not fit.
    pub fn checked_mul(self, factor: u128) -> Option<Decimal> {
        Decimal::new(self.units.checked_mul(factor)?, self.scale)
    }

    /// The quotient by a whole number, at the smallest scale from the current one up to
    /// `max_scale` at which it is exact; when it is exact at none of them, the quotient at
    /// `max_scale` rounded **up**, with `false`: a rate derived this way never under-reports.
    /// `None` when `divisor` is zero, `max_scale` is below the current scale or above
    /// [`MAX_DECIMAL_SCALE`], or the units would not fit.
    pub fn checked_div_ceil(self, divisor: u128, max_scale: u8) -> Option<(Decimal, bool)> {
        if divisor == 0 || max_scale < self.scale || max_scale > MAX_DECIMAL_SCALE {
            return None;
        }
        for scale in self.scale..=max_scale {
            let units = self.rescaled(scale)?.units;
            if units % divisor == 0 {
                return Some((Decimal::new(units / divisor, scale)?, true));
            }
        }
        let units = self.rescaled(max_scale)?.units.div_ceil(divisor);
        Some((Decimal::new(units, max_scale)?, false))
    }

    /// The whole part and the fraction as units of 10^-[`MAX_DECIMAL_SCALE`]: a form in which any
    /// two decimals compare without overflow.
    fn split(self) -> (u128, u128) {
        // Both powers fit: the scale is at most MAX_DECIMAL_SCALE.
        let one = power_of_ten(self.scale).unwrap_or(1);
        let widen = power_of_ten(MAX_DECIMAL_SCALE - self.scale).unwrap_or(1);
        (self.units / one, (self.units % one) * widen)
    }
}

impl Default for Decimal {
    /// Zero.
    fn default() -> Decimal {
        Decimal::ZERO
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        self.split().cmp(&other.split())
    }
}

impl fmt::Display for Decimal {
    /// The exact value with its own number of decimal places: `12.600`, `0.005`, `7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.units.to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(units: u128, scale: u8) -> Decimal {
        Decimal::new(units, scale).expect("valid decimal")
    }

    #[test]
    fn formats_exactly_at_its_own_scale() {
        assert_eq!(d(12_600, 3).to_string(), "12.600");
        assert_eq!(d(5, 3).to_string(), "0.005");
        assert_eq!(d(0, 2).to_string(), "0.00");
        assert_eq!(d(7, 0).to_string(), "7");
        assert_eq!(d(9_072_000, 3).to_string(), "9072.000");
        assert_eq!(
            d(u128::MAX, 18).to_string(),
            "340282366920938463463.374607431768211455"
        );
    }

    #[test]
    fn compares_by_value_whatever_the_scale() {
        assert_eq!(d(126, 1), d(12_600, 3));
        assert!(d(12_601, 3) > d(126, 1));
        assert!(d(u128::MAX, 0) > d(u128::MAX, 18));
        assert!(d(1, 18) > Decimal::ZERO);
    }

    #[test]
    fn scales_above_the_bound_are_refused() {
        assert!(Decimal::new(1, MAX_DECIMAL_SCALE + 1).is_none());
        assert!(d(1, 0).rescaled(MAX_DECIMAL_SCALE + 1).is_none());
        assert!(d(1, 3).rescaled(2).is_none(), "never drops digits");
    }

    #[test]
    fn adds_exactly_at_the_larger_scale_and_refuses_overflow() {
        let sum = d(12_600, 3).checked_add(d(5, 1)).expect("fits");
        assert_eq!((sum.units(), sum.scale()), (13_100, 3));
        assert!(d(u128::MAX, 0).checked_add(d(1, 0)).is_none());
        assert!(d(u128::MAX / 10 + 1, 0).checked_add(d(1, 1)).is_none());
        assert!(d(u128::MAX, 0).checked_mul(2).is_none());
        assert_eq!(d(12_600, 3).checked_mul(8), Some(d(100_800, 3)));
    }

    #[test]
    fn divides_exactly_when_some_scale_allows_else_rounds_up_and_says_so() {
        // 9072.000 a month of 720 hours is 12.600 an hour.
        assert_eq!(
            d(9_072_000, 3).checked_div_ceil(720, 9),
            Some((d(12_600, 3), true))
        );
        // 1.000 / 720 = 0.00138888…: rounded up at the bound.
        let (rate, exact) = d(1_000, 3).checked_div_ceil(720, 9).expect("fits");
        assert!(!exact);
        assert_eq!(rate.to_string(), "0.001388889");
        // 1 / 16 = 0.0625 needs 4 places more.
        assert_eq!(d(1, 0).checked_div_ceil(16, 9), Some((d(625, 4), true)));
        assert!(d(1, 0).checked_div_ceil(0, 9).is_none());
        assert!(d(1, 4).checked_div_ceil(3, 3).is_none());
    }
}

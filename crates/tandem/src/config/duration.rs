//! Durations written as text in the config file: a whole number and a unit, such as `500ms`, `2s`,
//! `1m` or `1h`.

use std::time::Duration;

/// Why a duration text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text has no digits before the unit.
    #[error(
        "`{0}` is not a duration: expected a whole number and a unit (ms, s, m, h), e.g. \"500ms\""
    )]
    NoNumber(String),
    /// The text has a number but no unit.
    #[error("`{0}` has no unit: write ms, s, m or h after the number, e.g. \"{0}ms\"")]
    NoUnit(String),
    /// The unit is not one of ms, s, m, h.
    #[error("`{0}` has an unknown unit: expected ms, s, m or h")]
    UnknownUnit(String),
    /// The value does not fit in a duration.
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses `"<digits><unit>"` with unit `ms`, `s`, `m` (minutes) or `h`. Surrounding spaces are
/// ignored; fractions, signs and compound forms (`1m30s`) are not accepted.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::NoNumber(text.to_owned()));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let millis_per_unit: u64 = match unit.trim_start() {
        "" => return Err(DurationError::NoUnit(text.to_owned())),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::UnknownUnit(text.to_owned())),
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::Overflow(text.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_understood() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration(" 30 s ").unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn malformed_text_is_rejected_with_its_reason() {
        assert_eq!(
            parse_duration("500"),
            Err(DurationError::NoUnit("500".into()))
        );
        assert_eq!(
            parse_duration("ms"),
            Err(DurationError::NoNumber("ms".into()))
        );
        assert_eq!(parse_duration(""), Err(DurationError::NoNumber("".into())));
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::NoNumber("-1s".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::UnknownUnit("1.5s".into()))
        );
        assert_eq!(
            parse_duration("2 days"),
            Err(DurationError::UnknownUnit("2 days".into()))
        );
        assert_eq!(
            parse_duration("1m30s"),
            Err(DurationError::UnknownUnit("1m30s".into()))
        );
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow(_))
        ));
    }
}

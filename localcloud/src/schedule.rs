//! EventBridge schedule expressions: parsing `rate(...)` and `cron(...)` into a [`Schedule`]
//! with AWS's rules (and AWS's error cases), and computing the next fire time in UTC so the
//! scheduler knows how long to sleep.

use std::fmt;
use std::time::Duration;

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Rate(Duration),
    Cron(Cron),
}

/// A parsed six-field AWS cron expression (`minutes hours day-of-month month day-of-week year`,
/// evaluated in UTC). Two crons are equal when they fire at the same times, however they
/// were spelled (`*/15` equals `0,15,30,45`).
#[derive(Clone)]
pub struct Cron {
    /// The fields as written, for messages and `Debug`.
    source: String,
    minutes: FieldSet,
    hours: FieldSet,
    days: Days,
    months: FieldSet,
    years: FieldSet,
}

/// Why a schedule expression was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule expression {expr:?} must be rate(...) or cron(...), \
         e.g. rate(5 minutes) or cron(0 12 * * ? *)"
    )]
    Syntax { expr: String },
    #[error(
        "rate expression {expr:?} must be rate(<value> <unit>), e.g. rate(5 minutes) or rate(1 hour)"
    )]
    RateShape { expr: String },
    #[error("rate value {value:?} must be a positive whole number, e.g. rate(5 minutes)")]
    RateValue { value: String },
    #[error("rate unit {unit:?} must be minute(s), hour(s) or day(s), e.g. rate(7 days)")]
    RateUnit { unit: String },
    #[error(
        "rate({value} {unit}): AWS requires the singular unit with 1 and the plural otherwise, \
         e.g. rate(1 hour) or rate(5 minutes)"
    )]
    RatePlural { value: u64, unit: String },
    #[error("rate({value} {unit}) is too long to represent")]
    RateOverflow { value: u64, unit: String },
    #[error(
        "cron expression {expr:?} has {count} fields; it needs 6 \
         (minutes hours day-of-month month day-of-week year), e.g. cron(0 12 * * ? *)"
    )]
    CronFieldCount { expr: String, count: usize },
    #[error("cron {field} field {value:?}: {reason}; valid examples: {example}")]
    CronField {
        field: &'static str,
        value: String,
        reason: String,
        example: &'static str,
    },
    #[error(
        "cron {field} field {value:?}: {feature} is not supported by localcloud; \
         valid examples: {example}"
    )]
    CronUnsupported {
        field: &'static str,
        value: String,
        feature: &'static str,
        example: &'static str,
    },
    #[error(
        "cron expression {expr:?}: exactly one of day-of-month and day-of-week must be ?, \
         e.g. cron(0 12 * * ? *) or cron(15 10 ? * MON-FRI *)"
    )]
    CronDayFields { expr: String },
}

impl Schedule {
    /// Parses `rate(5 minutes)`, `rate(1 hour)`, `rate(7 days)` or `cron(0 12 * * ? *)`.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if let Some(body) = trimmed
            .strip_prefix("rate(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return parse_rate(body, trimmed).map(Schedule::Rate);
        }
        if let Some(body) = trimmed
            .strip_prefix("cron(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return Cron::parse(body).map(Schedule::Cron);
        }
        Err(ScheduleError::Syntax {
            expr: expr.to_owned(),
        })
    }

    /// The first fire time strictly after `after` (UTC).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(UtcOffset::UTC);
        match self {
            Schedule::Rate(period) => after.checked_add(time::Duration::try_from(*period).ok()?),
            Schedule::Cron(cron) => cron.next_after(after),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate(period) => {
                let secs = period.as_secs();
                let (value, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
                    .into_iter()
                    .find(|(size, _)| secs % size == 0)
                    .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
                let plural = if value == 1 { "" } else { "s" };
                write!(f, "rate({value} {unit}{plural})")
            }
            Schedule::Cron(cron) => write!(f, "cron({})", cron.source),
        }
    }
}

fn parse_rate(body: &str, expr: &str) -> Result<Duration, ScheduleError> {
    let parts: Vec<&str> = body.split_whitespace().collect();
    let [value, unit] = parts.as_slice() else {
        return Err(ScheduleError::RateShape {
            expr: expr.to_owned(),
        });
    };
    let bad_value = || ScheduleError::RateValue {
        value: (*value).to_owned(),
    };
    // `u64::from_str` would accept "+5"; AWS wants plain digits.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_value());
    }
    let count: u64 = value.parse().map_err(|_| bad_value())?;
    if count == 0 {
        return Err(bad_value());
    }
    let (seconds, plural) = match *unit {
        "minute" => (60, false),
        "minutes" => (60, true),
        "hour" => (3_600, false),
        "hours" => (3_600, true),
        "day" => (86_400, false),
        "days" => (86_400, true),
        other => {
            return Err(ScheduleError::RateUnit {
                unit: other.to_owned(),
            })
        }
    };
    if plural == (count == 1) {
        return Err(ScheduleError::RatePlural {
            value: count,
            unit: (*unit).to_owned(),
        });
    }
    let total = count
        .checked_mul(seconds)
        .ok_or_else(|| ScheduleError::RateOverflow {
            value: count,
            unit: (*unit).to_owned(),
        })?;
    Ok(Duration::from_secs(total))
}

/// The set of allowed values of one field, as a bitset over `min..=max`. Boxed so that
/// `Schedule::Cron` stays small next to `Schedule::Rate`.
#[derive(Clone, PartialEq)]
struct FieldSet {
    min: u16,
    max: u16,
    bits: Box<[u64]>,
}

impl FieldSet {
    fn empty(min: u16, max: u16) -> FieldSet {
        let words = usize::from(max - min) / 64 + 1;
        FieldSet {
            min,
            max,
            bits: vec![0; words].into_boxed_slice(),
        }
    }

    fn index(&self, value: i64) -> Option<usize> {
        if value < i64::from(self.min) || value > i64::from(self.max) {
            return None;
        }
        usize::try_from(value - i64::from(self.min)).ok()
    }

    fn insert(&mut self, value: u16) {
        if let Some(i) = self.index(i64::from(value)) {
            if let Some(word) = self.bits.get_mut(i / 64) {
                *word |= 1 << (i % 64);
            }
        }
    }

    fn contains(&self, value: i64) -> bool {
        self.index(value)
            .and_then(|i| {
                self.bits
                    .get(i / 64)
                    .map(|word| word & (1 << (i % 64)) != 0)
            })
            .unwrap_or(false)
    }

    /// The smallest member `>= value`, if any.
    fn next_from(&self, value: i64) -> Option<i64> {
        (value.max(i64::from(self.min))..=i64::from(self.max)).find(|v| self.contains(*v))
    }
}

/// Day-of-month and day-of-week are exclusive in AWS cron: exactly one is `?`.
#[derive(Clone, PartialEq)]
enum Days {
    OfMonth(FieldSet),
    /// 1 = Sunday .. 7 = Saturday, as AWS numbers them.
    OfWeek(FieldSet),
}

struct FieldSpec {
    name: &'static str,
    min: u16,
    max: u16,
    names: &'static [&'static str],
    example: &'static str,
}

const MINUTES: FieldSpec = FieldSpec {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    example: "0, 0/15, */5, 5,35, 0-29",
};
const HOURS: FieldSpec = FieldSpec {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    example: "12, 9-17, */2, 0,12",
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    example: "1, 1-15, 1/7, * (or ? when day-of-week is set)",
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    example: "*, 1, JAN-MAR, */3",
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    example: "MON-FRI, 1,7 (1=SUN..7=SAT), ? (when day-of-month is set)",
};
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    example: "*, 2027, 2026-2030",
};

/// How far `next_after` looks past the first year the expression allows before giving up on
/// an expression that can never fire again (e.g. `cron(0 0 30 FEB ? *)`).
const SEARCH_YEARS: i32 = 5;

impl Cron {
    fn parse(body: &str) -> Result<Cron, ScheduleError> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, day_of_month, month, day_of_week, year] = fields.as_slice() else {
            return Err(ScheduleError::CronFieldCount {
                expr: format!("cron({body})"),
                count: fields.len(),
            });
        };
        let days = match (*day_of_month == "?", *day_of_week == "?") {
            (false, true) => Days::OfMonth(DAY_OF_MONTH.parse(day_of_month)?),
            (true, false) => Days::OfWeek(DAY_OF_WEEK.parse(day_of_week)?),
            _ => {
                return Err(ScheduleError::CronDayFields {
                    expr: format!("cron({body})"),
                })
            }
        };
        Ok(Cron {
            source: fields.join(" "),
            minutes: MINUTES.parse(minutes)?,
            hours: HOURS.parse(hours)?,
            days,
            months: MONTH.parse(month)?,
            years: YEAR.parse(year)?,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        match &self.days {
            Days::OfMonth(set) => set.contains(i64::from(date.day())),
            Days::OfWeek(set) => set.contains(i64::from(date.weekday().number_from_sunday())),
        }
    }

    /// Walks forward from the minute after `after`, skipping whole years, months, days and
    /// hours that cannot match, so even a yearly expression takes at most a few thousand
    /// steps.
    fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        // Strictly after: a fire time equal to `after` has already happened.
        let start = after
            .replace_second(0)
            .ok()?
            .replace_nanosecond(0)
            .ok()?
            .checked_add(time::Duration::MINUTE)?;
        let mut date = start.date();
        let mut hour = i64::from(start.hour());
        let mut minute = i64::from(start.minute());
        let first_year = i32::try_from(self.years.next_from(i64::from(date.year()))?).ok()?;
        let last_year = first_year + SEARCH_YEARS;
        loop {
            let year = date.year();
            if year > last_year {
                return None;
            }
            if !self.years.contains(i64::from(year)) {
                let next = i32::try_from(self.years.next_from(i64::from(year) + 1)?).ok()?;
                date = Date::from_calendar_date(next, Month::January, 1).ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.months.contains(i64::from(u8::from(date.month()))) {
                date = first_of_next_month(date)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.next_day()?;
                (hour, minute) = (0, 0);
                continue;
            }
            let Some(next_hour) = self.hours.next_from(hour) else {
                date = date.next_day()?;
                (hour, minute) = (0, 0);
                continue;
            };
            if next_hour != hour {
                (hour, minute) = (next_hour, 0);
            }
            let Some(next_minute) = self.minutes.next_from(minute) else {
                (hour, minute) = (hour + 1, 0);
                if hour == 24 {
                    date = date.next_day()?;
                    hour = 0;
                }
                continue;
            };
            let time =
                time::Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(next_minute).ok()?, 0)
                    .ok()?;
            return Some(date.with_time(time).assume_utc());
        }
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let year = if date.month() == Month::December {
        date.year().checked_add(1)?
    } else {
        date.year()
    };
    Date::from_calendar_date(year, date.month().next(), 1).ok()
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.minutes == other.minutes
            && self.hours == other.hours
            && self.days == other.days
            && self.months == other.months
            && self.years == other.years
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cron").field(&self.source).finish()
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FieldSpec {
    fn error(&self, value: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError::CronField {
            field: self.name,
            value: value.to_owned(),
            reason: reason.into(),
            example: self.example,
        }
    }

    fn parse(&self, text: &str) -> Result<FieldSet, ScheduleError> {
        for (marker, feature) in [
            ('L', "L (last)"),
            ('W', "W (nearest weekday)"),
            ('#', "# (nth weekday of the month)"),
        ] {
            // Month and weekday names contain these letters (JUL, WED), so look for the
            // markers only in what is left once the names are read.
            if self.strip_names(text).contains(marker) {
                return Err(ScheduleError::CronUnsupported {
                    field: self.name,
                    value: text.to_owned(),
                    feature,
                    example: self.example,
                });
            }
        }
        if text == "?" {
            return Err(self.error(
                text,
                "? is allowed only in day-of-month or day-of-week, and in exactly one of them",
            ));
        }
        let mut set = FieldSet::empty(self.min, self.max);
        for item in text.split(',') {
            self.parse_item(item, text, &mut set)?;
        }
        Ok(set)
    }

    fn strip_names(&self, text: &str) -> String {
        let mut upper = text.to_ascii_uppercase();
        for name in self.names {
            upper = upper.replace(name, "");
        }
        upper
    }

    fn parse_item(&self, item: &str, whole: &str, set: &mut FieldSet) -> Result<(), ScheduleError> {
        if item.is_empty() {
            return Err(self.error(whole, "empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u16 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    self.error(
                        whole,
                        format!("increment {step:?} must be a positive number"),
                    )
                })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (self.min, self.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (self.value(low, whole)?, self.value(high, whole)?);
            if low > high {
                return Err(self.error(
                    whole,
                    format!("range {range:?} runs backwards; write the smaller bound first"),
                ));
            }
            (low, high)
        } else {
            let start = self.value(range, whole)?;
            // `a/n` means "from a, every n, to the end of the field", as in Quartz.
            (start, if step.is_some() { self.max } else { start })
        };
        let step = usize::from(step.unwrap_or(1));
        for value in (low..=high).step_by(step) {
            set.insert(value);
        }
        Ok(())
    }

    fn value(&self, text: &str, whole: &str) -> Result<u16, ScheduleError> {
        let upper = text.to_ascii_uppercase();
        if let Some(index) = self.names.iter().position(|name| **name == upper) {
            return u16::try_from(index)
                .map(|i| i + self.min)
                .map_err(|_| self.error(whole, "name index out of range"));
        }
        let value: u16 = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
        .ok_or_else(|| {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", self.names.join(","))
            };
            self.error(whole, format!("{text:?} is not a number{names}"))
        })?;
        if value < self.min || value > self.max {
            return Err(self.error(
                whole,
                format!("{value} is outside {}-{}", self.min, self.max),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use time::macros::datetime;

    fn parse(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap()
    }

    fn error(expr: &str) -> String {
        Schedule::parse(expr).unwrap_err().to_string()
    }

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        parse(expr).next_after(after).unwrap()
    }

    /// The first `n` fire times after `after`.
    fn fires(expr: &str, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        let schedule = parse(expr);
        let mut out = Vec::new();
        let mut at = after;
        for _ in 0..n {
            at = schedule.next_after(at).unwrap();
            out.push(at);
        }
        out
    }

    #[test]
    fn parses_rates() {
        assert_eq!(
            parse("rate(1 minute)"),
            Schedule::Rate(Duration::from_secs(60))
        );
        assert_eq!(
            parse("rate(5 minutes)"),
            Schedule::Rate(Duration::from_secs(300))
        );
        assert_eq!(
            parse("rate(1 hour)"),
            Schedule::Rate(Duration::from_secs(3_600))
        );
        assert_eq!(
            parse("rate(12 hours)"),
            Schedule::Rate(Duration::from_secs(43_200))
        );
        assert_eq!(
            parse("rate(1 day)"),
            Schedule::Rate(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse("rate(7 days)"),
            Schedule::Rate(Duration::from_secs(604_800))
        );
        assert_eq!(parse(" rate(5 minutes) "), parse("rate(5 minutes)"));
    }

    #[test]
    fn rate_errors() {
        assert_eq!(
            error("rate(0 minutes)"),
            "rate value \"0\" must be a positive whole number, e.g. rate(5 minutes)"
        );
        assert!(error("rate(-5 minutes)").contains("positive whole number"));
        assert!(error("rate(+5 minutes)").contains("positive whole number"));
        assert!(error("rate(1.5 hours)").contains("positive whole number"));
        assert_eq!(
            error("rate(1 minutes)"),
            "rate(1 minutes): AWS requires the singular unit with 1 and the plural otherwise, \
             e.g. rate(1 hour) or rate(5 minutes)"
        );
        assert!(error("rate(5 minute)").contains("singular unit with 1"));
        assert_eq!(
            error("rate(5 weeks)"),
            "rate unit \"weeks\" must be minute(s), hour(s) or day(s), e.g. rate(7 days)"
        );
        assert!(error("rate(5)").contains("rate(<value> <unit>)"));
        assert!(error("rate()").contains("rate(<value> <unit>)"));
        assert!(error("rate(99999999999999999999 days)").contains("positive whole number"));
        assert!(error("rate(9999999999999999999 days)").contains("too long"));
    }

    #[test]
    fn not_a_schedule() {
        for expr in [
            "",
            "every 5 minutes",
            "rate 5 minutes",
            "cron(0 12 * * ? *",
            "at(2026-01-01)",
        ] {
            assert!(
                error(expr).contains("must be rate(...) or cron(...)"),
                "{expr}"
            );
        }
    }

    #[test]
    fn parses_crons() {
        for expr in [
            "cron(0 12 * * ? *)",
            "cron(15 10 ? * MON-FRI *)",
            "cron(0/15 * * * ? *)",
            "cron(*/5 8-17 ? * 2-6 *)",
            "cron(0 0 1 JAN ? 2027)",
            "cron(0 18 ? * mon-fri *)",
            "cron(0,30 9,17 1,15 JAN-MAR,OCT ? 2026-2030)",
            "cron(0 8 1/7 * ? *)",
            "cron(0 0 ? * SUN,7 *)",
        ] {
            let schedule = parse(expr);
            assert_eq!(schedule.to_string(), expr, "display round-trips");
        }
    }

    #[test]
    fn cron_field_count() {
        assert_eq!(
            error("cron(0 12 * * ?)"),
            "cron expression \"cron(0 12 * * ?)\" has 5 fields; it needs 6 \
             (minutes hours day-of-month month day-of-week year), e.g. cron(0 12 * * ? *)"
        );
        assert!(error("cron(0 0 12 * * ? *)").contains("has 7 fields"));
    }

    #[test]
    fn cron_day_fields_exclusive() {
        let both = error("cron(0 12 ? * ? *)");
        assert!(
            both.contains("exactly one of day-of-month and day-of-week must be ?"),
            "{both}"
        );
        let neither = error("cron(0 12 * * MON *)");
        assert!(neither.contains("exactly one of day-of-month and day-of-week must be ?"));
        assert!(error("cron(0 12 * * * *)").contains("exactly one"));
    }

    #[test]
    fn cron_field_errors_name_the_field() {
        assert_eq!(
            error("cron(60 12 * * ? *)"),
            "cron minutes field \"60\": 60 is outside 0-59; \
             valid examples: 0, 0/15, */5, 5,35, 0-29"
        );
        assert!(error("cron(0 24 * * ? *)").starts_with("cron hours field \"24\""));
        assert!(error("cron(0 12 0 * ? *)").starts_with("cron day-of-month field \"0\""));
        assert!(error("cron(0 12 * 13 ? *)").starts_with("cron month field \"13\""));
        assert!(error("cron(0 12 * FOO ? *)").contains("\"FOO\" is not a number or one of JAN,"));
        assert!(error("cron(0 12 ? * 0 *)").starts_with("cron day-of-week field \"0\""));
        assert!(error("cron(0 12 ? * 8 *)").contains("8 is outside 1-7"));
        assert!(error("cron(0 12 * * ? 1969)").starts_with("cron year field \"1969\""));
        assert!(error("cron(0/0 * * * ? *)").contains("increment \"0\" must be a positive"));
        assert!(error("cron(0 17-9 * * ? *)").contains("runs backwards"));
        assert!(error("cron(0 1,,2 * * ? *)").contains("empty list item"));
        assert!(error("cron(? 12 * * ? *)").contains("? is allowed only in day-of-month"));
        assert!(error("cron(x 12 * * ? *)").contains("\"x\" is not a number"));
    }

    #[test]
    fn cron_unsupported_features() {
        assert_eq!(
            error("cron(0 12 L * ? *)"),
            "cron day-of-month field \"L\": L (last) is not supported by localcloud; \
             valid examples: 1, 1-15, 1/7, * (or ? when day-of-week is set)"
        );
        assert!(error("cron(0 12 ? * 6L *)").contains("L (last) is not supported"));
        assert!(error("cron(0 12 3W * ? *)").contains("W (nearest weekday) is not supported"));
        assert!(error("cron(0 12 ? * 3#2 *)").contains("# (nth weekday"));
        // Names containing the marker letters are not mistaken for them.
        parse("cron(0 12 ? JUL WED *)");
    }

    #[test]
    fn next_after_daily_noon() {
        let expr = "cron(0 12 * * ? *)";
        assert_eq!(
            next(expr, datetime!(2026-11-28 10:00 UTC)),
            datetime!(2026-11-28 12:00 UTC)
        );
        // Strictly after: exactly at the fire time moves on to the next day.
        assert_eq!(
            next(expr, datetime!(2026-11-28 12:00 UTC)),
            datetime!(2026-11-29 12:00 UTC)
        );
        assert_eq!(
            next(expr, datetime!(2026-11-28 11:59:59.999 UTC)),
            datetime!(2026-11-28 12:00 UTC)
        );
        assert_eq!(
            next(expr, datetime!(2026-12-31 13:00 UTC)),
            datetime!(2027-01-01 12:00 UTC)
        );
    }

    #[test]
    fn next_after_converts_offsets_to_utc() {
        // 13:30 in UTC+02:00 is 11:30 UTC, before the noon-UTC fire.
        let after = datetime!(2026-11-28 13:30 +02:00);
        let fire = next("cron(0 12 * * ? *)", after);
        assert_eq!(fire, datetime!(2026-11-28 12:00 UTC));
        assert_eq!(fire.offset(), UtcOffset::UTC);
    }

    #[test]
    fn next_after_weekdays_skip_the_weekend() {
        // 2026-11-27 is a Friday.
        let fired = fires(
            "cron(15 10 ? * MON-FRI *)",
            datetime!(2026-11-27 09:00 UTC),
            3,
        );
        assert_eq!(
            fired,
            [
                datetime!(2026-11-27 10:15 UTC),
                datetime!(2026-11-30 10:15 UTC),
                datetime!(2026-12-01 10:15 UTC),
            ]
        );
        assert_eq!(
            next("cron(15 10 ? * MON-FRI *)", datetime!(2026-11-28 10:14 UTC)),
            datetime!(2026-11-30 10:15 UTC)
        );
    }

    #[test]
    fn next_after_day_of_week_numbers_start_on_sunday() {
        // 1 = SUN in AWS, so `1` and `SUN` agree; 2026-11-29 is a Sunday.
        let after = datetime!(2026-11-27 00:00 UTC);
        assert_eq!(
            next("cron(0 9 ? * 1 *)", after),
            datetime!(2026-11-29 09:00 UTC)
        );
        assert_eq!(
            next("cron(0 9 ? * SUN *)", after),
            datetime!(2026-11-29 09:00 UTC)
        );
        assert_eq!(
            next("cron(0 9 ? * 7 *)", after),
            datetime!(2026-11-28 09:00 UTC)
        );
    }

    #[test]
    fn next_after_every_quarter_hour() {
        let fired = fires(
            "cron(0/15 * * * ? *)",
            datetime!(2026-11-28 23:20:10 UTC),
            4,
        );
        assert_eq!(
            fired,
            [
                datetime!(2026-11-28 23:30 UTC),
                datetime!(2026-11-28 23:45 UTC),
                datetime!(2026-11-29 00:00 UTC),
                datetime!(2026-11-29 00:15 UTC),
            ]
        );
        assert_eq!(
            parse("cron(*/15 * * * ? *)"),
            parse("cron(0,15,30,45 * * * ? *)")
        );
    }

    #[test]
    fn next_after_specific_year() {
        let expr = "cron(0 0 1 JAN ? 2027)";
        assert_eq!(
            next(expr, datetime!(2026-11-28 10:00 UTC)),
            datetime!(2027-01-01 00:00 UTC)
        );
        assert_eq!(
            parse(expr).next_after(datetime!(2027-01-01 00:00 UTC)),
            None
        );
        // A listed year further out than the search window is still found.
        assert_eq!(
            next("cron(30 6 1 JAN ? 2040)", datetime!(2026-11-28 10:00 UTC)),
            datetime!(2040-01-01 06:30 UTC)
        );
    }

    #[test]
    fn next_after_leap_day_and_month_ends() {
        assert_eq!(
            next("cron(0 0 29 FEB ? *)", datetime!(2026-11-28 10:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
        let fired = fires("cron(0 0 31 * ? *)", datetime!(2026-11-28 10:00 UTC), 3);
        assert_eq!(
            fired,
            [
                datetime!(2026-12-31 00:00 UTC),
                datetime!(2027-01-31 00:00 UTC),
                datetime!(2027-03-31 00:00 UTC),
            ]
        );
    }

    #[test]
    fn next_after_gives_up_on_impossible_dates() {
        assert_eq!(
            parse("cron(0 0 30 FEB ? *)").next_after(datetime!(2026-11-28 10:00 UTC)),
            None
        );
        assert_eq!(
            parse("cron(0 0 1 JAN ? 2026)").next_after(datetime!(2026-11-28 10:00 UTC)),
            None
        );
    }

    #[test]
    fn next_after_hour_ranges_and_steps() {
        let fired = fires(
            "cron(*/20 8-9 ? * MON-FRI *)",
            datetime!(2026-11-27 09:45 UTC),
            4,
        );
        assert_eq!(
            fired,
            [
                datetime!(2026-11-30 08:00 UTC),
                datetime!(2026-11-30 08:20 UTC),
                datetime!(2026-11-30 08:40 UTC),
                datetime!(2026-11-30 09:00 UTC),
            ]
        );
        assert_eq!(
            next("cron(5 */6 * * ? *)", datetime!(2026-11-28 12:05 UTC)),
            datetime!(2026-11-28 18:05 UTC)
        );
    }

    #[test]
    fn next_after_rate_adds_the_period() {
        let after = datetime!(2026-11-28 10:00:30 UTC);
        assert_eq!(
            next("rate(5 minutes)", after),
            datetime!(2026-11-28 10:05:30 UTC)
        );
        assert_eq!(
            next("rate(7 days)", after),
            datetime!(2026-12-05 10:00:30 UTC)
        );
        assert_eq!(
            next("rate(1 hour)", datetime!(2026-11-28 12:00 +02:00)),
            datetime!(2026-11-28 11:00 UTC)
        );
    }

    #[test]
    fn rate_display() {
        assert_eq!(parse("rate(1 minute)").to_string(), "rate(1 minute)");
        assert_eq!(parse("rate(90 minutes)").to_string(), "rate(90 minutes)");
        assert_eq!(parse("rate(24 hours)").to_string(), "rate(1 day)");
        assert_eq!(
            Schedule::Rate(Duration::from_secs(30)).to_string(),
            "rate(30 seconds)"
        );
    }
}

//! The `schedule` condition: the minutes of the week a rule applies, on the town's wall
//! clock, and the local time of a request to test against them.
//!
//! A schedule is a bit per minute of the week (10 080 bits, 1 260 bytes), built once at
//! compile time; testing a request is one shift and one mask, with no allocation. The
//! time tested is the *local wall-clock* time (weekday, minute of the day) in the town's
//! zone, so `12:00-14:00` stays 12:00–14:00 on both sides of a DST change: the pipeline
//! turns the instant into wall-clock time with the zone database, and nothing here knows
//! of offsets.

use jiff::civil::DateTime;

/// Minutes in a day.
pub const DAY_MINUTES: u16 = 24 * 60;
/// Minutes in a week.
const WEEK_MINUTES: usize = 7 * DAY_MINUTES as usize;
const WORDS: usize = WEEK_MINUTES.div_ceil(64);

/// Day names, Monday first: the English and French abbreviations and full names a policy
/// may write (case does not matter).
pub const DAY_NAMES: [[&str; 4]; 7] = [
    ["mon", "lun", "monday", "lundi"],
    ["tue", "mar", "tuesday", "mardi"],
    ["wed", "mer", "wednesday", "mercredi"],
    ["thu", "jeu", "thursday", "jeudi"],
    ["fri", "ven", "friday", "vendredi"],
    ["sat", "sam", "saturday", "samedi"],
    ["sun", "dim", "sunday", "dimanche"],
];

/// The day (0 = Monday) a policy names, in any of [`DAY_NAMES`].
pub fn day_number(name: &str) -> Option<u8> {
    let name = name.trim().to_lowercase();
    DAY_NAMES
        .iter()
        .position(|names| names.contains(&name.as_str()))
        .map(|d| d as u8)
}

/// A request's local time in the town: the day of the week and the minute of the day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// 0 ..= 1439.
    pub minute: u16,
}

impl LocalTime {
    /// The weekday and minute of a wall-clock time.
    pub fn of(dt: DateTime) -> LocalTime {
        LocalTime {
            weekday: dt.weekday().to_monday_zero_offset() as u8,
            minute: dt.hour() as u16 * 60 + dt.minute() as u16,
        }
    }

    /// The minute of the week (0 = Monday 00:00).
    #[inline]
    fn of_week(self) -> usize {
        self.weekday as usize * DAY_MINUTES as usize + self.minute as usize
    }
}

/// The minutes of the week a rule applies.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule(Box<[u64; WORDS]>);

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule(Box::new([0; WORDS]))
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        write!(f, "Schedule({n} minutes a week)")
    }
}

impl Schedule {
    /// Adds the minutes from `start` (inclusive) to `end` (exclusive) of `day`; an `end`
    /// at or before `start` runs on past midnight into the next day (after Sunday comes
    /// Monday). `end` may be [`DAY_MINUTES`] (24:00).
    pub fn add(&mut self, day: u8, start: u16, end: u16) {
        let from = day as usize * DAY_MINUTES as usize + start as usize;
        let len = if end > start {
            (end - start) as usize
        } else {
            (DAY_MINUTES - start + end) as usize
        };
        for m in from..from + len {
            let m = m % WEEK_MINUTES;
            self.0[m / 64] |= 1 << (m % 64);
        }
    }

    /// Whether the schedule holds at `t`.
    #[inline]
    pub fn contains(&self, t: LocalTime) -> bool {
        let m = t.of_week();
        self.0.get(m / 64).is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    /// Whether every minute of `self` is also in `other`.
    pub fn is_subset(&self, other: &Schedule) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// Whether no minute is in the schedule.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, h: u16, m: u16) -> LocalTime {
        LocalTime {
            weekday: day,
            minute: h * 60 + m,
        }
    }

    #[test]
    fn a_range_holds_from_its_first_minute_to_the_one_before_its_end() {
        let mut s = Schedule::default();
        s.add(0, 12 * 60, 14 * 60);
        assert!(!s.contains(at(0, 11, 59)));
        assert!(s.contains(at(0, 12, 0)));
        assert!(s.contains(at(0, 13, 59)));
        assert!(!s.contains(at(0, 14, 0)));
        assert!(!s.contains(at(1, 12, 30)), "another day");
    }

    #[test]
    fn a_range_across_midnight_belongs_to_the_day_it_starts_and_sunday_runs_into_monday() {
        let mut s = Schedule::default();
        s.add(4, 22 * 60, 6 * 60);
        assert!(s.contains(at(4, 23, 0)));
        assert!(s.contains(at(5, 5, 59)));
        assert!(!s.contains(at(5, 6, 0)));
        assert!(
            !s.contains(at(4, 5, 0)),
            "friday early morning is thursday's night"
        );
        let mut sun = Schedule::default();
        sun.add(6, 22 * 60, 6 * 60);
        assert!(sun.contains(at(6, 23, 59)));
        assert!(sun.contains(at(0, 0, 0)));
        assert!(!sun.contains(at(0, 6, 0)));
    }

    #[test]
    fn a_whole_day_and_subsets() {
        let mut day = Schedule::default();
        day.add(2, 0, DAY_MINUTES);
        assert!(day.contains(at(2, 0, 0)) && day.contains(at(2, 23, 59)));
        assert!(!day.contains(at(1, 23, 59)) && !day.contains(at(3, 0, 0)));
        let mut lunch = Schedule::default();
        lunch.add(2, 12 * 60, 14 * 60);
        assert!(lunch.is_subset(&day) && !day.is_subset(&lunch));
        assert!(Schedule::default().is_empty() && !lunch.is_empty());
    }

    #[test]
    fn day_names_in_english_and_french() {
        assert_eq!(day_number("Mon"), Some(0));
        assert_eq!(day_number("dim"), Some(6));
        assert_eq!(day_number("mercredi"), Some(2));
        assert_eq!(day_number("xyz"), None);
    }

    #[test]
    fn the_local_time_of_a_wall_clock() {
        let dt: DateTime = "2026-12-07T12:30:59".parse().unwrap();
        assert_eq!(LocalTime::of(dt), at(0, 12, 30));
    }
}

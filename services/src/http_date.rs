//! HTTP-date parsing (RFC 9110 §5.6.7) that accepts what the grammar accepts.
//!
//! `httpdate` also checks that the day name is the right one for the date. The grammar does not,
//! and "a recipient that parses a timestamp value in an HTTP field MUST accept all three
//! HTTP-date formats"; nginx reads such a date too. A date whose day name is wrong is read as
//! the date it names.

use std::time::SystemTime;

const SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The time `value` names, in any of the three formats, whatever its day name says.
pub fn parse(value: &str) -> Option<SystemTime> {
    if let Ok(time) = httpdate::parse_http_date(value) {
        return Some(time);
    }
    // The day name leads every format: up to the comma (IMF-fixdate, rfc850-date) or the space
    // (asctime-date). Only the right one passes `httpdate`'s check, so try the others.
    let (name, rest) = value.split_at(value.find([',', ' '])?);
    let names = if name.len() == 3 { &SHORT } else { &LONG };
    if !names.contains(&name) {
        return None;
    }
    names
        .iter()
        .filter(|other| **other != name)
        .find_map(|other| httpdate::parse_http_date(&format!("{other}{rest}")).ok())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn every_format_is_read_whatever_its_day_name() {
        // 1 January 1990 was a Monday.
        let want = Some(UNIX_EPOCH + Duration::from_secs(631_152_000));
        for value in [
            "Mon, 01 Jan 1990 00:00:00 GMT",
            "Fri, 01 Jan 1990 00:00:00 GMT",
            "Monday, 01-Jan-90 00:00:00 GMT",
            "Friday, 01-Jan-90 00:00:00 GMT",
            "Mon Jan  1 00:00:00 1990",
            "Sun Jan  1 00:00:00 1990",
        ] {
            assert_eq!(parse(value), want, "{value}");
        }
    }

    #[test]
    fn what_is_not_an_http_date_is_refused() {
        for value in [
            "",
            "yesterday",
            "Foo, 01 Jan 1990 00:00:00 GMT",
            "Fri, 30 Feb 1990 00:00:00 GMT",
            "Fri, 01 Jan 1990 00:00:00 UTC",
            "Friday, 01 Jan 1990 00:00:00 GMT",
            "Fri,01 Jan 1990 00:00:00 GMT",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
    }
}

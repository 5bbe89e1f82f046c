//! Settings written as text in TOML and environment variables but held typed: parsed (and so
//! checked) once, when the configuration is read, and written back in the same form for
//! `config check`. A bad value fails the load with a message naming its key.

use std::time::Duration;

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

use crate::deliver::schedule::RetrySchedule;

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 30s: {e}"))
}

/// One duration such as `30d` or `250ms`.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(text.trim()).map_err(D::Error::custom)
    }
}

/// A retry schedule written as delays, e.g. `5s,5m,30m`: at least one.
pub mod retry_schedule {
    use super::*;

    pub fn serialize<S: Serializer>(value: &RetrySchedule, s: S) -> Result<S::Ok, S::Error> {
        let delays: Vec<String> = value
            .delays()
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        s.serialize_str(&delays.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RetrySchedule, D::Error> {
        parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let delays = split_list(text)
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the retry schedule needs at least one delay".into());
        }
        Ok(RetrySchedule::new(delays))
    }
}

/// A comma-separated list of CIDRs, e.g. `127.0.0.0/8,10.0.0.0/8` (may be empty).
pub mod cidrs {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        let nets: Vec<String> = value.iter().map(IpNet::to_string).collect();
        s.serialize_str(&nets.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Vec<IpNet>, String> {
        split_list(text)
            .map(|part| {
                part.parse::<IpNet>()
                    .map_err(|_| format!("bad CIDR {part:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_once_and_write_back_in_the_same_form() {
        let schedule = retry_schedule::parse(" 200ms, 5m ,2h").unwrap();
        assert_eq!(
            schedule.delays(),
            [
                Duration::from_millis(200),
                Duration::from_secs(300),
                Duration::from_secs(7200)
            ]
        );
        assert!(retry_schedule::parse("soon").is_err());
        assert!(retry_schedule::parse(" , ").is_err());
        let nets = cidrs::parse("127.0.0.0/8, ::1/128").unwrap();
        assert_eq!(nets.len(), 2);
        assert!(cidrs::parse("").unwrap().is_empty());
        assert!(cidrs::parse("10.0.0.0/33").is_err());
    }
}
